//! Server-sent events: the engine's lifecycle events as they happen.

use crate::extract::{parse_query, query_id};
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events about this task.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    task: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", summary = "Server-sent events of task lifecycle changes", params(EventsQuery), responses((status = 200, description = "A stream of server-sent events", body = owl_api::SseEvent, content_type = "text/event-stream")))]
pub async fn events(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let q: EventsQuery = parse_query(q)?;
    let only = q.task.as_deref().map(|t| query_id("task", t)).transpose()?;
    let rx = state.engine.subscribe();
    let shutdown = state.shutdown.clone();
    let stream = futures_util::stream::unfold((rx, shutdown), move |(mut rx, mut shutdown)| async move {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = shutdown.changed() => return None,
            };
            match ev {
                Ok(e) => {
                    if only.is_some() && e.kind.task_id() != only {
                        continue;
                    }
                    let data = serde_json::to_string(&e).expect("events serialize");
                    let kind = serde_json::to_value(&e.kind).ok().and_then(|v| v["type"].as_str().map(str::to_string)).unwrap_or_default();
                    let sse = SseEvent::default().id(e.seq.to_string()).event(kind).data(data);
                    return Some((Ok(sse), (rx, shutdown)));
                }
                Err(RecvError::Lagged(n)) => {
                    let sse = SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}"));
                    return Some((Ok(sse), (rx, shutdown)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
