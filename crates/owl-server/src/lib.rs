//! owl-server: the HTTP API under `/v1`.
//!
//! Every route except `/healthz`, the health probes and webhook receivers needs the bearer
//! token (`/metrics` may be opened to loopback clients). Bodies are size-limited JSON with
//! unknown fields rejected; every error is `{"error":{"code","message","field"}}` with a 4xx
//! for anything a client sent, and a 5xx only for failures of owl itself (logged, never
//! detailed in the reply). The router is a plain function so tests can drive it in-process.

mod auth;
mod error;
mod extract;
mod mcp;
pub mod openapi;
mod routes;
pub mod ui;
pub mod webhook;

pub use error::ApiError;

use axum::routing::get;
use axum::Router;
use owl_engine::Engine;
use std::sync::Arc;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub token: Arc<str>,
    pub max_body_bytes: usize,
    pub listen: String,
    pub started_at: owl_core::Timestamp,
    /// Flips to true when the daemon stops, ending event and log streams.
    pub shutdown: watch::Receiver<bool>,
    /// Dashboard sign-in links and sessions.
    pub sessions: Arc<ui::Sessions>,
    /// Offer the approval tools to MCP clients (`[mcp] allow_approvals`).
    pub mcp_approvals: bool,
    /// The MCP servers agents use (`[mcp.servers]`), for `owl mcp ls|tools|call|trust`.
    pub mcp_hub: Arc<owl_mcp::Hub>,
}

/// Every authenticated route, registered with the router and the OpenAPI document at once.
fn authenticated() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(status::status))
        .routes(routes!(status::nodes))
        .routes(routes!(tasks::list, tasks::submit))
        .routes(routes!(tasks::submit_batch))
        .routes(routes!(tasks::show))
        .routes(routes!(tasks::cancel))
        .routes(routes!(tasks::retry))
        .routes(routes!(logs::logs))
        .routes(routes!(tasks::wait))
        .routes(routes!(groups::list))
        .routes(routes!(groups::set))
        .routes(routes!(events::events))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(schedules::show, schedules::remove))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::run_now))
        .routes(routes!(schedules::history))
        .routes(routes!(triggers::list, triggers::create))
        .routes(routes!(triggers::show, triggers::remove))
        .routes(routes!(triggers::enable))
        .routes(routes!(triggers::disable))
        .routes(routes!(triggers::history))
        .routes(routes!(agents::list))
        .routes(routes!(team::list, team::send))
        .routes(routes!(team::get_state))
        .routes(routes!(team::put_state, team::delete_state))
        .routes(routes!(agents::transcript))
        .routes(routes!(agents::usage))
        .routes(routes!(budgets::list))
        .routes(routes!(budgets::set, budgets::unset))
        .routes(routes!(budgets::prices))
        .routes(routes!(agents::approvals))
        .routes(routes!(anomalies::list))
        .routes(routes!(notify::list_channels, notify::create_channel))
        .routes(routes!(notify::show_channel, notify::remove_channel))
        .routes(routes!(notify::resume_channel))
        .routes(routes!(notify::test_channel))
        .routes(routes!(notify::list_rules, notify::create_rule))
        .routes(routes!(notify::remove_rule))
        .routes(routes!(notify::deliveries))
        .routes(routes!(notify::delivery))
        .routes(routes!(reports::daily))
        .routes(routes!(reports::performance))
        .routes(routes!(status::dashboard_link))
        .routes(routes!(agents::approve))
        .routes(routes!(agents::deny))
        .routes(routes!(agents::chats, agents::create_chat))
        .routes(routes!(agents::chat_transcript))
        .routes(routes!(agents::chat_message))
        .routes(routes!(agents::cancel_chat))
        .routes(routes!(memory::list, memory::add))
        .routes(routes!(memory::add_batch))
        .routes(routes!(memory::search))
        .routes(routes!(memory::stats))
        .routes(routes!(memory::reindex))
        .routes(routes!(memory::show, memory::remove))
        .routes(routes!(mcp_servers::list))
        .routes(routes!(mcp_servers::tools))
        .routes(routes!(mcp_servers::call))
        .routes(routes!(mcp_servers::trust))
}

/// The routes outside bearer auth: a webhook is authenticated by its HMAC signature instead,
/// the health probes answer anyone, and `/metrics` checks the token itself (loopback clients
/// may be let in without it).
fn open() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::triggers::receive))
        .routes(routes!(routes::health::live))
        .routes(routes!(routes::health::ready))
        .routes(routes!(routes::health::metrics))
}

/// The OpenAPI document, generated from the same registrations as the router.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = authenticated().split_for_parts();
    doc.merge(open().split_for_parts().1);
    use utoipa::Modify;
    openapi::Common.modify(&mut doc);
    doc
}

/// The OpenAPI document as JSON text, serialized once: as text it is a fraction of the
/// memory a `serde_json::Value` of it takes.
fn openapi_json() -> axum::body::Bytes {
    static DOC: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();
    DOC.get_or_init(|| serde_json::to_vec(&openapi_document()).expect("the document serializes").into()).clone()
}

/// Every route but `/v1/mcp`, with its state: what MCP tools call in process.
fn api_router(state: &AppState) -> Router {
    let (authed, _) = authenticated().split_for_parts();
    let (open, _) = open().split_for_parts();
    let authed = authed
        .route("/v1/openapi.json", get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json()) }))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .merge(authed)
        .merge(open)
        .merge(ui::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state.clone())
}

pub fn router(state: AppState) -> Router {
    let api = api_router(&state);
    api.clone().merge(mcp::route(api, &state))
}

/// owl's MCP server for coding CLI tasks that ask for it, each on a socket of its own; `exe`
/// is the owl binary the CLI starts to reach it.
pub fn task_mcp(state: AppState, exe: std::path::PathBuf) -> Arc<dyn owl_engine::TaskMcp> {
    let api = api_router(&state);
    Arc::new(mcp::TaskMcpServer::new(api, &state, exe))
}

/// Serves until `shutdown` flips to true.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let mut stop = state.shutdown.clone();
    let app = router(state);
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests;
