//! `Memory`: the database, the embedder (loaded on first use) and the vector index together.
//! Adding dedups; searching fuses vector and full-text rankings by reciprocal rank fusion,
//! with optional recency weighting and MMR diversity, and can explain each hit's place.

use crate::db::{content_hash, Filter, MemoryDb, MemoryItem, MemoryStore, NewMemory};
use crate::embed::{dot, Embedder};
use crate::error::MemoryError;
use crate::index::VectorIndex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Marks text that came out of memory (a recall put into a prompt). Text carrying it is never
/// stored back: that is how memory would snowball.
pub const RECALL_MARKER: &str = "[recalled memory #";

/// Tunables, from `[memory]` settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryConfig {
    /// Items whose vectors are at least this similar (cosine) to an existing item of the same
    /// kind and scope are merged into it instead of added.
    pub dedup_threshold: f32,
    /// Longest item, in characters; imports are chunked below it.
    pub max_item_chars: usize,
    /// Reciprocal rank fusion's k.
    pub rrf_k: f32,
    /// How many candidates each ranking contributes before fusion.
    pub candidates: usize,
    /// A hit found by meaning alone (no word in common) must be at least this similar; below
    /// it, the nearest neighbours of an unrelated query would be returned as if they mattered.
    pub min_similarity: f32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { dedup_threshold: 0.95, max_item_chars: 8000, rrf_k: 60.0, candidates: 50, min_similarity: 0.15 }
    }
}

/// A search request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub text: String,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub filter: Filter,
    /// Favour recent items: a hit's score is multiplied by 1 + 2^(-age / half_life).
    #[serde(default)]
    pub recency_half_life_ms: Option<i64>,
    /// MMR diversity: 1.0 is pure relevance, lower trades relevance for variety.
    #[serde(default)]
    pub mmr_lambda: Option<f32>,
}

fn default_k() -> usize {
    5
}

/// One hit, with why it ranked where it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// What `add` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Added {
    Created {
        id: i64,
    },
    /// A (near-)duplicate of an existing item, which absorbed its tags.
    Merged {
        id: i64,
    },
}

impl Added {
    pub fn id(&self) -> i64 {
        match self {
            Added::Created { id } | Added::Merged { id } => *id,
        }
    }
}

/// Texts embedded per model call: the fastest batch size on 2 cores (see BENCHMARKS.md).
const EMBED_BATCH: usize = 64;

/// Makes the embedder on first use (called again only if the first try failed and was kept).
pub type Loader = Box<dyn Fn() -> Result<Arc<dyn Embedder>, String> + Send + Sync>;

/// A loader for the BERT model in `dir`: loaded once, on first use, with the load's error kept
/// (and said clearly when the directory has no model).
pub fn bert_loader(dir: PathBuf, precision: crate::embed::Precision) -> Loader {
    let once: OnceLock<Result<Arc<dyn Embedder>, String>> = OnceLock::new();
    Box::new(move || {
        once.get_or_init(|| {
            if !dir.join("model.safetensors").exists() {
                return Err(format!(
                    "no embedding model at {} (run scripts/fetch-models minilm, or set [memory] model_dir)",
                    dir.display()
                ));
            }
            crate::embed::BertEmbedder::load_with(&dir, precision).map(|e| Arc::new(e) as Arc<dyn Embedder>)
        })
        .clone()
    })
}

