//! Supervision: nothing the engine spawns can fail unnoticed.
//!
//! A runner's panic reaches the dispatch loop through its `JoinSet` and ends the attempt as
//! failed ([`crate::runner::after_panic`]); a long-lived loop that panics is restarted with
//! backoff by [`supervise_loop`]. The daemon's panic hook logs each panic's backtrace.

use crate::Shared;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The text of a panic, from its payload.
pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "it was cancelled".into();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// Runs the loop `make` builds until it returns (it does when `stop` flips). When it panics,
/// or stays busy on one pass past `[health] loop_stall` (it is then aborted), logs it and
/// starts a fresh one after a backoff (1 s, doubling to a minute, back to 1 s once a run has
/// lasted a minute), so one bad pass cannot silence the scheduler for good. Past
/// `[health] loop_restarts` restarts in an hour it gives up and raises `fatal`: the daemon
/// exits, and its service manager starts a fresh process.
pub(crate) async fn supervise_loop<F, Fut>(name: &'static str, s: Arc<Shared>, mut stop: watch::Receiver<bool>, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_secs(1);
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    loop {
        let started = Instant::now();
        s.loops.idle(name);
        let mut handle = tokio::spawn(make());
        let why = loop {
            let stall = s.config().health.loop_stall;
            tokio::select! {
                joined = &mut handle => match joined {
                    Ok(()) => return,
                    Err(e) => break format!("it panicked: {}", panic_message(e)),
                },
                _ = tokio::time::sleep((stall / 4).max(Duration::from_millis(10))) => {
                    if s.loops.busy_for(name).is_some_and(|b| b > stall) {
                        handle.abort();
                        let _ = (&mut handle).await;
                        break format!("one pass ran past the stall limit of {}", owl_core::duration::format(stall));
                    }
                }
            }
        };
        if *stop.borrow() {
            return;
        }
        s.loops.down(name, why.clone());
        s.metrics.loop_restarts.get_or_create(&crate::metrics::LoopLabels { r#loop: name }).inc();
        let now = Instant::now();
        restarts.push_back(now);
        while restarts.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600)) {
            restarts.pop_front();
        }
        let budget = s.config().health.loop_restarts;
        if restarts.len() as u32 > budget {
            let msg = format!("the {name} loop was restarted {budget} times within an hour and failed again ({why}); exiting so the service manager starts a fresh daemon");
            tracing::error!(task_loop = name, "{msg}");
            let _ = s.fatal.send(Some(msg));
            return;
        }
        tracing::error!(task_loop = name, problem = %why, restart_in = ?backoff, "a loop failed; restarting it (this is a bug in owl)");
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn engine(stall: Duration, restarts: u32) -> (crate::Engine, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = owl_store_sqlite::SqliteStore::open(&dir.path().join("owl.db"), owl_store_sqlite::Durability::Full).unwrap();
        let mut cfg = crate::tests_config();
        cfg.health.loop_stall = stall;
        cfg.health.loop_restarts = restarts;
        let layout = owl_core::layout::DataLayout::new(dir.path());
        let (engine, _dispatch) = crate::Engine::new(Arc::new(store), layout, cfg, Arc::new(crate::SystemClock));
        (engine, dir)
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_restarted_and_still_stops() {
        let (engine, _dir) = engine(Duration::from_secs(60), 5);
        let runs = Arc::new(AtomicU32::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let r = runs.clone();
        let rx = stop_rx.clone();
        let sup = tokio::spawn(supervise_loop("test", engine.shared.clone(), stop_rx, move || {
            let (r, mut rx) = (r.clone(), rx.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("injected");
                }
                let _ = rx.changed().await;
            }
        }));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two panics, then a run that lasts");
        let h = engine.loops().into_iter().find(|l| l.name == "test").unwrap();
        assert!(h.ok && h.restarts == 2, "{h:?}");
        assert!(engine.metrics().encode(false).contains("owl_loop_restarts_total{loop=\"test\"} 2"));
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), sup).await.expect("stops").unwrap();
        assert!(engine.fatal().borrow().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_loop_is_aborted_and_restarted_until_its_budget_runs_out() {
        let (engine, _dir) = engine(Duration::from_secs(2), 2);
        let runs = Arc::new(AtomicU32::new(0));
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (r, s) = (runs.clone(), engine.shared.clone());
        let sup = tokio::spawn(supervise_loop("stuck", engine.shared.clone(), stop_rx, move || {
            let (r, s) = (r.clone(), s.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                // A pass that never ends (a store call that hangs).
                s.loops.busy("stuck");
                std::future::pending::<()>().await
            }
        }));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(engine.loops().iter().all(|l| l.ok), "busy, but not yet past the limit");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "aborted, waiting out its backoff");
        let h = engine.loops().into_iter().find(|l| l.name == "stuck").unwrap();
        assert!(!h.ok && h.reason.contains("stall limit"), "{h:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "restarted after the backoff");
        let mut fatal = engine.fatal();
        tokio::time::timeout(Duration::from_secs(60), fatal.wait_for(|f| f.is_some())).await.expect("the budget runs out").unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two restarts allowed, the third failure is fatal");
        assert!(fatal.borrow().as_deref().unwrap().contains("stuck loop was restarted 2 times"));
        tokio::time::timeout(Duration::from_secs(1), sup).await.expect("the supervisor gives up").unwrap();
    }
}
