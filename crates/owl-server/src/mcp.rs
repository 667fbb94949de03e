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
    let backend: Arc<dyn owl_mcp::Backend> = Arc::new(InProcess { api, token: state.token.clone() });
    let doc = serde_json::to_value(crate::openapi_document()).expect("the document serializes");
    let scope = owl_mcp::Scope { approvals: state.mcp_approvals, task: None };
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

/// One coding CLI task's MCP server: a Unix socket in its workspace, no token (only that task
/// and its user can reach the socket), tools scoped to the task.
pub struct TaskMcpServer {
    /// Built once for a placeholder task and moved to each real one: the tools come from the
    /// OpenAPI document, which then need not be kept (as a JSON value it takes megabytes).
    template: owl_mcp::OwlServer,
    max_body_bytes: usize,
    exe: std::path::PathBuf,
}

impl TaskMcpServer {
    pub fn new(api: Router, state: &AppState, exe: std::path::PathBuf) -> TaskMcpServer {
        TaskMcpServer {
            template: owl_mcp::OwlServer::new(
                Arc::new(InProcess { api, token: state.token.clone() }),
                owl_mcp::Scope { approvals: false, task: Some(0) },
                &serde_json::to_value(crate::openapi_document()).expect("the document serializes"),
            )
            .expect("every MCP tool names an operation of the API"),
            max_body_bytes: state.max_body_bytes,
            exe,
        }
    }
}

/// Stops a task's server when the task's process has ended.
struct Serving {
    task: tokio::task::JoinHandle<()>,
    socket: std::path::PathBuf,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl owl_engine::TaskMcp for TaskMcpServer {
    fn exe(&self) -> std::path::PathBuf {
        self.exe.clone()
    }

    fn open(&self, task: owl_core::TaskId, socket: &std::path::Path) -> Result<Box<dyn std::any::Any + Send>, String> {
        use std::os::unix::fs::PermissionsExt;
        let server = self.template.for_task(task.0)?;
        let listener =
            std::os::unix::net::UnixListener::bind(socket).map_err(|e| format!("owl_mcp: cannot listen on {}: {e}", socket.display()))?;
        let _ = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600));
        listener.set_nonblocking(true).map_err(|e| format!("owl_mcp: {e}"))?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| format!("owl_mcp: {e}"))?;
        // The bridge on the other end sends `Host: localhost`, a loopback name.
        let service = owl_mcp::http_service(server, "localhost:0", self.max_body_bytes);
        let app = Router::new().route_service("/v1/mcp", service);
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        tracing::debug!(task = %task, socket = %socket.display(), "serving MCP to the task");
        Ok(Box::new(Serving { task: handle, socket: socket.to_path_buf() }))
    }
}
