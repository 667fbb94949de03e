//! Anomalies: runs far from the usual of their schedule, agent or kind, and failure streaks.

use crate::extract::parse_query;
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::Json;
use owl_api::{AnomalyList, AnomalyView};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnomalyQuery {
    /// Only anomalies within this long (default 7d), e.g. `24h`.
    #[param(pattern = "^([0-9]{1,6}(ms|s|m|h|d|w))+$")]
    since: Option<String>,
    /// Only this scope.
    #[param(pattern = "^(schedule|agent|kind)$")]
    scope: Option<String>,
    /// Only this schedule, agent or kind.
    subject: Option<String>,
    /// Only the anomalies of this task.
    #[param(minimum = 1)]
    task: Option<i64>,
    /// Only anomalies with a smaller id (the previous page's `next_before`).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// At most this many (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/anomalies", summary = "Runs far from usual and failure streaks, newest first", params(AnomalyQuery), responses((status = 200, description = "OK", body = AnomalyList)))]
pub async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<AnomalyList>, ApiError> {
    let q: AnomalyQuery = parse_query(q)?;
    let window = match q.since.as_deref() {
        Some(s) => owl_core::duration::parse(s).map_err(|m| ApiError::bad_request("since", m))?,
        None => std::time::Duration::from_secs(7 * 86400),
    };
    let scope = q.scope.as_deref().map(owl_core::anomaly::Scope::parse).transpose().map_err(|m| ApiError::bad_request("scope", m))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", format!("{limit} is out of range; use 1 to 1000")));
    }
    for (name, v) in [("task", q.task), ("before", q.before)] {
        if v.is_some_and(|v| v < 1) {
            return Err(ApiError::bad_request(name, "must be a positive id"));
        }
    }
    let filter = owl_store::AnomalyFilter {
        since: Some(state.engine.now().minus(window)),
        until: None,
        scope,
        subject: q.subject,
        task_id: q.task.map(owl_core::TaskId),
        before: q.before,
        limit,
    };
    let found = state.engine.store().anomalies(filter).await?;
    let next_before = (found.len() == limit as usize).then(|| found.last().map(|a| a.id)).flatten();
    Ok(Json(AnomalyList { anomalies: found.into_iter().map(AnomalyView::from).collect(), next_before }))
}
