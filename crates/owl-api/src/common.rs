//! Replies shared by every area: the daemon's status, small acknowledgements, server-sent
//! events and the error body.

use owl_core::task::Status;
use owl_core::{TaskId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusView {
    pub version: String,
    pub pid: u32,
    pub node: String,
    pub listen: String,
    pub data_dir: String,
    pub started_at: Timestamp,
    pub uptime_ms: u64,
    pub workers: usize,
    pub running: u64,
    pub shutting_down: bool,
    /// Today's date in the reports' time zone (`[reports] tz`), YYYY-MM-DD.
    #[serde(default)]
    pub report_date: String,
    /// Task counts by status.
    pub tasks: BTreeMap<Status, u64>,
    /// The queue's database: `sqlite` or `postgres`, where, and the facts an operator watches.
    pub store: StoreView,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreView {
    pub backend: String,
    pub location: String,
    pub schema_version: i64,
    /// e.g. `database_bytes`; on PostgreSQL also `dead_tuples`, `tasks_dead_tuples` and
    /// `oldest_transaction_seconds`.
    pub facts: BTreeMap<String, i64>,
}

/// `GET /v1/nodes`: every daemon that uses this store.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
    /// The node that answered.
    pub this: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    pub node: String,
    /// `alive` while it reports within a lease; `lost` after (its tasks are rescued by the others).
    pub status: String,
    pub version: String,
    pub pid: u32,
    pub started_at: Timestamp,
    pub last_seen: Timestamp,
    /// Milliseconds since its last report, by the answering node's clock.
    pub seen_ms_ago: u64,
    pub workers: u32,
    /// Tasks running with a lease this node holds.
    pub running: u64,
}

/// `POST /v1/chats/{id}/cancel`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatCancelled {
    pub chat: i64,
    pub cancelled: bool,
}

/// `DELETE /v1/memory/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemoryDeleted {
    pub deleted: i64,
}

/// `POST /v1/memory/reindex`: how many items the rebuilt index holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reindexed {
    pub indexed: usize,
}

/// `POST /v1/hooks/{name}`: the task the delivery started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookAccepted {
    pub task_id: TaskId,
}

/// One server-sent event, as a client reads it: its type and its data (a JSON text).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

/// The body of every error reply: `{"error": {"code": .., "message": .., "field": ..}}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// The message a client shows a person: the server's words, with the field they concern
    /// when the words do not already name it. The CLI and the MCP server both say it this way.
    pub fn describe(&self) -> String {
        match &self.error.field {
            Some(f) if !self.error.message.contains(&format!("`{f}`")) => format!("{} (in `{f}`)", self.error.message),
            _ => self.error.message.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// One check of `/v1/health/live` or `/v1/health/ready`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckView {
    pub name: String,
    pub ok: bool,
    /// Why not, or what was found.
    pub reason: String,
}

/// `ok` when every check passes (HTTP 200), else `fail` (HTTP 503).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthView {
    pub status: String,
    pub checks: Vec<CheckView>,
}

impl HealthView {
    pub fn of(checks: Vec<CheckView>) -> Self {
        let status = if checks.iter().all(|c| c.ok) { "ok" } else { "fail" };
        HealthView { status: status.into(), checks }
    }
}

/// A one-time sign-in link to the dashboard.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DashboardLink {
    /// Open it in a browser on this machine; it works once.
    pub url: String,
    /// Seconds it stays valid.
    pub expires_in_s: u64,
}
