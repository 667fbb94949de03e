//! owl-store-sqlite: the embedded SQLite backend of [`owl_store::Store`].
//!
//! **Durability with throughput.** One writer thread owns the only write connection. Writes
//! arriving while a commit is in flight queue up and are applied together in the next
//! transaction (group commit), each inside its own savepoint so one failing request does not
//! affect the others. With `synchronous=FULL` a reply is sent only after that transaction's
//! commit reached the disk. Reads run on a small pool of read-only connections, which WAL
//! mode lets proceed while the writer commits.

mod admin;
mod agent_records;
mod budget;
mod insights;
mod notify;
mod pool;
mod rows;
mod run_ops;
mod schedules;
mod schema;
mod submit;
mod team;
mod transitions;
mod triggers;

use owl_store::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

pub use schema::MIGRATIONS;

/// How hard each commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk before it is acknowledged (the default).
    Full,
    /// `synchronous=NORMAL`: survives a process crash but may lose the last commits on power loss.
    Normal,
}

/// The largest number of queued writes grouped into one transaction.
const MAX_GROUP: usize = 1024;

type Finisher = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Finisher) + Send>;

pub struct SqliteStore {
    writer: mpsc::Sender<WriteJob>,
    readers: Arc<pool::ReaderPool>,
    path: PathBuf,
    /// Past this many bytes the write-ahead log is checkpointed and truncated.
    wal_limit: Arc<std::sync::atomic::AtomicU64>,
}

/// The default `[store] wal_checkpoint_mb`.
pub const WAL_LIMIT: u64 = 64 * 1024 * 1024;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=OFF;"
        ))
        .map_err(backend)?;
        schema::migrate(&conn)?;
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let wal_limit = Arc::new(std::sync::atomic::AtomicU64::new(WAL_LIMIT));
        let wal = Wal { path: wal_path(path), limit: wal_limit.clone(), checked: std::time::Instant::now() };
        std::thread::Builder::new()
            .name("owl-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, wal))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore { writer: tx, readers: Arc::new(pool::ReaderPool::new(path.to_path_buf())), path: path.to_path_buf(), wal_limit })
    }

    /// Checkpoints and truncates the write-ahead log once it grows past `bytes` (SQLite's own
    /// checkpoints reuse the file but never shrink it, and a reader holding a snapshot lets it
    /// grow without bound).
    pub fn set_wal_limit(&self, bytes: u64) {
        self.wal_limit.store(bytes.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the next group-committed transaction and returns its result once the
    /// transaction is durable.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let finish: Finisher = Box::new(move |commit| {
                let _ = tx.send(match (result, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                });
            });
            (ok, finish)
        });
        self.writer.send(job).map_err(|_| StoreError::Backend("the database writer has stopped".into()))?;
        rx.await.map_err(|_| StoreError::Backend("the database writer stopped before committing".into()))?
    }

    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(f)).await.map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// What the writer needs to keep the write-ahead log small.
struct Wal {
    path: PathBuf,
    limit: Arc<std::sync::atomic::AtomicU64>,
    checked: std::time::Instant,
}

impl Wal {
    /// At most once a second, between transactions: truncate the log if it is past its limit.
    fn maybe_checkpoint(&mut self, conn: &Connection) {
        if self.checked.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        self.checked = std::time::Instant::now();
        let limit = self.limit.load(std::sync::atomic::Ordering::Relaxed);
        let Ok(size) = std::fs::metadata(&self.path).map(|m| m.len()) else { return };
        if size <= limit {
            return;
        }
        // Never wait on readers here: every write queues behind this thread. A reader with an
        // old snapshot makes it answer busy at once, and it tries again a second later.
        let _ = conn.busy_timeout(std::time::Duration::ZERO);
        let r = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
        let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
        match r {
            Ok(0) => tracing::info!(wal_bytes = size, limit, "checkpointed and truncated the database's write-ahead log"),
            Ok(_) => tracing::warn!(wal_bytes = size, "the write-ahead log could not be truncated yet: a reader holds an old snapshot"),
            Err(e) => tracing::warn!(error = %e, "checkpointing the write-ahead log failed"),
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<WriteJob>, mut wal: Wal) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut finishers = Vec::with_capacity(jobs.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = format!("cannot begin a transaction: {e}");
            for job in jobs {
                // The job never ran: report the failure through a finisher built for it.
                let (_, fin) = run_job_failed(job, &conn);
                fin(Err(StoreError::Backend(msg.clone())));
            }
            continue;
        }
        for job in jobs {
            if let Err(e) = conn.execute_batch("SAVEPOINT op") {
                let (_, fin) = run_job_failed(job, &conn);
                fin(Err(StoreError::Backend(format!("savepoint: {e}"))));
                continue;
            }
            let (ok, fin) = job(&conn);
            let end = if ok { "RELEASE op" } else { "ROLLBACK TO op; RELEASE op" };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "savepoint release failed");
            }
            finishers.push(fin);
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Backend(format!("commit failed: {e}"))
        });
        for fin in finishers {
            fin(match &commit {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            });
        }
        wal.maybe_checkpoint(&conn);
    }
}

