//! Lifecycle events: what the engine publishes and the API streams at `/v1/events`.

use crate::task::{Status, TaskId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event within one daemon run.
    pub seq: u64,
    pub at: Timestamp,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    TaskSubmitted {
        task_id: TaskId,
        status: Status,
    },
    TaskStarted {
        task_id: TaskId,
        attempt: u32,
        node: String,
    },
    /// A task changed status for any other reason: finished, retrying, cancelled, requeued,
    /// failed because a dependency failed, or made ready because its dependencies succeeded.
    TaskChanged {
        task_id: TaskId,
        status: Status,
    },
    GroupChanged {
        group: String,
        parallel: Option<u32>,
    },
    ConfigReloaded,
    /// An agent task's transcript grew: a model message, a tool call or its result.
    AgentStep {
        task_id: TaskId,
        /// Position in the task's transcript.
        seq: u64,
        entry: String,
        /// One line for humans; never holds a secret.
        summary: String,
    },
    ApprovalRequested {
        approval_id: i64,
        task_id: Option<TaskId>,
        tool: String,
    },
    ApprovalDecided {
        approval_id: i64,
        task_id: Option<TaskId>,
        approved: bool,
    },
    /// A run far from the usual of its schedule, agent or kind, or a failure streak
    /// (`owl anomalies`).
    AnomalyDetected {
        anomaly_id: i64,
        task_id: TaskId,
        /// schedule, agent or kind.
        scope: String,
        subject: String,
        /// duration_seconds, tokens, cost_usd or failures.
        metric: String,
        summary: String,
    },
    /// A budget's spend passed its `warn_at` share of a limit (once per period).
    BudgetWarning {
        scope: String,
        /// Of the limit, rounded.
        percent: u32,
        summary: String,
    },
}

impl EventKind {
    pub fn task_id(&self) -> Option<TaskId> {
        match self {
            EventKind::TaskSubmitted { task_id, .. }
            | EventKind::TaskStarted { task_id, .. }
            | EventKind::TaskChanged { task_id, .. }
            | EventKind::AgentStep { task_id, .. }
            | EventKind::AnomalyDetected { task_id, .. } => Some(*task_id),
            EventKind::ApprovalRequested { task_id, .. } | EventKind::ApprovalDecided { task_id, .. } => *task_id,
            _ => None,
        }
    }
}
