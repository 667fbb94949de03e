//! A small pool of read-only connections; WAL lets them read while the writer commits.

use owl_store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::Mutex;

pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MAX_IDLE: usize = 4;

impl ReaderPool {
    pub fn new(path: PathBuf) -> Self {
        ReaderPool { path, idle: Mutex::new(Vec::new()) }
    }

    pub fn with<R>(&self, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(crate::backend)?;
                c.execute_batch("PRAGMA busy_timeout=10000; PRAGMA query_only=1;").map_err(crate::backend)?;
                c
            }
        };
        // Each read is one transaction so multi-query reads see one consistent snapshot.
        conn.execute_batch("BEGIN").map_err(crate::backend)?;
        let r = f(&conn);
        let _ = conn.execute_batch("COMMIT");
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        r
    }
}