pub struct Memory {
    db: Box<dyn MemoryStore>,
    /// Other nodes change the database too: the index follows the database's generation.
    shared: bool,
    /// The generation the index reflects (shared databases only).
    synced: std::sync::atomic::AtomicU64,
    /// Times the index was rebuilt because other nodes changed the database.
    refills: std::sync::atomic::AtomicU64,
    cfg: MemoryConfig,
    index_path: PathBuf,
    loader: Loader,
    embedder: OnceLock<Option<Arc<dyn Embedder>>>,
    index: OnceLock<Option<VectorIndex>>,
    /// Why there is no embedder, said once.
    warned: Mutex<bool>,
    /// Serialises adds so that dedup sees every earlier add.
    adding: Mutex<()>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Memory {
    /// Opens `memory.db` and `memory.usearch` in `dir`; `loader` makes the embedder on first use.
    pub fn open(dir: &Path, cfg: MemoryConfig, loader: Loader) -> Result<Self, String> {
        let db = MemoryDb::open(&dir.join("memory.db"))?;
        Ok(Memory::with_store(dir, Box::new(db), false, cfg, loader))
    }

    /// A memory on `db`; `shared` when other nodes write to it too, so the vector index (a
    /// cache in `dir`) is brought up to date whenever the database's generation moved.
    pub fn with_store(dir: &Path, db: Box<dyn MemoryStore>, shared: bool, cfg: MemoryConfig, loader: Loader) -> Self {
        Memory {
            db,
            shared,
            synced: std::sync::atomic::AtomicU64::new(u64::MAX),
            refills: std::sync::atomic::AtomicU64::new(0),
            cfg,
            index_path: dir.join("memory.usearch"),
            loader,
            embedder: OnceLock::new(),
            index: OnceLock::new(),
            warned: Mutex::new(false),
            adding: Mutex::new(()),
        }
    }

    pub fn db(&self) -> &dyn MemoryStore {
        self.db.as_ref()
    }

    /// The index, brought up to date first when other nodes share the database and changed it.
    fn current_index(&self) -> Option<&VectorIndex> {
        let ix = self.index()?;
        if self.shared {
            use std::sync::atomic::Ordering;
            match self.db.generation() {
                Ok(g) if g != self.synced.load(Ordering::SeqCst) => match ix.refill(self.db.as_ref()) {
                    Ok(_) => {
                        self.synced.store(g, Ordering::SeqCst);
                        self.refills.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot bring the memory index up to date; searching the one held"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the memory's generation; searching the index held"),
            }
        }
        Some(ix)
    }

    /// The embedder, loaded on first use; `None` (said once, in the log) when it cannot load.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder
            .get_or_init(|| match (self.loader)() {
                Ok(e) => Some(e),
                Err(why) => {
                    let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
                    if !*w {
                        *w = true;
                        tracing::warn!(reason = %why, "memory works on full-text search alone: no embedding model");
                    }
                    None
                }
            })
            .as_ref()
    }

    /// Why semantic search is off, if it is.
    pub fn semantic_unavailable(&self) -> Option<String> {
        match self.embedder() {
            Some(_) => None,
            None => Some((self.loader)().err().unwrap_or_else(|| "no embedding model".into())),
        }
    }

    fn index(&self) -> Option<&VectorIndex> {
        self.index
            .get_or_init(|| {
                let e = self.embedder()?;
                // Vectors for items added while no model was available come first.
                if let Err(err) = self.fill_missing(e.as_ref()) {
                    tracing::warn!(error = %err, "cannot embed items that have no vector yet");
                }
                match VectorIndex::open(&self.index_path, self.db.as_ref(), e.model(), e.dim()) {
                    Ok((ix, how)) => {
                        tracing::debug!(?how, items = ix.len(), "memory index ready");
                        Some(ix)
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "the memory index cannot be opened; full-text search only");
                        None
                    }
                }
            })
            .as_ref()
    }

    fn fill_missing(&self, e: &dyn Embedder) -> Result<(), String> {
        loop {
            let batch = self.db.missing_vectors(e.model(), 64)?;
            if batch.is_empty() {
                return Ok(());
            }
            let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
            let vecs = self.embed_cached(e, &texts)?;
            for ((id, _), v) in batch.iter().zip(vecs) {
                self.db.set_vector(*id, e.model(), &v)?;
            }
        }
    }

