//! What the agent runtime needs from the daemon around it: persistence, approvals, and the
//! task and schedule operations agents may use. The engine implements it over the store.

use async_trait::async_trait;
use owl_core::TaskId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use owl_core::agent::Owner;

pub use owl_core::transcript::{Entry, TranscriptEntry, UsageRecord};

/// Why the host could not do what the agent runtime asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Not done as asked (a bad argument, a limit, something that does not exist): the
    /// message is for the model, which can change course. Asking again is pointless.
    #[error("{0}")]
    Refused(String),
    /// The daemon could not do it now (storage trouble, shutting down): worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

impl HostError {
    pub fn refused(m: impl Into<String>) -> HostError {
        HostError::Refused(m.into())
    }
}

impl From<HostError> for String {
    fn from(e: HostError) -> String {
        e.to_string()
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// A tool call waiting for a human.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub owner: Owner,
    pub agent: String,
    /// The provider's id for the call; with the owner it binds the approval to this call.
    pub call_id: String,
    pub tool: String,
    pub arguments: Value,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalDecision {
    Approved,
    Denied { reason: String },
}

/// How an agent names a schedule's timing in `schedule_create`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAgentSchedule {
    pub name: String,
    pub cron: Option<String>,
    pub every: Option<String>,
    pub at: Option<String>,
    pub agent: String,
    pub prompt: String,
    pub max_runs: Option<u32>,
}

/// What one model call may spend, asked of the budgets before it is made.
#[derive(Clone, Debug, PartialEq)]
pub struct SpendRequest {
    pub owner: Owner,
    pub agent: String,
    /// The provider the call goes to first, and its model.
    pub provider: String,
    /// The providers it falls back to: they must have room too.
    pub fallbacks: Vec<String>,
    /// The model priced (the first of the routes without a price, if any has none).
    pub model: String,
    /// The dearest price of its routes; `None` when owl knows none for one of them (a local
    /// model costs nothing and has one).
    pub price: Option<owl_core::agent::Price>,
    /// The estimate to reserve.
    pub usd: f64,
    pub tokens: u64,
}

/// The budgets' answer to a [`SpendRequest`].
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Go ahead; settle `key` (if any) with what the call cost.
    Go { key: Option<String> },
    /// No room now: wait until `until` (or until the limit is raised).
    Wait { until: owl_core::Timestamp, scope: String, reason: String },
    /// This work can never fit (no price for a priced budget, a call larger than the limit).
    Refuse { reason: String },
}

/// One child task asked of `delegate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    pub prompt: String,
    /// The agent to take it; or leave it out and say what it `needs`.
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub complexity: Option<u8>,
    /// Positions (from 0) of tasks of the same call that must succeed first.
    #[serde(default)]
    pub after: Vec<usize>,
    /// Positions of tasks this one reviews: an answer starting with `CHANGES` sends them back
    /// with its comments, while rounds remain.
    #[serde(default)]
    pub review_of: Vec<usize>,
}

/// A `delegate` call: its children, and what bounds them.
#[derive(Clone, Debug, PartialEq)]
pub struct DelegateRequest {
    pub owner: Owner,
    pub agent: String,
    /// The delegating task's depth; children sit one below.
    pub depth: u32,
    /// The call's id: children are made once per call, however often it is replayed.
    pub call_id: String,
    /// The delegating task's workspace, shared with the children.
    pub workspace: std::path::PathBuf,
    pub items: Vec<Delegation>,
    /// Children one task may have in all.
    pub max_children: u32,
    /// Review rounds: how often a reviewer may send work back.
    pub max_rounds: u32,
    /// Wait for the children (giving up the worker slot) and return their results.
    pub wait: bool,
}

/// A message between agents, as `send_message` asks it to be sent.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingMessage {
    pub owner: Owner,
    pub sender: String,
    /// `agent:NAME`, `task:ID` or `all`.
    pub to: String,
    pub kind: String,
    pub content: String,
    pub reply_to: Option<i64>,
    /// Workspace files to attach (copied when sent).
    pub attachments: Vec<String>,
    pub workspace: std::path::PathBuf,
    /// Makes the send idempotent: the same key sends once.
    pub key: String,
}

