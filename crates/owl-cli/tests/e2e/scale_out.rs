//! Several daemons on one PostgreSQL: one queue and one memory, each task run once, a dead node's task run
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
    // One memory for both nodes: what one remembers, the other finds.
    a.ok(&["memory", "add", "The release train leaves every Thursday at noon", "--kind", "knowledge"]);
    let found = b.json(&["memory", "search", "when does the release train leave?", "-k", "1"]);
    assert_eq!(found["hits"][0]["item"]["text"], "The release train leaves every Thursday at noon", "{found}");
    let st = a.json(&["status"]);
    assert_eq!(st["store"]["backend"], "postgres", "{st}");
    assert!(st["store"]["facts"]["dead_tuples"].is_i64() && st["store"]["facts"]["oldest_transaction_seconds"].is_i64(), "{st}");
    assert!(a.ok(&["status"]).contains("store      postgres postgres://owl@127.0.0.1"));

    // A task written by some other node (here, straight into the store) is found by polling:
    // neither daemon is told of it.
    let direct = rt.block_on(async {
        use owl_store::prelude::*;
        let store = owl_store_postgres::PgStore::open(&url, Default::default()).await.unwrap();
        let spec = owl_core::TaskSpec::new(owl_core::Command::Shell("echo found".into()));
        store.submit(vec![owl_store::NewTask::new(spec)], owl_core::Timestamp::from_system(std::time::SystemTime::now())).await.unwrap()[0]
            .id
    });
    wait_for("a daemon to find the task by polling", Duration::from_secs(5), || (a.task(direct.0)["status"] == "succeeded").then_some(()));

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
    // The first attempt's log is on the dead node: the survivor says where, not an empty log.
    let elsewhere = alive.owl(&["logs", &id.to_string(), "--attempt", "1"]);
    assert!(!elsewhere.status.success(), "{elsewhere:?}");
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains(&format!("ran on node {running_on}")), "{elsewhere:?}");
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

fn submit_batch(d: &Daemon, rt: &tokio::runtime::Runtime, n: usize, ledger: &std::path::Path) -> Vec<i64> {
    submit_shell_batch(d, rt, &format!("echo $OWL_TASK_ID >> {}; sleep 0.1", ledger.display()), n)
}

