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
    /// A coding-CLI agent's profile (`claude`, `codex`, ...); its `provider` and `model` are empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
    /// What tasks can ask it for (`owl add --needs`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The task sizes it takes, `[low, high]` on 1 to 10.
    pub complexity: [u8; 2],
    pub max_concurrent: Option<u32>,
    /// Its tasks running now.
    pub running: u32,
    /// Its tasks queued or waiting.
    pub queued: u32,
    /// Whether it can start another task now (`max_concurrent` not reached).
    pub available: bool,
    /// When a task of it last started (RFC 3339).
    pub last_active: Option<String>,
    /// Messages to it that no task has read yet.
    pub unread: u64,
}

/// One key of an agent's state.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateEntryView {
    pub key: String,
    pub value: String,
    /// 1 for a new key, one more at every write.
    pub version: u64,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentStateView {
    pub agent: String,
    pub state: Vec<StateEntryView>,
}

/// A write of one state key. With `version`, the write is refused (409) unless the key is
/// still at it (0: the key must not exist yet).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutState {
    #[schema(max_length = 65536)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub version: Option<u64>,
}

/// A message between agents (or from a person), with where each delivery got.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: i64,
    pub thread: String,
    pub sender: String,
    pub sender_task: Option<i64>,
    /// As addressed: `agent:NAME`, `task:ID` or `all`.
    pub recipient: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    pub reply_to: Option<i64>,
    pub metadata: serde_json::Value,
    pub attachments: Vec<AttachmentView>,
    pub created_at: String,
    pub deliveries: Vec<MessageDeliveryView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentView {
    pub name: String,
    pub path: String,
    pub bytes: u64,
}

/// One recipient's copy: `pending` (not read), `delivered` (handed to a task's read) or
/// `acknowledged` (the read is in that task's transcript).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageDeliveryView {
    pub to: String,
    pub state: String,
    pub claim: Option<String>,
    pub delivered_at: Option<String>,
    pub acked_at: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
}

/// A message a person sends to an agent, a task or all agents.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// `agent:NAME` (or just the name), `task:ID`, or `all`.
    #[schema(min_length = 1, max_length = 200)]
    pub to: String,
    #[schema(min_length = 1, max_length = 262144)]
    pub content: String,
    /// e.g. note, question, answer (default note).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub kind: Option<String>,
    /// The thread it joins (default: `person`); a bare task id `12` is `task:12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9._:=/-]{1,200}$")]
    pub thread: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub reply_to: Option<i64>,
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
