//! Supervision: nothing the engine spawns can fail unnoticed.
//!
//! A runner's panic reaches the dispatch loop through its `JoinSet` and ends the attempt as
//! failed ([`crate::runner::after_panic`]); a long-lived loop that panics is restarted with
//! backoff by [`supervise_loop`]. The daemon's panic hook logs each panic's backtrace.

use std::future::Future;
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
/// logs it and starts a fresh one after a backoff (1 s, doubling to a minute, back to 1 s once
/// a run has lasted a minute), so one bad pass cannot silence the scheduler for good.
pub(crate) async fn supervise_loop<F, Fut>(name: &'static str, mut stop: watch::Receiver<bool>, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) => {
                let why = panic_message(e);
                tracing::error!(task_loop = name, panic = %why, restart_in = ?backoff, "a loop panicked; restarting it (this is a bug in owl)");
            }
        }
        if *stop.borrow() {
            return;
        }
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
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_loop_is_restarted_and_still_stops() {
        let runs = Arc::new(AtomicU32::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let r = runs.clone();
        let rx = stop_rx.clone();
        let sup = tokio::spawn(supervise_loop("test", stop_rx, move || {
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
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), sup).await.expect("stops").unwrap();
    }
}
