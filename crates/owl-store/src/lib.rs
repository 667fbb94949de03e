//! owl-store: the storage contract every backend implements.
//!
//! The engine talks only to [`Store`]; the binary picks the backend. The contract is split by
//! area, one trait each: [`QueueStore`] (tasks, attempts, groups), [`ScheduleStore`],
//! [`TriggerStore`] (triggers and the facts they read), [`AgentStore`] (transcripts,
//! usage, approvals, chats), [`InsightStore`] (run samples and anomalies) and [`NotifyStore`]
//! (notification channels, rules and the outbox); [`Store`] is all six, implemented for any type that has them. `use owl_store::prelude::*` brings them into
//! scope. The contract's behaviour
//! (fencing, dependency cascades, group limits, idempotency) is pinned by the [`conformance`]
//! suite, which each backend runs against itself.

pub mod conformance;
pub mod rules;
mod types;

pub use types::*;

use async_trait::async_trait;
use owl_core::anomaly::{Anomaly, RunSample, Scope};
use owl_core::notify::{Channel, ChannelSpec, Delivery, Rule, RuleSpec};
use owl_core::schedule::{Schedule, ScheduleSpec, ScheduleState};
use owl_core::trigger::{Trigger, TriggerSpec};
use owl_core::{GroupInfo, Run, Task, TaskId, Timestamp};

/// Every area of the contract: what the engine holds as `Arc<dyn Store>`.
pub trait Store: QueueStore + ScheduleStore + TriggerStore + AgentStore + InsightStore + NotifyStore + BudgetStore + TeamStore {}

impl<T: QueueStore + ScheduleStore + TriggerStore + AgentStore + InsightStore + NotifyStore + BudgetStore + TeamStore> Store for T {}

/// The words of an optimistic-concurrency refusal of an agent's state.
pub fn state_conflict(agent: &str, key: &str, wanted: u64, found: u64) -> String {
    if found == 0 {
        format!("state `{key}` of agent `{agent}` does not exist (version 0), not at version {wanted}; read it again and retry")
    } else {
        format!(
            "state `{key}` of agent `{agent}` is at version {found}, not {wanted}: it changed since it was read; read it again and retry"
        )
    }
}

/// The team: durable messages between agents (delivered at least once, acknowledged) and
/// each agent's small versioned state.
#[async_trait]
pub trait TeamStore: Send + Sync + 'static {
    /// Stores a message with one delivery per `deliver_to`; the same key stores it once and
    /// returns the first (with `false`).
    async fn send_message(&self, m: NewMessage, now: Timestamp) -> Result<(Message, bool), StoreError>;
    /// Hands up to `limit` undelivered messages for any of `to` to the read `claim`, oldest
    /// first; a read with a claim that already took messages gets those same messages again.
    async fn read_messages(&self, to: Vec<String>, claim: &str, limit: u32, now: Timestamp) -> Result<Vec<Message>, StoreError>;
    /// Acknowledges every delivery taken by a claim starting with `claim_prefix`, except those
    /// of the claim `except`; how many.
    async fn ack_messages(&self, claim_prefix: &str, except: Option<&str>, now: Timestamp) -> Result<u64, StoreError>;
    /// Messages, newest last.
    async fn messages(&self, filter: MessageFilter) -> Result<Vec<Message>, StoreError>;
    /// Deliveries to `to` not yet handed to a reader.
    async fn unread_count(&self, to: &str) -> Result<u64, StoreError>;
    /// An agent's state, every key, by key.
    async fn agent_state(&self, agent: &str) -> Result<Vec<StateEntry>, StoreError>;
    /// Writes one key if it is still at `expected` (0: must not exist; `None`: whatever it is
    /// at). A mismatch is a [`StoreError::Conflict`] naming the version found.
    async fn put_agent_state(
        &self,
        agent: &str,
        key: &str,
        value: &str,
        expected: Option<u64>,
        now: Timestamp,
    ) -> Result<StateEntry, StoreError>;
    /// Removes one key (if at `expected`, when given); whether it existed.
    async fn delete_agent_state(&self, agent: &str, key: &str, expected: Option<u64>) -> Result<bool, StoreError>;
}

