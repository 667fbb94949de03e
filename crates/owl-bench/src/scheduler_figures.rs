//! Scheduler figures: fire lateness with 10,000 schedules (1,000 of them due in the same
//! second), time for an edit to take effect, idle CPU with 10,000 schedules, and the time of a
//! metrics scrape with them.

use crate::{percentile, round2};
use owl_core::schedule::{Misfire, Overlap, ScheduleSpec, When};
use owl_core::{Command, EventKind, TaskSpec, Timestamp};
use owl_engine::{Engine, SystemClock};
use owl_store::{Store, TaskFilter};
use owl_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn spec(name: String, when: When) -> ScheduleSpec {
    ScheduleSpec {
        name,
        when,
        template: TaskSpec::new(Command::Argv(vec!["true".into()])),
        misfire: Misfire::Skip,
        misfire_cap: 10,
        overlap: Overlap::Allow,
        max_lateness_ms: 60_000,
        jitter_ms: 0,
        end_at: None,
        max_runs: None,
        created_by: None,
    }
}

fn now() -> Timestamp {
    Timestamp::from_system(std::time::SystemTime::now())
}

/// An engine that schedules but runs nothing (0 workers), so only scheduling is measured.
fn start_engine(dir: &std::path::Path) -> (Engine, tokio::task::JoinHandle<()>) {
    let durability = if std::env::var_os("OWL_BENCH_NORMAL_SYNC").is_some() { Durability::Normal } else { Durability::Full };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("owl.db"), durability).unwrap());
    let cfg = crate::queue_figures::engine_config(0);
    let (engine, dispatch) = Engine::new(store, owl_core::layout::DataLayout::new(dir), cfg, Arc::new(SystemClock));
    (engine, tokio::spawn(dispatch.run(true)))
}

async fn create_all(engine: &Engine, specs: Vec<ScheduleSpec>) {
    for chunk in specs.chunks(500) {
        let futs = chunk.iter().cloned().map(|s| {
            let e = engine.clone();
            async move { e.create_schedule(s).await.unwrap() }
        });
        futures_util::future::join_all(futs).await;
    }
}

fn cpu_ticks_self() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub async fn run(quick: bool) -> Vec<(String, Value)> {
    let total = if quick { 2_000 } else { 10_000 };
    let burst = total / 10;
    let mut out = vec![];

    // Lateness: every schedule fires once a minute; `burst` of them share one instant, the
    // rest are spread evenly over the minute.
    let dir = crate::temp_dir();
    let (engine, handle) = start_engine(&dir);
    let mut events = engine.subscribe();
    let base = now().plus(Duration::from_secs(if quick { 4 } else { 12 }));
    let spread = total - burst;
    let mut specs = Vec::with_capacity(total);
    for i in 0..total {
        let anchor = if i < burst { base } else { base.plus(Duration::from_millis(((i - burst + 1) as u64 * 59_000) / spread as u64)) };
        specs.push(spec(format!("s{i}"), When::Every { every_ms: 60_000, anchor: anchor.minus(Duration::from_secs(60)) }));
    }
    let t = Instant::now();
    create_all(&engine, specs).await;
    out.push(("schedules_created_per_s".into(), json!(round2(total as f64 / t.elapsed().as_secs_f64()))));
    let window_end = Instant::now() + base.plus(Duration::from_secs(61)).since(now());
    let mut published: HashMap<owl_core::TaskId, Timestamp> = HashMap::new();
    while published.len() < total && Instant::now() < window_end {
        match tokio::time::timeout_at(tokio::time::Instant::from_std(window_end), events.recv()).await {
            Ok(Ok(e)) => {
                if let EventKind::TaskSubmitted { task_id, .. } = e.kind {
                    published.insert(task_id, e.at);
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => panic!("the benchmark lost {n} events"),
            _ => break,
        }
    }
    let tasks = engine.store().list(TaskFilter { limit: Some(total as u32 * 2), ..Default::default() }).await.unwrap();
    let mut all = vec![];
    let mut in_burst = vec![];
    let mut spread_only = vec![];
    for t in tasks {
        let Some(at) = published.get(&t.id) else { continue };
        let slot = Timestamp::parse_rfc3339(&t.spec.env["OWL_SCHEDULED_FOR"]).unwrap();
        let late = at.since(slot).as_secs_f64() * 1000.0;
        all.push(late);
        if slot == base {
            in_burst.push(late);
        } else {
            spread_only.push(late);
        }
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    in_burst.sort_by(|a, b| a.partial_cmp(b).unwrap());
    spread_only.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let stats = |v: &[f64]| json!({"fires": v.len(), "p50": round2(percentile(v, 0.5)), "p99": round2(percentile(v, 0.99)), "max": round2(v.last().copied().unwrap_or(f64::NAN))});
    out.push(("fire_lateness_ms_all".into(), stats(&all)));
    out.push((format!("fire_lateness_ms_{}_spread_over_the_minute", total - burst), stats(&spread_only)));
    out.push((format!("fire_lateness_ms_{burst}_in_one_second"), stats(&in_burst)));

    // A Prometheus scrape of this daemon: every schedule's gauges and its latest run's status.
    let mut scrapes = vec![];
    let mut bytes = 0;
    for _ in 0..20 {
        let t = Instant::now();
        bytes = engine.scrape_metrics(false).await.unwrap().len();
        scrapes.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    scrapes.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out.push((
        format!("metrics_scrape_ms_with_{total}_schedules"),
        json!({"p50": round2(percentile(&scrapes, 0.5)), "max": round2(scrapes[scrapes.len() - 1]), "bytes": bytes}),
    ));

    // An edit: a new schedule due 50 ms after it is created, among all the others.
    let mut edits = vec![];
    for i in 0..5 {
        let at = now().plus(Duration::from_millis(50));
        engine.create_schedule(spec(format!("edit{i}"), When::Once { at })).await.unwrap();
        let id = loop {
            if let Ok(e) = events.recv().await {
                if let EventKind::TaskSubmitted { task_id, .. } = e.kind {
                    if engine.store().get(task_id).await.unwrap().spec.env["OWL_SCHEDULE"] == format!("edit{i}") {
                        break e.at;
                    }
                }
            }
        };
        edits.push(id.since(at).as_secs_f64() * 1000.0);
    }
    edits.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out.push(("edit_to_fire_lateness_ms_p50".into(), json!(round2(percentile(&edits, 0.5)))));
    engine.shutdown();
    handle.await.unwrap();

    // Idle: schedules that are all due tomorrow.
    let dir = crate::temp_dir();
    let (engine, handle) = start_engine(&dir);
    let tomorrow = now().plus(Duration::from_secs(86_400));
    create_all(
        &engine,
        (0..total).map(|i| spec(format!("d{i}"), When::Once { at: tomorrow.plus(Duration::from_secs(i as u64)) })).collect(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = if quick { Duration::from_secs(3) } else { Duration::from_secs(10) };
    let t0 = cpu_ticks_self();
    tokio::time::sleep(window).await;
    let ticks = cpu_ticks_self() - t0;
    out.push((format!("idle_cpu_percent_with_{total}_schedules"), json!(round2(ticks as f64 / 100.0 / window.as_secs_f64() * 100.0))));
    engine.shutdown();
    handle.await.unwrap();
    out
}
