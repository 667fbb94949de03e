//! Requests and replies of the [`crate::Store`] trait, and its error type.

use owl_core::lifecycle::RetryPolicy;
use owl_core::task::Status;
use owl_core::{RunOutcome, TaskId, TaskSpec, Timestamp, ValidationError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A task to insert. `spec.depends_on` names existing tasks; `batch_deps` names other items of
/// the same batch by position.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub spec: TaskSpec,
    pub batch_deps: Vec<usize>,
}

impl NewTask {
    pub fn new(spec: TaskSpec) -> Self {
        NewTask { spec, batch_deps: vec![] }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub id: TaskId,
    /// False when an existing task with the same idempotency key was returned.
    pub created: bool,
    pub status: Status,
}

#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub statuses: Vec<Status>,
    pub group: Option<String>,
    pub label: Option<String>,
    pub ids: Vec<TaskId>,
    /// Only tasks with a smaller id (paging backwards).
    pub before: Option<TaskId>,
    pub limit: Option<u32>,
    /// Only tasks of this kind: `command`, `agent` or `cli`.
    pub kind: Option<String>,
    /// Only the tasks this schedule fired.
    pub schedule: Option<String>,
    /// Only tasks created at or after this instant.
    pub created_since: Option<Timestamp>,
}

