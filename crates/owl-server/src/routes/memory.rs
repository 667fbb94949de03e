//! Long-term memory: add, import, search, list, show, delete, stats, reindex.

use crate::extract::{parse_query, ApiJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use owl_api::*;
use owl_engine::memory::blocking;
use owl_memory::{Filter, Memory, MemoryError, Query};
use serde::Deserialize;
use std::sync::Arc;

fn memory(state: &AppState) -> Result<Arc<Memory>, ApiError> {
    state.engine.memory().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "memory_disabled",
            "long-term memory is off; set [memory] enabled = true and restart the daemon",
        )
    })
}

/// Memory's errors by kind: the client's to fix (400), not possible without the model (409),
/// or owl's own failure (500, logged).
fn mapped(e: MemoryError) -> ApiError {
    match e {
        MemoryError::Invalid { field, message } => ApiError::bad_request(field, message),
        MemoryError::NoModel(why) => ApiError::new(StatusCode::CONFLICT, "no_model", why),
        MemoryError::Failed(detail) => {
            tracing::error!(error = %detail, "memory operation failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the memory operation failed; see the daemon's log")
        }
    }
}

pub(crate) fn new_memory(n: owl_api::NewMemory) -> owl_memory::NewMemory {
    owl_memory::NewMemory { text: n.text, kind: n.kind, tags: n.tags, source: n.source, agent: n.agent, user: n.user }
}

pub(crate) fn added(a: owl_memory::Added) -> owl_api::Added {
    match a {
        owl_memory::Added::Created { id } => owl_api::Added::Created { id },
        owl_memory::Added::Merged { id } => owl_api::Added::Merged { id },
    }
}

pub(crate) fn item(m: owl_memory::MemoryItem) -> owl_api::MemoryItem {
    owl_api::MemoryItem {
        id: m.id,
        text: m.text,
        kind: m.kind,
        tags: m.tags,
        source: m.source,
        agent: m.agent,
        user: m.user,
        created_at: m.created_at,
        accessed_at: m.accessed_at,
        access_count: m.access_count,
    }
}

pub(crate) fn hit(h: owl_memory::Hit) -> owl_api::Hit {
    owl_api::Hit {
        item: item(h.item),
        score: h.score,
        vector_rank: h.vector_rank,
        similarity: h.similarity,
        text_rank: h.text_rank,
        bm25: h.bm25,
        recency_boost: h.recency_boost,
    }
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request("id", format!("`{raw}` is not a memory id")))
}

fn ago(state: &AppState, field: &str, d: &Option<String>) -> Result<Option<i64>, ApiError> {
    match d {
        Some(s) => {
            let d = owl_core::duration::parse(s).map_err(|m| ApiError::bad_request(field, m))?;
            Ok(Some(state.engine.now().minus(d).millis()))
        }
        None => Ok(None),
    }
}

#[utoipa::path(post, path = "/v1/memory", summary = "Remember one item (201 created, 200 merged into a near-duplicate)", request_body = NewMemory, responses((status = 201, description = "OK", body = Added), (status = 200, description = "OK", body = Added)))]
pub async fn add(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<owl_api::NewMemory>,
) -> Result<(StatusCode, Json<owl_api::Added>), ApiError> {
    let m = memory(&state)?;
    let result = added(blocking(move || m.add(new_memory(new))).await.map_err(mapped)?);
    let code = if matches!(result, owl_api::Added::Created { .. }) { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(result)))
}

#[utoipa::path(post, path = "/v1/memory/batch", summary = "Remember up to 1000 items at once (an import), embedded in batches", request_body = MemoryBatch, responses((status = 200, description = "OK", body = MemoryAddedList)))]
pub async fn add_batch(State(state): State<AppState>, ApiJson(b): ApiJson<MemoryBatch>) -> Result<Json<MemoryAddedList>, ApiError> {
    let m = memory(&state)?;
    if b.items.len() > 1000 {
        return Err(ApiError::bad_request("items", format!("{} items; send at most 1000 per request", b.items.len())));
    }
    let items = b.items.into_iter().map(new_memory).collect();
    let results = blocking(move || m.add_batch(items)).await.map_err(mapped)?;
    Ok(Json(MemoryAddedList { results: results.into_iter().map(added).collect() }))
}

