//! The memory database (`memory.db` beside owl's task database): items, their vectors, an
//! embedding cache by content hash, and an FTS5 full-text index kept in step by triggers.
//! It is the source of truth; the vector index is rebuilt from it whenever in doubt.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// One remembered thing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryItem {
    pub id: i64,
    pub text: String,
    /// conversation, knowledge, task, preference, or a user-defined kind.
    pub kind: String,
    pub tags: Vec<String>,
    /// Where it came from: a file, `task:12`, `chat:3`, `cli`…
    pub source: Option<String>,
    /// The agent it belongs to; `None` is shared by all agents.
    pub agent: Option<String>,
    /// The user it is about; `None` is anyone.
    pub user: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub accessed_at: Option<i64>,
    pub access_count: u64,
}

/// What a caller gives to remember something.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewMemory {
    pub text: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// Which items a listing or search may return.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Every tag listed must be present.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Items of this agent plus the shared ones.
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Created at or after (ms).
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub until: Option<i64>,
}

impl Filter {
    pub fn matches(&self, m: &MemoryItem) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&m.kind))
            && self.tags.iter().all(|t| m.tags.contains(t))
            && (self.agent.is_none() || m.agent.is_none() || m.agent == self.agent)
            && (self.user.is_none() || m.user.is_none() || m.user == self.user)
            && self.since.is_none_or(|s| m.created_at >= s)
            && self.until.is_none_or(|u| m.created_at <= u)
    }
}

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS memories (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    text         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    tags         TEXT    NOT NULL DEFAULT '[]',   -- JSON array
    source       TEXT,
    agent        TEXT,
    user         TEXT,
    hash         TEXT    NOT NULL,                -- of the normalised text
    created_at   INTEGER NOT NULL,
    accessed_at  INTEGER,
    access_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS memories_by_kind ON memories(kind, created_at);
CREATE INDEX IF NOT EXISTS memories_by_hash ON memories(hash);
CREATE TABLE IF NOT EXISTS vectors (
    memory_id INTEGER PRIMARY KEY REFERENCES memories(id) ON DELETE CASCADE,
    model     TEXT NOT NULL,
    vec       BLOB NOT NULL                        -- little-endian f32s
);
CREATE TABLE IF NOT EXISTS embed_cache (
    hash  TEXT NOT NULL,
    model TEXT NOT NULL,
    vec   BLOB NOT NULL,
    PRIMARY KEY (hash, model)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    text, tags, content = 'memories', content_rowid = 'id', tokenize = 'porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, text, tags) VALUES (new.id, new.text, new.tags);
END;
CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, tags) VALUES ('delete', old.id, old.text, old.tags);
END;
CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF text, tags ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, text, tags) VALUES ('delete', old.id, old.text, old.tags);
    INSERT INTO memories_fts(rowid, text, tags) VALUES (new.id, new.text, new.tags);
END;
"#;

pub struct MemoryDb {
    conn: Mutex<Connection>,
}

fn err(e: rusqlite::Error) -> String {
    format!("memory database: {e}")
}

