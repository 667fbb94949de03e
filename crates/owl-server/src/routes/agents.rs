//! Agents: the configured agents, transcripts, usage, approvals and chats.

use crate::extract::{parse_id, parse_query, ApiJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use owl_api::*;
use owl_core::agent::Owner;
use owl_engine::chats::{ChatEnd, ChatError, ChatUpdate};
use owl_store::{Approval, ChatInfo, UsageBy};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;

#[utoipa::path(get, path = "/v1/agents", summary = "The configured agents with model, tools and limits", responses((status = 200, description = "OK", body = AgentList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    let rt = state.engine.agents();
    let agents = rt.as_ref().map(|rt| rt.agents()).unwrap_or_default();
    let status = state.engine.agent_status().await?;
    let mut views = Vec::new();
    for a in agents {
        let settings = rt.as_ref().and_then(|rt| rt.agent(&a.name).cloned()).unwrap_or_else(|| owl_core::agent::AgentSettings::new(""));
        let st = status.iter().find(|s| s.name == a.name);
        let unread = state.engine.store().unread_count(&format!("agent:{}", a.name)).await?;
        views.push(AgentView {
            name: a.name,
            description: a.description,
            provider: a.provider,
            model: a.model,
            fallback: a.fallback,
            tools: a.tools,
            max_steps: a.max_steps,
            max_cost_usd: a.max_cost_usd,
            problem: a.problem,
            cli: settings.cli.clone(),
            capabilities: settings.capabilities.clone(),
            complexity: settings.complexity,
            max_concurrent: settings.max_concurrent,
            running: st.map_or(0, |s| s.running),
            queued: st.map_or(0, |s| s.queued),
            available: st.is_none_or(|s| s.available),
            last_active: st.and_then(|s| s.last_active).map(|t| t.to_rfc3339()),
            unread,
        });
    }
    Ok(Json(AgentList { agents: views }))
}

async fn transcript_of(state: &AppState, owner: Owner) -> Result<Json<TranscriptView>, ApiError> {
    let entries = state.engine.store().transcript(owner, 0).await?;
    let (mut input, mut output, mut cost) = (0, 0, 0.0);
    for e in &entries {
        let (usage, c) = e.body.spend();
        input += usage.input;
        output += usage.output;
        cost += c;
    }
    Ok(Json(TranscriptView {
        owner: owner.key(),
        entries: entries
            .into_iter()
            .map(|e| TranscriptEntryView { seq: e.seq, attempt: e.attempt, at: e.at.to_rfc3339(), body: e.body })
            .collect(),
        input_tokens: input,
        output_tokens: output,
        cost_usd: cost,
    }))
}

