//! The per-attempt log file: capped, with a visible marker where output was dropped.

use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

pub const TRUNCATION_MARKER_PREFIX: &str = "[owl] output truncated";

pub struct LogSink {
    file: tokio::fs::File,
    written: u64,
    cap: u64,
    truncated: bool,
    dropped: u64,
    progress: watch::Sender<u64>,
}

impl LogSink {
    pub async fn create(path: &Path, cap: u64, progress: watch::Sender<u64>) -> std::io::Result<LogSink> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path).await?;
        Ok(LogSink { file, written: 0, cap, truncated: false, dropped: 0, progress })
    }

    /// Appends task output, up to the cap.
    pub async fn write(&mut self, data: &[u8]) {
        if self.truncated {
            self.dropped += data.len() as u64;
            return;
        }
        let room = self.cap.saturating_sub(self.written) as usize;
        let take = room.min(data.len());
        self.raw(&data[..take]).await;
        if take < data.len() {
            self.truncated = true;
            self.dropped += (data.len() - take) as u64;
            let marker =
                format!("\n{TRUNCATION_MARKER_PREFIX}: the log reached its cap of {} bytes; further output is discarded\n", self.cap);
            self.raw(marker.as_bytes()).await;
        }
    }

    /// Appends owl's own notes, which are never dropped.
    pub async fn write_note(&mut self, note: &[u8]) {
        if self.truncated && self.dropped > 0 {
            let n = format!("[owl] {} bytes of output were discarded\n", self.dropped);
            self.raw(n.as_bytes()).await;
            self.dropped = 0;
        }
        self.raw(note).await;
    }

    pub async fn flush(&mut self) {
        if self.truncated && self.dropped > 0 {
            self.write_note(b"").await;
        }
        let _ = self.file.flush().await;
    }

    async fn raw(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.file.write_all(data).await.is_ok() {
            self.written += data.len() as u64;
            let _ = self.file.flush().await;
            self.progress.send_replace(self.written);
        }
    }
}
