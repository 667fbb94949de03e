//! Tasks: submit (one or a batch), list, show, cancel, retry, wait.

use crate::extract::{parse_id, parse_query, query_id, ApiJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use owl_api::*;
use owl_core::task::Status;
use owl_core::TaskId;
use owl_store::{NewTask, TaskFilter};
use serde::Deserialize;
use std::time::Duration;

fn defaults(state: &AppState) -> SpecDefaults {
    let c = state.engine.config();
    SpecDefaults { timeout: c.default_timeout, retries: c.default_retries }
}

fn to_new(state: &AppState, t: SubmitTask, field_prefix: Option<usize>) -> Result<NewTask, ApiError> {
    let batch_deps = t.after_items.clone();
    if field_prefix.is_none() && !batch_deps.is_empty() {
        return Err(ApiError::bad_request("after_items", "`after_items` refers to other items of a batch; use POST /v1/tasks/batch"));
    }
    let spec = t.into_spec(&defaults(state), state.engine.now()).map_err(|e| match field_prefix {
        Some(i) => ApiError::bad_request(format!("tasks[{i}].{}", e.field), format!("tasks[{i}].{e}")),
        None => e.into(),
    })?;
    // A coding CLI profile must exist now, not only when the task runs hours later.
    if let owl_core::Command::Cli { cli, .. } = &spec.command {
        if let Err(m) = owl_core::coding::resolve(cli, &state.engine.config().cli) {
            let field = field_prefix.map(|i| format!("tasks[{i}].cli")).unwrap_or_else(|| "cli".into());
            return Err(ApiError::bad_request(field, m));
        }
    }
    Ok(NewTask { spec, batch_deps })
}

fn view(s: owl_store::Submitted) -> Submitted {
    Submitted { id: s.id, created: s.created, status: s.status }
}

#[utoipa::path(post, path = "/v1/tasks", summary = "Submit one task (201 created, 200 when the idempotency key matched an existing task)", request_body = SubmitTask, responses((status = 201, description = "OK", body = Submitted), (status = 200, description = "OK", body = Submitted)))]
pub async fn submit(State(state): State<AppState>, ApiJson(req): ApiJson<SubmitTask>) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let req = with_issue(&state, req).await?;
    let new = to_new(&state, req, None)?;
    let out = state.engine.submit(vec![new]).await?.remove(0);
    let code = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(view(out))))
}

/// A task on a GitHub issue: the issue's title and text become the prompt (the request's own
/// prompt, if any, follows them), and the repository is recorded for the pull request.
async fn with_issue(state: &AppState, mut req: SubmitTask) -> Result<SubmitTask, ApiError> {
    let Some(repo) = req.repo.as_mut() else { return Ok(req) };
    let Some(n) = repo.issue else { return Ok(req) };
    if req.agent.is_none() && req.cli.is_none() {
        return Err(ApiError::bad_request("repo.issue", "an issue is worked by an agent or a coding CLI: give `agent` or `cli` with it"));
    }
    if n == 0 {
        return Err(ApiError::bad_request("repo.issue", "issue numbers start at 1"));
    }
    let slug = match &repo.github {
        Some(s) => s.clone(),
        None => {
            let remote = repo.push.clone().unwrap_or_else(|| "origin".into());
            let path = std::path::PathBuf::from(&repo.path);
            let url = tokio::task::spawn_blocking(move || owl_engine::git::remote_url(&path, &remote))
                .await
                .map_err(|e| ApiError::bad_request("repo.path", e.to_string()))?
                .map_err(|e| ApiError::bad_request("repo.github", format!("{e}; pass the repository as `github` (owner/name)")))?;
            owl_engine::github::slug_from_remote(&url, &state.engine.config().github.api_url)
                .map_err(|m| ApiError::bad_request("repo.github", m))?
        }
    };
    if owl_core::coding::parse_issue_ref(&format!("{slug}#1")).is_err() {
        return Err(ApiError::bad_request("repo.github", format!("`{slug}` is not a GitHub repository; write it as owner/name")));
    }
    let prompt = state
        .engine
        .issue_prompt(&slug, n, req.prompt.as_deref())
        .await
        .map_err(|e| ApiError::bad_request("repo.issue", format!("cannot read {slug}#{n}: {e}")))?;
    repo.github = Some(slug);
    req.prompt = Some(prompt);
    Ok(req)
}