#[derive(Clone, Debug)]
pub struct Claim {
    pub node: String,
    pub now: Timestamp,
    pub lease: Duration,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedTask {
    pub id: TaskId,
    /// The fencing token: completions must carry it.
    pub attempt: u32,
    pub spec: TaskSpec,
    /// When the task last became queued (submitted ready, made due, its dependencies done,
    /// or requeued): the start of its queue wait.
    pub queued_since: owl_core::Timestamp,
}

#[derive(Clone, Debug)]
pub struct Heartbeat {
    pub node: String,
    pub leases: Vec<(TaskId, u32)>,
    pub lease_until: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Leases this node no longer holds (rescued or finished elsewhere): stop those runs.
    pub lost: Vec<TaskId>,
    pub cancel_requested: Vec<TaskId>,
}

#[derive(Clone, Debug)]
pub struct Completion {
    pub id: TaskId,
    pub attempt: u32,
    pub outcome: RunOutcome,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub now: Timestamp,
    pub policy: RetryPolicy,
    /// In [0, 1): where in the backoff window a retry lands.
    pub jitter: f64,
}

/// Every task whose status changed in one operation, in order, for events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes(pub Vec<(TaskId, Status)>);

impl Changes {
    pub fn status_of(&self, id: TaskId) -> Option<Status> {
        self.0.iter().rev().find(|(i, _)| *i == id).map(|(_, s)| *s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelReply {
    /// The task had not started and is now cancelled (with dependents failed as listed).
    Cancelled(Changes),
    /// The task is running; the node running it will stop it.
    Requested,
}

/// One daemon's report of itself, sent every third of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBeat {
    pub node: String,
    pub version: String,
    pub pid: u32,
    pub started_at: Timestamp,
    pub workers: u32,
    pub now: Timestamp,
}

/// A daemon as the store knows it: its last report, and the attempts it holds leases on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    pub version: String,
    pub pid: u32,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
    pub workers: u32,
    /// Tasks running with a lease held by this node.
    pub running: u64,
}

/// What the backend says about itself for `owl status`: which it is, where, and facts an
/// operator watches (sizes, for PostgreSQL dead tuples and the oldest open transaction).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The database file, or the URL without its password.
    pub location: String,
    pub schema_version: i64,
    /// Named numbers, e.g. `database_bytes`, `dead_tuples`, `oldest_transaction_seconds`.
    pub facts: BTreeMap<String, i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts(pub BTreeMap<Status, u64>);

impl StatusCounts {
    pub fn get(&self, s: Status) -> u64 {
        self.0.get(&s).copied().unwrap_or(0)
    }
}

/// What happens to one schedule slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FireAction {
    /// Create this task for the slot (or for a slot buffered earlier as `Queued`).
    Fire(TaskSpec),
    /// `owl schedule run-now`: a task outside the slot sequence.
    Manual(TaskSpec),
    Missed(String),
    Skipped(String),
    /// Buffered by `overlap = queue` until the active run ends.
    Queued,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FireDecision {
    pub slot: Timestamp,
    pub action: FireAction,
}

/// The outcome of one scheduler pass over one schedule, applied atomically.
#[derive(Clone, Debug)]
pub struct ApplyFires {
    pub schedule_id: i64,
    /// The `next_fire_at` the scheduler planned from; a different stored value means
    /// another pass got there first, and nothing is applied.
    pub expected_next: Option<Timestamp>,
    pub decisions: Vec<FireDecision>,
    pub next_fire_at: Option<Timestamp>,
    pub finished: bool,
    pub pending_slot: Option<Timestamp>,
    pub now: Timestamp,
}

/// One line of a schedule's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FireRecord {
    pub scheduled_for: Timestamp,
    pub fired_at: Timestamp,
    pub task_id: Option<TaskId>,
    /// fired, manual, missed, skipped or queued.
    pub outcome: String,
    pub reason: Option<String>,
    pub task_status: Option<Status>,
}

/// One event offered to a trigger.
#[derive(Clone, Debug)]
pub struct FireTrigger {
    pub trigger_id: i64,
    /// What caused it: `task:<id>` or a webhook delivery id. A source fires a trigger once.
    pub source: String,
    /// The task to create, or why the event is refused (chain too deep).
    pub task: Result<TaskSpec, String>,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TriggerFired {
    Fired(TaskId),
    /// This source already fired this trigger.
    Duplicate,
    RateLimited,
    Refused(String),
    /// The trigger is disabled.
    Disabled,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerFireRecord {
    pub source: String,
    pub at: Timestamp,
    pub task_id: Option<TaskId>,
    pub outcome: String,
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no trigger named `{0}`; see `owl trigger ls`")]
    TriggerNotFound(String),
    #[error("no schedule named `{0}`; see `owl schedule ls`")]
    ScheduleNotFound(String),
    #[error("task {0} does not exist")]
    NotFound(TaskId),
    #[error("{}depends on task {id}, which does not exist", item.map(|i| format!("tasks[{i}] ")).unwrap_or_default())]
    UnknownDependency { item: Option<usize>, id: TaskId },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("attempt {attempt} of task {id} is no longer current (the task is at attempt {current}, {status}); its result was refused")]
    StaleAttempt { id: TaskId, attempt: u32, current: u32, status: Status },
    #[error("{0}")]
    Conflict(String),
    /// Something other than a task, schedule or trigger is not there; the message says what
    /// and where to look.
    #[error("{0}")]
    Missing(String),
    #[error("storage error: {0}")]
    Backend(String),
}

// ---- The budget ledger ----

/// One scope's limit as a reservation checks it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeLimit {
    pub scope: String,
    /// Spend at or after this counts (the start of the scope's period).
    pub since: Timestamp,
    pub usd: Option<f64>,
    pub tokens: Option<u64>,
}

/// An estimate to hold before work starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Reserve {
    /// Unique per reservation; settling names it.
    pub key: String,
    pub task: Option<TaskId>,
    /// Every scope the work is charged to.
    pub scopes: Vec<String>,
    /// The limits to check (of scopes in `scopes`).
    pub limits: Vec<ScopeLimit>,
    pub usd: f64,
    pub tokens: u64,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reserved {
    Granted,
    /// The scopes without room, with what they hold.
    NoRoom(Vec<ScopeSpend>),
}

/// What a reservation came to.
#[derive(Clone, Debug, PartialEq)]
pub struct Settle {
    pub key: String,
    pub scopes: Vec<String>,
    pub usd: f64,
    pub tokens: u64,
    pub now: Timestamp,
}

/// One scope's spend over a time range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeSpend {
    pub scope: String,
    /// Settled.
    pub usd: f64,
    pub tokens: u64,
    /// Held by work in flight.
    pub reserved_usd: f64,
    pub reserved_tokens: u64,
    /// Settled and open entries.
    pub entries: u64,
    /// The oldest entry in the range (when a rolling window frees room).
    pub oldest: Option<Timestamp>,
}

// ---- Agent records: transcripts, results, usage, approvals, chats ----

pub use owl_core::agent::Owner;

