//! Tests against real processes.

use super::*;
use std::os::unix::process::CommandExt;
use std::time::Instant;

fn spec(dir: &std::path::Path, script: &str) -> ProcessSpec {
    ProcessSpec {
        stdout_tap: None,
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("OWL_TEST_VAR".into(), "hello".into())],
        cwd: dir.to_path_buf(),
        log_path: dir.join("logs/1.log"),
        log_max_bytes: 1024 * 1024,
        timeout: None,
        kill_grace: Duration::from_millis(300),
        env_remove: vec![],
    }
}

async fn go(spec: ProcessSpec) -> (ProcessOutcome, String) {
    let (_stop_tx, stop_rx) = watch::channel(None);
    let (ptx, _prx) = watch::channel(0);
    let path = spec.log_path.clone();
    let out = run(spec, stop_rx, ptx).await;
    (out, std::fs::read_to_string(path).unwrap_or_default())
}

/// Waits up to two seconds for `pid` to be gone (signal delivery is asynchronous).
async fn gone_soon(pid: i32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; a zombie reaped by init disappears quickly.
    nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z")).unwrap_or(true)
}

async fn wait_pid_file(path: &std::path::Path) -> i32 {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("pid file {} never appeared", path.display());
}

#[tokio::test]
async fn captures_both_streams_env_and_cwd() {
    let d = tempfile::tempdir().unwrap();
    let (out, log) = go(spec(d.path(), "echo out; echo err >&2; echo $OWL_TEST_VAR; pwd")).await;
    assert!(out.success(), "{out:?}");
    assert!(log.contains("out\n") && log.contains("err\n") && log.contains("hello\n"), "{log}");
    assert!(log.contains(d.path().to_str().unwrap()), "{log}");
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = go(spec(d.path(), "exit 7")).await;
    assert_eq!((out.ended.clone(), out.exit_code, out.signal), (Ended::Exited, Some(7), None));
    assert!(!out.success());
    let (out, _) = go(spec(d.path(), "kill -9 $$")).await;
    assert_eq!((out.exit_code, out.signal), (None, Some(9)));
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec(d.path(), "sleep 60 & echo $! > child.pid; wait");
    s.timeout = Some(Duration::from_millis(400));
    let started = Instant::now();
    let (out, log) = go(s).await;
    assert_eq!(out.ended, Ended::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
    let child = wait_pid_file(&d.path().join("child.pid")).await;
    assert!(gone_soon(child).await, "the background child {child} survived the timeout");
    assert!(log.contains("timed out"), "{log}");
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec(d.path(), "trap '' TERM; echo ready; while :; do sleep 0.05; done");
    s.timeout = Some(Duration::from_millis(300));
    s.kill_grace = Duration::from_millis(300);
    let started = Instant::now();
    let (out, _) = go(s).await;
    assert_eq!(out.ended, Ended::TimedOut);
    assert_eq!(out.signal, Some(9), "SIGKILL ends what ignores SIGTERM");
    assert!(started.elapsed() >= Duration::from_millis(550));
}

#[tokio::test]
async fn a_stop_request_cancels_and_reports_it() {
    let d = tempfile::tempdir().unwrap();
    let (stop_tx, stop_rx) = watch::channel(None);
    let (ptx, _prx) = watch::channel(0);
    let s = spec(d.path(), "echo started; sleep 60");
    let h = tokio::spawn(run(s, stop_rx, ptx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(Some(Stop::Cancel(Some("no longer needed".into())))).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), h).await.unwrap().unwrap();
    assert_eq!(out.ended, Ended::Stopped(Stop::Cancel(Some("no longer needed".into()))));
    assert_eq!(out.signal, Some(15));
}

#[tokio::test]
async fn stragglers_are_killed_when_the_main_process_exits() {
    let d = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (out, _) = go(spec(d.path(), "sleep 60 & echo $! > bg.pid; exit 0")).await;
    assert!(out.success());
    assert!(started.elapsed() < Duration::from_secs(5), "did not wait for the straggler's pipe");
    let bg = wait_pid_file(&d.path().join("bg.pid")).await;
    assert!(gone_soon(bg).await, "background process {bg} outlived its task");
}

#[tokio::test]
async fn the_log_is_capped_with_a_visible_marker() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec(d.path(), "head -c 200000 /dev/zero | tr '\\0' 'x'; echo; echo tail-line");
    s.log_max_bytes = 4096;
    let (out, log) = go(s).await;
    assert!(out.success());
    assert!(log.len() < 4096 + 400, "log is {} bytes", log.len());
    assert!(log.contains(TRUNCATION_MARKER_PREFIX), "{}", &log[log.len().saturating_sub(300)..]);
    assert!(!log.contains("tail-line"));
    assert!(log.contains("bytes of output were discarded"));
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_failure_with_the_reason_in_the_log() {
    let d = tempfile::tempdir().unwrap();
    let mut s = spec(d.path(), "");
    s.argv = vec!["/nonexistent/owl-test-binary".into()];
    let (out, log) = go(s).await;
    match out.ended {
        Ended::SpawnFailed(m) => assert!(m.contains("/nonexistent/owl-test-binary") && m.contains("No such file"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(log.contains("cannot start"), "{log}");
}

#[tokio::test]
async fn orphaned_groups_are_found_by_their_environment_and_only_those() {
    let spawn = |attempt: &str| {
        std::process::Command::new("sh")
            .args(["-c", "sleep 60 & wait"])
            .env("OWL_TEST_ORPHAN_MARK", "kill-orphans-test")
            .env("OWL_ATTEMPT", attempt)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    // Stand-ins for what a crashed daemon left: one attempt to stop, one to leave alone.
    let mut target = spawn("2");
    let mut other = spawn("3");
    std::thread::sleep(Duration::from_millis(100));
    let is = |vars: &[&[u8]], v: &[u8]| vars.contains(&v);
    let killed = kill_orphans(|vars| is(vars, b"OWL_TEST_ORPHAN_MARK=kill-orphans-test") && is(vars, b"OWL_ATTEMPT=2"));
    assert_eq!(killed, 1, "one group (leader and its sleep child) is killed");
    let st = target.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    assert!(other.try_wait().unwrap().is_none(), "a process with other markers is left alone");
    // The killed `sleep` child is reparented and reaped by someone else, and SIGKILL takes effect
    // asynchronously: give it a moment to be gone, then nothing matching may be left.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = usize::MAX;
    while left != 0 && std::time::Instant::now() < deadline {
        left = kill_orphans(|vars| is(vars, b"OWL_TEST_ORPHAN_MARK=kill-orphans-test") && is(vars, b"OWL_ATTEMPT=2"));
        if left != 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(left, 0, "after the kill, no process of that attempt is left");
    killpg(Pid::from_raw(other.id() as i32), Signal::SIGKILL).unwrap();
    other.wait().unwrap();
}

#[tokio::test]
async fn withheld_variables_do_not_reach_the_child() {
    let d = tempfile::tempdir().unwrap();
    assert!(std::env::var_os("HOME").is_some(), "the test needs HOME in its own environment");
    let mut s = spec(d.path(), "echo home=${HOME:-withheld}");
    s.env_remove = vec!["HOME".into()];
    let (out, log) = go(s).await;
    assert!(out.success());
    assert_eq!(log, "home=withheld\n");
}
