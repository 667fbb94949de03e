//! Signals: graceful shutdown, reload.

use crate::harness::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

#[test]
fn sigterm_lets_tasks_finish_within_the_grace_then_requeues_the_rest_without_using_an_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut d = Daemon::start(&dir, &[("OWL_DAEMON_SHUTDOWN_GRACE", "1s"), ("OWL_DAEMON_KILL_GRACE", "300ms")]);
    let short = add(&d, &["--", "sh", "-c", "sleep 0.3; echo done"]);
    let long = add(&d, &["--", "sleep", "60"]);
    d.wait_status(long, "running");
    d.wait_status(short, "running");
    let started = Instant::now();
    let st = d.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15));
    assert!(st.success(), "the daemon exits 0 after a graceful shutdown: {st}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "grace honoured: {took:?}");
    assert!(!dir.join("daemon.json").exists(), "daemon.json is removed on a clean stop");
    // Inspect the database the daemon left behind.
    let db = rusqlite::Connection::open(dir.join("owl.db")).unwrap();
    let (status, failures): (String, i64) =
        db.query_row("SELECT status, failures FROM tasks WHERE id = ?1", [long], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((status.as_str(), failures), ("queued", 0));
    let outcome: String = db.query_row("SELECT outcome FROM runs WHERE task_id = ?1", [long], |r| r.get(0)).unwrap();
    assert!(outcome.contains("interrupted"), "{outcome}");
    let short_status: String = db.query_row("SELECT status FROM tasks WHERE id = ?1", [short], |r| r.get(0)).unwrap();
    assert_eq!(short_status, "succeeded", "a task that fits in the grace finishes");
    drop(db);
    d.restart();
    let t = d.wait_status(long, "running");
    assert_eq!(t["attempts"], 2);
    assert_eq!(t["failures"], 0);
}

#[test]
fn sighup_reloads_the_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(config_path(&dir), "[daemon]\nworkers = 1\n").unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.json(&["status"])["workers"], 1);
    std::fs::write(config_path(&dir), "[daemon]\nworkers = 3\n").unwrap();
    d.signal(Signal::SIGHUP);
    wait_for("workers to become 3", Duration::from_secs(10), || (d.json(&["status"])["workers"] == 3).then_some(()));
    // A broken file keeps the running configuration.
    std::fs::write(config_path(&dir), "[daemon]\nworkers = \"many\"\n").unwrap();
    d.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.json(&["status"])["workers"], 3);
    let log = std::fs::read_to_string(dir.with_extension("daemon.log")).unwrap();
    assert!(log.contains("reload failed"), "{log}");
}

#[test]
fn a_timeout_ends_the_whole_process_group() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[("OWL_DAEMON_KILL_GRACE", "200ms")]);
    let pidfile = tmp.path().join("child.pid");
    let id = add(&d, &["--timeout", "500ms", "--shell", &format!("sleep 60 & echo $! > {}; wait", pidfile.display())]);
    let t = d.wait_status(id, "timed_out");
    assert_eq!(t["runs"][0]["signal"], 15);
    let child: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_for("the grandchild to be gone", Duration::from_secs(5), || {
        let gone = std::fs::read_to_string(format!("/proc/{child}/stat")).map(|s| s.contains(") Z")).unwrap_or(true);
        gone.then_some(())
    });
    assert!(d.ok(&["logs", &id.to_string()]).contains("timed out"));
}

#[test]
fn after_a_sigkill_the_restarted_daemon_stops_the_old_process_before_running_the_task_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut d = Daemon::start(&dir, &[]);
    let pids = tmp.path().join("pids");
    let id = add(&d, &["--shell", &format!("echo $$ >> {}; sleep 60", pids.display())]);
    d.wait_status(id, "running");
    let first: i32 =
        wait_for("the first attempt's pid", Duration::from_secs(10), || std::fs::read_to_string(&pids).ok()?.trim().parse().ok());
    d.kill9();
    assert!(std::path::Path::new(&format!("/proc/{first}")).exists(), "the attempt outlives a SIGKILLed daemon");
    d.restart();
    wait_for("the orphaned attempt to be stopped", Duration::from_secs(10), || {
        let gone = std::fs::read_to_string(format!("/proc/{first}/stat")).map(|s| s.contains(") Z")).unwrap_or(true);
        gone.then_some(())
    });
    let t = d.wait_status(id, "running");
    assert_eq!(t["attempts"], 2);
    assert_eq!(t["interruptions"], 1);
    assert_eq!(t["runs"][0]["outcome"]["outcome"], "interrupted");
}

#[test]
fn the_daemon_runs_with_two_malloc_arenas_and_its_tasks_do_not_inherit_the_setting() {
    if !cfg!(target_env = "gnu") {
        return skip("the arena limit applies on glibc");
    }
    let environ = |pid: i32| -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        raw.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("a"), &[]);
    // The process (same pid: it started itself again in place) began with the limit set,
    // which is when glibc reads it.
    assert!(environ(d.pid()).iter().any(|v| v == "MALLOC_ARENA_MAX=2"), "{:?}", environ(d.pid()));
    let id = add(&d, &["--", "env"]);
    d.wait_status(id, "succeeded");
    let env = d.ok(&["logs", &id.to_string()]);
    assert!(env.contains("OWL_TASK_ID="), "{env}");
    assert!(
        !env.contains("MALLOC_ARENA_MAX") && !env.contains("OWL_MALLOC_ARENAS_SET"),
        "a task inherited the daemon's arena limit: {env}"
    );
    // A limit the user chose is theirs: kept, and seen by tasks as any variable is.
    let mine = Daemon::start(&tmp.path().join("b"), &[("MALLOC_ARENA_MAX", "1")]);
    assert!(environ(mine.pid()).iter().all(|v| v != "OWL_MALLOC_ARENAS_SET=1"), "started again although the user set a limit");
    let id = add(&mine, &["--", "env"]);
    mine.wait_status(id, "succeeded");
    assert!(mine.ok(&["logs", &id.to_string()]).contains("MALLOC_ARENA_MAX=1"));
    // So is one given as a glibc tunable.
    let tuned = Daemon::start(&tmp.path().join("c"), &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")]);
    assert!(environ(tuned.pid()).iter().all(|v| v != "OWL_MALLOC_ARENAS_SET=1" && !v.starts_with("MALLOC_ARENA_MAX=")));
}