/// Upper bound on tasks per batch, beside the body size limit.
pub const MAX_BATCH: usize = 10_000;

#[utoipa::path(post, path = "/v1/tasks/batch", summary = "Submit many tasks atomically; items may depend on each other via after_items", request_body = SubmitBatch, responses((status = 201, description = "OK", body = BatchSubmitted)))]
pub async fn submit_batch(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SubmitBatch>,
) -> Result<(StatusCode, Json<BatchSubmitted>), ApiError> {
    if req.tasks.is_empty() {
        return Err(ApiError::bad_request("tasks", "the batch is empty; send at least one task"));
    }
    if req.tasks.len() > MAX_BATCH {
        return Err(ApiError::bad_request("tasks", format!("at most {MAX_BATCH} tasks per batch; split it")));
    }
    let mut tasks = Vec::with_capacity(req.tasks.len());
    for (i, t) in req.tasks.into_iter().enumerate() {
        if t.repo.as_ref().is_some_and(|r| r.issue.is_some()) {
            return Err(ApiError::bad_request(
                format!("tasks[{i}].repo.issue"),
                "a task on a GitHub issue is submitted alone (POST /v1/tasks)",
            ));
        }
        tasks.push(t);
    }
    let new = tasks.into_iter().enumerate().map(|(i, t)| to_new(&state, t, Some(i))).collect::<Result<Vec<_>, _>>()?;
    let out = state.engine.submit(new).await?;
    Ok((StatusCode::CREATED, Json(BatchSubmitted { tasks: out.into_iter().map(view).collect() })))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated statuses.
    #[param(
        pattern = "^$|^(queued|waiting|running|succeeded|failed|timed_out|cancelled)(,(queued|waiting|running|succeeded|failed|timed_out|cancelled))*$"
    )]
    status: Option<String>,
    group: Option<String>,
    label: Option<String>,
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<u32>,
    /// Only tasks with a smaller id (for paging).
    before: Option<i64>,
    /// Only tasks of this kind.
    #[param(pattern = "^(command|agent|cli)$")]
    kind: Option<String>,
    /// Only the tasks this schedule fired.
    schedule: Option<String>,
    /// Only tasks created within this long, e.g. `7d`.
    #[param(pattern = "^([0-9]{1,6}(ms|s|m|h|d|w))+$")]
    since: Option<String>,
}

pub const DEFAULT_LIST_LIMIT: u32 = 1000;

