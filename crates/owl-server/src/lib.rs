//! owl-server: the HTTP API under `/v1`.
//!
//! Every route except `/healthz` needs the bearer token. Bodies are size-limited JSON with
//! unknown fields rejected; every error is `{"error":{"code","message","field"}}` with a 4xx
//! for anything a client sent, and a 5xx only for failures of owl itself (logged, never
//! detailed in the reply). The router is a plain function so tests can drive it in-process.

mod auth;
mod error;
mod extract;
pub mod openapi;
mod routes;
pub mod webhook;

pub use error::ApiError;

use axum::routing::{get, post, put};
use axum::Router;
use owl_engine::Engine;
use std::sync::Arc;
use tokio::sync::watch;

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
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/status", get(routes::status::status))
        .route("/tasks", get(routes::tasks::list).post(routes::tasks::submit))
        .route("/tasks/batch", post(routes::tasks::submit_batch))
        .route("/tasks/{id}", get(routes::tasks::show))
        .route("/tasks/{id}/cancel", post(routes::tasks::cancel))
        .route("/tasks/{id}/retry", post(routes::tasks::retry))
        .route("/tasks/{id}/logs", get(routes::logs::logs))
        .route("/wait", get(routes::tasks::wait))
        .route("/groups", get(routes::groups::list))
        .route("/groups/{name}", put(routes::groups::set))
        .route("/events", get(routes::events::events))
        .route("/schedules", get(routes::schedules::list).post(routes::schedules::create))
        .route("/schedules/{name}", get(routes::schedules::show).delete(routes::schedules::remove))
        .route("/schedules/{name}/pause", post(routes::schedules::pause))
        .route("/schedules/{name}/resume", post(routes::schedules::resume))
        .route("/schedules/{name}/run", post(routes::schedules::run_now))
        .route("/schedules/{name}/history", get(routes::schedules::history))
        .route("/triggers", get(routes::triggers::list).post(routes::triggers::create))
        .route("/triggers/{name}", get(routes::triggers::show).delete(routes::triggers::remove))
        .route("/triggers/{name}/enable", post(routes::triggers::enable))
        .route("/triggers/{name}/disable", post(routes::triggers::disable))
        .route("/triggers/{name}/history", get(routes::triggers::history))
        .route("/agents", get(routes::agents::list))
        .route("/tasks/{id}/transcript", get(routes::agents::transcript))
        .route("/usage", get(routes::agents::usage))
        .route("/approvals", get(routes::agents::approvals))
        .route("/approvals/{id}/approve", post(routes::agents::approve))
        .route("/approvals/{id}/deny", post(routes::agents::deny))
        .route("/chats", get(routes::agents::chats).post(routes::agents::create_chat))
        .route("/chats/{id}", get(routes::agents::chat_transcript))
        .route("/chats/{id}/messages", post(routes::agents::chat_message))
        .route("/chats/{id}/cancel", post(routes::agents::cancel_chat))
        .route("/memory", get(routes::memory::list).post(routes::memory::add))
        .route("/memory/batch", post(routes::memory::add_batch))
        .route("/memory/search", post(routes::memory::search))
        .route("/memory/stats", get(routes::memory::stats))
        .route("/memory/reindex", post(routes::memory::reindex))
        .route("/memory/{id}", get(routes::memory::show).delete(routes::memory::remove))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        // After the auth layer: a webhook is authenticated by its HMAC signature instead.
        .route("/hooks/{name}", post(routes::triggers::receive));
    Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .nest("/v1", v1)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Serves until `shutdown` flips to true.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let mut stop = state.shutdown.clone();
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests;
