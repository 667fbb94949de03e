//! Liveness, readiness and Prometheus metrics.
//!
//! The two health probes need no token (service managers and load balancers call them);
//! `/metrics` needs the token unless `[health] metrics_open_on_loopback` lets loopback
//! clients in.

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use owl_api::{CheckView, HealthView};
use std::net::SocketAddr;

fn reply(view: HealthView) -> (StatusCode, Json<HealthView>) {
    let code = if view.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(view))
}

#[utoipa::path(get, path = "/v1/health/live", summary = "Liveness: the process answers and every loop is responsive (no token needed)", responses((status = 200, description = "Live", body = HealthView), (status = 503, description = "A loop is stalled or down", body = HealthView)))]
pub async fn live(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let checks =
        state.engine.loops().into_iter().map(|l| CheckView { name: format!("loop:{}", l.name), ok: l.ok, reason: l.reason }).collect();
    reply(HealthView::of(checks))
}

#[utoipa::path(get, path = "/v1/health/ready", summary = "Readiness: the store takes writes, disk and memory have headroom, loops are live (no token needed)", responses((status = 200, description = "Ready", body = HealthView), (status = 503, description = "Not ready; each failing check says why", body = HealthView)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let checks =
        state.engine.readiness().await.into_iter().map(|c| CheckView { name: c.name.to_string(), ok: c.ok, reason: c.reason }).collect();
    reply(HealthView::of(checks))
}

#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics (text format 0.0.4, or OpenMetrics when the Accept header asks)", responses((status = 200, description = "The metrics", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let loopback = req.extensions().get::<ConnectInfo<SocketAddr>>().is_some_and(|c| c.0.ip().is_loopback());
    if !(loopback && state.engine.config().health.metrics_open_on_loopback) {
        crate::auth::check_token(&state, &req)?;
    }
    let openmetrics =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = state.engine.scrape_metrics(openmetrics).await?;
    let content_type =
        if openmetrics { "application/openmetrics-text; version=1.0.0; charset=utf-8" } else { "text/plain; version=0.0.4; charset=utf-8" };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
