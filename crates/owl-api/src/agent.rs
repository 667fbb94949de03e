//! Agents on the wire: agents, transcripts, approvals, usage and chats.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentView {
    pub name: String,
    pub description: String,
    pub provider: String,
    pub model: String,
    pub fallback: Vec<String>,
    pub tools: Vec<String>,
    pub max_steps: u32,
    pub max_cost_usd: Option<f64>,
    /// Why this agent cannot run now, if so.
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptView {
    pub owner: String,
    pub entries: Vec<TranscriptEntryView>,
    /// Tokens and cost over the whole transcript.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptEntryView {
    pub seq: u64,
    pub attempt: u32,
    pub at: String,
    #[serde(flatten)]
    pub body: owl_core::transcript::Entry,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalView {
    pub id: i64,
    /// `task:12` or `chat:3`.
    pub owner: String,
    pub task_id: Option<i64>,
    pub agent: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub reason: String,
    pub status: String,
    pub decision_reason: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalView>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub by: String,
    pub since: String,
    pub rows: Vec<UsageRowView>,
    pub total: UsageRowView,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageRowView {
    /// The agent, provider, model, day or budget scope.
    pub key: String,
    /// Model calls (by scope: ledger entries, a coding CLI run being one).
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// Input plus output.
    #[serde(default)]
    pub tokens: u64,
    pub cost_usd: f64,
    /// Where the price came from (by model): `[prices."m"]`, `table DATE (m)`, `local (free)`,
    /// `reported by the CLI`, `owl's estimate (…)` or `unknown (no price)`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub price: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChat {
    #[serde(default)]
    pub agent: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatView {
    pub id: i64,
    pub agent: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatList {
    pub chats: Vec<ChatView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    #[schema(min_length = 1, pattern = "\\S")]
    pub message: String,
}
