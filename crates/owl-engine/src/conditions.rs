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

async fn check(s: &Shared, probe: &Probe) -> bool {
    match probe {
        Probe::Expr(src) => match Expr::parse(src) {
            Ok(e) => e.eval(&facts(s).await),
            Err(_) => false,
        },
        Probe::Shell(cmd) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.args(["-c", cmd])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            matches!(tokio::time::timeout(Duration::from_secs(30), c.status()).await, Ok(Ok(st)) if st.success())
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
            let value = check(&s, probe).await;
            let key = format!("condition:{}", t.id);
            let was = s.store.kv_get(&key).await.ok().flatten().map(|v| v == "true");
            let _ = s.store.kv_set(&key, if value { "true" } else { "false" }).await;
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
