//! The approximate nearest-neighbour index (usearch HNSW, inner product over unit vectors kept
//! as f16),
//! persisted beside the database as `memory.usearch` with a sidecar `memory.usearch.json` that
//! records the database generation it matches and the file's checksum.
//!
//! The database is the source of truth. At open the index is loaded only when the sidecar
//! says it is current and the file's checksum matches (usearch is never handed a file that
//! could be torn or corrupt); otherwise it is rebuilt from the stored vectors.

use crate::db::MemoryStore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Sidecar {
    generation: u64,
    /// How the index stores vectors ([`QUANTIZATION`]); a file stored otherwise is rebuilt.
    #[serde(default)]
    quantization: String,
    model: String,
    dim: usize,
    count: usize,
    sha256: String,
}

/// How the index came to be at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    Loaded,
    /// Missing, stale or corrupt: built again from the database.
    Rebuilt,
}

pub struct VectorIndex {
    index: RwLock<Index>,
    path: PathBuf,
    model: String,
    dim: usize,
}

/// Vectors are kept as f16 in the graph: half the memory of f32, and on 100,000 vectors
/// (BENCHMARKS.md) 1.5x faster to build with recall@10 still 0.99; bf16 was faster again but
/// its 8-bit mantissa misorders near ties (recall 0.98).
const QUANTIZATION: &str = "f16";

fn options(dim: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::IP,
        quantization: ScalarKind::F16,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 96,
        multi: false,
    }
}