/// The store's traits, to call its methods on an `Arc<dyn Store>`.
pub mod prelude {
    pub use crate::{AgentStore, BudgetStore, InsightStore, NotifyStore, QueueStore, ScheduleStore, Store, TriggerStore};
}

/// The rounding a dollar limit allows: a reservation of exactly the room left must fit.
pub fn usd_slack(limit: f64) -> f64 {
    1e-9 + limit.abs() * 1e-12
}

/// The budget ledger: one row per (reservation, scope). A reservation is checked against every
/// scope's limit and written in one transaction, so concurrent work on any number of nodes
/// cannot together pass a limit; it is later settled to what the work cost.
#[async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// Writes the reservation if `usd` and `tokens` fit every limit (spent plus reserved since
    /// each limit's `since`); otherwise writes nothing and names the scopes without room.
    async fn reserve(&self, r: Reserve) -> Result<Reserved, StoreError>;
    /// Replaces reservation `key` by what the work cost, charged to `scopes` (which may differ
    /// from the reserved ones: a fallback provider answered). An unknown or already settled
    /// key is a conflict, so nothing is charged twice.
    async fn settle(&self, s: Settle) -> Result<(), StoreError>;
    /// Settles every open reservation of `task` at its estimate (its calls' outcome is not
    /// known: the daemon stopped, say); returns how many.
    async fn settle_open(&self, task: TaskId, now: Timestamp) -> Result<u64, StoreError>;
    /// Settles at their estimate the open reservations nothing will settle: those of tasks
    /// that are not running (they ended, or were rescued after a crash), and those without a
    /// task (chat turns) made before `chats_before`. Returns how many rows.
    async fn settle_orphans(&self, chats_before: Timestamp) -> Result<u64, StoreError>;
    /// What `scopes` spent since `since` and hold reserved now (open reservations count
    /// whenever they were made), one line each, in the order given.
    async fn spend(&self, scopes: Vec<String>, since: Vec<Timestamp>) -> Result<Vec<ScopeSpend>, StoreError>;
    /// Spend per scope in `[since, until)`, for `owl usage --by scope`.
    async fn spend_by_scope(&self, since: Timestamp, until: Timestamp) -> Result<Vec<ScopeSpend>, StoreError>;
    /// Every task waiting on a budget becomes due now (a limit was raised); returns them.
    async fn wake_budget_waits(&self, now: Timestamp) -> Result<Vec<TaskId>, StoreError>;
    /// Drops settled ledger rows older than `before`.
    async fn prune_ledger(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// The queue: tasks, their attempts, dependencies and groups. All writes are acknowledged
/// only once durable.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Inserts a batch atomically: all items are stored, or none. Items whose idempotency key
    /// already exists return the existing task instead. Checks the batch first ([`rules`]).
    async fn submit(&self, batch: Vec<NewTask>, now: owl_core::Timestamp) -> Result<Vec<Submitted>, StoreError> {
        rules::check_submit(&batch)?;
        self.insert_batch(batch, now).await
    }
    /// The backend's part of [`Store::submit`]: the batch is already checked.
    async fn insert_batch(&self, batch: Vec<NewTask>, now: owl_core::Timestamp) -> Result<Vec<Submitted>, StoreError>;
    async fn get(&self, id: TaskId) -> Result<Task, StoreError>;
    /// Newest first.
    async fn list(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError>;
    async fn runs(&self, id: TaskId) -> Result<Vec<Run>, StoreError>;
    /// Moves waiting tasks whose time has come (and whose dependencies are met) to queued.
    async fn promote_due(&self, now: owl_core::Timestamp) -> Result<Vec<TaskId>, StoreError>;
    /// The earliest instant at which a waiting task with no pending dependencies becomes due.
    async fn next_due(&self) -> Result<Option<owl_core::Timestamp>, StoreError>;
    /// Claims up to `limit` queued tasks, highest priority first, within group limits.
    async fn claim(&self, claim: Claim) -> Result<Vec<ClaimedTask>, StoreError>;
    /// Renews leases held by `node`. Reports leases that were lost and cancels requested.
    async fn heartbeat(&self, beat: Heartbeat) -> Result<HeartbeatReply, StoreError>;
    /// Records the end of an attempt. Refused with [`StoreError::StaleAttempt`] unless the
    /// task is running that very attempt.
    async fn complete(&self, completion: Completion) -> Result<Changes, StoreError>;
    /// Puts running tasks back to the queue after a crash: those whose lease expired before
    /// `now`, or every running task when `all` is set (a single-node store whose lock proves
    /// that no other daemon holds any lease).
    async fn rescue(&self, now: owl_core::Timestamp, all: bool, policy: owl_core::lifecycle::RetryPolicy) -> Result<Changes, StoreError>;
    /// Cancels a task that has not started; for a running task, records the request and
    /// returns `Requested` so the node running it can stop it.
    async fn cancel(&self, id: TaskId, reason: Option<String>, now: owl_core::Timestamp) -> Result<CancelReply, StoreError>;
    /// Queues a finished task again with a fresh attempt budget, reviving dependents that
    /// failed only because of it.
    async fn retry(&self, id: TaskId, now: owl_core::Timestamp) -> Result<Changes, StoreError>;
    /// Sets a group's parallel limit (`None` removes it).
    async fn set_group(&self, name: &str, parallel: Option<u32>) -> Result<GroupInfo, StoreError> {
        rules::check_group(name, parallel)?;
        self.store_group(name, parallel).await
    }
    /// The backend's part of [`Store::set_group`]: name and limit are already checked.
    async fn store_group(&self, name: &str, parallel: Option<u32>) -> Result<GroupInfo, StoreError>;
    async fn groups(&self) -> Result<Vec<GroupInfo>, StoreError>;
    async fn counts(&self) -> Result<StatusCounts, StoreError>;
    /// Records a node's report of itself (creating the node at its first).
    async fn beat_node(&self, beat: NodeBeat) -> Result<(), StoreError>;
    /// Every node that ever reported, by name, with the tasks each is running.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError>;
    /// Which backend this is and the facts an operator watches.
    async fn health(&self) -> Result<StoreHealth, StoreError>;
}

/// Schedules, their fires (one per slot) and their history.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Stores a new schedule; a taken name is a `Conflict`.
    async fn create_schedule(&self, spec: ScheduleSpec, next_fire_at: Option<Timestamp>, now: Timestamp) -> Result<Schedule, StoreError> {
        owl_core::schedule::check_schedule_spec(&spec)?;
        self.insert_schedule(spec, next_fire_at, now).await
    }
    /// The backend's part of [`Store::create_schedule`]: the spec is already checked.
    async fn insert_schedule(&self, spec: ScheduleSpec, next_fire_at: Option<Timestamp>, now: Timestamp) -> Result<Schedule, StoreError>;
    async fn get_schedule(&self, name: &str) -> Result<Schedule, StoreError>;
    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError>;
    /// Pauses, resumes or finishes a schedule, with the next slot to wait for.
    async fn set_schedule_state(
        &self,
        name: &str,
        state: ScheduleState,
        next_fire_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Schedule, StoreError>;
    /// Removes the schedule and its history; tasks it created stay.
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError>;
    /// Active schedules with a slot due by `now` or a buffered slot.
    async fn due_schedules(&self, now: Timestamp) -> Result<Vec<Schedule>, StoreError>;
    /// Whether some active schedule holds a slot buffered by `overlap = queue`.
    async fn any_pending_slot(&self) -> Result<bool, StoreError>;
    /// The earliest `next_fire_at` of the active schedules.
    async fn next_schedule_due(&self) -> Result<Option<Timestamp>, StoreError>;
    /// Applies one scheduler pass: each slot's fire row is inserted at most once, with its
    /// task in the same transaction, so no slot ever fires twice. Returns the tasks created.
    async fn apply_fires(&self, fires: ApplyFires) -> Result<Vec<(Timestamp, TaskId)>, StoreError> {
        for d in &fires.decisions {
            if let FireAction::Fire(t) | FireAction::Manual(t) = &d.action {
                owl_core::validate::check_spec(t)?;
            }
        }
        self.record_fires(fires).await
    }
    /// The backend's part of [`Store::apply_fires`]: every task spec is already checked.
    async fn record_fires(&self, fires: ApplyFires) -> Result<Vec<(Timestamp, TaskId)>, StoreError>;
    /// Newest first.
    async fn schedule_history(&self, name: &str, limit: u32) -> Result<Vec<FireRecord>, StoreError>;
    /// Deletes history stamped before `before`: schedule fires, trigger fires (so a webhook
    /// delivery id older than that could fire again) and the finished-task log the trigger walk
    /// reads. Returns how many rows went.
    async fn prune_history(&self, before: Timestamp) -> Result<u64, StoreError>;
}

/// Triggers, their fires, and what they read: the finish log, failure counts and cursors.
#[async_trait]
pub trait TriggerStore: Send + Sync + 'static {
    async fn create_trigger(&self, spec: TriggerSpec, now: Timestamp) -> Result<Trigger, StoreError> {
        owl_core::trigger::check_trigger_spec(&spec)?;
        self.insert_trigger(spec, now).await
    }
    /// The backend's part of [`Store::create_trigger`]: the spec is already checked.
    async fn insert_trigger(&self, spec: TriggerSpec, now: Timestamp) -> Result<Trigger, StoreError>;
    async fn get_trigger(&self, name: &str) -> Result<Trigger, StoreError>;
    async fn list_triggers(&self) -> Result<Vec<Trigger>, StoreError>;
    async fn set_trigger_enabled(&self, name: &str, enabled: bool, now: Timestamp) -> Result<Trigger, StoreError>;
    async fn delete_trigger(&self, name: &str) -> Result<(), StoreError>;
    /// Offers one event to a trigger. In one transaction: a source seen before is a
    /// `Duplicate`; past the rate limit it is recorded as `RateLimited`; otherwise its task is
    /// created.
    async fn fire_trigger(&self, fire: FireTrigger) -> Result<TriggerFired, StoreError> {
        if let Ok(t) = &fire.task {
            owl_core::validate::check_spec(t)?;
        }
        self.record_trigger_fire(fire).await
    }
    /// The backend's part of [`Store::fire_trigger`]: the task spec is already checked.
    async fn record_trigger_fire(&self, fire: FireTrigger) -> Result<TriggerFired, StoreError>;
    /// Newest first.
    async fn trigger_history(&self, name: &str, limit: u32) -> Result<Vec<TriggerFireRecord>, StoreError>;
    /// Tasks that reached a final status after position `after` of the commit-ordered finish
    /// log, oldest first, with their positions. A task finishing again (after `retry`)
    /// appears again.
    async fn finished_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Task)>, StoreError>;
    /// A position of the finish log before every finish stamped at or after `before` (the last
    /// position when there is none, 0 for an empty log): where a consumer that only cares
    /// about later finishes can start. Finishes are stamped by the clock of whoever completed
    /// them but logged in commit order, so some before that position may be later-stamped and
    /// some after it earlier-stamped; the consumer filters by time.
    async fn last_finish_before(&self, before: Timestamp) -> Result<i64, StoreError>;
    /// Tasks that failed or timed out since `since` (a fact for conditions).
    async fn failures_since(&self, since: Timestamp) -> Result<u64, StoreError>;
    async fn kv_get(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn kv_set(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Sets `key` and returns the value it had, atomically: of nodes swapping one key at once,
    /// each sees the value the one before it wrote (a condition's edge is seen by one node).
    async fn kv_swap(&self, key: &str, value: &str) -> Result<Option<String>, StoreError>;
}

/// Agent records: transcripts, results, usage, git records of repository tasks, approvals
/// and chats.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Appends entries to an owner's transcript; returns their positions.
    async fn append_transcript(&self, owner: Owner, attempt: u32, entries: Vec<Entry>, now: Timestamp) -> Result<Vec<u64>, StoreError>;
    /// Entries after position `after`, in order.
    async fn transcript(&self, owner: Owner, after: u64) -> Result<Vec<TranscriptEntry>, StoreError>;
    async fn set_task_result(&self, id: TaskId, result: &str) -> Result<(), StoreError>;
    async fn task_result(&self, id: TaskId) -> Result<Option<String>, StoreError>;
    /// Records one model call's usage, stamped `at`.
    async fn record_usage(&self, usage: UsageRecord, at: Timestamp) -> Result<(), StoreError>;
    /// Everything one task or chat used (`key` is the owner's).
    async fn owner_usage(&self, owner: Owner) -> Result<UsageSummary, StoreError>;
    /// Records (replacing) what owl did in git for a repository task.
    async fn set_task_git(&self, id: TaskId, record: owl_core::coding::GitRecord) -> Result<(), StoreError>;
    async fn task_git(&self, id: TaskId) -> Result<Option<owl_core::coding::GitRecord>, StoreError>;
    /// Repository tasks that ended at or before `finished_before` whose worktree still exists.
    async fn worktrees_to_remove(&self, finished_before: Timestamp) -> Result<Vec<(TaskId, owl_core::coding::GitRecord)>, StoreError>;
    /// Usage recorded in `[since, until)`, grouped.
    async fn usage_summary(&self, since: Timestamp, until: Timestamp, by: UsageBy) -> Result<Vec<UsageSummary>, StoreError>;
    /// Creates the approval request for (owner, call id), or returns the one that exists.
    async fn request_approval(&self, req: NewApproval, now: Timestamp) -> Result<Approval, StoreError>;
    async fn get_approval(&self, id: i64) -> Result<Approval, StoreError>;
    /// Pending requests past their expiry become expired first.
    async fn list_approvals(&self, pending_only: bool, now: Timestamp) -> Result<Vec<Approval>, StoreError>;
    /// Approves or denies a pending request; anything else is a conflict that names its status.
    async fn decide_approval(&self, id: i64, approve: bool, reason: Option<String>, now: Timestamp) -> Result<Approval, StoreError>;
    /// Marks an approved request used; false when it was not approved (or already used).
    async fn consume_approval(&self, id: i64, now: Timestamp) -> Result<bool, StoreError>;
    async fn create_chat(&self, agent: &str, now: Timestamp) -> Result<ChatInfo, StoreError>;
    async fn get_chat(&self, id: i64) -> Result<ChatInfo, StoreError>;
    async fn list_chats(&self) -> Result<Vec<ChatInfo>, StoreError>;
    async fn touch_chat(&self, id: i64, title: Option<String>, now: Timestamp) -> Result<(), StoreError>;
}

