//! Triggers, and the webhook endpoint they answer at.

use crate::extract::{parse_query, ApiJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::Json;
use owl_api::trigger::*;
use owl_api::SpecDefaults;
use owl_core::trigger::On;
use owl_store::TriggerFired;
use serde::Deserialize;

#[utoipa::path(post, path = "/v1/triggers", summary = "Create a trigger: webhook, task event, file watch or condition", request_body = CreateTrigger, responses((status = 201, description = "OK", body = TriggerView)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateTrigger>,
) -> Result<(StatusCode, Json<TriggerView>), ApiError> {
    let c = state.engine.config();
    let spec = req.into_spec(&SpecDefaults { timeout: c.default_timeout, retries: c.default_retries }, state.engine.now())?;
    if let On::Webhook { secret_env } = &spec.on {
        if std::env::var(secret_env).map(|v| v.is_empty()).unwrap_or(true) {
            tracing::warn!(trigger = %spec.name, var = %secret_env, "the webhook's secret variable is not set in the daemon's environment; deliveries will be refused until it is");
        }
    }
    let t = state.engine.create_trigger(spec).await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

#[utoipa::path(get, path = "/v1/triggers", summary = "List triggers", responses((status = 200, description = "OK", body = TriggerList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<TriggerList>, ApiError> {
    let all = state.engine.store().list_triggers().await?;
    Ok(Json(TriggerList { triggers: all.into_iter().map(TriggerView::from).collect() }))
}

#[utoipa::path(get, path = "/v1/triggers/{name}", summary = "One trigger", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A trigger name")), responses((status = 200, description = "OK", body = TriggerView)))]
pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<TriggerView>, ApiError> {
    Ok(Json(state.engine.store().get_trigger(&name).await?.into()))
}

#[utoipa::path(post, path = "/v1/triggers/{name}/enable", summary = "Enable a trigger", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A trigger name")), responses((status = 200, description = "OK", body = TriggerView)))]
pub async fn enable(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<TriggerView>, ApiError> {
    Ok(Json(state.engine.set_trigger_enabled(&name, true).await?.into()))
}

#[utoipa::path(post, path = "/v1/triggers/{name}/disable", summary = "Disable a trigger", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A trigger name")), responses((status = 200, description = "OK", body = TriggerView)))]
pub async fn disable(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<TriggerView>, ApiError> {
    Ok(Json(state.engine.set_trigger_enabled(&name, false).await?.into()))
}

#[utoipa::path(delete, path = "/v1/triggers/{name}", summary = "Remove a trigger and its history", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A trigger name")), responses((status = 204, description = "Done")))]
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.engine.delete_trigger(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/triggers/{name}/history", summary = "Events offered to the trigger: fired, rate_limited, refused", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A trigger name"), HistoryQuery), responses((status = 200, description = "OK", body = TriggerHistory)))]
pub async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<TriggerHistory>, ApiError> {
    let q: HistoryQuery = parse_query(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit", "must be between 1 and 10000"));
    }
    let rows = state.engine.store().trigger_history(&name, limit).await?;
    let history = rows
        .into_iter()
        .map(|r| TriggerFireView { source: r.source, at: r.at, outcome: r.outcome, reason: r.reason, task_id: r.task_id })
        .collect();
    Ok(Json(TriggerHistory { history }))
}

#[utoipa::path(post, path = "/v1/hooks/{name}", summary = "Deliver a webhook; authenticated by its HMAC signature (X-Hub-Signature-256 or Slack's X-Slack-Signature), not the token", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "The webhook trigger")), responses((status = 202, description = "OK", body = owl_api::HookAccepted)))]
/// `POST /v1/hooks/<name>`: authenticated by its signature, not by the API token.
pub async fn receive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<(StatusCode, Json<owl_api::HookAccepted>), ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no webhook named `{name}`"));
    let trigger = state.engine.store().get_trigger(&name).await.map_err(|_| not_found())?;
    let On::Webhook { secret_env } = &trigger.spec.on else { return Err(not_found()) };
    let secret = std::env::var(secret_env).ok().filter(|s| !s.is_empty()).ok_or_else(|| {
        tracing::error!(trigger = %name, var = %secret_env, "webhook delivery refused: its secret variable is not set in the daemon's environment");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_configured", "this webhook's secret is not configured on the daemon")
    })?;
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), state.max_body_bytes)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the payload is larger than api.max_body_bytes"))?;
    let now_secs = state.engine.now().0.div_euclid(1000);
    let delivery = crate::webhook::verify(secret.as_bytes(), &headers, &body, now_secs)?;
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("body", "the payload must be UTF-8 text (JSON or form data)"))?;
    match state.engine.fire_webhook(&trigger, &delivery, payload).await? {
        TriggerFired::Fired(id) => Ok((StatusCode::ACCEPTED, Json(owl_api::HookAccepted { task_id: id }))),
        TriggerFired::Duplicate => {
            Err(ApiError::new(StatusCode::CONFLICT, "duplicate_delivery", "this delivery was already received; it is not run again"))
        }
        TriggerFired::RateLimited => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "the trigger's rate limit is reached; the delivery is recorded but not run",
        )),
        TriggerFired::Disabled => Err(ApiError::new(StatusCode::CONFLICT, "trigger_disabled", format!("the trigger `{name}` is disabled"))),
        TriggerFired::Refused(reason) => Err(ApiError::new(StatusCode::CONFLICT, "refused", reason)),
    }
}