pub use owl_core::transcript::{Entry, TranscriptEntry, Usage, UsageRecord};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageBy {
    Agent,
    Provider,
    Model,
    Day,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageSummary {
    /// The agent, provider, model or day (YYYY-MM-DD, UTC).
    pub key: String,
    pub calls: u64,
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub cost_usd: f64,
    /// Where the price of these calls came from (`owl_core::budget::price_label`); the
    /// latest one when they differ.
    #[serde(default)]
    pub price: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Approved, and the call it was for has been run.
    Used,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }
    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        [ApprovalStatus::Pending, ApprovalStatus::Approved, ApprovalStatus::Denied, ApprovalStatus::Expired, ApprovalStatus::Used]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewApproval {
    pub owner: Owner,
    pub agent: String,
    pub call_id: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub reason: String,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: i64,
    pub owner: Owner,
    pub agent: String,
    pub call_id: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    /// Why policy asked.
    pub reason: String,
    pub status: ApprovalStatus,
    /// A denial's reason, as the human gave it.
    pub decision_reason: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatInfo {
    pub id: i64,
    pub agent: String,
    pub title: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A finding to record about one attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAnomaly {
    pub at: owl_core::Timestamp,
    pub task_id: TaskId,
    pub attempt: u32,
    pub finding: owl_core::anomaly::Finding,
}

/// Which anomalies to list: newest first, optionally since a time, of one scope or subject,
/// before an id (paging backwards).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnomalyFilter {
    pub since: Option<owl_core::Timestamp>,
    /// Only anomalies before this instant.
    pub until: Option<owl_core::Timestamp>,
    pub scope: Option<owl_core::anomaly::Scope>,
    pub subject: Option<String>,
    pub task_id: Option<TaskId>,
    pub before: Option<i64>,
    pub limit: u32,
}

// ---- Notifications: channels, rules, the outbox ----

/// A notice for one channel, as the engine writes it into the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    pub channel: String,
    pub rule_id: Option<i64>,
    pub notice: owl_core::notify::Notice,
    /// Notices of one digest share a batch; they are sent together at `not_before`.
    pub batch: Option<String>,
    pub not_before: owl_core::Timestamp,
}

/// How one claimed delivery (or digest) went.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryDone {
    /// Every delivery of the claimed batch.
    pub ids: Vec<i64>,
    /// The attempt number the claim handed out; a stale one changes nothing.
    pub attempt: u32,
    pub ok: bool,
    pub answer: String,
    /// When to try again; `None` after a failure makes it a dead letter.
    pub retry_at: Option<owl_core::Timestamp>,
    pub now: owl_core::Timestamp,
}

/// Which deliveries to list: newest first, before an id (paging backwards).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveryFilter {
    pub channel: Option<String>,
    pub status: Option<owl_core::notify::DeliveryStatus>,
    /// Only deliveries with at least one failed attempt (dead letters among them).
    pub failed: bool,
    pub task_id: Option<i64>,
    pub before: Option<i64>,
    pub limit: u32,
}

// ---- The team: messages between agents and each agent's state ----

/// A file sent with a message, copied out of the sender's workspace when it was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its path in the sender's workspace.
    pub name: String,
    /// Where owl keeps the copy.
    pub path: String,
    pub bytes: u64,
}

/// A message to send.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    /// Sending twice with one key stores one message (a replayed tool call).
    pub key: String,
    /// The exchange it belongs to: the team run's root task (`task:12`), or one a person names.
    pub thread: String,
    /// `agent:NAME` or `person`.
    pub sender: String,
    pub sender_task: Option<TaskId>,
    /// As addressed: `agent:NAME`, `task:ID` or `all`.
    pub recipient: String,
    /// Who it is delivered to (`agent:NAME` or `task:ID`): one for a direct message, every
    /// agent but the sender for a broadcast.
    pub deliver_to: Vec<String>,
    pub kind: String,
    pub content: String,
    pub reply_to: Option<i64>,
    pub metadata: serde_json::Value,
    pub attachments: Vec<Attachment>,
}

/// A stored message and how far its deliveries got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub thread: String,
    pub sender: String,
    pub sender_task: Option<TaskId>,
    pub recipient: String,
    pub kind: String,
    pub content: String,
    pub reply_to: Option<i64>,
    pub metadata: serde_json::Value,
    pub attachments: Vec<Attachment>,
    pub created_at: Timestamp,
    pub deliveries: Vec<MessageDelivery>,
}

/// One recipient's copy: delivered (handed to a reader) and acknowledged (the reader recorded it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDelivery {
    pub to: String,
    pub delivered_at: Option<Timestamp>,
    /// The read that took it (`task:12:CALL`).
    pub claim: Option<String>,
    pub acked_at: Option<Timestamp>,
}

/// Which messages `messages` lists (all given conditions hold).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageFilter {
    pub thread: Option<String>,
    /// Sent by or delivered to this party (`agent:NAME` or `task:ID`).
    pub party: Option<String>,
    pub limit: u32,
}

/// One key of an agent's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    pub agent: String,
    pub key: String,
    pub value: String,
    /// 1 for a new key, one more at every write.
    pub version: u64,
    pub updated_at: Timestamp,
}
