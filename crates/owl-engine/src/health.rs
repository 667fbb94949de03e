//! The daemon's own health: whether each long-lived loop is responsive (liveness) and whether
//! the daemon can take work (readiness).
//!
//! A loop is responsive while it waits for its next wake-up and for a while after it starts a
//! pass; one busy on a single pass longer than the stall limit, or down after a panic, is not.
//! Loops sleep until they are due, so "when it last beat" is now while it waits and the start
//! of its pass while it works: a heartbeat without polling.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

#[derive(Clone, Debug)]
struct LoopState {
    /// When the current pass started (monotonic, and wall time for reports).
    busy_since: Option<(Instant, SystemTime)>,
    /// False after a panic until the supervisor starts it again.
    up: bool,
    restarts: u64,
    last_problem: Option<String>,
}

/// The loops of one engine and what each is doing.
#[derive(Default)]
pub struct Loops {
    inner: Mutex<BTreeMap<&'static str, LoopState>>,
}

/// One loop as a check sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopHealth {
    pub name: &'static str,
    pub ok: bool,
    /// Why not, or what it is doing.
    pub reason: String,
    /// The last moment it was known responsive, in Unix seconds.
    pub heartbeat: f64,
    pub restarts: u64,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Loops {
    fn with(&self, name: &'static str, f: impl FnOnce(&mut LoopState)) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let st = g.entry(name).or_insert(LoopState { busy_since: None, up: true, restarts: 0, last_problem: None });
        f(st)
    }

    /// The loop started a pass.
    pub fn busy(&self, name: &'static str) {
        self.with(name, |s| {
            s.up = true;
            if s.busy_since.is_none() {
                s.busy_since = Some((Instant::now(), SystemTime::now()));
            }
        })
    }

    /// The loop finished its pass and waits for the next wake-up.
    pub fn idle(&self, name: &'static str) {
        self.with(name, |s| {
            s.up = true;
            s.busy_since = None;
        })
    }

    /// The loop is gone (a panic, or aborted as stalled) until the supervisor restarts it.
    pub fn down(&self, name: &'static str, why: String) {
        self.with(name, |s| {
            s.up = false;
            s.busy_since = None;
            s.restarts += 1;
            s.last_problem = Some(why);
        })
    }

    /// How long the loop has been busy on its current pass.
    pub fn busy_for(&self, name: &'static str) -> Option<Duration> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.get(name).and_then(|s| s.busy_since.map(|(t, _)| t.elapsed()))
    }

    /// Every loop's state, judged against `stall`.
    pub fn check(&self, stall: Duration) -> Vec<LoopHealth> {
        let now = SystemTime::now();
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.iter()
            .map(|(name, s)| {
                let (ok, reason, heartbeat) = match (s.up, s.busy_since) {
                    (false, _) => {
                        (false, format!("down: {}; restarting", s.last_problem.as_deref().unwrap_or("it stopped")), unix(now) - 1e9)
                    }
                    (true, None) => (true, "waiting for work".to_string(), unix(now)),
                    (true, Some((t, wall))) => {
                        let busy = t.elapsed();
                        if busy > stall {
                            let limit = owl_core::duration::format(stall);
                            (
                                false,
                                format!("stalled: one pass has run {} (limit {limit})", owl_core::duration::format(round(busy))),
                                unix(wall),
                            )
                        } else {
                            (true, format!("working for {}", owl_core::duration::format(round(busy))), unix(wall))
                        }
                    }
                };
                LoopHealth { name, ok, reason, heartbeat: heartbeat.max(0.0), restarts: s.restarts }
            })
            .collect()
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(if d.is_zero() { 0 } else { 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_live_while_it_waits_and_stalled_after_a_long_pass() {
        let l = Loops::default();
        l.idle("scheduler");
        l.busy("dispatch");
        let c = l.check(Duration::from_secs(60));
        assert!(c.iter().all(|h| h.ok), "{c:?}");
        std::thread::sleep(Duration::from_millis(30));
        let c = l.check(Duration::from_millis(10));
        let d = c.iter().find(|h| h.name == "dispatch").unwrap();
        assert!(!d.ok && d.reason.starts_with("stalled"), "{d:?}");
        assert!(c.iter().find(|h| h.name == "scheduler").unwrap().ok, "a waiting loop is never stalled");
        l.down("dispatch", "it panicked".into());
        let d = l.check(Duration::from_secs(60)).into_iter().find(|h| h.name == "dispatch").unwrap();
        assert!(!d.ok && d.reason.contains("it panicked") && d.restarts == 1, "{d:?}");
        l.idle("dispatch");
        assert!(l.check(Duration::from_secs(60)).iter().all(|h| h.ok));
    }
}

/// One readiness check.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub reason: String,
}

/// Free space on the disk holding `path`, in MiB.
pub fn free_disk_mb(path: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64 / (1024 * 1024))
}

/// Memory the machine has available, in MiB (`MemAvailable`).
pub fn free_memory_mb() -> Option<u64> {
    let mem = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = mem.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// How long a readiness answer is reused.
const READY_CACHE: Duration = Duration::from_secs(1);

/// Why new work must wait for disk space, if it must.
pub(crate) fn disk_low(s: &crate::Shared) -> Option<String> {
    let min = s.config().health.min_free_disk_mb;
    let free = free_disk_mb(s.layout.root())?;
    (free < min).then(|| {
        format!(
            "only {free} MiB free on the data dir's disk (below [health] min_free_disk_mb = {min}); new tasks wait until space is freed"
        )
    })
}

impl crate::Engine {
    /// Whether the daemon can take work: the store takes a write, the data dir's disk and the
    /// machine's memory have headroom, and every loop is live.
    pub async fn readiness(&self) -> Vec<Check> {
        let s = &self.shared;
        if let Some((at, checks)) = s.ready_cache.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if at.elapsed() < READY_CACHE {
                return checks.clone();
            }
        }
        let checks = self.check_readiness().await;
        *s.ready_cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), checks.clone()));
        checks
    }

    async fn check_readiness(&self) -> Vec<Check> {
        let s = &self.shared;
        let cfg = s.config();
        let mut out = vec![];
        let probe = format!("{}", s.clock.now().0);
        let store = match tokio::time::timeout(Duration::from_secs(5), s.store.kv_set("owl:health:probe", &probe)).await {
            Ok(Ok(())) => Check { name: "store", ok: true, reason: "takes writes".into() },
            Ok(Err(e)) => Check { name: "store", ok: false, reason: format!("a write failed: {e}") },
            Err(_) => Check { name: "store", ok: false, reason: "a write took longer than 5 s".into() },
        };
        out.push(store);
        out.push(match (disk_low(s), free_disk_mb(s.layout.root())) {
            (Some(why), _) => Check { name: "disk", ok: false, reason: why },
            (None, Some(free)) => Check { name: "disk", ok: true, reason: format!("{free} MiB free") },
            (None, None) => Check { name: "disk", ok: true, reason: "free space unknown (statvfs failed)".into() },
        });
        out.push(match free_memory_mb() {
            Some(free) if free < cfg.health.min_free_memory_mb => Check {
                name: "memory",
                ok: false,
                reason: format!("only {free} MiB available (below [health] min_free_memory_mb = {})", cfg.health.min_free_memory_mb),
            },
            Some(free) => Check { name: "memory", ok: true, reason: format!("{free} MiB available") },
            None => Check { name: "memory", ok: true, reason: "available memory unknown (no /proc/meminfo)".into() },
        });
        if let Some(rt) = s.agents() {
            let providers = rt.provider_health();
            let open: Vec<String> =
                providers.iter().filter(|p| !p.1).map(|p| format!("{}: {}", p.0, p.2.clone().unwrap_or_default())).collect();
            out.push(if open.is_empty() {
                let usable = providers.iter().filter(|p| p.2.is_none()).count();
                Check { name: "providers", ok: true, reason: format!("{usable} of {} providers usable", providers.len()) }
            } else {
                Check { name: "providers", ok: false, reason: open.join("; ") }
            });
        }
        let loops = self.loops();
        let bad: Vec<String> = loops.iter().filter(|l| !l.ok).map(|l| format!("{}: {}", l.name, l.reason)).collect();
        out.push(if bad.is_empty() {
            Check { name: "loops", ok: true, reason: format!("{} loops live", loops.len()) }
        } else {
            Check { name: "loops", ok: false, reason: bad.join("; ") }
        });
        out
    }
}
