//! Where things live inside a data directory. Paths only; creating them is the caller's job.

use crate::task::TaskId;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataLayout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("owl.db")
    }
    /// Held (flock) by the running daemon so two daemons never share a data dir.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    /// JSON with the address the daemon bound and its pid; the CLI reads it to find the daemon.
    pub fn daemon_file(&self) -> PathBuf {
        self.root.join("daemon.json")
    }
    /// The API bearer token (mode 0600), created at first start.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("token")
    }
    pub fn workspaces(&self) -> PathBuf {
        self.root.join("workspaces")
    }
    pub fn workspace(&self, id: TaskId) -> PathBuf {
        self.workspaces().join(id.0.to_string())
    }
    /// Git worktrees of repository tasks.
    pub fn worktree(&self, id: TaskId) -> PathBuf {
        self.root.join("worktrees").join(id.0.to_string())
    }
    /// Where the daily reports are written unless `[reports] dir` says otherwise.
    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// One flat directory of `<id>.<attempt>.log` files: a directory per task would cost an
    /// extra inode allocation per task, which is measurable when thousands of tasks churn.
    pub fn log_file(&self, id: TaskId, attempt: u32) -> PathBuf {
        self.logs().join(format!("{}.{attempt}.log", id.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_root_and_per_attempt() {
        let l = DataLayout::new("/d");
        assert_eq!(l.log_file(TaskId(12), 3), PathBuf::from("/d/logs/12.3.log"));
        assert_eq!(l.workspace(TaskId(12)), PathBuf::from("/d/workspaces/12"));
        assert_eq!(l.database(), PathBuf::from("/d/owl.db"));
    }
}
