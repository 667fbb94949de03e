//! Budgets: every scope's limits, spend and waiting tasks; limits set at run time; prices.

use crate::extract::ApiJson;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::Json;
use owl_api::{BudgetList, BudgetStatus, LimitOverride, PriceList, PriceView};

#[utoipa::path(get, path = "/v1/budgets", summary = "Every budget scope: limits, spent, held by work in flight, when it resets, what waits on it", responses((status = 200, description = "OK", body = BudgetList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<BudgetList>, ApiError> {
    Ok(Json(BudgetList { budgets: state.engine.budgets().await? }))
}

#[utoipa::path(put, path = "/v1/budgets/{scope}", summary = "Set a scope's limit at run time (over the config's); tasks waiting on budgets ask again", request_body = LimitOverride, params(("scope" = String, Path, pattern = "^(global|(provider|agent|schedule|group)\\.[A-Za-z0-9._:=-]{1,128}|task\\.[0-9]{1,18})$", description = "global, provider.NAME, agent.NAME, schedule.NAME, group.NAME or task.ID")), responses((status = 200, description = "OK", body = BudgetStatus)))]
pub async fn set(
    State(state): State<AppState>,
    Path(scope): Path<String>,
    ApiJson(req): ApiJson<LimitOverride>,
) -> Result<Json<BudgetStatus>, ApiError> {
    state.engine.set_budget(&scope, Some(req)).await?;
    let line = state.engine.budgets().await?.into_iter().find(|b| b.scope == scope);
    line.map(Json).ok_or_else(|| ApiError::bad_request("scope", format!("`{scope}` has no limit after the change")))
}

#[utoipa::path(delete, path = "/v1/budgets/{scope}", summary = "Remove a limit set at run time (the config's applies again)", params(("scope" = String, Path, pattern = "^(global|(provider|agent|schedule|group)\\.[A-Za-z0-9._:=-]{1,128}|task\\.[0-9]{1,18})$", description = "global, provider.NAME, agent.NAME, schedule.NAME, group.NAME or task.ID")), responses((status = 200, description = "OK", body = BudgetList)))]
pub async fn unset(State(state): State<AppState>, Path(scope): Path<String>) -> Result<Json<BudgetList>, ApiError> {
    state.engine.set_budget(&scope, None).await?;
    Ok(Json(BudgetList { budgets: state.engine.budgets().await? }))
}

#[utoipa::path(get, path = "/v1/prices", summary = "The prices owl charges at: [prices] over the shipped, dated table", responses((status = 200, description = "OK", body = PriceList)))]
pub async fn prices(State(state): State<AppState>) -> Result<Json<PriceList>, ApiError> {
    let (configured, table) = match state.engine.agents() {
        Some(rt) => {
            let (c, t) = rt.prices();
            (c.clone(), t.clone())
        }
        None => (Default::default(), owl_core::budget::price_table()),
    };
    let view = |model: &String, p: &owl_core::agent::Price, source: &str| PriceView {
        model: model.clone(),
        input: p.input,
        output: p.output,
        cached: p.cached,
        source: source.into(),
    };
    let mut prices: Vec<PriceView> = configured.iter().map(|(m, p)| view(m, p, "config")).collect();
    prices.extend(table.iter().filter(|(m, _)| !configured.contains_key(*m)).map(|(m, p)| view(m, p, "table")));
    prices.sort_by(|a, b| a.model.cmp(&b.model));
    Ok(Json(PriceList { table_date: owl_core::budget::PRICE_TABLE_DATE.into(), prices }))
}