/// Builds the finisher of a job that could not run, without running its body against a
/// transaction: the body runs inside a savepoint that is rolled back at once.
fn run_job_failed(job: WriteJob, conn: &Connection) -> (bool, Finisher) {
    let _ = conn.execute_batch("SAVEPOINT dead");
    let r = job(conn);
    let _ = conn.execute_batch("ROLLBACK TO dead; RELEASE dead");
    r
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn make() -> (Arc<dyn owl_store::Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), Durability::Full).unwrap();
        (Arc::new(store) as Arc<dyn owl_store::Store>, dir)
    }

    owl_store::conformance_tests!(make());

    #[tokio::test]
    async fn reopening_keeps_everything_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let id = {
            let s: Arc<dyn owl_store::Store> = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
            s.submit(vec![owl_store::NewTask::new(owl_store::conformance::spec("echo"))], owl_core::Timestamp(1)).await.unwrap()[0].id
        };
        let s: Arc<dyn owl_store::Store> = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
        assert_eq!(s.get(id).await.unwrap().id, id);
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
    }

    #[tokio::test]
    async fn the_write_ahead_log_is_truncated_once_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        store.set_wal_limit(1024 * 1024);
        let s: Arc<dyn owl_store::Store> = Arc::new(store);
        let mut big = owl_store::conformance::spec("echo");
        big.env.insert("PAYLOAD".into(), "x".repeat(60_000));
        for _ in 0..40 {
            s.submit(vec![owl_store::NewTask::new(big.clone())], owl_core::Timestamp(1)).await.unwrap();
        }
        let wal = wal_path(&path);
        assert!(std::fs::metadata(&wal).unwrap().len() > 1024 * 1024, "the log grew past the limit");
        // The next commit a second later checks it.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        s.submit(vec![owl_store::NewTask::new(owl_store::conformance::spec("echo"))], owl_core::Timestamp(1)).await.unwrap();
        // Right after that commit's reply, so replies never wait on it.
        let mut size = u64::MAX;
        for _ in 0..100 {
            size = std::fs::metadata(&wal).unwrap().len();
            if size == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(size, 0, "truncated");
        assert_eq!(s.counts().await.unwrap().get(owl_core::task::Status::Queued), 41, "nothing lost");
    }

    #[tokio::test]
    async fn migration_9_finds_each_schedules_last_success_in_its_history() {
        use owl_store::{ApplyFires, Claim, Completion, FireAction, FireDecision};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let t = |s: i64| owl_core::Timestamp(1_800_000_000_000 + s * 1000);
        {
            let s: Arc<dyn owl_store::Store> = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
            let sch = s.create_schedule(owl_store::conformance::schedule_spec("nightly"), Some(t(60)), t(0)).await.unwrap();
            s.create_schedule(owl_store::conformance::schedule_spec("never"), Some(t(60)), t(0)).await.unwrap();
            let pass = ApplyFires {
                schedule_id: sch.id,
                expected_next: Some(t(60)),
                decisions: vec![FireDecision { slot: t(60), action: FireAction::Fire(owl_store::conformance::spec("echo")) }],
                next_fire_at: Some(t(120)),
                finished: false,
                pending_slot: None,
                now: t(60),
            };
            s.apply_fires(pass).await.unwrap();
            let c = s.claim(Claim { node: "n".into(), now: t(61), lease: std::time::Duration::from_secs(30), limit: 1 }).await.unwrap();
            let done = Completion {
                id: c[0].id,
                attempt: c[0].attempt,
                outcome: owl_core::RunOutcome::Succeeded,
                exit_code: Some(0),
                signal: None,
                now: t(65),
                policy: Default::default(),
                jitter: 0.0,
            };
            s.complete(done).await.unwrap();
        }
        // Back to what version 8 wrote.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE schedules DROP COLUMN last_success_at; ALTER TABLE schedules DROP COLUMN last_success_ms; \
             ALTER TABLE schedules DROP COLUMN active_since; \
             DROP TABLE run_samples; DROP TABLE anomalies; \
             DROP TABLE notify_channels; DROP TABLE notify_rules; DROP TABLE notify_outbox; \
             DROP TABLE budget_ledger; ALTER TABLE usage DROP COLUMN price; \
             DROP TABLE messages; DROP TABLE message_deliveries; DROP TABLE agent_state; \
             DELETE FROM schema_migrations WHERE version >= 9;",
        )
        .unwrap();
        drop(conn);
        let s: Arc<dyn owl_store::Store> = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
        let n = s.get_schedule("nightly").await.unwrap();
        assert_eq!((n.last_success_at, n.last_success_ms), (Some(t(65)), Some(4000)));
        assert_eq!(s.get_schedule("never").await.unwrap().last_success_at, None);
    }

    #[tokio::test]
    async fn migration_7_turns_owl_labels_into_a_typed_origin_and_maker() {
        use owl_core::agent::Owner;
        use owl_core::task::Origin;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let id = {
            let s: Arc<dyn owl_store::Store> = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
            let mut made = owl_store::conformance::schedule_spec("agent-made");
            made.template.labels = vec!["owl:created-by=chat:3".into(), "owl:by-agent".into(), "mine".into()];
            s.create_schedule(made, None, owl_core::Timestamp(1)).await.unwrap();
            s.create_schedule(owl_store::conformance::schedule_spec("by-hand"), None, owl_core::Timestamp(1)).await.unwrap();
            let mut t = owl_store::conformance::spec("echo");
            t.labels = vec!["owl:depth=2".into(), "keep".into(), "owl:parent=task:15".into()];
            s.submit(vec![owl_store::NewTask::new(t)], owl_core::Timestamp(1)).await.unwrap()[0].id
        };
        // Back to what version 6 wrote.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE tasks DROP COLUMN origin; DROP TABLE nodes; DROP TABLE run_samples; DROP TABLE anomalies; \
             DROP TABLE notify_channels; DROP TABLE notify_rules; DROP TABLE notify_outbox; \
             DROP TABLE budget_ledger; ALTER TABLE usage DROP COLUMN price; \
             DROP TABLE messages; DROP TABLE message_deliveries; DROP TABLE agent_state; \
             DELETE FROM schema_migrations WHERE version >= 7; \
             ALTER TABLE schedules DROP COLUMN last_success_at; ALTER TABLE schedules DROP COLUMN last_success_ms; \
             ALTER TABLE schedules DROP COLUMN active_since; \
             UPDATE schedules SET spec = json_remove(spec, '$.created_by');",
        )
        .unwrap();
        drop(conn);
        let s: Arc<dyn owl_store::Store> = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
        let t = s.get(id).await.unwrap();
        assert_eq!(t.spec.origin, Some(Origin::Agent { parent: Owner::Task(owl_core::TaskId(15)), depth: 2 }));
        assert_eq!(t.spec.labels, vec!["keep".to_string()]);
        let made = s.get_schedule("agent-made").await.unwrap();
        assert_eq!(made.spec.created_by, Some(Owner::Chat(3)));
        assert_eq!(made.spec.template.labels, vec!["mine".to_string()]);
        assert_eq!(s.get_schedule("by-hand").await.unwrap().spec.created_by, None);
    }

    #[tokio::test]
    async fn a_database_from_a_newer_owl_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(&path, Durability::Full).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (999, 'future', 0)", []).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path, Durability::Full).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[tokio::test]
    async fn the_database_is_in_wal_mode() {
        let (store, dir) = make().await;
        drop(store);
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }
}
