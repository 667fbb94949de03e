//! Crash safety: SIGKILL the daemon at random moments while tasks run; nothing accepted is
//! lost and nothing succeeds twice in the database.
//!
//! Sizes: OWL_CRASH_TASKS (default 1000) and OWL_CRASH_KILLS (default 20); OWL_CRASH_SEED
//! replays a run.

use crate::harness::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn submit_batch(d: &Daemon, rt: &tokio::runtime::Runtime, ledger: &str, n: usize) -> Vec<i64> {
    submit_shell_batch(d, rt, &format!("echo $OWL_TASK_ID >> {ledger}"), n)
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_completes_nothing_twice() {
    let total = env_num("OWL_CRASH_TASKS", 1000) as usize;
    let kills = env_num("OWL_CRASH_KILLS", 20);
    let seed = env_num("OWL_CRASH_SEED", fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let ledger = tmp.path().join("ledger");
    let ledger_s = ledger.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut d = Daemon::start(&dir, &[("OWL_DAEMON_WORKERS", "2"), ("OWL_LOG", "warn")]);

    let chunk = total.div_ceil(kills as usize + 1).max(1);
    let mut accepted: Vec<i64> = Vec::with_capacity(total);
    let started = Instant::now();
    for _ in 0..kills {
        if accepted.len() < total {
            let n = chunk.min(total - accepted.len());
            accepted.extend(submit_batch(&d, &rt, &ledger_s, n));
        }
        // Sometimes right after an acknowledged submit, sometimes mid-run.
        std::thread::sleep(Duration::from_millis(rng.u64(0..250)));
        d.kill9();
        d.restart();
    }
    while accepted.len() < total {
        let n = chunk.min(total - accepted.len());
        accepted.extend(submit_batch(&d, &rt, &ledger_s, n));
    }
    wait_for("every task to succeed", Duration::from_secs(300), || {
        let st = d.json(&["status"]);
        (st["tasks"]["succeeded"].as_u64() == Some(total as u64)).then_some(())
    });
    let elapsed = started.elapsed();

    let db = rusqlite::Connection::open(dir.join("owl.db")).unwrap();
    let mut stmt = db.prepare("SELECT id, status FROM tasks ORDER BY id").unwrap();
    let rows: Vec<(i64, String)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), total, "every accepted task is in the database, and nothing else");
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut sorted = accepted.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert!(rows.iter().all(|(_, s)| s == "succeeded"), "every task succeeded");
    let mut stmt = db.prepare("SELECT task_id, count(*) FROM runs WHERE outcome LIKE '%\"succeeded\"%' GROUP BY task_id").unwrap();
    let succeeded_runs: BTreeMap<i64, i64> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(succeeded_runs.len(), total);
    assert!(succeeded_runs.values().all(|n| *n == 1), "no task has two succeeded runs");
    let interrupted: i64 = db.query_row("SELECT count(*) FROM runs WHERE outcome LIKE '%interrupted%'", [], |r| r.get(0)).unwrap();

    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    for line in text.lines() {
        *seen.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    let missing: Vec<&i64> = ids.iter().filter(|id| !seen.contains_key(id)).collect();
    assert!(missing.is_empty(), "ids missing from the ledger: {missing:?}");
    let ran_more_than_once = seen.values().filter(|n| **n > 1).count();
    // The report the issue asks for; at-least-once execution means a kill between a task's
    // exit and the commit of its completion runs it again.
    println!(
        "{}",
        serde_json::json!({
            "crash_test": {"seed": seed, "tasks": total, "kills": kills, "ran_more_than_once": ran_more_than_once,
                "interrupted_runs": interrupted, "elapsed_ms": elapsed.as_millis() as u64}
        })
    );
}
