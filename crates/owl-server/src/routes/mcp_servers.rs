//! The MCP servers agents use: their state, their tools, a call by hand, and trusting a
//! changed tool definition.

use crate::extract::ApiJson;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use owl_api::{McpCall, McpCallReply, McpServerList, McpToolList, McpToolView, McpTrust};

fn known(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.mcp_hub.names().iter().any(|n| n == name) {
        return Ok(());
    }
    let names = state.mcp_hub.names();
    let hint = if names.is_empty() {
        "none is configured: add [mcp.servers.NAME] to the config".to_string()
    } else {
        format!("configured: {}", names.join(", "))
    };
    Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("there is no MCP server `{name}`; {hint}")))
}

fn unavailable(e: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "mcp_unavailable", e)
}

#[utoipa::path(get, path = "/v1/mcp-servers", summary = "The configured MCP servers and their state (none is started by asking)", responses((status = 200, description = "OK", body = McpServerList)))]
pub async fn list(State(state): State<AppState>) -> Json<McpServerList> {
    Json(McpServerList { servers: state.mcp_hub.status().await })
}

#[utoipa::path(get, path = "/v1/mcp-servers/{name}/tools", summary = "A server's tools with their policy and pin state (starts the server)", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "An MCP server name")), responses((status = 200, description = "OK", body = McpToolList)))]
pub async fn tools(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<McpToolList>, ApiError> {
    known(&state, &name)?;
    let tools = state.mcp_hub.tool_views(&name).await.map_err(unavailable)?;
    Ok(Json(McpToolList { server: name, tools }))
}

#[utoipa::path(post, path = "/v1/mcp-servers/{name}/call", summary = "Call a tool by hand (a person's call: no approval asked, a changed definition allowed)", request_body = McpCall, params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "An MCP server name")), responses((status = 200, description = "The tool's reply; `is_error` when it failed", body = McpCallReply)))]
pub async fn call(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<McpCall>,
) -> Result<Json<McpCallReply>, ApiError> {
    known(&state, &name)?;
    // A server that cannot start is the daemon's state, not the tool's answer.
    state.mcp_hub.tool_views(&name).await.map_err(unavailable)?;
    tracing::info!(server = %name, tool = %req.tool, "MCP tool called by hand");
    Ok(Json(match state.mcp_hub.call_tool(&name, &req.tool, serde_json::Value::Object(req.arguments), false).await {
        Ok(text) => McpCallReply { is_error: false, text },
        Err(text) => McpCallReply { is_error: true, text },
    }))
}

#[utoipa::path(post, path = "/v1/mcp-servers/{name}/trust", summary = "Accept a tool's current definition, so agents may use it again", request_body = McpTrust, params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "An MCP server name")), responses((status = 200, description = "OK", body = McpToolView)))]
pub async fn trust(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<McpTrust>,
) -> Result<Json<McpToolView>, ApiError> {
    known(&state, &name)?;
    let views = state.mcp_hub.tool_views(&name).await.map_err(unavailable)?;
    if !views.iter().any(|v| v.name == req.tool) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("MCP server `{name}` has no tool `{}`", req.tool)));
    }
    Ok(Json(state.mcp_hub.trust(&name, &req.tool).await.map_err(unavailable)?))
}
