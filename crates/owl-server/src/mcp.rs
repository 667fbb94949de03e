//! `/v1/mcp`: owl's MCP server over Streamable HTTP. Its tools call the API's own router in
//! process, with the bearer token, so a tool does exactly what the same REST call does.

use crate::{auth, AppState};
use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;
use tower::ServiceExt;

/// The largest API reply a tool reads (a long task log); beyond it the tool says so.
const MAX_REPLY_BYTES: usize = 64 << 20;

struct InProcess {
    api: Router,
    token: Arc<str>,
}

#[async_trait]
impl owl_mcp::Backend for InProcess {
    async fn send(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<owl_mcp::Reply, String> {
        let req = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .map_err(|e| format!("cannot build the request for {path}: {e}"))?;
        let resp = self.api.clone().oneshot(req).await.unwrap_or_else(|never| match never {});
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_REPLY_BYTES)
            .await
            .map_err(|_| format!("the reply to {path} is larger than {} MiB", MAX_REPLY_BYTES >> 20))?;
        Ok(owl_mcp::Reply { status, body: String::from_utf8_lossy(&bytes).into_owned() })
    }
}

/// The `/v1/mcp` route around `api` (every other route, already with its state).
pub fn route(api: Router, state: &AppState) -> Router {
    let backend = Arc::new(InProcess { api, token: state.token.clone() });
    let doc = serde_json::to_value(crate::openapi_document()).expect("the document serializes");
    let scope = owl_mcp::Scope { approvals: state.mcp_approvals };
    let server = owl_mcp::OwlServer::new(backend, scope, &doc).expect("every MCP tool names an operation of the API");
    let service = owl_mcp::http_service(server, &state.listen, state.max_body_bytes);
    Router::new().route_service("/v1/mcp", service).layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
}

/// The bearer token, as for every other route; a dashboard session does not count, since
/// MCP clients are programs.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match auth::check_token(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}