    /// Embeds texts, reusing vectors cached by content hash.
    fn embed_cached(&self, e: &dyn Embedder, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let hashes: Vec<String> = texts.iter().map(|t| content_hash(t)).collect();
        let mut out: Vec<Option<Vec<f32>>> = hashes.iter().map(|h| self.db.cached_embedding(h, e.model()).ok().flatten()).collect();
        let todo: Vec<usize> = (0..texts.len()).filter(|i| out[*i].is_none()).collect();
        if !todo.is_empty() {
            let mut fresh = Vec::with_capacity(todo.len());
            for chunk in todo.chunks(EMBED_BATCH) {
                fresh.extend(e.embed(&chunk.iter().map(|i| texts[*i]).collect::<Vec<_>>())?);
            }
            for (i, v) in todo.into_iter().zip(fresh) {
                let _ = self.db.cache_embedding(&hashes[i], e.model(), &v);
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().map(|v| v.expect("filled above")).collect())
    }

    /// Saves the index so the next start loads it instead of rebuilding.
    pub fn flush(&self) -> Result<(), MemoryError> {
        if let Some(ix) = self.index.get().and_then(|o| o.as_ref()) {
            ix.save(self.db.generation()?)?;
        }
        Ok(())
    }

    /// Remembers one thing, unless it is a (near-)duplicate, too long, or recalled text.
    pub fn add(&self, m: NewMemory) -> Result<Added, MemoryError> {
        self.add_batch(vec![m]).map(|mut v| v.remove(0))
    }

    /// Remembers several, embedding them in one batch.
    pub fn add_batch(&self, items: Vec<NewMemory>) -> Result<Vec<Added>, MemoryError> {
        for m in &items {
            check(m, &self.cfg)?;
        }
        let vectors: Vec<Option<Vec<f32>>> = match self.embedder() {
            Some(e) => {
                let texts: Vec<&str> = items.iter().map(|m| m.text.as_str()).collect();
                self.embed_cached(e.as_ref(), &texts)?.into_iter().map(Some).collect()
            }
            None => vec![None; items.len()],
        };
        let _g = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.current_index();
        let model = self.embedder().map(|e| e.model().to_string()).unwrap_or_default();
        let mut out = Vec::with_capacity(items.len());
        for (m, v) in items.into_iter().zip(vectors) {
            if let Some(id) = self.db.find_exact(&m)? {
                self.db.merge_into(id, &m.tags, now_ms())?;
                out.push(Added::Merged { id });
                continue;
            }
            if let (Some(ix), Some(v)) = (index, &v) {
                let near = ix.search(v, 8)?;
                let same_scope: Vec<i64> = near.iter().filter(|(_, s)| *s >= self.cfg.dedup_threshold).map(|(id, _)| *id).collect();
                if let Some(dup) =
                    self.db.get_many(&same_scope)?.into_iter().find(|o| o.kind == m.kind && o.agent == m.agent && o.user == m.user)
                {
                    self.db.merge_into(dup.id, &m.tags, now_ms())?;
                    out.push(Added::Merged { id: dup.id });
                    continue;
                }
            }
            let before = self.shared_generation();
            let id = self.db.insert(&m, v.as_deref().map(|v| (model.as_str(), v)), now_ms())?;
            if let (Some(ix), Some(v)) = (index, &v) {
                ix.add(id, v)?;
                self.after_own_change(before);
            }
            out.push(Added::Created { id });
        }
        Ok(out)
    }

    pub fn delete(&self, id: i64) -> Result<bool, MemoryError> {
        let before = self.shared_generation();
        let gone = self.db.delete(id)?;
        if gone {
            if let Some(ix) = self.index.get().and_then(|o| o.as_ref()) {
                let _ = ix.remove(id);
                self.after_own_change(before);
            }
        }
        Ok(gone)
    }

    /// How many times the index was rebuilt to catch up with a shared database.
    pub fn index_refills(&self) -> u64 {
        self.refills.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// On a shared store, the generation just before a change of this node's own.
    fn shared_generation(&self) -> Option<u64> {
        if self.shared {
            self.db.generation().ok()
        } else {
            None
        }
    }

    /// After a change of this node's own that the index already holds: when it was the only
    /// change since the index was in step (the generation moved by one), the index is still
    /// in step, and the next search need not rebuild it.
    fn after_own_change(&self, before: Option<u64>) {
        use std::sync::atomic::Ordering;
        let Some(before) = before else { return };
        if let Ok(now) = self.db.generation() {
            if now == before + 1 && self.synced.load(Ordering::SeqCst) == before {
                self.synced.store(now, Ordering::SeqCst);
            }
        }
    }

    /// Rebuilds the vector index from the database (and embeds items that lack a vector).
    pub fn reindex(&self) -> Result<usize, MemoryError> {
        let Some(e) = self.embedder() else {
            return Err(MemoryError::NoModel(self.semantic_unavailable().unwrap_or_else(|| "no embedding model is loaded".into())));
        };
        self.fill_missing(e.as_ref())?;
        let ix = VectorIndex::rebuild(&self.index_path, self.db.as_ref(), e.model(), e.dim())?;
        let n = ix.len();
        // An index already in use is kept; the rebuilt file is what the next start loads.
        let _ = self.index.set(Some(ix));
        Ok(n)
    }

    /// Hybrid search: vector and full-text rankings fused by reciprocal rank.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>, MemoryError> {
        let k = q.k.max(1);
        let pool = self.cfg.candidates.max(k * 4);
        let text = self.db.text_search(&q.text, pool)?;
        let mut qvec = None;
        let mut vector = Vec::new();
        if let (Some(e), Some(ix)) = (self.embedder(), self.current_index()) {
            let v = self.embed_cached(e.as_ref(), &[q.text.as_str()])?.remove(0);
            vector = ix.search(&v, pool)?;
            qvec = Some(v);
        }
        let mut fused: std::collections::HashMap<i64, Hit> = std::collections::HashMap::new();
        let blank = |id: i64| Hit {
            item: MemoryItem {
                id,
                text: String::new(),
                kind: String::new(),
                tags: vec![],
                source: None,
                agent: None,
                user: None,
                created_at: 0,
                accessed_at: None,
                access_count: 0,
            },
            score: 0.0,
            vector_rank: None,
            similarity: None,
            text_rank: None,
            bm25: None,
            recency_boost: None,
        };
        let text_ids: std::collections::HashSet<i64> = text.iter().map(|t| t.0).collect();
        for (r, (id, sim)) in vector.iter().enumerate() {
            if *sim < self.cfg.min_similarity && !text_ids.contains(id) {
                continue;
            }
            let h = fused.entry(*id).or_insert_with(|| blank(*id));
            h.vector_rank = Some(r + 1);
            h.similarity = Some(*sim);
            h.score += 1.0 / (self.cfg.rrf_k + (r + 1) as f32);
        }
        for (r, (id, s)) in text.iter().enumerate() {
            let h = fused.entry(*id).or_insert_with(|| blank(*id));
            h.text_rank = Some(r + 1);
            h.bm25 = Some(-s);
            h.score += 1.0 / (self.cfg.rrf_k + (r + 1) as f32);
        }
        let ids: Vec<i64> = fused.keys().copied().collect();
        let now = now_ms();
        let mut hits: Vec<Hit> = Vec::new();
        for item in self.db.get_many(&ids)? {
            if !q.filter.matches(&item) {
                continue;
            }
            let mut h = fused.remove(&item.id).expect("fetched by these ids");
            if let Some(hl) = q.recency_half_life_ms.filter(|h| *h > 0) {
                let age = (now - item.created_at).max(0) as f32;
                let boost = 1.0 + (-(age / hl as f32) * std::f32::consts::LN_2).exp();
                h.score *= boost;
                h.recency_boost = Some(boost);
            }
            h.item = item;
            hits.push(h);
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.item.id.cmp(&a.item.id)));
        let chosen = match (q.mmr_lambda, &qvec, self.embedder()) {
            (Some(l), Some(_), Some(e)) if l < 1.0 => self.mmr(hits, k, l, e.model()),
            _ => hits.into_iter().take(k).collect(),
        };
        self.db.touch(&chosen.iter().map(|h| h.item.id).collect::<Vec<_>>(), now)?;
        Ok(chosen)
    }