#[async_trait]
pub trait Host: Send + Sync {
    /// Reserves a model call's estimate against every budget that applies. Without budgets
    /// (a host that keeps none) everything may go.
    async fn admit(&self, _req: SpendRequest) -> HostResult<Admission> {
        Ok(Admission::Go { key: None })
    }
    /// Settles a reservation of `req` to what the call cost, charged to the provider that answered.
    async fn settle(&self, _req: &SpendRequest, _key: &str, _provider: &str, _usd: f64, _tokens: u64) -> HostResult<()> {
        Ok(())
    }
    /// Persists transcript entries (already redacted) and returns their positions.
    async fn append(&self, owner: Owner, attempt: u32, entries: Vec<Entry>) -> HostResult<Vec<u64>>;
    /// Every entry so far, in order.
    async fn transcript(&self, owner: Owner) -> HostResult<Vec<TranscriptEntry>>;
    async fn record_usage(&self, usage: UsageRecord) -> HostResult<()>;
    /// Asks a human; returns once decided or expired. Asking again for the same call returns
    /// the same request (and its decision, if made), and an approval is used only once.
    async fn approve(&self, req: ApprovalRequest) -> HostResult<ApprovalDecision>;
    /// Submits an agent task as a subtask of `parent`.
    async fn create_task(&self, parent: Owner, agent: &str, prompt: &str, depth: u32) -> HostResult<TaskId>;
    /// Status and result of a task.
    async fn task_result(&self, id: TaskId) -> HostResult<Value>;
    /// Makes a `delegate` call's child tasks (once per call id) and, with `wait`, waits for
    /// them without holding a worker slot; their ids, statuses and results.
    async fn delegate(&self, _req: DelegateRequest) -> HostResult<Value> {
        Err(HostError::refused("delegation is not available here"))
    }
    /// Sends a message to an agent, a task or all agents; its id.
    async fn send_message(&self, _m: OutgoingMessage) -> HostResult<Value> {
        Err(HostError::refused("messages are not available here"))
    }
    /// Messages for this agent (or its task) not yet acknowledged; the same call id gets the
    /// same messages back, and they count as delivered once its result is recorded.
    /// Attachments are copied into `workspace` (under `inbox/`).
    async fn read_messages(
        &self,
        _owner: Owner,
        _agent: &str,
        _call_id: &str,
        _limit: u32,
        _workspace: &std::path::Path,
    ) -> HostResult<Value> {
        Err(HostError::refused("messages are not available here"))
    }
    /// The agent's own state: one key (with its version), or every key when `key` is `None`.
    async fn state_get(&self, _agent: &str, _key: Option<&str>) -> HostResult<Value> {
        Err(HostError::refused("agent state is not available here"))
    }
    /// Writes one key of the agent's state if it is still at `version` (0: does not exist yet).
    async fn state_set(&self, _agent: &str, _key: &str, _value: &str, _version: Option<u64>) -> HostResult<Value> {
        Err(HostError::refused("agent state is not available here"))
    }
    /// Schedules made by this owner so far.
    async fn schedules_created_by(&self, owner: Owner) -> HostResult<u32>;
    async fn create_schedule(&self, owner: Owner, s: NewAgentSchedule) -> HostResult<Value>;
    /// `pause`, `resume` or `cancel` (delete) a schedule an agent created.
    async fn manage_schedule(&self, name: &str, action: &str) -> HostResult<Value>;
    /// Long-term memory search for `agent`: hits as `[recalled memory #id] (kind) text` lines.
    async fn memory_search(&self, _agent: &str, _query: &str, _k: usize) -> HostResult<String> {
        Err(HostError::refused("long-term memory is not available here"))
    }
    /// Opens an issue on GitHub (`owner/name`); the issue's number and URL.
    async fn github_issue(&self, _owner: Owner, _repo: &str, _title: &str, _body: &str) -> HostResult<Value> {
        Err(HostError::refused("GitHub is not available here"))
    }
    /// Comments on an issue or pull request; the comment's URL.
    async fn github_comment(&self, _owner: Owner, _repo: &str, _number: u64, _body: &str) -> HostResult<Value> {
        Err(HostError::refused("GitHub is not available here"))
    }
    /// Remembers `text` for `agent`; says whether it was new or merged into an existing memory.
    async fn memory_add(&self, _owner: Owner, _agent: &str, _text: &str, _kind: &str, _tags: Vec<String>) -> HostResult<String> {
        Err(HostError::refused("long-term memory is not available here"))
    }
}
