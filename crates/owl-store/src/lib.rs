//! owl-store: the storage contract every backend implements.
//!
//! The engine talks only to [`Store`]; the binary picks the backend. The contract's behaviour
//! (fencing, dependency cascades, group limits, idempotency) is pinned by the [`conformance`]
//! suite, which each backend runs against itself.

pub mod conformance;
mod types;

pub use types::*;

use async_trait::async_trait;
use owl_core::{GroupInfo, Run, Task, TaskId};

/// Durable task storage. All writes are acknowledged only once durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a batch atomically: all items are stored, or none. Items whose idempotency key
    /// already exists return the existing task instead.
    async fn submit(&self, batch: Vec<NewTask>, now: owl_core::Timestamp) -> Result<Vec<Submitted>, StoreError>;
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
    async fn set_group(&self, name: &str, parallel: Option<u32>) -> Result<GroupInfo, StoreError>;
    async fn groups(&self) -> Result<Vec<GroupInfo>, StoreError>;
    async fn counts(&self) -> Result<StatusCounts, StoreError>;
}
