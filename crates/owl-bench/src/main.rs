//! owl-bench: the figures BENCHMARKS.md reports, printed as one JSON object.
//!
//! `owl-bench [--quick] [--skip-idle]` for the queue and daemon figures;
//! `owl-bench scheduler [--quick]` for the scheduler figures (about 90 s);
//! `owl-bench scaleout [--quick]` for SQLite beside PostgreSQL and 1 to 3 nodes on one database;
//! `owl-bench eval` for the default agent's evaluation (16 first tasks, local model);
//! `owl-bench footprint` for the daemon's memory with both local models loaded;
//! `owl-bench memory [--quick]` for the memory index at 100,000 items and the embedder;
//! `owl-bench agent [--quick]` for the agent loop and (with `--features local`) the local model. Build both binaries in release first
//! (`cargo build --release -p owl-cli -p owl-bench`): the daemon figures start the real `owl`
//! binary found next to this one.

mod agent_figures;
mod daemon_figures;
mod dashboard_figures;
mod eval_figures;
mod memory_figures;
mod queue_figures;
mod scaleout_figures;
mod scheduler_figures;

use serde_json::{json, Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn nanos_now() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos()
}

/// Temp dirs live until the end of the run: deleting thousands of files between phases makes
/// the filesystem's inode allocation slower for the next phase, which would skew its figure.
static KEEP: std::sync::Mutex<Vec<tempfile::TempDir>> = std::sync::Mutex::new(Vec::new());

pub fn temp_dir() -> std::path::PathBuf {
    let d = tempfile::tempdir().expect("temp dir");
    let p = d.path().to_path_buf();
    KEEP.lock().expect("keep lock").push(d);
    p
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Used as a task: record when this process started running, then exit.
    if args.get(1).map(String::as_str) == Some("stamp") {
        std::fs::write(&args[2], nanos_now().to_string()).expect("write stamp");
        return;
    }
    if let Ok(filter) = std::env::var("OWL_LOG") {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).init();
    }
    let quick = args.iter().any(|a| a == "--quick");
    let skip_idle = args.iter().any(|a| a == "--skip-idle");
    let mut out = Map::new();
    out.insert("machine".into(), machine());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    if args.get(1).map(String::as_str) == Some("memory") {
        for (k, v) in memory_figures::run(quick) {
            out.insert(k, v);
        }
    } else if args.get(1).map(String::as_str) == Some("agent") {
        rt.block_on(async {
            for (k, v) in agent_figures::run(quick).await {
                out.insert(k, v);
            }
        });
    } else if args.get(1).map(String::as_str) == Some("eval") {
        for (k, v) in eval_figures::run() {
            out.insert(k, v);
        }
    } else if args.get(1).map(String::as_str) == Some("footprint") {
        for (k, v) in daemon_figures::footprint() {
            out.insert(k, v);
        }
    } else if args.get(1).map(String::as_str) == Some("scaleout") {
        rt.block_on(async {
            for (k, v) in scaleout_figures::run(quick).await {
                out.insert(k, v);
            }
        });
    } else if args.get(1).map(String::as_str) == Some("dashboard") {
        for (k, v) in dashboard_figures::run(quick) {
            out.insert(k, v);
        }
    } else if args.get(1).map(String::as_str) == Some("scheduler") {
        rt.block_on(async {
            for (k, v) in scheduler_figures::run(quick).await {
                out.insert(k, v);
            }
        });
    } else {
        rt.block_on(async {
            for (k, v) in queue_figures::run(quick).await {
                out.insert(k, v);
            }
        });
        for (k, v) in daemon_figures::run(quick, skip_idle) {
            out.insert(k, v);
        }
    }
    println!("{}", serde_json::to_string_pretty(&Value::Object(out)).expect("json"));
    KEEP.lock().expect("keep lock").clear();
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0);
    json!({"cores": cores, "memory_gib": round2(mem_kb as f64 / 1024.0 / 1024.0), "profile": if cfg!(debug_assertions) { "debug" } else { "release" }})
}
