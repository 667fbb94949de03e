//! The per-attempt log file: capped, with a visible marker where output was dropped.
//!
//! Writes are plain synchronous writes to the page cache: each takes microseconds, far less
//! than a hop to a blocking thread pool would cost, so the async reader tasks call them directly.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use tokio::sync::watch;

pub const TRUNCATION_MARKER_PREFIX: &str = "[owl] output truncated";

pub struct LogSink {
    file: File,
    written: u64,
    cap: u64,
    truncated: bool,
    dropped: u64,
    progress: watch::Sender<u64>,
}

impl LogSink {
    pub fn create(path: &Path, cap: u64, progress: watch::Sender<u64>) -> std::io::Result<LogSink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Appended to: owl's own notes about the attempt (its worktree, its budget) come first.
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = progress.send(written);
        Ok(LogSink { file, written, cap: cap.saturating_add(written), truncated: false, dropped: 0, progress })
    }

    /// Appends task output, up to the cap.
    pub fn write(&mut self, data: &[u8]) {
        if self.truncated {
            self.dropped += data.len() as u64;
            return;
        }
        let room = self.cap.saturating_sub(self.written) as usize;
        let take = room.min(data.len());
        self.raw(&data[..take]);
        if take < data.len() {
            self.truncated = true;
            self.dropped += (data.len() - take) as u64;
            let marker =
                format!("\n{TRUNCATION_MARKER_PREFIX}: the log reached its cap of {} bytes; further output is discarded\n", self.cap);
            self.raw(marker.as_bytes());
        }
    }

    /// Appends owl's own notes, which are never dropped.
    pub fn write_note(&mut self, note: &[u8]) {
        if self.truncated && self.dropped > 0 {
            let n = format!("[owl] {} bytes of output were discarded\n", self.dropped);
            self.raw(n.as_bytes());
            self.dropped = 0;
        }
        self.raw(note);
    }

    pub fn finish(&mut self) {
        if self.truncated && self.dropped > 0 {
            self.write_note(b"");
        }
    }

    fn raw(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.file.write_all(data).is_ok() {
            self.written += data.len() as u64;
            self.progress.send_replace(self.written);
        }
    }
}
