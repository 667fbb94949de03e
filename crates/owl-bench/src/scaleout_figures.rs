//! SQLite beside PostgreSQL, in the same run on the same machine: enqueue (single and
//! batched), claim+complete, enqueue-to-start, and throughput with 1, 2 and 3 nodes sharing
//! one database. The PostgreSQL cluster is started for the run with durable settings (fsync
//! and full-page writes on, synchronous commit), as SQLite runs with `synchronous=FULL`.

use crate::queue_figures::{claim_complete, enqueue_batched, enqueue_concurrent, enqueue_sequential, shell_tasks, start_latency};
use crate::round2;
use owl_store::Store;
use owl_store_postgres::{testing, Migrate, Options, PgStore};
use owl_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use std::sync::Arc;

fn sqlite() -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&crate::temp_dir().join("owl.db"), Durability::Full).expect("open SQLite"))
}

/// A fresh schema, and `nodes` stores on it (one pool each, as separate daemons have).
async fn postgres(cluster: &testing::Cluster, nodes: usize) -> Vec<Arc<dyn Store>> {
    postgres_with(cluster, nodes, false).await
}

/// `notify`: the wake-up hint on, or off (the default).
async fn postgres_with(cluster: &testing::Cluster, nodes: usize, notify: bool) -> Vec<Arc<dyn Store>> {
    let url = testing::schema_on(&cluster.url).await.expect("schema");
    let mut out: Vec<Arc<dyn Store>> = vec![];
    for _ in 0..nodes {
        let opts = Options { pool_size: 8, migrate: Migrate::Apply, notify };
        out.push(Arc::new(PgStore::open(&url, opts).await.expect("open PostgreSQL")));
    }
    out
}
pub async fn run(quick: bool) -> Vec<(String, Value)> {
    let scale = if quick { 1 } else { 4 };
    let cluster = tokio::task::spawn_blocking(|| testing::Cluster::start_durable(true)).await.unwrap().expect("a PostgreSQL cluster");
    let mut out = vec![];
    let pair = |out: &mut Vec<(String, Value)>, name: &str, sqlite: f64, pg: f64| {
        out.push((
            name.to_string(),
            json!({"sqlite": round2(sqlite), "postgres": round2(pg), "postgres_over_sqlite": round2(pg / sqlite)}),
        ));
    };
    let one = |v: Vec<Arc<dyn Store>>| v.into_iter().next().expect("a store");
    pair(
        &mut out,
        "enqueue_single_sequential_per_s",
        enqueue_sequential(sqlite(), 250 * scale).await,
        enqueue_sequential(one(postgres(&cluster, 1).await), 250 * scale).await,
    );
    pair(
        &mut out,
        "enqueue_single_concurrent64_per_s",
        enqueue_concurrent(sqlite(), 64, 40 * scale).await,
        enqueue_concurrent(one(postgres(&cluster, 1).await), 64, 40 * scale).await,
    );
    let hinted = enqueue_concurrent(one(postgres_with(&cluster, 1, true).await), 64, 40 * scale).await;
    out.push(("enqueue_single_concurrent64_notify_on_per_s".into(), json!({"postgres": round2(hinted)})));
    pair(
        &mut out,
        "enqueue_batched100_per_s",
        enqueue_batched(sqlite(), 25 * scale, 100).await,
        enqueue_batched(one(postgres(&cluster, 1).await), 25 * scale, 100).await,
    );
    pair(
        &mut out,
        "claim_complete_per_s",
        claim_complete(sqlite(), 2500 * scale, 32).await,
        claim_complete(one(postgres(&cluster, 1).await), 2500 * scale, 32).await,
    );
    let (s50, s99) = start_latency(sqlite(), true, 50 * scale).await;
    let (p50, p99) = start_latency(one(postgres(&cluster, 1).await), false, 50 * scale).await;
    out.push((
        "enqueue_to_start_ms".into(),
        json!({"sqlite": {"p50": round2(s50), "p99": round2(s99)}, "postgres": {"p50": round2(p50), "p99": round2(p99)}}),
    ));
    let n = 1000;
    let sqlite_ms = shell_tasks(vec![sqlite()], n, 2).await;
    let mut nodes = json!({"sqlite_1_node_ms": round2(sqlite_ms)});
    for k in 1..=3 {
        let ms = shell_tasks(postgres(&cluster, k).await, n, 2).await;
        nodes[format!("postgres_{k}_nodes_ms")] = json!(round2(ms));
        nodes[format!("postgres_{k}_nodes_per_s")] = json!(round2(n as f64 / (ms / 1000.0)));
    }
    out.push(("shell_true_1000_2_workers_per_node".into(), nodes));
    out
}
