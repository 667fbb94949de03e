//! The team: messages between agents (and from people), and each agent's state.

use crate::extract::{parse_query, ApiJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use owl_api::*;
use serde::Deserialize;

fn when(t: Option<owl_core::Timestamp>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

pub fn message_view(m: owl_store::Message) -> MessageView {
    MessageView {
        id: m.id,
        thread: m.thread,
        sender: m.sender,
        sender_task: m.sender_task.map(|t| t.0),
        recipient: m.recipient,
        kind: m.kind,
        content: m.content,
        reply_to: m.reply_to,
        metadata: m.metadata,
        attachments: m.attachments.into_iter().map(|a| AttachmentView { name: a.name, path: a.path, bytes: a.bytes }).collect(),
        created_at: m.created_at.to_rfc3339(),
        deliveries: m
            .deliveries
            .into_iter()
            .map(|d| MessageDeliveryView {
                to: d.to,
                state: match (d.delivered_at, d.acked_at) {
                    (_, Some(_)) => "acknowledged",
                    (Some(_), None) => "delivered",
                    (None, None) => "pending",
                }
                .into(),
                claim: d.claim,
                delivered_at: when(d.delivered_at),
                acked_at: when(d.acked_at),
            })
            .collect(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Only messages sent by or delivered to this agent.
    #[param(pattern = "^[A-Za-z0-9._:=/-]{1,128}$")]
    agent: Option<String>,
    /// Only messages sent by or delivered to this task.
    #[param(minimum = 1)]
    task: Option<i64>,
    /// Only this thread: a team run's root task (`task:12`, or just `12`), or `person`.
    #[param(pattern = "^[A-Za-z0-9._:=/-]{1,200}$")]
    thread: Option<String>,
    /// At most this many, newest (default 200).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/messages", summary = "Messages between agents, oldest first, with each delivery's state", params(MessageQuery), responses((status = 200, description = "OK", body = MessageList)))]
pub async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<MessageList>, ApiError> {
    let q: MessageQuery = parse_query(q)?;
    let name_like = |v: &str, max: usize| {
        !v.is_empty() && v.chars().count() <= max && v.chars().all(|c| c.is_ascii_alphanumeric() || "._:=/-".contains(c))
    };
    if let Some(a) = q.agent.as_deref().filter(|a| !name_like(a, 128)) {
        return Err(ApiError::bad_request("agent", format!("`{a}` is not an agent name")));
    }
    if let Some(t) = q.thread.as_deref().filter(|t| !name_like(t, 200)) {
        return Err(ApiError::bad_request("thread", format!("`{t}` is not a thread (a task id like 12, task:12, or person)")));
    }
    if q.agent.is_some() && q.task.is_some() {
        return Err(ApiError::bad_request("task", "give either `agent` or `task`, not both"));
    }
    if let Some(l) = q.limit.filter(|l| !(1..=1000).contains(l)) {
        return Err(ApiError::bad_request("limit", format!("{l} is out of range; give 1 to 1000")));
    }
    if q.task.is_some_and(|t| t < 1) {
        return Err(ApiError::bad_request("task", "task ids are positive integers"));
    }
    let party = q.agent.map(|a| format!("agent:{}", a.trim_start_matches("agent:"))).or(q.task.map(|t| format!("task:{t}")));
    let thread = q.thread.map(|t| if t.chars().all(|c| c.is_ascii_digit()) { format!("task:{t}") } else { t });
    let filter = owl_store::MessageFilter { thread, party, limit: q.limit.unwrap_or(200) };
    let messages = state.engine.store().messages(filter).await?;
    Ok(Json(MessageList { messages: messages.into_iter().map(message_view).collect() }))
}

#[utoipa::path(post, path = "/v1/messages", summary = "Send a message from a person to an agent, a task or all agents", request_body = SendMessage, responses((status = 201, description = "Sent", body = MessageView)))]
pub async fn send(State(state): State<AppState>, ApiJson(req): ApiJson<SendMessage>) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let chars = |v: &str| v.chars().count();
    if req.to.is_empty() || chars(&req.to) > 200 {
        return Err(ApiError::bad_request("to", "give an agent (NAME or agent:NAME), a task (task:ID) or all"));
    }
    if req.content.trim().is_empty() || chars(&req.content) > 262_144 {
        return Err(ApiError::bad_request("content", "a message needs content, at most 262144 characters of it"));
    }
    let kind = req.kind.unwrap_or_else(|| "note".into());
    if kind.is_empty() || chars(&kind) > 64 {
        return Err(ApiError::bad_request("type", "give a short word such as note or question"));
    }
    let thread = req.thread.unwrap_or_else(|| "person".into());
    if thread.is_empty() || chars(&thread) > 200 || !thread.chars().all(|c| c.is_ascii_alphanumeric() || "._:=/-".contains(c)) {
        return Err(ApiError::bad_request(
            "thread",
            "give 1 to 200 letters, digits and . _ : = / - (a task id like 12, task:12, or a name)",
        ));
    }
    // A bare task id names that task's thread, as when listing.
    let thread = if thread.chars().all(|c| c.is_ascii_digit()) { format!("task:{thread}") } else { thread };
    if req.reply_to.is_some_and(|r| r < 1) {
        return Err(ApiError::bad_request("reply_to", "message ids are positive integers"));
    }
    let m = state.engine.send_message_from_person(&req.to, &thread, &kind, &req.content, req.reply_to).await.map_err(|e| match e {
        owl_store::StoreError::Invalid(v) => ApiError::bad_request("to", v.message),
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(message_view(m))))
}

fn known_agent(state: &AppState, name: &str) -> Result<(), ApiError> {
    let known = state.engine.agents().is_some_and(|rt| rt.agent(name).is_some());
    if known {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("there is no agent `{name}`; see `owl agents`")))
    }
}

fn state_view(agent: &str, entries: Vec<owl_store::StateEntry>) -> AgentStateView {
    AgentStateView {
        agent: agent.to_string(),
        state: entries
            .into_iter()
            .map(|e| StateEntryView { key: e.key, value: e.value, version: e.version, updated_at: e.updated_at.to_rfc3339() })
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/agents/{name}/state", summary = "An agent's persistent state: every key with its version", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=/-]{1,128}$", description = "An agent")), responses((status = 200, description = "OK", body = AgentStateView)))]
pub async fn get_state(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<AgentStateView>, ApiError> {
    known_agent(&state, &name)?;
    let entries = state.engine.store().agent_state(&name).await?;
    Ok(Json(state_view(&name, entries)))
}

#[utoipa::path(put, path = "/v1/agents/{name}/state/{key}", summary = "Write one key of an agent's state (409 when `version` is not the key's version)", request_body = PutState, params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=/-]{1,128}$", description = "An agent"), ("key" = String, Path, pattern = "^[^\\x00-\\x1f\\x7f]{1,128}$", description = "The key")), responses((status = 200, description = "OK", body = StateEntryView)))]
pub async fn put_state(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    ApiJson(req): ApiJson<PutState>,
) -> Result<Json<StateEntryView>, ApiError> {
    if req.version.is_some_and(|v| v > i64::MAX as u64) {
        return Err(ApiError::bad_request("version", "is larger than any version"));
    }
    if req.value.chars().count() > 65_536 {
        return Err(ApiError::bad_request("value", "a state value holds at most 65536 characters"));
    }
    known_agent(&state, &name)?;
    let e = state.engine.put_agent_state(&name, &key, &req.value, req.version).await.map_err(|e| match e {
        owl_store::StoreError::Invalid(v) => ApiError::bad_request(v.field.clone(), v.message),
        other => other.into(),
    })?;
    Ok(Json(StateEntryView { key: e.key, value: e.value, version: e.version, updated_at: e.updated_at.to_rfc3339() }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteStateQuery {
    /// Remove it only if it is still at this version.
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    version: Option<u64>,
}

#[utoipa::path(delete, path = "/v1/agents/{name}/state/{key}", summary = "Remove one key of an agent's state", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=/-]{1,128}$", description = "An agent"), ("key" = String, Path, pattern = "^[^\\x00-\\x1f\\x7f]{1,128}$", description = "The key"), DeleteStateQuery), responses((status = 200, description = "OK", body = AgentStateView)))]
pub async fn delete_state(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<AgentStateView>, ApiError> {
    let q: DeleteStateQuery = parse_query(q)?;
    if q.version.is_some_and(|v| v < 1 || v > i64::MAX as u64) {
        return Err(ApiError::bad_request("version", "versions start at 1"));
    }
    known_agent(&state, &name)?;
    if !state.engine.store().delete_agent_state(&name, &key, q.version).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("agent `{name}` has no state `{key}`")));
    }
    let entries = state.engine.store().agent_state(&name).await?;
    Ok(Json(state_view(&name, entries)))
}