/// What the engine learns from finished work: one sample per finished attempt (the baselines
/// of anomaly detection and the figures of reports) and the anomalies found. Both are pruned
/// with the fire history.
#[async_trait]
pub trait InsightStore: Send + Sync + 'static {
    /// Records one finished attempt; recording the same (task, attempt) again changes nothing.
    async fn record_sample(&self, sample: RunSample) -> Result<(), StoreError>;
    /// The latest `limit` samples of `subject` in `scope`, newest first.
    async fn recent_samples(&self, scope: Scope, subject: &str, limit: u32) -> Result<Vec<RunSample>, StoreError>;
    /// Samples of attempts that ended in `[since, until)`, oldest first, at most `limit`.
    async fn samples_between(&self, since: Timestamp, until: Timestamp, limit: u32) -> Result<Vec<RunSample>, StoreError>;
    /// Records a finding about one attempt; the same (task, attempt, metric) again returns the
    /// record that exists.
    async fn record_anomaly(&self, anomaly: NewAnomaly) -> Result<Anomaly, StoreError>;
    /// Recorded anomalies, newest first.
    async fn anomalies(&self, filter: AnomalyFilter) -> Result<Vec<Anomaly>, StoreError>;
}

/// Notifications: channels, the rules that route events to them, and the outbox of
/// deliveries. A delivery is written once per (channel, notice key), claimed with a lease by
/// one sender at a time, and ends delivered or as a dead letter; a paused channel's
/// deliveries wait.
#[async_trait]
pub trait NotifyStore: Send + Sync + 'static {
    /// Checks the spec, then stores it; a taken name is a conflict.
    async fn create_channel(&self, spec: ChannelSpec, now: Timestamp) -> Result<Channel, StoreError> {
        spec.validate().map_err(|(f, m)| owl_core::ValidationError::new(f, m))?;
        self.insert_channel(spec, now).await
    }
    async fn insert_channel(&self, spec: ChannelSpec, now: Timestamp) -> Result<Channel, StoreError>;
    async fn get_channel(&self, name: &str) -> Result<Channel, StoreError>;
    async fn list_channels(&self) -> Result<Vec<Channel>, StoreError>;
    /// Replaces a channel's target (a changed config); its state and deliveries stay.
    async fn update_channel(&self, spec: ChannelSpec) -> Result<Channel, StoreError>;
    /// Refused while a rule sends to it; its pending deliveries are dropped with it.
    async fn delete_channel(&self, name: &str) -> Result<(), StoreError>;
    /// Records how an attempt went: a success clears the failure count, a failure raises
    /// it, and `pause` (a reason) pauses the channel.
    async fn channel_result(
        &self,
        name: &str,
        ok: bool,
        error: Option<String>,
        pause: Option<String>,
        now: Timestamp,
    ) -> Result<Channel, StoreError>;
    /// Unpauses a channel and makes its waiting deliveries due now.
    async fn resume_channel(&self, name: &str, now: Timestamp) -> Result<Channel, StoreError>;
    /// Checks the spec and that its channels exist, then stores it.
    async fn create_rule(&self, spec: RuleSpec, now: Timestamp) -> Result<Rule, StoreError> {
        spec.validate().map_err(|(f, m)| owl_core::ValidationError::new(f, m))?;
        self.insert_rule(spec, now).await
    }
    async fn insert_rule(&self, spec: RuleSpec, now: Timestamp) -> Result<Rule, StoreError>;
    async fn list_rules(&self) -> Result<Vec<Rule>, StoreError>;
    async fn delete_rule(&self, id: i64) -> Result<(), StoreError>;
    /// Writes deliveries; one whose (channel, notice key) is already there is skipped. Returns
    /// how many were new.
    async fn enqueue(&self, deliveries: Vec<NewDelivery>, now: Timestamp) -> Result<u64, StoreError>;
    /// Claims up to `limit` due sends of unpaused channels until `lease_until`, raising their
    /// attempt count: a delivery alone, or every due delivery of its batch together. A send
    /// whose lease ran out (its sender died) is due again.
    async fn claim_deliveries(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<Vec<Delivery>>, StoreError>;
    /// Records an attempt's outcome, if the deliveries are still at that attempt.
    async fn finish_delivery(&self, done: DeliveryDone) -> Result<(), StoreError>;
    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;
    async fn get_delivery(&self, id: i64) -> Result<Delivery, StoreError>;
    /// How many deliveries of `rule` to `channel` were written since `since` outside a batch
    /// (the rate limit's count).
    async fn deliveries_since(&self, rule_id: i64, channel: &str, since: Timestamp) -> Result<u64, StoreError>;
    /// Forgets finished deliveries last touched before `before`.
    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64, StoreError>;
}
