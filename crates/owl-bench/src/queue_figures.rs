//! Store and engine figures, measured in-process against a real SQLite file (and, through the
//! same functions, against PostgreSQL in `scaleout_figures`).

use crate::{nanos_now, percentile, round2};
use owl_core::task::Status;
use owl_core::{Command, EventKind, TaskSpec, Timestamp};
use owl_engine::{Engine, EngineConfig, SystemClock};
use owl_store::{Claim, Completion, NewTask, Store};
use owl_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn spec(argv: Vec<String>) -> TaskSpec {
    TaskSpec::new(Command::Argv(argv))
}

fn now() -> Timestamp {
    Timestamp::from_system(std::time::SystemTime::now())
}

fn open(dir: &std::path::Path, d: Durability) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("owl.db"), d).expect("open store"))
}

pub(crate) async fn enqueue_sequential(s: Arc<dyn Store>, n: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        s.submit(vec![NewTask::new(spec(vec!["true".into()]))], now()).await.unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// `clients` concurrent submitters of single tasks: what group commit buys.
pub(crate) async fn enqueue_concurrent(s: Arc<dyn Store>, clients: usize, per_client: usize) -> f64 {
    let t = Instant::now();
    let mut hs = vec![];
    for _ in 0..clients {
        let s = s.clone();
        hs.push(tokio::spawn(async move {
            for _ in 0..per_client {
                s.submit(vec![NewTask::new(spec(vec!["true".into()]))], now()).await.unwrap();
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    (clients * per_client) as f64 / t.elapsed().as_secs_f64()
}

pub(crate) async fn enqueue_batched(s: Arc<dyn Store>, batches: usize, size: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..batches {
        let batch = (0..size).map(|_| NewTask::new(spec(vec!["true".into()]))).collect();
        s.submit(batch, now()).await.unwrap();
    }
    (batches * size) as f64 / t.elapsed().as_secs_f64()
}

/// Claims in rounds of `width` and completes each claimed task concurrently, as the engine
/// does with `width` workers.
pub(crate) async fn claim_complete(s: Arc<dyn Store>, n: usize, width: usize) -> f64 {
    for _ in 0..n / 500 {
        s.submit((0..500).map(|_| NewTask::new(spec(vec!["true".into()]))).collect(), now()).await.unwrap();
    }
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let claimed = s.claim(Claim { node: "bench".into(), now: now(), lease: Duration::from_secs(30), limit: width }).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        let futs = claimed.into_iter().map(|c| {
            let s = s.clone();
            async move {
                s.complete(Completion {
                    id: c.id,
                    attempt: c.attempt,
                    outcome: owl_core::RunOutcome::Succeeded,
                    exit_code: Some(0),
                    signal: None,
                    now: now(),
                    policy: Default::default(),
                    jitter: 0.0,
                })
                .await
                .unwrap()
            }
        });
        done += futures_util::future::join_all(futs).await.len();
    }
    done as f64 / t.elapsed().as_secs_f64()
}

pub(crate) fn engine_config(workers: usize) -> EngineConfig {
    EngineConfig {
        workers,
        kill_grace: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
        log_max_bytes: 1 << 20,
        retry: Default::default(),
        ..EngineConfig::from_settings(&Default::default(), "bench".into())
    }
}

/// Enqueue-to-process-start: each task is this binary's `stamp` subcommand, which records
/// the moment the new process runs; the engine is idle when each task is submitted.
/// `alone`: the store is this engine's only (SQLite), else shared (PostgreSQL).
pub(crate) async fn start_latency(store: Arc<dyn Store>, alone: bool, samples: usize) -> (f64, f64) {
    let dir = crate::temp_dir();
    let (engine, dispatch) = Engine::new(store, owl_core::layout::DataLayout::new(&dir), engine_config(2), Arc::new(SystemClock));
    let h = tokio::spawn(dispatch.run(alone));
    let exe = std::env::current_exe().unwrap().display().to_string();
    let mut lat = vec![];
    let mut events = engine.subscribe();
    for i in 0..samples {
        let stamp = dir.join(format!("stamp-{i}"));
        let argv = vec![exe.clone(), "stamp".into(), stamp.display().to_string()];
        let before = nanos_now();
        let id = engine.submit(vec![NewTask::new(spec(argv))]).await.unwrap()[0].id;
        loop {
            match events.recv().await {
                Ok(e) if e.kind == (EventKind::TaskChanged { task_id: id, status: Status::Succeeded }) => break,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
        let started: u128 = std::fs::read_to_string(&stamp).unwrap().trim().parse().unwrap();
        lat.push((started - before) as f64 / 1e6);
    }
    engine.shutdown();
    h.await.unwrap();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// Wall time from submitting `n` `true` tasks (one batch) until all have succeeded, with one
/// engine of `workers` workers per store in `stores` (several: nodes sharing one database).
pub(crate) async fn shell_tasks(stores: Vec<Arc<dyn Store>>, n: usize, workers: usize) -> f64 {
    let alone = stores.len() == 1 && stores[0].health().await.map(|h| h.backend == "sqlite").unwrap_or(false);
    let mut engines = vec![];
    for (i, store) in stores.into_iter().enumerate() {
        let dir = crate::temp_dir();
        let mut cfg = engine_config(workers);
        cfg.node = format!("bench-{i}");
        let (engine, dispatch) = Engine::new(store, owl_core::layout::DataLayout::new(&dir), cfg, Arc::new(SystemClock));
        engines.push((engine, tokio::spawn(dispatch.run(alone))));
    }
    // Each engine announces the tasks it ran; together they have run them all.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for (e, _) in &engines {
        let (mut events, tx) = (e.subscribe(), done_tx.clone());
        tokio::spawn(async move {
            while let Ok(ev) = events.recv().await {
                if matches!(ev.kind, EventKind::TaskChanged { status: Status::Succeeded, .. }) && tx.send(()).is_err() {
                    return;
                }
            }
        });
    }
    let t = Instant::now();
    engines[0].0.submit((0..n).map(|_| NewTask::new(spec(vec!["true".into()]))).collect()).await.unwrap();
    for _ in 0..n {
        done_rx.recv().await.expect("engines announce successes");
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    for (e, _) in &engines {
        e.shutdown();
    }
    for (_, h) in engines {
        h.await.unwrap();
    }
    ms
}

pub async fn run(quick: bool) -> Vec<(String, Value)> {
    let scale = if quick { 1 } else { 4 };
    let mut out = vec![];
    let fresh = |d| open(&crate::temp_dir(), d);
    out.push(("enqueue_single_sequential_per_s".into(), json!(round2(enqueue_sequential(fresh(Durability::Full), 250 * scale).await))));
    out.push((
        "enqueue_single_concurrent64_per_s".into(),
        json!(round2(enqueue_concurrent(fresh(Durability::Full), 64, 40 * scale).await)),
    ));
    out.push(("enqueue_batched100_per_s".into(), json!(round2(enqueue_batched(fresh(Durability::Full), 25 * scale, 100).await))));
    out.push((
        "enqueue_batched100_normal_sync_per_s".into(),
        json!(round2(enqueue_batched(fresh(Durability::Normal), 25 * scale, 100).await)),
    ));
    out.push(("claim_complete_per_s".into(), json!(round2(claim_complete(fresh(Durability::Full), 2500 * scale, 32).await))));
    let (p50, p99) = start_latency(fresh(Durability::Full), true, 50 * scale).await;
    out.push(("enqueue_to_start_ms".into(), json!({"p50": round2(p50), "p99": round2(p99)})));
    let mut walls = vec![];
    for _ in 0..if quick { 1 } else { 3 } {
        let workers = std::env::var("OWL_BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
        walls.push(shell_tasks(vec![fresh(Durability::Full)], 1000, workers).await);
    }
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out.push(("shell_true_1000_parallel2_ms".into(), json!(round2(percentile(&walls, 0.5)))));
    out
}