#[utoipa::path(get, path = "/v1/tasks", summary = "List tasks, newest first", params(ListQuery), responses((status = 200, description = "OK", body = TaskList)))]
pub async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<TaskList>, ApiError> {
    let q: ListQuery = parse_query(q)?;
    let statuses = match q.status.as_deref() {
        None | Some("") => vec![],
        // Exactly the names the document lists; the CLI normalises what a person types.
        Some(s) => s
            .split(',')
            .map(|p| {
                Status::ALL.into_iter().find(|st| st.as_str() == p).ok_or_else(|| {
                    ApiError::bad_request(
                        "status",
                        p.parse::<Status>().err().unwrap_or_else(|| format!("write `{p}` in lower case, e.g. timed_out")),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > 100_000 {
        return Err(ApiError::bad_request("limit", "must be between 1 and 100000"));
    }
    if let Some(k) = q.kind.as_deref().filter(|k| !["command", "agent", "cli"].contains(k)) {
        return Err(ApiError::bad_request("kind", format!("`{k}` is not a kind; use command, agent or cli")));
    }
    let created_since = match q.since.as_deref() {
        Some(s) => Some(state.engine.now().minus(owl_core::duration::parse(s).map_err(|m| ApiError::bad_request("since", m))?)),
        None => None,
    };
    let filter = TaskFilter {
        statuses,
        group: q.group,
        label: q.label,
        ids: vec![],
        before: q.before.map(TaskId),
        limit: Some(limit),
        kind: q.kind,
        schedule: q.schedule,
        created_since,
    };
    let tasks = state.engine.store().list(filter).await?;
    Ok(Json(TaskList { tasks: tasks.into_iter().map(TaskView::from).collect() }))
}

/// The tasks `id` made, and theirs, a few levels down.
fn children(state: &AppState, id: TaskId, depth: u32) -> futures_util::future::BoxFuture<'_, Result<Vec<owl_api::ChildView>, ApiError>> {
    Box::pin(async move {
        if depth > 4 {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        for t in state.engine.children(id).await? {
            out.push(owl_api::ChildView {
                id: t.id,
                status: t.state.status(),
                display: t.spec.command.display(),
                depends_on: t.spec.depends_on.clone(),
                children: children(state, t.id, depth + 1).await?,
            });
        }
        Ok(out)
    })
}

#[utoipa::path(get, path = "/v1/tasks/{id}", summary = "One task with its runs", params(("id" = i64, Path, minimum = 1, description = "A task id")), responses((status = 200, description = "OK", body = TaskView)))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    let id = parse_id(&id)?;
    let task = state.engine.store().get(id).await?;
    let runs = state.engine.store().runs(id).await?;
    let mut v = TaskView::from(task);
    v.runs = Some(runs.into_iter().map(RunView::from).collect());
    v.result = state.engine.store().task_result(id).await?;
    v.children = children(&state, id, 0).await?;
    v.git = state.engine.store().task_git(id).await?;
    let u = state.engine.store().owner_usage(owl_core::agent::Owner::Task(id)).await?;
    if u.calls > 0 {
        v.usage = Some(owl_api::TaskUsage {
            calls: u.calls,
            input_tokens: u.input,
            output_tokens: u.output,
            cached_tokens: u.cached,
            cost_usd: u.cost_usd,
        });
    }
    Ok(Json(v))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", summary = "Cancel a task (a running one is stopped)", request_body = Option<CancelRequest>, params(("id" = i64, Path, minimum = 1, description = "A task id")), responses((status = 200, description = "OK", body = TaskView)))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CancelRequest>,
) -> Result<Json<TaskView>, ApiError> {
    let id = parse_id(&id)?;
    state.engine.cancel(id, req.reason).await?;
    Ok(Json(TaskView::from(state.engine.store().get(id).await?)))
}

#[utoipa::path(post, path = "/v1/tasks/{id}/retry", summary = "Queue a failed, timed out or cancelled task again", params(("id" = i64, Path, minimum = 1, description = "A task id")), responses((status = 200, description = "OK", body = TaskView)))]
pub async fn retry(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    let id = parse_id(&id)?;
    state.engine.retry(id).await?;
    Ok(Json(TaskView::from(state.engine.store().get(id).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Comma-separated task ids.
    #[param(pattern = "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,999}$")]
    ids: String,
    /// How long to wait at most: a duration up to 5m, e.g. `30s` (the default) or `1500ms`.
    timeout: Option<String>,
}

#[utoipa::path(get, path = "/v1/wait", summary = "Long-poll until the tasks finish or the timeout passes", params(WaitQuery), responses((status = 200, description = "OK", body = WaitReply)))]
pub async fn wait(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<WaitReply>, ApiError> {
    let q: WaitQuery = parse_query(q)?;
    let ids: Vec<TaskId> = q.ids.split(',').map(|s| query_id("ids", s)).collect::<Result<_, _>>()?;
    if ids.is_empty() || ids.len() > 1000 {
        return Err(ApiError::bad_request("ids", "give 1 to 1000 comma-separated task ids"));
    }
    let timeout = match q.timeout {
        Some(t) => owl_core::duration::parse(&t).map_err(|m| ApiError::bad_request("timeout", m))?,
        None => Duration::from_secs(30),
    };
    if timeout > Duration::from_secs(300) {
        return Err(ApiError::bad_request("timeout", "at most 5m per request; call again to keep waiting"));
    }
    // Subscribe before reading so no change between the read and the wait is missed.
    let mut events = state.engine.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shutdown = state.shutdown.clone();
    loop {
        let tasks = state.engine.store().list(TaskFilter { ids: ids.clone(), ..Default::default() }).await?;
        if let Some(missing) = ids.iter().find(|id| !tasks.iter().any(|t| t.id == **id)) {
            return Err(owl_store::StoreError::NotFound(*missing).into());
        }
        let done = tasks.iter().all(|t| t.state.is_terminal());
        if done || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            let mut tasks: Vec<TaskView> = tasks.into_iter().map(TaskView::from).collect();
            tasks.sort_by_key(|t| ids.iter().position(|i| *i == t.id));
            return Ok(Json(WaitReply { done, tasks }));
        }
        // Wait for an event about one of our tasks (or a lag, which may have hidden one).
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(e) if e.kind.task_id().is_some_and(|id| ids.contains(&id)) => break,
                    Ok(_) => continue,
                    Err(_) => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.changed() => break,
            }
        }
    }
}
