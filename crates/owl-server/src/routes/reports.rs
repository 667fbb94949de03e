//! Reports: a day, or a window of days, as Markdown, HTML, PDF or JSON.

use crate::extract::parse_query;
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use owl_engine::report::{Format, Kind};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    /// The day, in the reports' time zone: YYYY-MM-DD, `today` (the default) or `yesterday`.
    #[param(pattern = "^(today|yesterday|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]))$")]
    date: Option<String>,
    /// md (the default), html, pdf or json.
    #[param(pattern = "^(md|markdown|html|pdf|json)$")]
    format: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PerformanceQuery {
    /// The window, ending now (default 7d; at most 366d, longer is refused).
    #[param(pattern = "^(([0-9]{1,2}|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d|[0-9]{1,3}h|[0-9]{1,5}m|[0-9]{1,6}s)$")]
    since: Option<String>,
    /// md (the default), html, pdf or json.
    #[param(pattern = "^(md|markdown|html|pdf|json)$")]
    format: Option<String>,
}

fn format_of(f: Option<&str>) -> Result<Format, ApiError> {
    let format = Format::parse(f.unwrap_or("md")).map_err(|m| ApiError::bad_request("format", m))?;
    if !format.available() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_built",
            "this owl was built without PDF reports; rebuild it with `--features pdf`, or ask for md or html",
        ));
    }
    Ok(format)
}

async fn reply(
    state: &AppState,
    kind: Kind,
    since: owl_core::Timestamp,
    until: owl_core::Timestamp,
    format: Format,
) -> Result<Response, ApiError> {
    let report = state.engine.report(kind, since, until).await?;
    let bytes = owl_engine::reports::render(report, format)
        .await
        .map_err(|m| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "render_failed", m))?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response())
}

#[utoipa::path(get, path = "/v1/reports/daily", summary = "What ran on one day: failures, schedules, anomalies, tokens and cost, the slowest and costliest work, charts", params(DailyQuery), responses((status = 200, description = "The report", content((String = "text/markdown"), (String = "text/html"), (Vec<u8> = "application/pdf"), (Object = "application/json"))), (status = 501, description = "PDF asked of a build without it")))]
pub async fn daily(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q: DailyQuery = parse_query(q)?;
    let today = state.engine.report_today();
    let date = match q.date.as_deref().unwrap_or("today") {
        "today" => today,
        "yesterday" => today.pred_opt().unwrap_or(today),
        d if d.len() == 10 && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-' && d.bytes().filter(u8::is_ascii_digit).count() == 8 => {
            // Shaped like a date but not on the calendar (2026-02-31): no such day.
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("there is no day {d} in the calendar")))?
        }
        d => return Err(ApiError::bad_request("date", format!("`{d}` is not a date; write it like 2026-12-01, or today or yesterday"))),
    };
    let format = format_of(q.format.as_deref())?;
    let (since, until) = state.engine.report_day(date);
    reply(&state, Kind::Daily, since, until, format).await
}

#[utoipa::path(get, path = "/v1/reports/performance", summary = "A window of days: the same as the daily report, per day", params(PerformanceQuery), responses((status = 200, description = "The report", content((String = "text/markdown"), (String = "text/html"), (Vec<u8> = "application/pdf"), (Object = "application/json"))), (status = 501, description = "PDF asked of a build without it")))]
pub async fn performance(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q: PerformanceQuery = parse_query(q)?;
    let window = match q.since.as_deref() {
        Some(s) => owl_core::duration::parse(s).map_err(|m| ApiError::bad_request("since", m))?,
        None => std::time::Duration::from_secs(7 * 86400),
    };
    if window > std::time::Duration::from_secs(366 * 86400) {
        return Err(ApiError::bad_request("since", "a performance report covers at most 366d; ask for a shorter window"));
    }
    let format = format_of(q.format.as_deref())?;
    let until = state.engine.now();
    reply(&state, Kind::Performance, until.minus(window), until, format).await
}