#[utoipa::path(get, path = "/v1/tasks/{id}/transcript", summary = "An agent task's transcript: messages, tool calls and results, with tokens and cost", params(("id" = i64, Path, minimum = 1, description = "A task id")), responses((status = 200, description = "OK", body = TranscriptView)))]
pub async fn transcript(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TranscriptView>, ApiError> {
    let id = parse_id(&id)?;
    state.engine.store().get(id).await?;
    transcript_of(&state, Owner::Task(id)).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Group by agent (the default), provider, model, day or budget scope.
    #[param(pattern = "^(agent|provider|model|day|scope)$")]
    by: Option<String>,
    /// Only usage within this long (default 30d), e.g. `24h`.
    #[param(pattern = "^([0-9]{1,6}(ms|s|m|h|d|w))+$")]
    since: Option<String>,
}

#[utoipa::path(get, path = "/v1/usage", summary = "Tokens and cost, grouped", params(UsageQuery), responses((status = 200, description = "OK", body = UsageReport)))]
pub async fn usage(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<UsageReport>, ApiError> {
    let q: UsageQuery = parse_query(q)?;
    let by = match q.by.as_deref().unwrap_or("agent") {
        "agent" => Some(UsageBy::Agent),
        "provider" => Some(UsageBy::Provider),
        "model" => Some(UsageBy::Model),
        "day" => Some(UsageBy::Day),
        "scope" => None,
        other => return Err(ApiError::bad_request("by", format!("`{other}` is not one of agent, provider, model, day, scope"))),
    };
    let window = match q.since.as_deref() {
        Some(s) => owl_core::duration::parse(s).map_err(|m| ApiError::bad_request("since", m))?,
        None => std::time::Duration::from_secs(30 * 86400),
    };
    let since = state.engine.now().minus(window);
    let Some(by) = by else {
        // The budget ledger: each scope's settled and held spend (a call counts in every
        // scope it was charged to, so scopes do not add up to a total).
        let rows = state.engine.spend_by_scope(since, state.engine.now().plus(std::time::Duration::from_secs(1))).await?;
        let rows: Vec<UsageRowView> = rows
            .into_iter()
            .map(|r| UsageRowView {
                key: r.scope,
                calls: r.entries,
                tokens: r.tokens + r.reserved_tokens,
                cost_usd: r.usd + r.reserved_usd,
                ..Default::default()
            })
            .collect();
        let total = rows_total(&rows);
        return Ok(Json(UsageReport { by: "scope".into(), since: since.to_rfc3339(), rows, total }));
    };
    let rows = state.engine.store().usage_summary(since, state.engine.now().plus(std::time::Duration::from_secs(1)), by).await?;
    let mut total = UsageRowView { key: "total".into(), ..Default::default() };
    let rows: Vec<UsageRowView> = rows
        .into_iter()
        .map(|r| {
            total.calls += r.calls;
            total.input_tokens += r.input;
            total.output_tokens += r.output;
            total.cached_tokens += r.cached;
            total.cost_usd += r.cost_usd;
            total.tokens += r.input + r.output;
            UsageRowView {
                key: r.key,
                calls: r.calls,
                input_tokens: r.input,
                output_tokens: r.output,
                cached_tokens: r.cached,
                tokens: r.input + r.output,
                cost_usd: r.cost_usd,
                price: if by == UsageBy::Model { r.price } else { String::new() },
            }
        })
        .collect();
    Ok(Json(UsageReport { by: q.by.unwrap_or_else(|| "agent".into()), since: since.to_rfc3339(), rows, total }))
}

/// The `global` line stands for the total of a by-scope report: every call is charged to it.
fn rows_total(rows: &[UsageRowView]) -> UsageRowView {
    let g = rows.iter().find(|r| r.key == "global");
    UsageRowView {
        key: "total".into(),
        calls: g.map_or(0, |r| r.calls),
        tokens: g.map_or(0, |r| r.tokens),
        cost_usd: g.map_or(0.0, |r| r.cost_usd),
        ..Default::default()
    }
}

fn approval_view(a: Approval) -> ApprovalView {
    ApprovalView {
        id: a.id,
        owner: a.owner.key(),
        task_id: a.owner.task().map(|t| t.0),
        agent: a.agent,
        tool: a.tool,
        arguments: a.arguments,
        reason: a.reason,
        status: a.status.as_str().into(),
        decision_reason: a.decision_reason,
        created_at: a.created_at.to_rfc3339(),
        expires_at: a.expires_at.to_rfc3339(),
        decided_at: a.decided_at.map(|t| t.to_rfc3339()),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalQuery {
    all: Option<bool>,
}

#[utoipa::path(get, path = "/v1/approvals", summary = "Tool calls waiting for a human", params(ApprovalQuery), responses((status = 200, description = "OK", body = ApprovalList)))]
pub async fn approvals(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<ApprovalList>, ApiError> {
    let q: ApprovalQuery = parse_query(q)?;
    let list = state.engine.store().list_approvals(!q.all.unwrap_or(false), state.engine.now()).await?;
    Ok(Json(ApprovalList { approvals: list.into_iter().map(approval_view).collect() }))
}

fn approval_id(s: &str) -> Result<i64, ApiError> {
    s.trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request("id", format!("`{s}` is not an approval id")))
}

/// The body is optional: empty, or `{"reason": ".."}`.
fn decide_body(body: &[u8]) -> Result<Decide, ApiError> {
    crate::extract::parse_json(body)
}

#[utoipa::path(post, path = "/v1/approvals/{id}/approve", summary = "Approve a pending tool call (used once, for that exact call)", request_body = Option<Decide>, params(("id" = i64, Path, minimum = 1, description = "An approval id")), responses((status = 200, description = "OK", body = ApprovalView)))]
pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ApprovalView>, ApiError> {
    let reason = decide_body(&body)?.reason;
    Ok(Json(approval_view(state.engine.decide_approval(approval_id(&id)?, true, reason).await?)))
}

#[utoipa::path(post, path = "/v1/approvals/{id}/deny", summary = "Deny a pending tool call with a reason", request_body = Option<Decide>, params(("id" = i64, Path, minimum = 1, description = "An approval id")), responses((status = 200, description = "OK", body = ApprovalView)))]
pub async fn deny(State(state): State<AppState>, Path(id): Path<String>, body: axum::body::Bytes) -> Result<Json<ApprovalView>, ApiError> {
    let reason = decide_body(&body)?.reason.or_else(|| Some("denied without a reason".into()));
    Ok(Json(approval_view(state.engine.decide_approval(approval_id(&id)?, false, reason).await?)))
}

fn chat_view(c: ChatInfo) -> ChatView {
    ChatView { id: c.id, agent: c.agent, title: c.title, created_at: c.created_at.to_rfc3339(), updated_at: c.updated_at.to_rfc3339() }
}

#[utoipa::path(post, path = "/v1/chats", summary = "Start a chat with an agent", request_body = Option<CreateChat>, responses((status = 201, description = "OK", body = ChatView)))]
pub async fn create_chat(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateChat>,
) -> Result<(StatusCode, Json<ChatView>), ApiError> {
    let c = state.engine.create_chat(req.agent).await.map_err(|e| match e {
        ChatError::Store(e) => e.into(),
        other => ApiError::bad_request("agent", other.to_string()),
    })?;
    Ok((StatusCode::CREATED, Json(chat_view(c))))
}

#[utoipa::path(get, path = "/v1/chats", summary = "Chats, most recent first", responses((status = 200, description = "OK", body = ChatList)))]
pub async fn chats(State(state): State<AppState>) -> Result<Json<ChatList>, ApiError> {
    Ok(Json(ChatList { chats: state.engine.store().list_chats().await?.into_iter().map(chat_view).collect() }))
}

#[utoipa::path(get, path = "/v1/chats/{id}", summary = "A chat's transcript", params(("id" = i64, Path, minimum = 1, description = "A chat id")), responses((status = 200, description = "OK", body = TranscriptView)))]
pub async fn chat_transcript(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TranscriptView>, ApiError> {
    let id = approval_id(&id)?;
    state.engine.store().get_chat(id).await?;
    transcript_of(&state, Owner::Chat(id)).await
}

#[utoipa::path(post, path = "/v1/chats/{id}/messages", summary = "Send a message; the reply streams as SSE: delta, tool, then done or error", request_body = ChatMessage, params(("id" = i64, Path, minimum = 1, description = "A chat id")), responses((status = 200, description = "A stream of server-sent events", body = owl_api::SseEvent, content_type = "text/event-stream")))]
/// Sends a message; the reply streams as server-sent events: `delta` (text), `tool` (a tool
/// call starts), then `done` with the answer or `error`.
pub async fn chat_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChatMessage>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = approval_id(&id)?;
    state.engine.store().get_chat(id).await?;
    if req.message.trim().is_empty() {
        return Err(ApiError::bad_request("message", "the message is empty"));
    }
    let updates = state.engine.chat_message(id, req.message).await?;
    let stream = futures_util::stream::unfold(updates, |mut rx| async move {
        let ev = match rx.recv().await? {
            ChatUpdate::Delta(owl_agent::msg::Delta::Text(t)) => SseEvent::default().event("delta").data(json!({"text": t}).to_string()),
            ChatUpdate::Delta(owl_agent::msg::Delta::ToolStart { name }) => {
                SseEvent::default().event("tool").data(json!({"name": name}).to_string())
            }
            ChatUpdate::End(ChatEnd::Answered(answer)) => SseEvent::default().event("done").data(json!({"answer": answer}).to_string()),
            ChatUpdate::End(ChatEnd::Failed(error)) => SseEvent::default().event("error").data(json!({"error": error}).to_string()),
        };
        Some((Ok(ev), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[utoipa::path(post, path = "/v1/chats/{id}/cancel", summary = "Cancel the chat's running turn (409 when none runs)", params(("id" = i64, Path, minimum = 1, description = "A chat id")), responses((status = 200, description = "OK", body = ChatCancelled)))]
/// Cancels the turn a chat is running (or waiting to run).
pub async fn cancel_chat(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ChatCancelled>, ApiError> {
    let id = approval_id(&id)?;
    state.engine.cancel_chat_turn(id).await?;
    Ok(Json(ChatCancelled { chat: id, cancelled: true }))
}
