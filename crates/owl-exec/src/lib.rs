//! owl-exec: running a task's process.
//!
//! A task's program runs in its own process group, with stdin closed and stdout and stderr
//! captured into one log file per attempt, capped in size. A timeout, a cancel or a daemon
//! shutdown ends the *whole group* (SIGTERM, a grace period, then SIGKILL), so nothing a task
//! started outlives it. When the main process exits, stragglers left in its group are killed.
//! This crate knows nothing of the store or the engine: it runs one process and reports how
//! it ended.

mod log;

pub use log::{LogSink, TRUNCATION_MARKER_PREFIX};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// Everything needed to run one attempt.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    /// Added to (or replacing) the daemon's own environment.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL when the group is stopped.
    pub kill_grace: Duration,
    /// Variables of the daemon's own environment the child must not inherit (secrets).
    pub env_remove: Vec<String>,
    /// Also receives everything the process writes to stdout, as it comes (the engine reads
    /// a coding CLI's streamed events from it). The log gets it all the same.
    pub stdout_tap: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
}

/// A request to stop a running process, sent by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Cancel(Option<String>),
    /// The daemon is shutting down or lost the lease: stop, and the task will be requeued.
    Interrupt(String),
}

/// How the attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited,
    TimedOut,
    Stopped(Stop),
    SpawnFailed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOutcome {
    pub ended: Ended,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub pid: Option<u32>,
}

impl ProcessOutcome {
    pub fn success(&self) -> bool {
        self.ended == Ended::Exited && self.exit_code == Some(0)
    }
}

/// Runs the process to its end. `stop` asks it to end early; `progress` receives the log
/// file's length after every write, so followers can stream it live.
pub async fn run(spec: ProcessSpec, mut stop: watch::Receiver<Option<Stop>>, progress: watch::Sender<u64>) -> ProcessOutcome {
    let sink = match LogSink::create(&spec.log_path, spec.log_max_bytes, progress) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            return ProcessOutcome {
                ended: Ended::SpawnFailed(format!("cannot create the log file {}: {e}", spec.log_path.display())),
                exit_code: None,
                signal: None,
                pid: None,
            }
        }
    };
    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    cmd.args(&spec.argv[1..])
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot start `{}`: {e}", spec.argv[0]);
            lock(&sink).write(format!("[owl] {msg}\n").as_bytes());
            return ProcessOutcome { ended: Ended::SpawnFailed(msg), exit_code: None, signal: None, pid: None };
        }
    };
    let pid = child.id();
    let readers = [
        child.stdout.take().map(|s| tokio::spawn(pump(s, sink.clone(), spec.stdout_tap.clone()))),
        child.stderr.take().map(|s| tokio::spawn(pump(s, sink.clone(), None))),
    ];
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    // A stop requested before we started watching still counts.
    let already: Option<Stop> = stop.borrow_and_update().clone();
    let (status, ended) = if let Some(s) = already {
        (terminate(&mut child, pid, spec.kill_grace).await, Ended::Stopped(s))
    } else {
        tokio::select! {
            st = child.wait() => (st.ok(), Ended::Exited),
            _ = &mut timeout => (terminate(&mut child, pid, spec.kill_grace).await, Ended::TimedOut),
            s = wait_stop(&mut stop) => (terminate(&mut child, pid, spec.kill_grace).await, Ended::Stopped(s)),
        }
    };
    // Stragglers in the group would hold the pipes open; the task is over, so they go too.
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    for r in readers.into_iter().flatten() {
        // A process that left the group could still hold a pipe; do not wait on it forever.
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), r).await.is_err() {
            abort.abort();
        }
    }
    let note = match &ended {
        Ended::TimedOut => {
            Some(format!("[owl] timed out after {}; the process group was stopped\n", fmt_dur(spec.timeout.unwrap_or_default())))
        }
        Ended::Stopped(Stop::Cancel(_)) => Some("[owl] cancelled; the process group was stopped\n".to_string()),
        Ended::Stopped(Stop::Interrupt(why)) => Some(format!("[owl] interrupted ({why}); the task will run again\n")),
        _ => None,
    };
    if let Some(n) = note {
        lock(&sink).write_note(n.as_bytes());
    }
    lock(&sink).finish();
    ProcessOutcome { ended, exit_code: status.and_then(|s| s.code()), signal: status.and_then(|s| s.signal()), pid }
}

/// Stops the process groups of every process whose environment satisfies `matches` (given
/// the process's `NAME=value` entries), never this process's own group. A daemon restarted
/// after a crash uses it to find what the crashed daemon left running: each task's
/// environment carries markers (data dir, task id, attempt) that a recycled pid of an
/// unrelated process cannot have. Returns how many groups were killed.
pub fn kill_orphans(matches: impl Fn(&[&[u8]]) -> bool) -> usize {
    let own_group = nix::unistd::getpgrp();
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut groups = std::collections::BTreeSet::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if is_dead(pid) {
            // A zombie (or a process already on its way out) needs no signal; its group may
            // still exist until its parent reaps it, which would count as a kill that was not.
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !matches(&vars) {
            continue;
        }
        if let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(pid))) {
            if pgid != own_group {
                groups.insert(pgid.as_raw());
            }
        }
    }
    groups.into_iter().filter(|g| killpg(Pid::from_raw(*g), Signal::SIGKILL).is_ok()).count()
}

/// True when `/proc/<pid>/stat` says the process is a zombie or dead (or is gone).
fn is_dead(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    // The state follows the last ')' (the command name may itself contain parentheses).
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('Z' | 'X' | 'x'))
}

fn fmt_dur(d: Duration) -> String {
    format!("{:?}", d)
}

async fn wait_stop(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if stop.changed().await.is_err() {
            // The engine dropped its handle: nobody can stop us any more.
            return std::future::pending().await;
        }
        if let Some(s) = stop.borrow_and_update().clone() {
            return s;
        }
    }
}

/// SIGTERM to the group, then SIGKILL after `grace` if the main process is still alive.
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>, grace: Duration) -> Option<std::process::ExitStatus> {
    let Some(pid) = pid else { return child.wait().await.ok() };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(st) => st.ok(),
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            child.wait().await.ok()
        }
    }
}

fn lock(sink: &Mutex<LogSink>) -> std::sync::MutexGuard<'_, LogSink> {
    // A panic while holding the lock cannot leave the sink inconsistent enough to matter.
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

async fn pump(
    mut src: impl tokio::io::AsyncRead + Unpin,
    sink: Arc<Mutex<LogSink>>,
    tap: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                lock(&sink).write(&buf[..n]);
                if let Some(t) = &tap {
                    let _ = t.send(buf[..n].to_vec());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
