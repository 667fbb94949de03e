//! Daemon status.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use owl_api::{DashboardLink, NodeList, NodeView, StatusView, StoreView};

#[utoipa::path(get, path = "/v1/status", summary = "Daemon status and task counts", responses((status = 200, description = "OK", body = StatusView)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<StatusView>, ApiError> {
    let counts = state.engine.store().counts().await?;
    let h = state.engine.store().health().await?;
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
        report_date: state.engine.report_today().format("%Y-%m-%d").to_string(),
        tasks: counts.0,
        store: StoreView { backend: h.backend, location: h.location, schema_version: h.schema_version, facts: h.facts },
    }))
}

#[utoipa::path(get, path = "/v1/nodes", summary = "Every daemon using this store: last heartbeat, running tasks, version", responses((status = 200, description = "OK", body = NodeList)))]
pub async fn nodes(State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    let nodes = state.engine.store().nodes().await?;
    let now = state.engine.now();
    let lease = state.engine.config().lease;
    Ok(Json(NodeList {
        this: state.engine.status().node,
        nodes: nodes
            .into_iter()
            .map(|n| {
                let ago = now.since(n.last_seen);
                NodeView {
                    status: if ago <= lease { "alive" } else { "lost" }.into(),
                    seen_ms_ago: ago.as_millis() as u64,
                    node: n.node,
                    version: n.version,
                    pid: n.pid,
                    started_at: n.started_at,
                    last_seen: n.last_seen,
                    workers: n.workers,
                    running: n.running,
                }
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/v1/dashboard/link", summary = "A one-time sign-in link to the dashboard (what `owl dashboard` opens)", responses((status = 201, description = "Created", body = DashboardLink)))]
pub async fn dashboard_link(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<(axum::http::StatusCode, Json<DashboardLink>), ApiError> {
    // With the token only: a session that could mint links would never end.
    if headers.get(axum::http::header::AUTHORIZATION).is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "token_required",
            "a sign-in link needs the API token, not a dashboard session; run `owl dashboard`",
        ));
    }
    let code = state.sessions.new_link();
    // A daemon listening on every address is reached here through loopback.
    let host = match state.listen.rsplit_once(':') {
        Some((h, port)) if h == "0.0.0.0" || h == "[::]" || h == "::" => format!("127.0.0.1:{port}"),
        _ => state.listen.to_string(),
    };
    let url = format!("http://{host}/ui/signin?code={code}");
    Ok((axum::http::StatusCode::CREATED, Json(DashboardLink { url, expires_in_s: crate::ui::LINK_TTL.as_secs() })))
}
