//! Engine tests over the real SQLite store and real processes.

use super::*;
use owl_core::task::Status;
use owl_core::{Command as Cmd, TaskSpec, TaskState};
use owl_store_sqlite::{Durability, SqliteStore};

struct Harness {
    engine: Engine,
    dir: tempfile::TempDir,
    handle: tokio::task::JoinHandle<()>,
}

fn config(workers: usize) -> EngineConfig {
    EngineConfig { workers, ..crate::tests_config() }
}

fn start_in(dir: tempfile::TempDir, cfg: EngineConfig) -> Harness {
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), cfg, Arc::new(SystemClock));
    let handle = tokio::spawn(dispatch.run(true));
    Harness { engine, dir, handle }
}

fn start(workers: usize) -> Harness {
    start_in(tempfile::tempdir().unwrap(), config(workers))
}

fn shell(cmd: &str) -> TaskSpec {
    TaskSpec::new(Cmd::Shell(cmd.into()))
}

async fn submit(h: &Harness, spec: TaskSpec) -> TaskId {
    h.engine.submit(vec![NewTask::new(spec)]).await.unwrap()[0].id
}

async fn wait_status(h: &Harness, id: TaskId, want: &[Status]) -> owl_core::Task {
    for _ in 0..1000 {
        let t = h.engine.store().get(id).await.unwrap();
        if want.contains(&t.state.status()) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} never reached {want:?}: {:?}", h.engine.store().get(id).await.unwrap().state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_in_its_workspace_and_publishes_its_life() {
    let h = start(2);
    let mut events = h.engine.subscribe();
    let id = submit(&h, shell("echo hi > out.txt; echo $OWL_TASK_ID")).await;
    let t = wait_status(&h, id, &[Status::Succeeded]).await;
    assert!(matches!(t.state, TaskState::Succeeded { attempt: 1, .. }));
    let ws = h.dir.path().join("workspaces").join(id.to_string());
    assert_eq!(std::fs::read_to_string(ws.join("out.txt")).unwrap(), "hi\n");
    assert_eq!(std::fs::read_to_string(h.dir.path().join(format!("logs/{id}.1.log"))).unwrap(), format!("{id}\n"));
    let mut kinds = vec![];
    while let Ok(e) = events.try_recv() {
        kinds.push(e.kind);
    }
    assert!(kinds.contains(&EventKind::TaskSubmitted { task_id: id, status: Status::Queued }), "{kinds:?}");
    assert!(kinds.contains(&EventKind::TaskChanged { task_id: id, status: Status::Succeeded }), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_and_timeouts_time_out() {
    let h = start(2);
    let mut flaky = shell("test -f marker && exit 0; touch marker; exit 3");
    flaky.max_attempts = 3;
    let f = submit(&h, flaky).await;
    let mut slow = shell("sleep 30");
    slow.timeout_ms = Some(200);
    let s = submit(&h, slow).await;
    let t = wait_status(&h, f, &[Status::Succeeded, Status::Failed]).await;
    assert!(matches!(t.state, TaskState::Succeeded { attempt: 2, .. }), "{:?}", t.state);
    assert_eq!(t.failures, 1);
    let t = wait_status(&h, s, &[Status::TimedOut]).await;
    assert_eq!(h.engine.store().runs(t.id).await.unwrap()[0].signal, Some(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_task_stops_it() {
    let h = start(1);
    let id = submit(&h, shell("sleep 30")).await;
    wait_status(&h, id, &[Status::Running]).await;
    assert_eq!(h.engine.cancel(id, Some("changed my mind".into())).await.unwrap(), CancelReply::Requested);
    let t = wait_status(&h, id, &[Status::Cancelled]).await;
    assert_eq!(
        t.state,
        TaskState::Cancelled {
            finished_at: match t.state {
                TaskState::Cancelled { finished_at, .. } => finished_at,
                _ => unreachable!(),
            },
            reason: Some("changed my mind".into())
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_limits_bound_concurrency() {
    let h = start(4);
    h.engine.set_group("solo", Some(1)).await.unwrap();
    let ledger = h.dir.path().join("ledger");
    let mut ids = vec![];
    for _ in 0..4 {
        let mut s = shell(&format!(
            "echo start >> {l}; n=$(grep -c start {l}); e=$(grep -c end {l}); echo $((n - e)) >> {l}.peak; sleep 0.1; echo end >> {l}",
            l = ledger.display()
        ));
        s.group = "solo".into();
        ids.push(submit(&h, s).await);
    }
    for id in ids {
        wait_status(&h, id, &[Status::Succeeded]).await;
    }
    let peaks = std::fs::read_to_string(format!("{}.peak", ledger.display())).unwrap();
    assert!(peaks.lines().all(|l| l == "1"), "more than one task of the group ran at once: {peaks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_runner_fails_its_task_frees_its_slot_and_never_blocks_shutdown() {
    let h = start(1);
    let failed_reason = |t: &owl_core::Task| match &t.state {
        TaskState::Failed { reason, .. } => reason.clone(),
        other => panic!("{other:?}"),
    };
    // A panic before anything started.
    let mut spec = shell("true");
    spec.labels.push("owl-test:panic".into());
    let early = submit(&h, spec).await;
    let t = wait_status(&h, early, &[Status::Failed]).await;
    assert!(failed_reason(&t).contains("runner for this attempt panicked (injected runner panic)"), "{:?}", t.state);
    // A panic while the process runs: the process is stopped too.
    let mut spec = shell("echo $$ > pid; exec sleep 30");
    spec.labels.push("owl-test:panic-after-ms=400".into());
    let mid = submit(&h, spec).await;
    let t = wait_status(&h, mid, &[Status::Failed]).await;
    assert!(failed_reason(&t).contains("while the process runs"), "{:?}", t.state);
    let pid = std::fs::read_to_string(h.dir.path().join(format!("workspaces/{mid}/pid"))).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "the panicked attempt's process still runs: {stat}");
    let log = std::fs::read_to_string(h.dir.path().join(format!("logs/{mid}.1.log"))).unwrap();
    assert!(log.contains("[owl] owl's runner for this attempt panicked"), "{log}");
    // The one worker slot is free again, and the daemon keeps working.
    let next = submit(&h, shell("true")).await;
    wait_status(&h, next, &[Status::Succeeded]).await;
    // Even when recording the panic panics too, the loop neither spins nor loses the slot.
    let mut spec = shell("true");
    spec.labels.push("owl-test:panic-twice".into());
    submit(&h, spec).await;
    let after = submit(&h, shell("true")).await;
    wait_status(&h, after, &[Status::Succeeded]).await;
    // A panic in flight does not hold up shutdown.
    let mut spec = shell("sleep 30");
    spec.labels.push("owl-test:panic-after-ms=150".into());
    let last = submit(&h, spec).await;
    wait_status(&h, last, &[Status::Running]).await;
    h.engine.shutdown();
    tokio::time::timeout(Duration::from_secs(10), h.handle).await.expect("shutdown finished").unwrap();
    assert_eq!(h.engine.store().get(last).await.unwrap().state.status(), Status::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_grace_then_requeues_without_using_an_attempt() {
    let h = start(2);
    let quick = submit(&h, shell("sleep 0.1")).await;
    let slow = submit(&h, shell("sleep 30")).await;
    wait_status(&h, slow, &[Status::Running]).await;
    h.engine.shutdown();
    let late = submit(&h, shell("true")).await;
    tokio::time::timeout(Duration::from_secs(10), h.handle).await.unwrap().unwrap();
    let store = h.engine.store();
    assert_eq!(store.get(quick).await.unwrap().state.status(), Status::Succeeded, "finished within the grace");
    let t = store.get(slow).await.unwrap();
    assert_eq!(t.state, TaskState::Queued, "stopped after the grace and put back");
    assert_eq!((t.failures, t.attempts), (0, 1));
    assert!(matches!(store.runs(slow).await.unwrap()[0].outcome, Some(owl_core::RunOutcome::Interrupted { .. })));
    assert_eq!(store.get(late).await.unwrap().state, TaskState::Queued, "nothing starts once shutdown began");
    // A new engine on the same data dir picks the work up.
    let dir = h.dir;
    let h2 = start_in(dir, config(2));
    let t = wait_status(&h2, slow, &[Status::Running]).await;
    assert_eq!(t.attempts, 2);
    wait_status(&h2, late, &[Status::Succeeded]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_dependent_tasks_start_on_time() {
    let h = start(2);
    let mut later = shell("true");
    later.run_at = Some(h.engine.now().plus(Duration::from_millis(300)));
    let a = submit(&h, later).await;
    let mut dep = shell("true");
    dep.depends_on = vec![a];
    let b = submit(&h, dep).await;
    let t0 = std::time::Instant::now();
    wait_status(&h, b, &[Status::Succeeded]).await;
    assert!(t0.elapsed() >= Duration::from_millis(250), "ran before its time");
    let ta = h.engine.store().get(a).await.unwrap();
    let tb = h.engine.store().get(b).await.unwrap();
    assert!(ta.updated_at <= tb.updated_at);
}

fn trigger(name: &str, label: &str, template: TaskSpec, depth: u32) -> owl_core::trigger::TriggerSpec {
    owl_core::trigger::TriggerSpec {
        name: name.into(),
        on: owl_core::trigger::On::TaskEvent {
            outcome: owl_core::trigger::TaskOutcome::Succeeded,
            label: Some(label.into()),
            group: None,
            schedule: None,
        },
        template,
        rate_limit: None,
        max_chain_depth: depth,
    }
}

async fn wait_for_count(h: &Harness, label: &str, n: usize, status: Status) -> Vec<owl_core::Task> {
    for _ in 0..1000 {
        let tasks = h.engine.store().list(owl_store::TaskFilter { label: Some(label.into()), ..Default::default() }).await.unwrap();
        if tasks.len() >= n && tasks.iter().all(|t| t.state.status() == status) {
            return tasks;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = h.engine.store().list(owl_store::TaskFilter::default()).await.unwrap();
    let summary: Vec<String> = all.iter().map(|t| format!("{} {:?} {:?}", t.id, t.state.status(), t.spec.labels)).collect();
    panic!("never saw {n} {status} tasks labelled {label}; tasks: {summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_event_trigger_chains_a_task_once_per_finished_task() {
    let h = start(2);
    let mut publish = shell("echo published after $OWL_TRIGGER_TASK");
    publish.labels = vec!["publish".into()];
    h.engine.create_trigger(trigger("after-build", "build", publish, 5)).await.unwrap();
    let mut build = shell("true");
    build.labels = vec!["build".into()];
    let b = submit(&h, build.clone()).await;
    let mut failing = build.clone();
    failing.command = Cmd::Shell("exit 1".into());
    submit(&h, failing).await;
    let published = wait_for_count(&h, "publish", 1, Status::Succeeded).await;
    assert_eq!(published.len(), 1, "only the successful build triggers");
    let t = &published[0];
    assert_eq!(t.spec.env.get("OWL_TRIGGER_TASK"), Some(&b.to_string()));
    assert_eq!(t.spec.env.get("OWL_CHAIN_DEPTH").map(String::as_str), Some("1"));
    assert!(t.spec.labels.contains(&"trigger:after-build".to_string()));
    let log = std::fs::read_to_string(h.dir.path().join(format!("logs/{}.1.log", t.id))).unwrap();
    assert_eq!(log, format!("published after {b}\n"));
    let hist = h.engine.store().trigger_history("after-build", 10).await.unwrap();
    assert_eq!(hist.len(), 1);
    assert!(hist[0].source.ends_with(&format!("task:{b}")), "{:?}", hist[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_that_feeds_itself_stops_at_the_chain_depth_limit() {
    let h = start(2);
    let mut again = shell("true");
    again.labels = vec!["loop".into()];
    h.engine.create_trigger(trigger("loop", "loop", again.clone(), 3)).await.unwrap();
    submit(&h, again).await;
    // The seed (depth 0) and three triggered generations; the fourth is refused.
    wait_for_count(&h, "loop", 4, Status::Succeeded).await;
    for _ in 0..200 {
        if h.engine.store().get_trigger("loop").await.unwrap().refused == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = h.engine.store().get_trigger("loop").await.unwrap();
    assert_eq!((t.fired, t.refused), (3, 1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = h.engine.store().list(owl_store::TaskFilter { label: Some("loop".into()), ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 4, "no task beyond the limit");
    let refusal = &h.engine.store().trigger_history("loop", 10).await.unwrap()[0];
    assert_eq!(refusal.outcome, "refused");
    assert!(refusal.reason.as_deref().unwrap().contains("max_chain_depth 3"), "{refusal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_trigger_does_not_replay_tasks_that_finished_before_it() {
    let h = start(2);
    let mut old = shell("true");
    old.labels = vec!["old".into()];
    let id = submit(&h, old.clone()).await;
    wait_status(&h, id, &[Status::Succeeded]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut follow = shell("true");
    follow.labels = vec!["follow".into()];
    h.engine.create_trigger(trigger("late", "old", follow, 5)).await.unwrap();
    submit(&h, old).await;
    let f = wait_for_count(&h, "follow", 1, Status::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.len(), 1);
    assert_eq!(h.engine.store().list(owl_store::TaskFilter { label: Some("follow".into()), ..Default::default() }).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_watch_trigger_reacts_to_matching_files_once_per_debounced_change() {
    let h = start(2);
    let inbox = h.dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut ingest = shell("echo $OWL_WATCH_EVENT $OWL_WATCH_PATH");
    ingest.labels = vec!["ingest".into()];
    h.engine
        .create_trigger(owl_core::trigger::TriggerSpec {
            name: "inbox".into(),
            on: owl_core::trigger::On::Watch {
                path: inbox.display().to_string(),
                events: vec![owl_core::trigger::FsEvent::Created],
                glob: Some("*.pdf".into()),
                debounce_ms: 200,
            },
            template: ingest,
            rate_limit: None,
            max_chain_depth: 5,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the watcher is being set up
    std::fs::write(inbox.join("notes.txt"), "not a pdf").unwrap();
    // Written in several steps: one debounced "created" event.
    let mut f = std::fs::File::create(inbox.join("report.pdf")).unwrap();
    for _ in 0..5 {
        std::io::Write::write_all(&mut f, b"%PDF-1.7 ...").unwrap();
        f.sync_all().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(f);
    let tasks = wait_for_count(&h, "ingest", 1, Status::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tasks_after = h.engine.store().list(owl_store::TaskFilter { label: Some("ingest".into()), ..Default::default() }).await.unwrap();
    assert_eq!(tasks_after.len(), 1, "one task for one debounced change, none for the .txt");
    let log = std::fs::read_to_string(h.dir.path().join(format!("logs/{}.1.log", tasks[0].id))).unwrap();
    assert_eq!(log, format!("created {}\n", inbox.join("report.pdf").display()));
    // A watch on a missing directory is refused up front.
    let mut bad = h.engine.store().get_trigger("inbox").await.unwrap().spec;
    bad.name = "missing".into();
    bad.on = owl_core::trigger::On::Watch {
        path: "/nonexistent/owl-dir".into(),
        events: vec![owl_core::trigger::FsEvent::Created],
        glob: None,
        debounce_ms: 0,
    };
    assert!(h.engine.create_trigger(bad).await.unwrap_err().to_string().contains("does not exist"));
}

fn condition(name: &str, probe: owl_core::trigger::Probe, cooldown_ms: u64, label: &str) -> owl_core::trigger::TriggerSpec {
    let mut t = shell("echo $OWL_CONDITION");
    t.labels = vec![label.into()];
    owl_core::trigger::TriggerSpec {
        name: name.into(),
        on: owl_core::trigger::On::Condition { probe, every_ms: 1000, cooldown_ms },
        template: t,
        rate_limit: None,
        max_chain_depth: 5,
    }
}

async fn count(h: &Harness, label: &str) -> usize {
    h.engine.store().list(owl_store::TaskFilter { label: Some(label.into()), ..Default::default() }).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_fires_on_each_false_to_true_edge_only() {
    let h = start(2);
    let flag = h.dir.path().join("flag");
    let probe = owl_core::trigger::Probe::Shell(format!("test -f {}", flag.display()));
    h.engine.create_trigger(condition("flag", probe, 0, "edge")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(count(&h, "edge").await, 0, "false: nothing");
    std::fs::write(&flag, "").unwrap();
    wait_for_count(&h, "edge", 1, Status::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(count(&h, "edge").await, 1, "still true: no second fire");
    std::fs::remove_file(&flag).unwrap();
    // Long enough for at least two 1 s checks to see it false, even on a loaded machine.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    std::fs::write(&flag, "").unwrap();
    wait_for_count(&h, "edge", 2, Status::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_probe_runs_through_owl_exec_without_secrets_and_its_children_die_with_its_timeout() {
    let h = start(2);
    std::env::set_var("OWL_TEST_PROBE_SECRET", "canary-probe-31");
    // A webhook's secret is withheld from everything owl runs.
    let mut hook = condition("hook", owl_core::trigger::Probe::Expr("running > 0".into()), 0, "hook");
    hook.on = owl_core::trigger::On::Webhook { secret_env: "OWL_TEST_PROBE_SECRET".into() };
    h.engine.create_trigger(hook).await.unwrap();
    let dir = h.dir.path().display().to_string();
    // Records what it sees, leaves a child behind, then outlives its 1 s timeout.
    let probe = owl_core::trigger::Probe::Shell(format!(
        "echo \"secret=$OWL_TEST_PROBE_SECRET\" > {dir}/seen; sleep 60 & echo $! > {dir}/child; wait"
    ));
    let t = h.engine.create_trigger(condition("slow", probe, 0, "slow")).await.unwrap();
    let child = wait_for_file(&h.dir.path().join("child")).await;
    assert_eq!(std::fs::read_to_string(h.dir.path().join("seen")).unwrap(), "secret=\n", "a withheld secret reached the probe");
    // The timeout (1 s, the check interval) ends the whole group: the child too.
    let gone = async {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.trim())).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the probe's child was killed with it");
    assert_eq!(count(&h, "slow").await, 0, "a timed-out probe is false");
    let log = h.dir.path().join(format!("logs/condition-{}.log", t.id));
    assert!(log.exists(), "the probe's output is kept");
}

async fn wait_for_file(p: &std::path::Path) -> String {
    for _ in 0..500 {
        if let Ok(s) = std::fs::read_to_string(p) {
            if !s.is_empty() {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never appeared", p.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expression_condition_reads_facts_and_respects_its_cooldown() {
    let h = start(2);
    let expr = owl_core::trigger::Probe::Expr("running >= 1".into());
    h.engine.create_trigger(condition("busy", expr, 3_600_000, "busy")).await.unwrap();
    let gate = h.dir.path().join("gate");
    let g = gate.display().to_string();
    let first = submit(&h, shell(&format!("while [ ! -f {g} ]; do sleep 0.05; done"))).await;
    let fired = wait_for_count(&h, "busy", 1, Status::Succeeded).await;
    let log = std::fs::read_to_string(h.dir.path().join(format!("logs/{}.1.log", fired[0].id))).unwrap();
    assert_eq!(log, "running >= 1\n");
    std::fs::write(&gate, "").unwrap();
    wait_status(&h, first, &[Status::Succeeded]).await;
    std::fs::remove_file(&gate).unwrap();
    // Running >= 1 becomes false (the triggered task is quick), then true again: in cooldown.
    // Long enough for at least two 1 s checks to see it false, even on a loaded machine.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let second = submit(&h, shell(&format!("while [ ! -f {g} ]; do sleep 0.05; done"))).await;
    for _ in 0..1000 {
        if h.engine.store().get_trigger("busy").await.unwrap().refused >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(&gate, "").unwrap();
    wait_status(&h, second, &[Status::Succeeded]).await;
    let t = h.engine.store().get_trigger("busy").await.unwrap();
    assert_eq!((t.fired, t.refused), (1, 1), "the second edge fell in the cooldown");
    assert!(h.engine.store().trigger_history("busy", 5).await.unwrap()[0].reason.as_deref().unwrap().contains("cooldown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_loop_that_starts_late_still_sees_tasks_that_finished_after_the_trigger() {
    // The engine's loops are not running yet: the trigger exists and a matching task finishes
    // before the trigger loop's first walk, the worst case for where its cursor starts.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn owl_store::Store> = Arc::new(SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap());
    let (engine, dispatch) = Engine::new(store.clone(), DataLayout::new(dir.path()), config(2), Arc::new(SystemClock));
    let mut publish = shell("true");
    publish.labels = vec!["publish".into()];
    engine.create_trigger(trigger("late-loop", "build", publish, 5)).await.unwrap();
    let mut build = shell("true");
    build.labels = vec!["build".into()];
    let id = engine.submit(vec![NewTask::new(build)]).await.unwrap()[0].id;
    let c = store.claim(owl_store::Claim { node: "n".into(), now: engine.now(), lease: Duration::from_secs(30), limit: 1 }).await.unwrap();
    assert_eq!(c[0].id, id);
    store
        .complete(owl_store::Completion {
            id,
            attempt: 1,
            outcome: owl_core::RunOutcome::Succeeded,
            exit_code: Some(0),
            signal: None,
            now: engine.now(),
            policy: Default::default(),
            jitter: 0.0,
        })
        .await
        .unwrap();
    let h = Harness { engine, dir, handle: tokio::spawn(dispatch.run(true)) };
    let done = wait_for_count(&h, "publish", 1, Status::Succeeded).await;
    assert_eq!(done[0].spec.env.get("OWL_TRIGGER_TASK"), Some(&id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_trigger_does_not_fire_for_tasks_that_finished_while_it_was_off() {
    let h = start(2);
    let mut follow = shell("true");
    follow.labels = vec!["follow".into()];
    h.engine.create_trigger(trigger("toggle", "src", follow, 5)).await.unwrap();
    h.engine.set_trigger_enabled("toggle", false).await.unwrap();
    let mut src = shell("true");
    src.labels = vec!["src".into()];
    let off = submit(&h, src.clone()).await;
    wait_status(&h, off, &[Status::Succeeded]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.engine.set_trigger_enabled("toggle", true).await.unwrap();
    let on = submit(&h, src).await;
    let fired = wait_for_count(&h, "follow", 1, Status::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&h, "follow").await, 1, "only the task that finished while enabled");
    assert_eq!(fired[0].spec.env.get("OWL_TRIGGER_TASK"), Some(&on.to_string()));
}

#[test]
fn an_offset_clock_follows_its_reference_and_ignores_measurement_noise() {
    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            Timestamp(1_000_000)
        }
    }
    let c = crate::OffsetClock::new(Arc::new(Fixed));
    assert_eq!(c.now(), Timestamp(1_000_000));
    c.set_offset(-60_000);
    assert_eq!(c.now(), Timestamp(940_000));
    c.set_offset(-60_010);
    assert_eq!(c.now(), Timestamp(940_000), "a 10 ms change is noise");
    c.set_offset(-59_000);
    assert_eq!((c.now(), c.base_now()), (Timestamp(941_000), Timestamp(1_000_000)));
}

async fn wait_anomalies(h: &Harness, n: usize) -> Vec<owl_core::anomaly::Anomaly> {
    for _ in 0..500 {
        let found = h.engine.store().anomalies(owl_store::AnomalyFilter { limit: 100, ..Default::default() }).await.unwrap();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} anomalies were recorded");
}

fn crafted(h: &Harness, task: i64, ok: bool, ms: u64) -> owl_core::anomaly::RunSample {
    owl_core::anomaly::RunSample {
        task_id: TaskId(1_000_000 + task),
        attempt: 1,
        at: h.engine.now(),
        kind: "command".into(),
        schedule: None,
        agent: None,
        succeeded: ok,
        duration_ms: ms,
        tokens: 0,
        cost_usd: 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_far_slower_than_its_kind_and_a_failure_streak_are_recorded_and_announced() {
    use owl_core::anomaly::{Metric, Scope};
    let mut cfg = config(1);
    cfg.anomalies.duration_floor = Duration::from_millis(300);
    let h = start_in(tempfile::tempdir().unwrap(), cfg);
    // Crafted history: commands usually take 20 to 40 ms.
    for i in 0..12 {
        h.engine.store().record_sample(crafted(&h, i, true, 20 + (i as u64 % 3) * 10)).await.unwrap();
    }
    let mut events = h.engine.subscribe();
    let usual = submit(&h, shell("true")).await;
    wait_status(&h, usual, &[Status::Succeeded]).await;
    let slow = submit(&h, shell("sleep 1")).await;
    wait_status(&h, slow, &[Status::Succeeded]).await;
    let found = wait_anomalies(&h, 1).await;
    assert_eq!(found.len(), 1, "the usual run is not news: {found:?}");
    let a = &found[0];
    assert_eq!(
        (a.task_id, a.finding.scope, a.finding.subject.as_str(), a.finding.metric),
        (slow, Scope::Kind, "command", Metric::DurationSeconds)
    );
    assert!(a.finding.value >= 1.0 && a.finding.median < 0.1 && a.finding.z > 3.5 && a.finding.samples >= 12, "{a:?}");
    assert!(a.summary.contains("kind command: this run took"), "{}", a.summary);
    // Two failures on record; the third in a row is a streak.
    for i in 20..22 {
        h.engine.store().record_sample(crafted(&h, i, false, 30)).await.unwrap();
    }
    let failing = submit(&h, shell("exit 4")).await;
    wait_status(&h, failing, &[Status::Failed]).await;
    let found = wait_anomalies(&h, 2).await;
    let streak = &found[0];
    assert_eq!((streak.task_id, streak.finding.metric, streak.finding.value), (failing, Metric::Failures, 3.0), "{found:?}");
    let mut seen = vec![];
    while let Ok(e) = events.try_recv() {
        if let EventKind::AnomalyDetected { anomaly_id, task_id, metric, .. } = e.kind {
            seen.push((anomaly_id, task_id, metric));
        }
    }
    assert_eq!(seen, vec![(a.id, slow, "duration_seconds".to_string()), (streak.id, failing, "failures".to_string())]);
    let text = h.engine.scrape_metrics(false).await.unwrap();
    assert!(text.contains(r#"owl_anomalies_total{scope="kind",metric="duration_seconds"} 1"#), "{text}");
    // Every finished attempt is a sample; the crafted ones too.
    assert_eq!(h.engine.store().recent_samples(Scope::Kind, "command", 100).await.unwrap().len(), 12 + 2 + 2 + 1);
}