    /// Maximal marginal relevance over the fused list.
    fn mmr(&self, hits: Vec<Hit>, k: usize, lambda: f32, model: &str) -> Vec<Hit> {
        let top = hits.first().map(|h| h.score).unwrap_or(1.0).max(f32::EPSILON);
        let vecs: Vec<Option<Vec<f32>>> = hits.iter().map(|h| self.db.vector_of(h.item.id, model).ok().flatten()).collect();
        let mut left: Vec<usize> = (0..hits.len()).collect();
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < k && !left.is_empty() {
            let best = left
                .iter()
                .enumerate()
                .map(|(pos, &i)| {
                    let redundancy = picked.iter().filter_map(|&j| Some(dot(vecs[i].as_ref()?, vecs[j].as_ref()?))).fold(0.0f32, f32::max);
                    (pos, lambda * hits[i].score / top - (1.0 - lambda) * redundancy)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(pos, _)| pos)
                .expect("left is not empty");
            picked.push(left.remove(best));
        }
        let mut hits: Vec<Option<Hit>> = hits.into_iter().map(Some).collect();
        picked.into_iter().filter_map(|i| hits[i].take()).collect()
    }
}

/// Refuses what must not be stored: empty text, text over the size limit, recalled text.
fn check(m: &NewMemory, cfg: &MemoryConfig) -> Result<(), MemoryError> {
    if m.text.trim().is_empty() {
        return Err(MemoryError::invalid("text", "is empty; say what to remember"));
    }
    if m.kind.trim().is_empty() || m.kind.chars().any(|c| c.is_whitespace()) {
        return Err(MemoryError::invalid(
            "kind",
            format!("`{}` is not a kind; use one word such as knowledge, preference, task or conversation", m.kind),
        ));
    }
    let chars = m.text.chars().count();
    if chars > cfg.max_item_chars {
        return Err(MemoryError::invalid(
            "text",
            format!(
                "is {chars} characters; one memory holds at most {} ([memory] max_item_chars); import long documents with `owl memory import`, which splits them",
                cfg.max_item_chars
            ),
        ));
    }
    if m.text.contains(RECALL_MARKER) {
        return Err(MemoryError::invalid("text", "contains recalled memories; what came out of memory is not stored again"));
    }
    Ok(())
}
