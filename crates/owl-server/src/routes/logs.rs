//! An attempt's log, whole or followed live until the attempt ends.

use crate::extract::{parse_id, parse_query};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use owl_core::{EventKind, TaskId};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Which attempt (default: the latest).
    #[param(minimum = 1)]
    attempt: Option<u32>,
    /// Keep the response open and stream output until the attempt ends.
    follow: Option<bool>,
}

#[utoipa::path(get, path = "/v1/tasks/{id}/logs", summary = "An attempt's output as text; follow=true streams until it ends", params(("id" = i64, Path, minimum = 1, description = "A task id"), LogsQuery), responses((status = 200, description = "The log text", body = String, content_type = "text/plain")))]
pub async fn logs(State(state): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let q: LogsQuery = parse_query(q)?;
    let follow = q.follow.unwrap_or(false);
    // Subscribe first so a start between the read and the wait is not missed.
    let mut events = state.engine.subscribe();
    let task = state.engine.store().get(id).await?;
    let attempt = match q.attempt {
        Some(a) if a == 0 || a > task.attempts => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("task {id} has no attempt {a}; it has started {} time(s)", task.attempts),
            ))
        }
        Some(a) => a,
        None if task.attempts > 0 => task.attempts,
        None if !follow || task.state.is_terminal() => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_logs",
                format!("task {id} has not started yet ({}); follow the log to wait for it", task.state.status()),
            ))
        }
        None => match wait_for_start(&state, id, &mut events).await {
            Some(a) => a,
            None => return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "").into_response()),
        },
    };
    let path = state.engine.layout().log_file(id, attempt);
    if !path.exists() {
        // On a shared store the attempt may have run on another node, which keeps its log.
        let this = state.engine.status().node;
        if let Some(run) = state.engine.store().runs(id).await?.into_iter().find(|r| r.attempt == attempt && r.node != this) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "log_elsewhere",
                format!(
                    "attempt {attempt} of task {id} ran on node {}, which keeps its log; read it there (`owl logs {id}` against that node's data dir, or GET /v1/tasks/{id}/logs on its API)",
                    run.node
                ),
            ));
        }
    }
    let progress = if follow { state.engine.log_progress(id, attempt) } else { None };
    let stream = futures_util::stream::unfold(
        Follow { path, file: None, progress, shutdown: state.shutdown.clone(), buf: vec![0u8; 64 * 1024] },
        |mut f| async move { f.next().await.map(|chunk| (Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk)), f)) },
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Waits until the task starts (returns its attempt) or ends without starting.
async fn wait_for_start(state: &AppState, id: TaskId, events: &mut tokio::sync::broadcast::Receiver<owl_core::Event>) -> Option<u32> {
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(e) => match e.kind {
                    EventKind::TaskStarted { task_id, attempt, .. } if task_id == id => return Some(attempt),
                    EventKind::TaskChanged { task_id, status } if task_id == id && status.is_terminal() => return None,
                    _ => {}
                },
                Err(_) => {
                    let t = state.engine.store().get(id).await.ok()?;
                    if t.attempts > 0 { return Some(t.attempts) }
                    if t.state.is_terminal() { return None }
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

struct Follow {
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
    /// Present while the attempt is running; closed when it ends.
    progress: Option<watch::Receiver<u64>>,
    shutdown: watch::Receiver<bool>,
    buf: Vec<u8>,
}

impl Follow {
    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.file.is_none() {
                self.file = tokio::fs::File::open(&self.path).await.ok();
            }
            if let Some(file) = self.file.as_mut() {
                match file.read(&mut self.buf).await {
                    Ok(0) => {}
                    Ok(n) => return Some(self.buf[..n].to_vec()),
                    Err(_) => return None,
                }
            }
            // At the end of what is written: wait for more while the attempt runs.
            let progress = self.progress.as_mut()?;
            tokio::select! {
                changed = progress.changed() => {
                    if changed.is_err() {
                        // The attempt ended; drain what is left, then stop.
                        self.progress = None;
                    }
                }
                _ = self.shutdown.changed() => return None,
            }
        }
    }
}
