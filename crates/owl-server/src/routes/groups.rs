//! Groups and their parallel limits.

use crate::extract::ApiJson;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::Json;
use owl_api::{GroupList, GroupView, SetGroup};

#[utoipa::path(get, path = "/v1/groups", summary = "Groups with limits and counts", responses((status = 200, description = "OK", body = GroupList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<GroupList>, ApiError> {
    let groups = state.engine.store().groups().await?;
    Ok(Json(GroupList { groups: groups.into_iter().map(GroupView::from).collect() }))
}

#[utoipa::path(put, path = "/v1/groups/{name}", summary = "Set a group's parallel limit (null removes it)", request_body = SetGroup, params(("name" = String, Path, pattern = "^[A-Za-z0-9._:=-]{1,128}$", description = "A group name")), responses((status = 200, description = "OK", body = GroupView)))]
pub async fn set(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetGroup>,
) -> Result<Json<GroupView>, ApiError> {
    if req.parallel.is_some_and(|p| p > owl_api::MAX_GROUP_PARALLEL) {
        return Err(ApiError::bad_request("parallel", format!("must be at most {}", owl_api::MAX_GROUP_PARALLEL)));
    }
    let g = state.engine.set_group(&name, req.parallel).await?;
    Ok(Json(g.into()))
}
