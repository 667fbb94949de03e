//! Schedules: create, list, show, pause, resume, run now, remove, history.

use crate::extract::{parse_query, ApiJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use owl_api::schedule::*;
use owl_api::SpecDefaults;
use serde::Deserialize;

fn defaults(state: &AppState) -> (ScheduleDefaults, SpecDefaults) {
    let c = state.engine.config();
    (
        ScheduleDefaults { tz: c.schedules.tz.clone(), misfire_cap: c.schedules.misfire_cap, max_lateness: c.schedules.max_lateness },
        SpecDefaults { timeout: c.default_timeout, retries: c.default_retries },
    )
}

#[utoipa::path(post, path = "/v1/schedules", summary = "Create a schedule: cron (with tz), every, or at; with misfire and overlap policies", request_body = CreateSchedule, responses((status = 201, description = "OK", body = ScheduleView)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateSchedule>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let (d, td) = defaults(&state);
    let spec = req.into_spec(&d, &td, state.engine.now())?;
    let s = state.engine.create_schedule(spec).await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

#[utoipa::path(get, path = "/v1/schedules", summary = "List schedules with their health (last and next fire, missed, skipped, late)", responses((status = 200, description = "OK", body = ScheduleList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ScheduleList>, ApiError> {
    let all = state.engine.store().list_schedules().await?;
    Ok(Json(ScheduleList { schedules: views(&state, all).await? }))
}

/// Views with each schedule's health filled in.
async fn views(state: &AppState, list: Vec<owl_core::schedule::Schedule>) -> Result<Vec<ScheduleView>, ApiError> {
    let health = state.engine.schedule_health(&list).await?;
    Ok(list
        .into_iter()
        .zip(health)
        .map(|(s, h)| {
            let mut v = ScheduleView::from(s);
            v.last_status = h.last_status;
            v.success_due_by = h.success_due_by;
            v.overdue = h.overdue;
            v
        })
        .collect())
}

#[utoipa::path(get, path = "/v1/schedules/{name}", summary = "One schedule with its next slots", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A schedule name")), responses((status = 200, description = "OK", body = ScheduleView)))]
pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ScheduleView>, ApiError> {
    let s = state.engine.store().get_schedule(&name).await?;
    let upcoming = match (owl_core::schedule::Compiled::new(s.spec.when.clone()), s.next_fire_at) {
        (Ok(c), Some(next)) if s.state == owl_core::schedule::ScheduleState::Active => {
            let mut v = vec![next];
            v.extend(c.upcoming(next, 4));
            v.retain(|t| s.spec.end_at.is_none_or(|e| *t <= e));
            v
        }
        _ => vec![],
    };
    let mut view = views(&state, vec![s]).await?.remove(0);
    view.upcoming = upcoming;
    Ok(Json(view))
}

#[utoipa::path(post, path = "/v1/schedules/{name}/pause", summary = "Pause a schedule", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A schedule name")), responses((status = 200, description = "OK", body = ScheduleView)))]
pub async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.engine.pause_schedule(&name).await?.into()))
}

#[utoipa::path(post, path = "/v1/schedules/{name}/resume", summary = "Resume a schedule from now (slots passed while paused are not run)", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A schedule name")), responses((status = 200, description = "OK", body = ScheduleView)))]
pub async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.engine.resume_schedule(&name).await?.into()))
}

#[utoipa::path(post, path = "/v1/schedules/{name}/run", summary = "Run the schedule's task now, outside its slots", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A schedule name")), responses((status = 201, description = "OK", body = RunNow)))]
pub async fn run_now(State(state): State<AppState>, Path(name): Path<String>) -> Result<(StatusCode, Json<RunNow>), ApiError> {
    let id = state.engine.run_schedule_now(&name).await?;
    Ok((StatusCode::CREATED, Json(RunNow { task_id: id })))
}

#[utoipa::path(delete, path = "/v1/schedules/{name}", summary = "Remove a schedule and its history (its tasks stay)", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A schedule name")), responses((status = 204, description = "Done")))]
pub async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.engine.delete_schedule(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/schedules/{name}/history", summary = "Fires, newest first: slot, fired at, lateness, outcome, reason, task", params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A schedule name"), HistoryQuery), responses((status = 200, description = "OK", body = History)))]
pub async fn history(State(state): State<AppState>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Result<Json<History>, ApiError> {
    let q: HistoryQuery = parse_query(q)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request("limit", "must be between 1 and 10000"));
    }
    let rows = state.engine.store().schedule_history(&name, limit).await?;
    let history = rows
        .into_iter()
        .map(|r| FireView {
            lateness_ms: r.fired_at.since(r.scheduled_for).as_millis() as u64,
            scheduled_for: r.scheduled_for,
            fired_at: r.fired_at,
            outcome: r.outcome,
            reason: r.reason,
            task_id: r.task_id,
            task_status: r.task_status,
        })
        .collect();
    Ok(Json(History { history }))
}