#[utoipa::path(post, path = "/v1/memory/search", summary = "Hybrid search: vectors and full text fused; each hit says its ranks", request_body = MemorySearch, responses((status = 200, description = "OK", body = MemorySearchReply)))]
pub async fn search(State(state): State<AppState>, ApiJson(s): ApiJson<MemorySearch>) -> Result<Json<MemorySearchReply>, ApiError> {
    let m = memory(&state)?;
    if s.text.trim().is_empty() {
        return Err(ApiError::bad_request("text", "is empty; say what to look for"));
    }
    let recency = match &s.recency {
        Some(r) => Some(owl_core::duration::parse(r).map_err(|e| ApiError::bad_request("recency", e))?.as_millis() as i64),
        None => None,
    };
    let k = s.k.unwrap_or(5);
    if !(1..=100).contains(&k) {
        return Err(ApiError::bad_request("k", "must be between 1 and 100"));
    }
    if s.mmr.is_some_and(|l| !(0.0..=1.0).contains(&l)) {
        return Err(ApiError::bad_request("mmr", "must be between 0 and 1"));
    }
    let q = Query {
        text: s.text,
        k,
        filter: Filter { kinds: s.kind, tags: s.tag, agent: s.agent, user: s.user, since: ago(&state, "since", &s.since)?, until: None },
        recency_half_life_ms: recency,
        mmr_lambda: s.mmr,
    };
    let (hits, note) = blocking(move || Ok((m.search(&q)?, m.semantic_unavailable()))).await.map_err(mapped)?;
    Ok(Json(MemorySearchReply { hits: hits.into_iter().map(hit).collect(), semantic: note.is_none(), note }))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Comma-separated kinds.
    kind: Option<String>,
    /// Comma-separated tags, all required.
    tag: Option<String>,
    agent: Option<String>,
    /// Only items created within this long, e.g. `7d` or `12h`.
    since: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only items with a smaller id (for paging).
    before: Option<i64>,
}

#[utoipa::path(get, path = "/v1/memory", summary = "Memories, newest first", params(ListQuery), responses((status = 200, description = "OK", body = MemoryList)))]
pub async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<MemoryList>, ApiError> {
    let q: ListQuery = parse_query(q)?;
    let m = memory(&state)?;
    let split = |s: Option<String>| s.map(|v| v.split(',').filter(|x| !x.is_empty()).map(String::from).collect()).unwrap_or_default();
    let f = Filter {
        kinds: split(q.kind),
        tags: split(q.tag),
        agent: q.agent,
        user: None,
        since: ago(&state, "since", &q.since)?,
        until: None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit", "must be between 1 and 1000"));
    }
    let before = q.before;
    let items = blocking(move || Ok(m.db().list(&f, limit, before)?)).await.map_err(mapped)?;
    Ok(Json(MemoryList { items: items.into_iter().map(item).collect() }))
}

#[utoipa::path(get, path = "/v1/memory/{id}", summary = "One memory", params(("id" = i64, Path, minimum = 1, description = "A memory id")), responses((status = 200, description = "OK", body = MemoryItem)))]
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<owl_api::MemoryItem>, ApiError> {
    let id = parse_id(&id)?;
    let m = memory(&state)?;
    blocking(move || Ok(m.db().get(id)?))
        .await
        .map_err(mapped)?
        .map(|m| Json(item(m)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("memory {id} does not exist; see `owl memory ls`")))
}

#[utoipa::path(delete, path = "/v1/memory/{id}", summary = "Forget one memory", params(("id" = i64, Path, minimum = 1, description = "A memory id")), responses((status = 200, description = "OK", body = MemoryDeleted)))]
pub async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<MemoryDeleted>, ApiError> {
    let id = parse_id(&id)?;
    let m = memory(&state)?;
    if blocking(move || m.delete(id)).await.map_err(mapped)? {
        Ok(Json(MemoryDeleted { deleted: id }))
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("memory {id} does not exist; see `owl memory ls`")))
    }
}

#[utoipa::path(get, path = "/v1/memory/stats", summary = "Item counts by kind, vectors, the embedding model", responses((status = 200, description = "OK", body = MemoryStats)))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<MemoryStats>, ApiError> {
    let m = memory(&state)?;
    let r = blocking(move || {
        let note = m.semantic_unavailable();
        let model = m.embedder().map(|e| e.model().to_string());
        let (items, with_vectors, kinds) = m.db().stats(model.as_deref().unwrap_or(""))?;
        Ok(MemoryStats { items, with_vectors, kinds: kinds.into_iter().collect(), model, semantic: note.is_none(), note })
    })
    .await
    .map_err(mapped)?;
    Ok(Json(r))
}

#[utoipa::path(post, path = "/v1/memory/reindex", summary = "Rebuild the vector index from the database", responses((status = 200, description = "OK", body = Reindexed)))]
pub async fn reindex(State(state): State<AppState>) -> Result<Json<Reindexed>, ApiError> {
    let m = memory(&state)?;
    let n = blocking(move || m.reindex()).await.map_err(mapped)?;
    Ok(Json(Reindexed { indexed: n }))
}
