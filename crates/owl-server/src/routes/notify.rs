//! Notifications: channels, rules, test sends and the delivery log.

use crate::extract::{parse_query, ApiJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use owl_api::notify::*;
use serde::Deserialize;

/// A rule's or delivery's id from the path: a positive integer (an error names the field).
fn positive_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request("id", format!("`{raw}` is not a {what} id; ids are positive integers")))
}

const NAME: &str = "^[A-Za-z0-9_-]{1,64}$";

#[utoipa::path(post, path = "/v1/notify/channels", summary = "Create a notification channel: email or webhook", request_body = NewChannel, responses((status = 201, description = "OK", body = ChannelView)))]
pub async fn create_channel(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewChannel>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let spec = req.into_spec().map_err(|(f, m)| ApiError::bad_request(f, m))?;
    let c = state.engine.create_channel(spec).await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

#[utoipa::path(get, path = "/v1/notify/channels", summary = "Notification channels and how their deliveries go", responses((status = 200, description = "OK", body = ChannelList)))]
pub async fn list_channels(State(state): State<AppState>) -> Result<Json<ChannelList>, ApiError> {
    let all = state.engine.store().list_channels().await?;
    Ok(Json(ChannelList { channels: all.into_iter().map(ChannelView::from).collect() }))
}

#[utoipa::path(get, path = "/v1/notify/channels/{name}", summary = "One notification channel", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "A channel name")), responses((status = 200, description = "OK", body = ChannelView)))]
pub async fn show_channel(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(state.engine.store().get_channel(&name).await?.into()))
}

#[utoipa::path(delete, path = "/v1/notify/channels/{name}", summary = "Remove a channel (refused while a rule sends to it); its pending deliveries go with it", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "A channel name")), responses((status = 204, description = "Done")))]
pub async fn remove_channel(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.engine.delete_channel(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/notify/channels/{name}/resume", summary = "Unpause a channel; its waiting deliveries go out now", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "A channel name")), responses((status = 200, description = "OK", body = ChannelView)))]
pub async fn resume_channel(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(state.engine.resume_channel(&name).await?.into()))
}

#[utoipa::path(post, path = "/v1/notify/channels/{name}/test", summary = "Send a test notice to a channel; returns its delivery", params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "A channel name")), responses((status = 202, description = "Queued", body = DeliveryView)))]
pub async fn test_channel(State(state): State<AppState>, Path(name): Path<String>) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let d = state.engine.notify_test(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(d.into())))
}

#[utoipa::path(post, path = "/v1/notify/rules", summary = "Create a rule: which events go to which channels", request_body = NewRule, responses((status = 201, description = "OK", body = RuleView)))]
pub async fn create_rule(State(state): State<AppState>, ApiJson(req): ApiJson<NewRule>) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    let spec = req.into_spec().map_err(|(f, m)| ApiError::bad_request(f, m))?;
    let r = state.engine.store().create_rule(spec, state.engine.now()).await?;
    state.engine.notify_wake();
    Ok((StatusCode::CREATED, Json(r.into())))
}

#[utoipa::path(get, path = "/v1/notify/rules", summary = "Notification rules", responses((status = 200, description = "OK", body = RuleList)))]
pub async fn list_rules(State(state): State<AppState>) -> Result<Json<RuleList>, ApiError> {
    let all = state.engine.store().list_rules().await?;
    Ok(Json(RuleList { rules: all.into_iter().map(RuleView::from).collect() }))
}

#[utoipa::path(delete, path = "/v1/notify/rules/{id}", summary = "Remove a rule", params(("id" = i64, Path, minimum = 1, description = "A rule id")), responses((status = 204, description = "Done")))]
pub async fn remove_rule(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.engine.store().delete_rule(positive_id(&id, "rule")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this channel's deliveries.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    channel: Option<String>,
    /// Only deliveries in this state.
    #[param(pattern = "^(pending|sending|delivered|dead)$")]
    status: Option<String>,
    /// Only deliveries with a failed attempt (dead letters among them).
    failed: Option<bool>,
    /// Only the deliveries about this task.
    #[param(minimum = 1)]
    task: Option<i64>,
    /// Only deliveries with a smaller id (the previous page's `next_before`).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// At most this many (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/notify/deliveries", summary = "Every delivery with its attempts and answers, newest first", params(DeliveryQuery), responses((status = 200, description = "OK", body = DeliveryList)))]
pub async fn deliveries(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<DeliveryList>, ApiError> {
    let q: DeliveryQuery = parse_query(q)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", format!("{limit} is out of range; use 1 to 1000")));
    }
    for (name, v) in [("task", q.task), ("before", q.before)] {
        if v.is_some_and(|v| v < 1) {
            return Err(ApiError::bad_request(name, "must be a positive id"));
        }
    }
    if q.channel.as_deref().is_some_and(|c| !owl_core::notify::valid_name(c)) {
        return Err(ApiError::bad_request("channel", format!("not a channel name ({NAME})")));
    }
    let status =
        q.status.as_deref().map(owl_core::notify::DeliveryStatus::parse).transpose().map_err(|m| ApiError::bad_request("status", m))?;
    let filter = owl_store::DeliveryFilter {
        channel: q.channel,
        status,
        failed: q.failed.unwrap_or(false),
        task_id: q.task,
        before: q.before,
        limit,
    };
    let found = state.engine.store().deliveries(filter).await?;
    let next_before = (found.len() == limit as usize).then(|| found.last().map(|d| d.id)).flatten();
    Ok(Json(DeliveryList { deliveries: found.into_iter().map(DeliveryView::from).collect(), next_before }))
}

#[utoipa::path(get, path = "/v1/notify/deliveries/{id}", summary = "One delivery", params(("id" = i64, Path, minimum = 1, description = "A delivery id")), responses((status = 200, description = "OK", body = DeliveryView)))]
pub async fn delivery(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<DeliveryView>, ApiError> {
    Ok(Json(state.engine.store().get_delivery(positive_id(&id, "delivery")?).await?.into()))
}
