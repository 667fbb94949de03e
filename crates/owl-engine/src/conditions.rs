//! Condition triggers: each enabled condition is checked on its interval; a change from false
//! to true fires it, at most once per cooldown. The last value is kept in the database, so a
//! restart does not invent an edge.

use crate::Shared;
use owl_core::expr::Expr;
use owl_core::trigger::{On, Probe, Trigger};
use owl_core::Timestamp;
use owl_store::FireTrigger;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The facts an expression can use, read now.
pub async fn facts(s: &Shared) -> HashMap<String, f64> {
    let mut f = HashMap::new();
    if let Ok(c) = s.store.counts().await {
        use owl_core::task::Status;
        f.insert("queue_depth".into(), (c.get(Status::Queued) + c.get(Status::Waiting)) as f64);
        f.insert("running".into(), c.get(Status::Running) as f64);
    }
    if let Ok(n) = s.store.failures_since(s.clock.now().minus(Duration::from_secs(3600))).await {
        f.insert("failures_last_hour".into(), n as f64);
    }
    if let Ok(st) = nix::sys::statvfs::statvfs(s.layout.root()) {
        let total = st.blocks() as f64 * st.fragment_size() as f64;
        if total > 0.0 {
            f.insert("disk_free_percent".into(), st.blocks_available() as f64 * st.fragment_size() as f64 / total * 100.0);
        }
    }
    if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
        let field = |name: &str| mem.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
        if let (Some(total), Some(avail)) = (field("MemTotal:"), field("MemAvailable:")) {
            f.insert("memory_free_percent".into(), avail / total * 100.0);
        }
    }
    if let Some(load) = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok()) {
        f.insert("load_average".into(), load);
    }
    f
}

/// The longest a shell probe may run (less when the condition is checked more often).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

async fn check(s: &Shared, id: i64, probe: &Probe, every: Duration) -> bool {
    match probe {
        Probe::Expr(src) => match Expr::parse(src) {
            Ok(e) => e.eval(&facts(s).await),
            Err(_) => false,
        },
        // Through owl-exec like any task: its own process group (a timeout ends all of it,
        // children included), stdin closed, the withheld secrets removed from its environment,
        // and its output in logs/condition-<trigger>.log, the last check's, for debugging.
        Probe::Shell(cmd) => {
            let spec = owl_exec::ProcessSpec {
                argv: vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
                env: vec![("OWL_DATA_DIR".into(), s.layout.root().display().to_string())],
                cwd: s.layout.root().to_path_buf(),
                log_path: s.layout.root().join("logs").join(format!("condition-{id}.log")),
                log_max_bytes: 64 * 1024,
                timeout: Some(PROBE_TIMEOUT.min(every.max(Duration::from_secs(1)))),
                kill_grace: Duration::from_millis(500),
                env_remove: s.withheld_env.read().unwrap_or_else(|p| p.into_inner()).clone(),
                stdout_tap: None,
            };
            let (_stop_tx, stop_rx) = watch::channel(None);
            let (progress, _) = watch::channel(0);
            owl_exec::run(spec, stop_rx, progress).await.success()
        }
    }
}

pub(crate) async fn condition_loop(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut next: HashMap<i64, Instant> = HashMap::new();
    loop {
        let conditions: Vec<Trigger> = match s.store.list_triggers().await {
            Ok(all) => all.into_iter().filter(|t| t.enabled && matches!(t.spec.on, On::Condition { .. })).collect(),
            Err(_) => vec![],
        };
        next.retain(|id, _| conditions.iter().any(|t| t.id == *id));
        let now = Instant::now();
        for t in &conditions {
            let On::Condition { probe, every_ms, cooldown_ms } = &t.spec.on else { continue };
            let due = *next.entry(t.id).or_insert(now);
            if due > now {
                continue;
            }
            next.insert(t.id, now + Duration::from_millis(*every_ms));
            let value = check(&s, t.id, probe, Duration::from_millis(*every_ms)).await;
            let key = format!("condition:{}", t.id);
            // One atomic swap: where several nodes share the store, only the one whose swap
            // turned false into true saw the edge, so an edge fires once.
            let Ok(was) = s.store.kv_swap(&key, if value { "true" } else { "false" }).await else { continue };
            let was = was.map(|v| v == "true");
            // A condition first seen true (no stored value) counts as an edge only after the
            // trigger was created: a brand-new trigger on an already-true condition fires once.
            if !value || was == Some(true) {
                continue;
            }
            let at = s.clock.now();
            let in_cooldown = t.last_fired_at.is_some_and(|last| at.since(last) < Duration::from_millis(*cooldown_ms));
            let task = if in_cooldown {
                Err(format!("in cooldown until {}", t.last_fired_at.unwrap_or(Timestamp(0)).plus(Duration::from_millis(*cooldown_ms))))
            } else {
                let mut spec = crate::triggers::task_for(t, 1);
                spec.env.insert(
                    "OWL_CONDITION".into(),
                    match probe {
                        Probe::Expr(e) | Probe::Shell(e) => e.clone(),
                    },
                );
                Ok(spec)
            };
            match s.store.fire_trigger(FireTrigger { trigger_id: t.id, source: format!("condition:{}", at.0), task, now: at }).await {
                Ok(r) => crate::triggers::announce(&s, &r),
                Err(e) => tracing::error!(trigger = %t.spec.name, error = %e, "cannot record a condition edge"),
            }
        }
        let wake = next.values().min().copied();
        tokio::select! {
            _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {}
            _ = s.conditions_changed.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
