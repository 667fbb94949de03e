//! Several daemons on one PostgreSQL: one queue, each task run once, a dead node's task run
//! again elsewhere once its lease expires, `owl nodes` saying it is lost, and its leftovers
//! stopped when it comes back.

use crate::harness::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn node(dir: &std::path::Path, url: &str, name: &str) -> Daemon {
    Daemon::start(
        dir,
        &[("OWL_STORE_URL", url), ("OWL_DAEMON_NODE", name), ("OWL_DAEMON_LEASE", "2s"), ("OWL_DAEMON_WORKERS", "2"), ("OWL_LOG", "warn")],
    )
}

fn runs(d: &Daemon, id: i64) -> Vec<serde_json::Value> {
    d.json(&["show", &id.to_string()])["runs"].as_array().cloned().unwrap_or_default()
}

#[test]
fn two_daemons_share_one_postgres_queue_and_a_dead_nodes_task_runs_again() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = rt.block_on(owl_store_postgres::testing::fresh_schema()).unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    let mut a = node(&tmp.path().join("a"), &url, "web-1");
    let mut b = node(&tmp.path().join("b"), &url, "web-2");
    let cmd = format!("echo $OWL_TASK_ID >> {}; sleep 0.2", ledger.display());
    let ids: Vec<i64> = (0..24).map(|i| add(if i % 2 == 0 { &a } else { &b }, &["--shell", "--", &cmd])).collect();
    wait_for("every task to succeed", Duration::from_secs(60), || {
        (b.json(&["status"])["tasks"]["succeeded"].as_u64() == Some(ids.len() as u64)).then_some(())
    });
    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for l in text.lines() {
        *seen.entry(l.trim().parse().unwrap()).or_default() += 1;
    }
    assert!(ids.iter().all(|id| seen.get(id) == Some(&1)), "each task ran exactly once: {seen:?}");
    let nodes: std::collections::BTreeSet<String> =
        ids.iter().flat_map(|id| runs(&a, *id)).map(|r| r["node"].as_str().unwrap().to_string()).collect();
    assert_eq!(nodes.len(), 2, "both nodes ran tasks: {nodes:?}");
    let listed = a.json(&["nodes"]);
    let names: Vec<&str> = listed["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["web-1", "web-2"], "{listed}");
    assert!(listed["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "alive"), "{listed}");
    assert_eq!(listed["this"], "web-1");

    // A task whose node dies mid-run runs again on the other node after the lease.
    let marker = tmp.path().join("first-attempt");
    let slow = format!("if [ -e {m} ]; then echo second; else touch {m}; sleep 60; fi", m = marker.display());
    let id = add(&a, &["--shell", "--", &slow]);
    let running_on = wait_for("the slow task to start", Duration::from_secs(20), || {
        let t = a.task(id);
        (t["status"] == "running" && marker.exists()).then(|| t["state"]["node"].as_str().unwrap().to_string())
    });
    let (dead, alive) = if running_on == "web-1" { (&mut a, &b) } else { (&mut b, &a) };
    dead.kill9();
    let done = alive.wait_status(id, "succeeded");
    let r = runs(alive, id);
    assert_eq!(r.len(), 2, "{done}");
    assert_eq!(r[0]["node"], running_on.as_str());
    assert!(r[0]["outcome"].to_string().contains("lease expired"), "{}", r[0]);
    assert_ne!(r[1]["node"], running_on.as_str());
    assert_eq!(alive.ok(&["logs", &id.to_string()]).trim(), "second");
    // Its last report is at most a third of a lease older than its last lease renewal.
    wait_for("the dead node to be listed as lost", Duration::from_secs(5), || {
        let listed = alive.json(&["nodes"]);
        let gone = listed["nodes"].as_array().unwrap().iter().find(|n| n["node"] == running_on.as_str()).cloned().unwrap();
        (gone["status"] == "lost").then_some(())
    });
    assert!(alive.ok(&["nodes"]).contains("lost"));

    // The dead node comes back: the `sleep 60` it left behind is stopped before it claims.
    let leftover = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == format!("OWL_TASK_ID={id}").as_bytes()))
                .unwrap_or(false)
        })
    };
    assert!(leftover(), "the killed node's task process outlived it");
    dead.restart();
    for _ in 0..100 {
        if !leftover() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let who: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let env = std::fs::read(e.path().join("environ")).ok()?;
            env.split(|b| *b == 0).any(|v| v == format!("OWL_TASK_ID={id}").as_bytes()).then(|| {
                let vars: Vec<String> =
                    env.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).to_string()).filter(|v| v.starts_with("OWL_")).collect();
                format!("{:?} {:?} {vars:?}", e.path(), std::fs::read_to_string(e.path().join("stat")).unwrap_or_default())
            })
        })
        .collect();
    panic!(
        "the leftover process was not stopped: {who:?}\nlog: {}",
        std::fs::read_to_string(dead.dir.with_extension("daemon.log")).unwrap_or_default()
    );
}

#[test]
fn migrate_reports_the_version_and_a_bad_store_url_is_named() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = rt.block_on(owl_store_postgres::testing::fresh_schema()).unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let out = owl_in(tmp.path(), &["--json", "migrate", "--store", &url]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["from"], 0);
    assert_eq!(v["to"], v["newest"]);
    let again = owl_in(tmp.path(), &["migrate", "--store", &url]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"), "{again:?}");
    let bad = owl_in(tmp.path(), &["daemon", "--store", "mysql://x@y/z"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("store.url") && err.contains("PostgreSQL URL"), "{err}");
}
