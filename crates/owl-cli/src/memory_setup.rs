//! Long-term memory for the daemon: `memory.db` and `memory.usearch` in the data dir (or the
//! items in the shared PostgreSQL and only the index here), with the embedder `[memory]` asks
//! for, loaded on first use.

use anyhow::{bail, Result};
use owl_core::config::MemorySettings;
use owl_memory::embed::{Embedder, HttpEmbedder};
use owl_memory::{Memory, MemoryConfig};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The model directory `[memory]` points at (default: the fetched all-MiniLM-L6-v2).
pub fn model_dir(s: &MemorySettings) -> std::path::PathBuf {
    match &s.model_dir {
        Some(d) => std::path::PathBuf::from(owl_core::coding::expand_home(d, std::env::var("HOME").ok().as_deref())),
        None => owl_memory::embed::default_model_dir(&crate::agents_setup::cache_dir()),
    }
}

/// The memory: in the data dir, or, with `shared` (the `[store] url` of a PostgreSQL the
/// daemon shares with other nodes), in that database, with only the vector index kept here.
pub fn open(s: &MemorySettings, data_dir: &Path, shared: Option<&str>) -> Result<Option<Arc<Memory>>> {
    if !s.enabled {
        return Ok(None);
    }
    type Made = Result<Arc<dyn Embedder>, String>;
    let loader: Box<dyn Fn() -> Made + Send + Sync> = match s.embeddings.as_str() {
        "local" => {
            let precision = match s.precision.as_str() {
                "f32" => owl_memory::embed::Precision::F32,
                "int8" => owl_memory::embed::Precision::Int8,
                other => bail!("[memory] precision = {other:?} is not known: use \"f32\" or \"int8\""),
            };
            owl_memory::bert_loader(model_dir(s), precision)
        }
        "http" => {
            let Some(url) = s.endpoint.clone() else { bail!("[memory] embeddings = \"http\" needs endpoint = \"http://host:port/v1\"") };
            let Some(model) = s.embedding_model.clone() else { bail!("[memory] embeddings = \"http\" needs embedding_model") };
            let key = s.api_key_env.as_ref().and_then(|k| std::env::var(k).ok());
            let once: OnceLock<Made> = OnceLock::new();
            Box::new(move || {
                once.get_or_init(|| HttpEmbedder::new(&url, &model, key.clone()).map(|e| Arc::new(e) as Arc<dyn Embedder>)).clone()
            })
        }
        "none" => Box::new(|| Err("embeddings are off ([memory] embeddings = \"none\")".to_string())),
        other => bail!("[memory] embeddings = \"{other}\" is not one of local, http, none"),
    };
    let cfg = MemoryConfig { dedup_threshold: s.dedup_threshold, max_item_chars: s.max_item_chars, ..Default::default() };
    let m = match shared {
        Some(url) => {
            let db = owl_memory::pg::PgMemory::open(url).map_err(|e| anyhow::anyhow!("the shared memory in PostgreSQL: {e}"))?;
            Memory::with_store(data_dir, Box::new(db), true, cfg, loader)
        }
        None => Memory::open(data_dir, cfg, loader).map_err(anyhow::Error::msg)?,
    };
    Ok(Some(Arc::new(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_precision_is_refused_by_name_and_int8_opens() {
        let t = tempfile::tempdir().unwrap();
        let bad = MemorySettings { precision: "int4".into(), ..Default::default() };
        let e = open(&bad, t.path(), None).err().expect("int4 is refused").to_string();
        assert!(e.contains("[memory] precision = \"int4\"") && e.contains("\"int8\""), "{e}");
        let good = MemorySettings { precision: "int8".into(), ..Default::default() };
        assert!(open(&good, t.path(), None).unwrap().is_some());
    }
}
