//! Long-term memory on the wire. These mirror owl-memory's own types field for field, so
//! the JSON is the same, but stand alone: the wire types link no model or index code.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a client gives to remember something.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewMemory {
    #[schema(min_length = 1, pattern = "\\S")]
    pub text: String,
    /// conversation, knowledge, task, preference, or a kind of your own (one word).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where it came from: a file, `task:12`, `chat:3`, `cli`…
    #[serde(default)]
    pub source: Option<String>,
    /// The agent it belongs to; none is shared by all agents.
    #[serde(default)]
    pub agent: Option<String>,
    /// The user it is about; none is anyone.
    #[serde(default)]
    pub user: Option<String>,
}

/// One remembered thing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemoryItem {
    pub id: i64,
    pub text: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub source: Option<String>,
    pub agent: Option<String>,
    pub user: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub accessed_at: Option<i64>,
    pub access_count: u64,
}

/// What remembering did: a new item, or merged into a (near-)duplicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Added {
    Created { id: i64 },
    Merged { id: i64 },
}

/// One search hit, with why it ranked where it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hit {
    pub item: MemoryItem,
    pub score: f32,
    /// 1-based rank in the vector ranking, and the cosine similarity.
    pub vector_rank: Option<usize>,
    pub similarity: Option<f32>,
    /// 1-based rank in the full-text ranking, and the BM25 score (higher is better).
    pub text_rank: Option<usize>,
    pub bm25: Option<f64>,
    pub recency_boost: Option<f32>,
}

/// `POST /v1/memory/batch`: several items at once (an import).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryBatch {
    /// At most 1000 items per request.
    pub items: Vec<NewMemory>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemoryAddedList {
    pub results: Vec<Added>,
}

/// `POST /v1/memory/search`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySearch {
    #[schema(min_length = 1, pattern = "\\S")]
    pub text: String,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<usize>,
    #[serde(default)]
    pub kind: Vec<String>,
    #[serde(default)]
    pub tag: Vec<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Only items created within this long, e.g. `7d`.
    #[serde(default)]
    pub since: Option<String>,
    /// Favour recent items with this half-life, e.g. `30d`.
    #[serde(default)]
    pub recency: Option<String>,
    /// MMR diversity, 0..1 (1 = relevance only).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub mmr: Option<f32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemorySearchReply {
    pub hits: Vec<Hit>,
    /// False when search ran on full-text alone; `note` says why.
    pub semantic: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemoryList {
    pub items: Vec<MemoryItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemoryStats {
    pub items: u64,
    pub with_vectors: u64,
    pub kinds: BTreeMap<String, u64>,
    pub model: Option<String>,
    pub semantic: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