/// Three daemons on one database while one is SIGKILLed mid-run, one is SIGSTOPped past its
/// lease (its late completions must be refused), and the database restarts: every task
/// succeeds exactly once, and a per-second schedule fires each second exactly once across the
/// nodes for the whole run.
#[test]
fn three_daemons_survive_a_kill_a_freeze_and_a_database_restart() {
    use owl_store::prelude::*;
    let total = std::env::var("OWL_CHAOS_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000usize);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cluster = owl_store_postgres::testing::Cluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    let mut nodes: Vec<Daemon> = (1..=3).map(|i| node(&tmp.path().join(format!("n{i}")), &url, &format!("n{i}"))).collect();
    nodes[0].ok(&["schedule", "add", "tick", "--cron", "* * * * * *", "--overlap", "allow", "--shell", "--", "true"]);
    let store = rt.block_on(owl_store_postgres::PgStore::open(&url, Default::default())).unwrap();
    let running_on =
        |name: &str| -> u64 { rt.block_on(store.nodes()).unwrap().into_iter().find(|n| n.node == name).map(|n| n.running).unwrap_or(0) };

    let mut ids = vec![];
    let batches = 10;
    for b in 0..batches {
        ids.extend(submit_batch(&nodes[b % 3], &rt, total / batches, &ledger));
        match b {
            3 => {
                // n2 dies mid-run and comes back.
                wait_for("n2 to run something", Duration::from_secs(20), || (running_on("n2") > 0).then_some(()));
                nodes[1].kill9();
                std::thread::sleep(Duration::from_millis(300));
                nodes[1].restart();
            }
            6 => {
                // n3 freezes past its lease: the others rescue its attempts, and when it thaws
                // its completions of them are refused.
                // Its tasks take 0.1 s: one may end between the look and the stop, so the
                // freeze counts only once the database shows n3 holding a lease while stopped.
                let holds = || {
                    let running = owl_store::TaskFilter { statuses: vec![owl_core::task::Status::Running], ..Default::default() };
                    rt.block_on(store.list(running))
                        .unwrap()
                        .iter()
                        .any(|t| matches!(&t.state, owl_core::TaskState::Running { node, .. } if node == "n3"))
                };
                wait_for("n3 to be frozen holding a lease", Duration::from_secs(60), || {
                    wait_for("n3 to run something", Duration::from_secs(20), || (running_on("n3") > 0).then_some(()));
                    nodes[2].signal(nix::sys::signal::Signal::SIGSTOP);
                    if holds() {
                        return Some(());
                    }
                    nodes[2].signal(nix::sys::signal::Signal::SIGCONT);
                    std::thread::sleep(Duration::from_millis(50));
                    None
                });
                std::thread::sleep(Duration::from_millis(3500));
                nodes[2].signal(nix::sys::signal::Signal::SIGCONT);
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    // The database restarts under load.
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart().unwrap();
    let ids: Vec<owl_core::TaskId> = ids.into_iter().map(owl_core::TaskId).collect();
    wait_for("every task to succeed", Duration::from_secs(240), || {
        let filter = owl_store::TaskFilter { ids: ids.clone(), statuses: vec![owl_core::task::Status::Succeeded], ..Default::default() };
        (rt.block_on(store.list(filter)).ok()?.len() == ids.len()).then_some(())
    });
    nodes[0].ok(&["schedule", "pause", "tick"]);
    std::thread::sleep(Duration::from_millis(1500));

    let mut refused_late = 0;
    for id in &ids {
        let t = rt.block_on(store.get(*id)).unwrap();
        assert_eq!(t.state.status(), owl_core::task::Status::Succeeded, "{t:?}");
        let runs = rt.block_on(store.runs(*id)).unwrap();
        let wins = runs.iter().filter(|r| r.outcome == Some(owl_core::RunOutcome::Succeeded)).count();
        assert_eq!(wins, 1, "task {id} succeeded once: {runs:?}");
        refused_late +=
            runs.iter().filter(|r| r.node == "n3" && matches!(r.outcome, Some(owl_core::RunOutcome::Interrupted { .. }))).count();
    }
    assert!(refused_late > 0, "n3 held leases when it froze; those attempts were rescued and its late completions refused");
    // Every task ran (at least once: a kill between a process's end and its completion's
    // commit runs it again, as documented); the database says each succeeded once.
    let ran: std::collections::BTreeSet<i64> =
        std::fs::read_to_string(&ledger).unwrap().lines().filter_map(|l| l.trim().parse().ok()).collect();
    let missing: Vec<_> = ids.iter().filter(|id| !ran.contains(&id.0)).collect();
    assert!(missing.is_empty(), "no ledger entry is missing: {missing:?}");

    let history = rt.block_on(store.schedule_history("tick", 100_000)).unwrap();
    let mut slots: Vec<i64> = history.iter().map(|f| f.scheduled_for.0).collect();
    slots.sort();
    assert!(slots.len() >= 10, "{history:?}");
    for w in slots.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "every second has exactly one fire: a gap or a duplicate between {} and {}", w[0], w[1]);
    }
    let fired: Vec<_> = history.iter().filter(|f| f.outcome == "fired").collect();
    let tasks = rt.block_on(store.list(owl_store::TaskFilter { label: Some("schedule:tick".into()), ..Default::default() })).unwrap();
    assert_eq!(fired.len(), tasks.len(), "one task per fired slot");
    assert_eq!(fired.len(), history.len(), "no slot was missed: {:?}", history.iter().filter(|f| f.outcome != "fired").collect::<Vec<_>>());
}

/// `owl migrate --from` moves a single daemon's live work to PostgreSQL: unfinished tasks with
/// their dependencies, group limits, schedules in their state, triggers; never from a data dir
/// whose daemon runs, never into a store that already holds work.
#[test]
fn migrate_from_copies_a_sqlite_data_dirs_live_work_into_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = rt.block_on(owl_store_postgres::testing::fresh_schema()).unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let solo = tmp.path().join("solo");
    let mut d = Daemon::start(&solo, &[]);
    d.ok(&["groups", "set", "narrow", "--parallel", "1"]);
    let later = add(&d, &["--in", "2h", "--group", "narrow", "--shell", "--", "echo later"]);
    add(&d, &["--after", &later.to_string(), "--shell", "--", "echo after"]);
    let done = add(&d, &["--shell", "--", "true"]);
    d.wait_status(done, "succeeded");
    d.ok(&["schedule", "add", "nightly", "--cron", "0 3 * * *", "--shell", "--", "echo nightly"]);
    d.ok(&["schedule", "pause", "nightly"]);
    d.ok(&["trigger", "add", "deploy", "--on-task-failed", "--group", "narrow", "--", "echo deploy"]);
    let from = solo.to_str().unwrap();
    let busy = owl_in(tmp.path(), &["migrate", "--store", &url, "--from", from]);
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("another owl daemon"), "{busy:?}");
    d.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));

    let out = owl_in(tmp.path(), &["--json", "migrate", "--store", &url, "--from", from]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["copied"], serde_json::json!({"tasks": 2, "groups": 1, "schedules": 1, "triggers": 1}), "{v}");
    let again = owl_in(tmp.path(), &["migrate", "--store", &url, "--from", from]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty store"), "{again:?}");

    let p = node(&tmp.path().join("p"), &url, "p1");
    let tasks = p.json(&["ls"])["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let (first, second) = (&tasks[1], &tasks[0]);
    assert_eq!((first["display"].as_str().unwrap(), first["status"].as_str().unwrap()), ("echo later", "waiting"));
    assert_eq!(first["group"], "narrow");
    assert_eq!(second["depends_on"], serde_json::json!([first["id"]]), "{second}");
    assert_eq!(p.json(&["schedule", "show", "nightly"])["state"], "paused");
    assert!(p.ok(&["trigger", "ls"]).contains("deploy"));
    assert!(p.ok(&["groups"]).contains("narrow"));
}