fn err(e: impl std::fmt::Display) -> String {
    format!("vector index: {e}")
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl VectorIndex {
    /// An empty in-memory index (no file): for benchmarks and tests.
    pub fn in_memory(dim: usize, capacity: usize) -> Result<Self, String> {
        let index = Index::new(&options(dim)).map_err(err)?;
        index.reserve(capacity.max(16)).map_err(err)?;
        Ok(VectorIndex { index: RwLock::new(index), path: PathBuf::new(), model: String::new(), dim })
    }

    /// Loads the index at `path` if it matches the database, else rebuilds it from `db`.
    pub fn open(path: &Path, db: &dyn MemoryStore, model: &str, dim: usize) -> Result<(Self, Opened), String> {
        let generation = db.generation()?;
        let current = std::fs::read(sidecar_path(path))
            .ok()
            .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok())
            .filter(|s| s.generation == generation && s.model == model && s.dim == dim && s.quantization == QUANTIZATION)
            .filter(|s| file_sha256(path).as_deref() == Some(s.sha256.as_str()));
        if let Some(s) = current {
            let index = Index::new(&options(dim)).map_err(err)?;
            if index.load(&path.to_string_lossy()).is_ok() && index.size() == s.count {
                let me = VectorIndex { index: RwLock::new(index), path: path.to_path_buf(), model: model.into(), dim };
                return Ok((me, Opened::Loaded));
            }
        }
        let me = Self::rebuild(path, db, model, dim)?;
        Ok((me, Opened::Rebuilt))
    }

    /// Builds the index from every stored vector of `model` and saves it.
    pub fn rebuild(path: &Path, db: &dyn MemoryStore, model: &str, dim: usize) -> Result<Self, String> {
        let generation = db.generation()?;
        let vectors = db.vectors(model)?;
        let index = Index::new(&options(dim)).map_err(err)?;
        let me = VectorIndex { index: RwLock::new(index), path: path.to_path_buf(), model: model.into(), dim };
        let fitting: Vec<(i64, &[f32])> = vectors.iter().filter(|(_, v)| v.len() == dim).map(|(id, v)| (*id, v.as_slice())).collect();
        me.add_many(&fitting)?;
        me.save(generation)?;
        Ok(me)
    }

    /// Replaces the graph with one built from every stored vector of the index's model, in
    /// place (searches wait only for the swap): for a database other nodes change too.
    pub fn refill(&self, db: &dyn MemoryStore) -> Result<usize, String> {
        let vectors = db.vectors(&self.model)?;
        let fresh = VectorIndex::in_memory(self.dim, vectors.len())?;
        let fitting: Vec<(i64, &[f32])> = vectors.iter().filter(|(_, v)| v.len() == self.dim).map(|(id, v)| (*id, v.as_slice())).collect();
        fresh.add_many(&fitting)?;
        let graph = fresh.index.into_inner().unwrap_or_else(|e| e.into_inner());
        let n = graph.size();
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = graph;
        Ok(n)
    }

    /// Writes the index and its sidecar (the sidecar last, each through a rename), recording
    /// that it matches database generation `generation`.
    pub fn save(&self, generation: u64) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        // Saves share their temporary names and their renames must pair the index with its own
        // sidecar: two at once (a reindex beside a flush) would steal each other's files.
        static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = SAVING.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let tmp = self.path.with_extension("usearch.tmp");
        index.save(&tmp.to_string_lossy()).map_err(err)?;
        let sha256 = file_sha256(&tmp).ok_or_else(|| err("cannot read back the saved index"))?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        let side = Sidecar {
            generation,
            quantization: QUANTIZATION.into(),
            model: self.model.clone(),
            dim: self.dim,
            count: index.size(),
            sha256,
        };
        let side_tmp = sidecar_path(&self.path).with_extension("json.tmp");
        std::fs::write(&side_tmp, serde_json::to_vec(&side).expect("sidecar serializes")).map_err(err)?;
        std::fs::rename(&side_tmp, sidecar_path(&self.path)).map_err(err)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.index.read().unwrap_or_else(|e| e.into_inner()).size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn memory_bytes(&self) -> usize {
        self.index.read().unwrap_or_else(|e| e.into_inner()).memory_usage()
    }

    pub fn add(&self, id: i64, v: &[f32]) -> Result<(), String> {
        if v.len() != self.dim {
            return Err(err(format!("a vector of {} dimensions does not fit an index of {}", v.len(), self.dim)));
        }
        let index = self.index.write().unwrap_or_else(|e| e.into_inner());
        if index.size() + 1 >= index.capacity() {
            index.reserve((index.capacity() * 2).max(16)).map_err(err)?;
        }
        if index.contains(id as u64) {
            index.remove(id as u64).map_err(err)?;
        }
        index.add(id as u64, v).map_err(err)
    }

    /// Adds (or replaces) many vectors at once, on every core: usearch lets threads insert
    /// into one graph concurrently once its capacity is reserved.
    pub fn add_many(&self, items: &[(i64, &[f32])]) -> Result<(), String> {
        if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != self.dim) {
            return Err(err(format!("a vector of {} dimensions does not fit an index of {}", v.len(), self.dim)));
        }
        let index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let needed = index.size() + items.len() + 1;
        if needed >= index.capacity() {
            index.reserve(needed.max(index.capacity() * 2).max(16)).map_err(err)?;
        }
        for (id, _) in items {
            if index.contains(*id as u64) {
                index.remove(*id as u64).map_err(err)?;
            }
        }
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(items.len().div_ceil(256)).max(1);
        if threads == 1 {
            return items.iter().try_for_each(|(id, v)| index.add(*id as u64, v).map_err(err));
        }
        let index = &*index;
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || items.iter().skip(t).step_by(threads).try_for_each(|(id, v)| index.add(*id as u64, v).map_err(err)))
                })
                .collect();
            workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|_| Err(err("an index worker panicked"))))
        })
    }

    pub fn remove(&self, id: i64) -> Result<(), String> {
        let index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.remove(id as u64).map(|_| ()).map_err(err)
    }

    /// The `k` nearest ids with their cosine similarity, best first.
    pub fn search(&self, q: &[f32], k: usize) -> Result<Vec<(i64, f32)>, String> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if index.size() == 0 || k == 0 {
            return Ok(vec![]);
        }
        let m = index.search(q, k).map_err(err)?;
        // Inner-product distance is 1 - dot.
        Ok(m.keys.iter().zip(&m.distances).map(|(k, d)| (*k as i64, 1.0 - d)).collect())
    }

    /// Brute-force search over the same vectors: the yardstick for recall.
    pub fn exact_search(&self, q: &[f32], k: usize) -> Result<Vec<(i64, f32)>, String> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        if index.size() == 0 {
            return Ok(vec![]);
        }
        let m = index.exact_search(q, k).map_err(err)?;
        Ok(m.keys.iter().zip(&m.distances).map(|(k, d)| (*k as i64, 1.0 - d)).collect())
    }

    /// Searches wider (more candidates per step): higher recall, slower queries.
    pub fn set_expansion(&self, n: usize) {
        self.index.read().unwrap_or_else(|e| e.into_inner()).change_expansion_search(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{MemoryDb, NewMemory};

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }

    fn filled(dir: &Path, n: u64) -> MemoryDb {
        let db = MemoryDb::open(&dir.join("memory.db")).unwrap();
        for i in 0..n {
            let m = NewMemory { text: format!("item {i}"), kind: "knowledge".into(), ..Default::default() };
            db.insert(&m, Some(("m", &unit(i, 8))), 0).unwrap();
        }
        db
    }

    #[test]
    fn concurrent_rebuilds_of_one_index_all_succeed() {
        let t = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(filled(t.path(), 50));
        let path = t.path().join("memory.usearch");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (db, path) = (db.clone(), path.clone());
                std::thread::spawn(move || {
                    (0..10).map(|_| VectorIndex::rebuild(&path, db.as_ref(), "m", 8).map(|ix| ix.len())).collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for r in h.join().unwrap() {
                assert_eq!(r, Ok(50));
            }
        }
    }

    #[test]
    fn the_index_is_rebuilt_when_missing_stale_or_corrupt_and_loaded_when_current() {
        let t = tempfile::tempdir().unwrap();
        let db = filled(t.path(), 50);
        let path = t.path().join("memory.usearch");
        let (ix, how) = VectorIndex::open(&path, &db, "m", 8).unwrap();
        assert_eq!(how, Opened::Rebuilt, "no file yet");
        assert_eq!(ix.len(), 50);
        let q = unit(7, 8);
        assert_eq!(ix.search(&q, 1).unwrap()[0].0, 8, "ids are the database's (item 7 is row 8)");
        drop(ix);
        let (ix, how) = VectorIndex::open(&path, &db, "m", 8).unwrap();
        assert_eq!(how, Opened::Loaded);
        assert_eq!(ix.len(), 50);
        drop(ix);
        // A file from before vectors were stored as f16 (its sidecar names no quantization).
        let side: serde_json::Value = serde_json::from_slice(&std::fs::read(sidecar_path(&path)).unwrap()).unwrap();
        let mut old = side.clone();
        old.as_object_mut().unwrap().remove("quantization");
        std::fs::write(sidecar_path(&path), serde_json::to_vec(&old).unwrap()).unwrap();
        let (ix, how) = VectorIndex::open(&path, &db, "m", 8).unwrap();
        assert_eq!((how, ix.len()), (Opened::Rebuilt, 50), "an index stored another way is rebuilt");
        drop(ix);
        // The database moved on while the index was not saved: stale.
        db.insert(&NewMemory { text: "late".into(), kind: "k".into(), ..Default::default() }, Some(("m", &unit(99, 8))), 0).unwrap();
        let (ix, how) = VectorIndex::open(&path, &db, "m", 8).unwrap();
        assert_eq!((how, ix.len()), (Opened::Rebuilt, 51));
        drop(ix);
        // Flipped bytes in the middle of the file: corrupt.
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0xFF;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (ix, how) = VectorIndex::open(&path, &db, "m", 8).unwrap();
        assert_eq!((how, ix.len()), (Opened::Rebuilt, 51));
        drop(ix);
        // Truncated, and the sidecar deleted.
        std::fs::write(&path, &bytes[..100]).unwrap();
        std::fs::remove_file(sidecar_path(&path)).unwrap();
        let (ix, how) = VectorIndex::open(&path, &db, "m", 8).unwrap();
        assert_eq!((how, ix.len()), (Opened::Rebuilt, 51));
        // Another model's vectors are not this index's.
        let (other, _) = VectorIndex::open(&t.path().join("other.usearch"), &db, "other-model", 8).unwrap();
        assert!(other.is_empty());
    }

    #[test]
    fn approximate_search_agrees_with_exact_search() {
        let ix = VectorIndex::in_memory(32, 10).unwrap();
        for i in 0..2000 {
            ix.add(i, &unit(i as u64, 32)).unwrap();
        }
        // recall@10 of `approx` over 50 queries, against exact search on `ix`.
        let recall = |approx: &VectorIndex| {
            let mut hits = 0;
            for qi in 0..50u64 {
                let q = unit(10_000 + qi, 32);
                let found: Vec<i64> = approx.search(&q, 10).unwrap().into_iter().map(|x| x.0).collect();
                let exact: Vec<i64> = ix.exact_search(&q, 10).unwrap().into_iter().map(|x| x.0).collect();
                hits += found.iter().filter(|a| exact.contains(a)).count();
            }
            hits as f64 / 500.0
        };
        let r = recall(&ix);
        assert!(r >= 0.9, "recall@10 {r}");
        // The same vectors added at once, on every core, are found the same way.
        let many = VectorIndex::in_memory(32, 10).unwrap();
        let vs: Vec<(i64, Vec<f32>)> = (0..2000).map(|i| (i, unit(i as u64, 32))).collect();
        let refs: Vec<(i64, &[f32])> = vs.iter().map(|(i, v)| (*i, v.as_slice())).collect();
        many.add_many(&refs).unwrap();
        many.add_many(&refs[..10]).unwrap();
        assert_eq!(many.len(), 2000, "adding an id again replaces it");
        let r = recall(&many);
        assert!(r >= 0.9, "recall@10 after add_many {r}");
        assert!(many.add_many(&[(1, &[0.0; 8][..])]).is_err(), "a vector of the wrong size is refused");
        ix.remove(5).unwrap();
        assert!(ix.search(&unit(5, 32), 1).unwrap()[0].0 != 5, "a removed item is not found");
    }
}
