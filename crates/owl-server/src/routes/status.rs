//! Daemon status.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use owl_api::StatusView;

#[utoipa::path(get, path = "/v1/status", summary = "Daemon status and task counts", responses((status = 200, description = "OK", body = StatusView)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    let counts = state.engine.store().counts().await?;
    let st = state.engine.status();
    let now = state.engine.now();
    Ok(Json(StatusView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        node: st.node,
        listen: state.listen.clone(),
        data_dir: state.engine.layout().root().display().to_string(),
        started_at: state.started_at,
        uptime_ms: now.since(state.started_at).as_millis() as u64,
        workers: st.workers,
        running: st.running,
        shutting_down: st.shutting_down,
        tasks: counts.0,
    }))
}