/// The content hash that dedups exact repeats and keys the embedding cache.
pub fn content_hash(text: &str) -> String {
    use sha2::Digest;
    let norm: String = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let d = sha2::Sha256::digest(norm.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

const COLUMNS: &str = "id, text, kind, tags, source, agent, user, created_at, accessed_at, access_count";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryItem> {
    Ok(MemoryItem {
        id: r.get(0)?,
        text: r.get(1)?,
        kind: r.get(2)?,
        tags: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
        source: r.get(4)?,
        agent: r.get(5)?,
        user: r.get(6)?,
        created_at: r.get(7)?,
        accessed_at: r.get(8)?,
        access_count: r.get::<_, i64>(9)? as u64,
    })
}

impl MemoryDb {
    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(MemoryDb { conn: Mutex::new(conn) })
    }

    fn c(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(c: &Connection) -> rusqlite::Result<()> {
        c.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1') \
             ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            [],
        )
        .map(|_| ())
    }
}

/// The memory's database: items, vectors, the embedding cache and full-text search. SQLite
/// beside the data dir ([`MemoryDb`]) for one daemon; PostgreSQL (feature `postgres`) for nodes
/// that share one memory.
pub trait MemoryStore: Send + Sync {
    /// Bumped on every change that affects the vector index; an index built at another
    /// generation is stale.
    fn generation(&self) -> Result<u64, String>;
    /// Stores an item and (when given) its vector in one transaction.
    fn insert(&self, m: &NewMemory, vector: Option<(&str, &[f32])>, now: i64) -> Result<i64, String> {
        Ok(self.insert_many(&[(m, vector)], now)?[0])
    }
    /// Stores many items (each with its vector, when given) in one transaction. Returns their
    /// ids in order.
    fn insert_many(&self, items: &[(&NewMemory, Option<(&str, &[f32])>)], now: i64) -> Result<Vec<i64>, String>;
    /// Merges new tags into an existing item (a near-duplicate was added).
    fn merge_into(&self, id: i64, tags: &[String], now: i64) -> Result<(), String>;
    fn get(&self, id: i64) -> Result<Option<MemoryItem>, String>;
    fn get_many(&self, ids: &[i64]) -> Result<Vec<MemoryItem>, String>;
    /// The first item with exactly this (normalised) text, kind and scope.
    fn find_exact(&self, m: &NewMemory) -> Result<Option<i64>, String>;
    fn delete(&self, id: i64) -> Result<bool, String>;
    /// Deletes items of `kind` created before `before`; returns how many.
    fn expire(&self, kind: &str, before: i64) -> Result<u64, String>;
    /// Newest first, filtered, after `before_id` (paging), at most `limit`.
    fn list(&self, f: &Filter, limit: usize, before_id: Option<i64>) -> Result<Vec<MemoryItem>, String>;
    /// Full-text ranking: ids best first, with scores.
    fn text_search(&self, query: &str, limit: usize) -> Result<Vec<(i64, f64)>, String>;
    /// Every stored vector of `model`, for rebuilding the index.
    fn vectors(&self, model: &str) -> Result<Vec<(i64, Vec<f32>)>, String>;
    fn vector_of(&self, id: i64, model: &str) -> Result<Option<Vec<f32>>, String>;
    /// Items with no vector of `model`.
    fn missing_vectors(&self, model: &str, limit: usize) -> Result<Vec<(i64, String)>, String>;
    fn set_vector(&self, id: i64, model: &str, v: &[f32]) -> Result<(), String>;
    fn cached_embedding(&self, hash: &str, model: &str) -> Result<Option<Vec<f32>>, String>;
    fn cache_embedding(&self, hash: &str, model: &str, v: &[f32]) -> Result<(), String>;
    /// Records that items were handed out by a search.
    fn touch(&self, ids: &[i64], now: i64) -> Result<(), String>;
    /// (items, items with a vector of `model`, items by kind).
    fn stats(&self, model: &str) -> Result<(u64, u64, Vec<(String, u64)>), String>;
}

impl MemoryStore for MemoryDb {
    /// Bumped on every change that affects the vector index; the index file records the
    /// generation it was built at, and a mismatch means rebuild.
    fn generation(&self) -> Result<u64, String> {
        let v: Option<String> =
            self.c().query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| r.get(0)).optional().map_err(err)?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Stores many items (each with its vector, when given) in one transaction: one commit
    /// instead of one per item. Returns their ids in order.
    fn insert_many(&self, items: &[(&NewMemory, Option<(&str, &[f32])>)], now: i64) -> Result<Vec<i64>, String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(err)?;
        let mut ids = Vec::with_capacity(items.len());
        {
            let mut item = tx
                .prepare_cached(
                    "INSERT INTO memories (text, kind, tags, source, agent, user, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            let mut vec = tx.prepare_cached("INSERT INTO vectors (memory_id, model, vec) VALUES (?1, ?2, ?3)").map_err(err)?;
            for (m, vector) in items {
                item.execute(params![
                    m.text,
                    m.kind,
                    serde_json::to_string(&m.tags).expect("tags serialize"),
                    m.source,
                    m.agent,
                    m.user,
                    content_hash(&m.text),
                    now
                ])
                .map_err(err)?;
                let id = tx.last_insert_rowid();
                if let Some((model, v)) = vector {
                    vec.execute(params![id, model, to_blob(v)]).map_err(err)?;
                }
                ids.push(id);
            }
        }
        if !items.is_empty() {
            Self::bump(&tx).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(ids)
    }

    /// Merges new tags and a newer source into an existing item (a near-duplicate was added).
    fn merge_into(&self, id: i64, tags: &[String], now: i64) -> Result<(), String> {
        let c = self.c();
        let old: String = c.query_row("SELECT tags FROM memories WHERE id = ?1", [id], |r| r.get(0)).map_err(err)?;
        let mut all: Vec<String> = serde_json::from_str(&old).unwrap_or_default();
        for t in tags {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        c.execute(
            "UPDATE memories SET tags = ?2, accessed_at = ?3 WHERE id = ?1",
            params![id, serde_json::to_string(&all).expect("tags serialize"), now],
        )
        .map_err(err)?;
        Ok(())
    }

    fn get(&self, id: i64) -> Result<Option<MemoryItem>, String> {
        self.c().query_row(&format!("SELECT {COLUMNS} FROM memories WHERE id = ?1"), [id], row).optional().map_err(err)
    }

    fn get_many(&self, ids: &[i64]) -> Result<Vec<MemoryItem>, String> {
        let c = self.c();
        let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM memories WHERE id = ?1")).map_err(err)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(m) = st.query_row([id], row).optional().map_err(err)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The first item with exactly this (normalised) text, kind and scope.
    fn find_exact(&self, m: &NewMemory) -> Result<Option<i64>, String> {
        self.c()
            .query_row(
                "SELECT id FROM memories WHERE hash = ?1 AND kind = ?2 AND agent IS ?3 AND user IS ?4 ORDER BY id LIMIT 1",
                params![content_hash(&m.text), m.kind, m.agent, m.user],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)
    }

    fn delete(&self, id: i64) -> Result<bool, String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(err)?;
        let n = tx.execute("DELETE FROM memories WHERE id = ?1", [id]).map_err(err)?;
        if n > 0 {
            Self::bump(&tx).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(n > 0)
    }

    /// Deletes items of `kind` created before `before`; returns how many.
    fn expire(&self, kind: &str, before: i64) -> Result<u64, String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(err)?;
        let n = tx.execute("DELETE FROM memories WHERE kind = ?1 AND created_at < ?2", params![kind, before]).map_err(err)?;
        if n > 0 {
            Self::bump(&tx).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(n as u64)
    }

    /// Newest first, filtered, after `before_id` (paging), at most `limit`.
    fn list(&self, f: &Filter, limit: usize, before_id: Option<i64>) -> Result<Vec<MemoryItem>, String> {
        let c = self.c();
        let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM memories WHERE id < ?1 ORDER BY id DESC")).map_err(err)?;
        let rows = st.query_map([before_id.unwrap_or(i64::MAX)], row).map_err(err)?;
        let mut out = Vec::new();
        for r in rows {
            let m = r.map_err(err)?;
            if f.matches(&m) {
                out.push(m);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Full-text BM25 ranking: ids best first (SQLite's bm25 is lower-is-better), with scores.
    fn text_search(&self, query: &str, limit: usize) -> Result<Vec<(i64, f64)>, String> {
        let q = fts_query(query);
        if q.is_empty() {
            return Ok(vec![]);
        }
        let c = self.c();
        let mut st = c
            .prepare_cached("SELECT rowid, bm25(memories_fts) AS s FROM memories_fts WHERE memories_fts MATCH ?1 ORDER BY s LIMIT ?2")
            .map_err(err)?;
        let rows = st.query_map(params![q, limit as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Every stored vector of `model`, for rebuilding the index.
    fn vectors(&self, model: &str) -> Result<Vec<(i64, Vec<f32>)>, String> {
        let c = self.c();
        let mut st = c.prepare("SELECT memory_id, vec FROM vectors WHERE model = ?1 ORDER BY memory_id").map_err(err)?;
        let rows = st.query_map([model], |r| Ok((r.get::<_, i64>(0)?, from_blob(&r.get::<_, Vec<u8>>(1)?)))).map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn vector_of(&self, id: i64, model: &str) -> Result<Option<Vec<f32>>, String> {
        self.c()
            .query_row("SELECT vec FROM vectors WHERE memory_id = ?1 AND model = ?2", params![id, model], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map(|o| o.map(|b| from_blob(&b)))
            .map_err(err)
    }

    /// Items with no vector of `model` (added while no model was available, or under another).
    fn missing_vectors(&self, model: &str, limit: usize) -> Result<Vec<(i64, String)>, String> {
        let c = self.c();
        let mut st = c
            .prepare("SELECT m.id, m.text FROM memories m LEFT JOIN vectors v ON v.memory_id = m.id AND v.model = ?1 WHERE v.memory_id IS NULL ORDER BY m.id LIMIT ?2")
            .map_err(err)?;
        let rows = st.query_map(params![model, limit as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn set_vector(&self, id: i64, model: &str, v: &[f32]) -> Result<(), String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO vectors (memory_id, model, vec) VALUES (?1, ?2, ?3) ON CONFLICT(memory_id) DO UPDATE SET model = excluded.model, vec = excluded.vec",
            params![id, model, to_blob(v)],
        )
        .map_err(err)?;
        Self::bump(&tx).map_err(err)?;
        tx.commit().map_err(err)
    }

    fn cached_embedding(&self, hash: &str, model: &str) -> Result<Option<Vec<f32>>, String> {
        self.c()
            .query_row("SELECT vec FROM embed_cache WHERE hash = ?1 AND model = ?2", params![hash, model], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map(|o| o.map(|b| from_blob(&b)))
            .map_err(err)
    }

    fn cache_embedding(&self, hash: &str, model: &str, v: &[f32]) -> Result<(), String> {
        self.c()
            .execute("INSERT OR REPLACE INTO embed_cache (hash, model, vec) VALUES (?1, ?2, ?3)", params![hash, model, to_blob(v)])
            .map(|_| ())
            .map_err(err)
    }

    /// Records that items were handed out by a search.
    fn touch(&self, ids: &[i64], now: i64) -> Result<(), String> {
        let mut c = self.c();
        let tx = c.transaction().map_err(err)?;
        for id in ids {
            tx.execute("UPDATE memories SET accessed_at = ?2, access_count = access_count + 1 WHERE id = ?1", params![id, now])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// (items, items with a vector of `model`, items by kind).
    fn stats(&self, model: &str) -> Result<(u64, u64, Vec<(String, u64)>), String> {
        let c = self.c();
        let total: i64 = c.query_row("SELECT count(*) FROM memories", [], |r| r.get(0)).map_err(err)?;
        let vec: i64 = c.query_row("SELECT count(*) FROM vectors WHERE model = ?1", [model], |r| r.get(0)).map_err(err)?;
        let mut st = c.prepare("SELECT kind, count(*) FROM memories GROUP BY kind ORDER BY kind").map_err(err)?;
        let kinds =
            st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))).map_err(err)?.collect::<Result<Vec<_>, _>>().map_err(err)?;
        Ok((total as u64, vec as u64, kinds))
    }
}

/// A user's words as an FTS5 query: each word quoted (no operators can be injected), joined
/// with OR so that any matching word counts and BM25 ranks by how many and how rare.
pub fn fts_query(q: &str) -> String {
    q.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.to_lowercase()))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(text: &str, kind: &str) -> NewMemory {
        NewMemory { text: text.into(), kind: kind.into(), ..Default::default() }
    }

    #[test]
    fn items_round_trip_are_searchable_and_deletable() {
        let t = tempfile::tempdir().unwrap();
        round_trip(&MemoryDb::open(&t.path().join("memory.db")).unwrap());
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn items_round_trip_are_searchable_and_deletable_on_postgres() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let url = rt.block_on(owl_store_postgres::testing::fresh_schema()).unwrap();
        round_trip(&crate::pg::PgMemory::open(&url).unwrap());
    }

    /// What every memory store does.
    pub(crate) fn round_trip(db: &dyn MemoryStore) {
        let g0 = db.generation().unwrap();
        let a = db
            .insert(
                &NewMemory { tags: vec!["style".into()], ..mem("The user prefers concise answers", "preference") },
                Some(("m", &[1.0, 0.0])),
                10,
            )
            .unwrap();
        let b = db.insert(&mem("Deploys happen on Tuesdays", "knowledge"), None, 20).unwrap();
        assert!(db.generation().unwrap() > g0);
        assert_eq!(db.get(a).unwrap().unwrap().tags, vec!["style"]);
        let hits = db.text_search("how concise should ANSWERS be?", 10).unwrap();
        assert_eq!(hits[0].0, a);
        assert!(db.text_search("\" OR NEAR(", 10).is_ok(), "operators are quoted, not parsed");
        assert_eq!(db.find_exact(&mem("the user  prefers CONCISE answers", "preference")).unwrap(), Some(a));
        assert_eq!(db.find_exact(&mem("the user prefers concise answers", "knowledge")).unwrap(), None);
        assert_eq!(db.vectors("m").unwrap(), vec![(a, vec![1.0, 0.0])]);
        assert_eq!(db.missing_vectors("m", 10).unwrap(), vec![(b, "Deploys happen on Tuesdays".to_string())]);
        let f = Filter { kinds: vec!["knowledge".into()], ..Default::default() };
        assert_eq!(db.list(&f, 10, None).unwrap().iter().map(|m| m.id).collect::<Vec<_>>(), vec![b]);
        assert!(db.delete(a).unwrap());
        assert!(db.text_search("concise", 10).unwrap().is_empty(), "the full-text index follows deletes");
        assert!(db.vectors("m").unwrap().is_empty(), "vectors go with their item");
        assert_eq!(db.expire("knowledge", 21).unwrap(), 1);
        assert_eq!(db.stats("m").unwrap().0, 0);
    }
}
