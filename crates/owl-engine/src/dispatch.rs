//! The dispatch loop: the only place that claims work and decides what runs.

use crate::chats::{ChatEnd, ChatError, ChatJob, ChatUpdate};
use crate::runner::run_task;
use crate::supervise::{panic_message, supervise_loop};
use crate::{Command, Shared};
use owl_agent::Halt;
use owl_core::EventKind;
use owl_exec::Stop;
use owl_store::{Claim, Heartbeat};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Chat turns: those holding a worker slot, and those waiting for one (served before new
/// claims, since a person is waiting on them).
#[derive(Default)]
struct Chats {
    set: JoinSet<ChatEnd>,
    by_task: HashMap<tokio::task::Id, i64>,
    running: HashMap<i64, (watch::Sender<Option<Halt>>, mpsc::UnboundedSender<ChatUpdate>)>,
    waiting: VecDeque<ChatJob>,
}

impl Chats {
    fn busy(&self, chat: i64) -> bool {
        self.running.contains_key(&chat) || self.waiting.iter().any(|j| j.chat == chat)
    }

    fn start(&mut self, s: &Arc<Shared>, job: ChatJob, timeout: Duration) {
        let (halt_tx, halt_rx) = watch::channel(None);
        let chat = job.chat;
        self.running.insert(chat, (halt_tx, job.updates.clone()));
        let handle = self.set.spawn(crate::chats::run_chat_turn(s.clone(), job, halt_rx, timeout));
        self.by_task.insert(handle.id(), chat);
    }
}

/// The runners the loop started, owned so that a panic in one is seen (not lost with a dropped
/// handle): each tokio task id maps to the attempt it runs.
#[derive(Default)]
struct Runners {
    set: JoinSet<()>,
    attempts: HashMap<tokio::task::Id, (owl_core::TaskId, u32)>,
    /// Those that record a panicked attempt's end (a panic there is not retried).
    cleanups: HashSet<tokio::task::Id>,
}

struct Running {
    attempt: u32,
    stop: watch::Sender<Option<Stop>>,
}

pub struct DispatchLoop {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
}

/// How often a node with a free worker looks for work on a shared store (±20 %).
const POLL: Duration = Duration::from_millis(500);

/// How long to wait before trying again after the store failed.
const STORE_RETRY: Duration = Duration::from_millis(500);
/// While the disk is too full to start work, how often the loop looks again.
const DISK_RECHECK: Duration = Duration::from_secs(2);

impl DispatchLoop {
    pub(crate) fn new(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        DispatchLoop { shared, commands }
    }

    /// Runs until shutdown completes. `rescue_all` requeues every task left running by an
    /// earlier daemon (safe when the caller holds the data dir's exclusive lock); otherwise
    /// only tasks whose lease expired are requeued.
    pub async fn run(mut self, rescue_all: bool) {
        let s = self.shared.clone();
        // Before any task starts: which of the daemon's variables tasks must not see.
        s.refresh_withheld_env().await;
        if !rescue_all {
            // On a shared store this node's earlier run may have been declared dead and its
            // tasks rescued elsewhere; whatever it left running must stop before this one
            // claims, so no task runs twice at once.
            self.kill_leftovers_of_this_data_dir();
        }
        match s.store.rescue(s.clock.now(), rescue_all, s.config().retry).await {
            Ok(changes) => {
                if !changes.0.is_empty() {
                    tracing::warn!(tasks = changes.0.len(), "requeued tasks interrupted by an earlier daemon stop");
                }
                self.kill_orphans(&changes).await;
                s.publish_changes(&changes);
            }
            Err(e) => tracing::error!(error = %e, "crash recovery failed; will retry on the lease schedule"),
        }
        let (sched_stop_tx, sched_stop_rx) = watch::channel(false);
        // Every long-lived loop is supervised: a panic is logged and the loop restarted.
        let mut loops = JoinSet::new();
        macro_rules! supervised {
            ($name:literal, $f:path) => {{
                let (s, rx) = (s.clone(), sched_stop_rx.clone());
                let sup = s.clone();
                loops.spawn(supervise_loop($name, sup, sched_stop_rx.clone(), move || $f(s.clone(), rx.clone())));
            }};
        }
        supervised!("scheduler", scheduler_loop);
        supervised!("triggers", crate::triggers::trigger_loop);
        supervised!("file_watch", crate::file_watch::watch_loop);
        supervised!("conditions", crate::conditions::condition_loop);
        supervised!("worktrees", crate::git::worktree_loop);
        supervised!("memory_retention", crate::memory::retention_loop);
        supervised!("reports", crate::reports::daily_loop);
        supervised!("notify", crate::notify::notify_loop);
        supervised!("slack", crate::slack::slack_loop);
        let mut runners = Runners::default();
        let mut chats = Chats::default();
        let mut running: HashMap<owl_core::TaskId, Running> = HashMap::new();
        let mut shutting_down = false;
        let mut shutdown_deadline: Option<Instant> = None;
        let mut next_heartbeat: Option<Instant> = None;
        let mut last_beat = Instant::now();
        // On a store shared with other nodes, a node that died leaves leases nobody renews:
        // every node sweeps for expired ones, so its tasks run again within the lease and a
        // half.
        let mut next_sweep: Option<Instant> = (!rescue_all).then(|| Instant::now() + s.config().lease / 2);
        // Every third of a lease the node says it is alive (`owl nodes`), whether or not it runs
        // anything.
        let started_at = s.clock.now();
        let mut next_node_beat = Some(Instant::now());
        let mut store_backoff: Option<Instant> = None;
        let mut due: Option<Instant> = Some(Instant::now());
        // Running tasks that wait on a person and hold no worker slot, and parked tasks that
        // asked for a slot back, in the order they asked.
        let mut parked: HashSet<owl_core::TaskId> = HashSet::new();
        let mut resuming: VecDeque<(owl_core::TaskId, oneshot::Sender<()>)> = VecDeque::new();

        loop {
            s.loops.busy("dispatch");
            let cfg = s.config();
            // Freed slots go to parked tasks that were approved before any new task is claimed.
            while let Some((id, ready)) = resuming.pop_front() {
                if !shutting_down && running.len() - parked.len() >= cfg.workers {
                    resuming.push_front((id, ready));
                    break;
                }
                // A closed receiver: the task is being stopped; it stays parked until it ends.
                if ready.send(()).is_ok() {
                    parked.remove(&id);
                }
            }
            while !shutting_down && running.len() - parked.len() + chats.running.len() < cfg.workers {
                let Some(job) = chats.waiting.pop_front() else { break };
                chats.start(&s, job, cfg.chat_timeout);
            }
            if !shutting_down && store_backoff.is_none_or(|t| t <= Instant::now()) {
                store_backoff = None;
                // A node that was frozen (SIGSTOP, a stalled VM) past a heartbeat may have lost
                // its leases to other nodes: it learns so, and stops those runs, before it
                // claims anything new.
                let mut beat_ok = true;
                if !running.is_empty() && last_beat.elapsed() > cfg.lease / 2 {
                    beat_ok = self.heartbeat(&cfg, &running).await;
                    if beat_ok {
                        last_beat = Instant::now();
                    }
                    next_heartbeat = Some(Instant::now() + cfg.lease / 3);
                }
                if !beat_ok {
                    // Not knowing which leases it still holds, the node takes nothing new.
                    store_backoff = Some(Instant::now() + STORE_RETRY);
                } else if let Err(e) =
                    self.fill(&cfg, &mut running, parked.len() as isize - chats.running.len() as isize, &mut runners, &mut due).await
                {
                    tracing::error!(error = %e, "dispatch failed; retrying shortly");
                    store_backoff = Some(Instant::now() + STORE_RETRY);
                }
            }
            s.running.store(running.len() as u64, Ordering::Relaxed);
            if shutting_down && running.is_empty() && chats.running.is_empty() {
                break;
            }
            if running.is_empty() {
                next_heartbeat = None;
            } else if next_heartbeat.is_none() {
                next_heartbeat = Some(Instant::now() + cfg.lease / 3);
                last_beat = Instant::now();
            }
            // On a shared store other nodes add tasks this one hears nothing of: with a free
            // worker it looks for work about every half second, jittered so nodes spread out.
            let poll = (!rescue_all && running.len() - parked.len() + chats.running.len() < cfg.workers)
                .then(|| Instant::now() + POLL.mul_f64(0.8 + 0.4 * fastrand::f64()));
            let wake_at = [due, store_backoff, poll].into_iter().flatten().min();
            s.loops.idle("dispatch");
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Wake) => {}
                    Some(Command::Cancel(id, reason)) => {
                        if let Some(r) = running.get(&id) {
                            let _ = r.stop.send(Some(Stop::Cancel(reason)));
                        }
                    }
                    Some(Command::Park(id)) => {
                        if running.contains_key(&id) {
                            tracing::debug!(task = %id, "waiting on an approval; its worker slot is free meanwhile");
                            parked.insert(id);
                        }
                    }
                    Some(Command::Resume(id, ready)) => {
                        if parked.contains(&id) {
                            resuming.push_back((id, ready));
                        } else {
                            let _ = ready.send(());
                        }
                    }
                    Some(Command::Chat(job, accepted)) => {
                        let verdict = if shutting_down {
                            Err(ChatError::ShuttingDown)
                        } else if chats.busy(job.chat) {
                            Err(ChatError::Busy(job.chat))
                        } else {
                            Ok(())
                        };
                        if verdict.is_ok() {
                            chats.waiting.push_back(job);
                        }
                        let _ = accepted.send(verdict);
                    }
                    Some(Command::CancelChat(chat, reply)) => {
                        let found = if let Some((halt, _)) = chats.running.get(&chat) {
                            let _ = halt.send(Some(Halt::Cancel(Some("cancelled by request".into()))));
                            true
                        } else if let Some(pos) = chats.waiting.iter().position(|j| j.chat == chat) {
                            if let Some(job) = chats.waiting.remove(pos) {
                                let _ = job.updates.send(ChatUpdate::End(ChatEnd::Failed("the turn was cancelled before it started".into())));
                            }
                            true
                        } else {
                            false
                        };
                        let _ = reply.send(found);
                    }
                    Some(Command::Shutdown) | None => {
                        if !shutting_down {
                            for job in chats.waiting.drain(..) {
                                let _ = job.updates.send(ChatUpdate::End(ChatEnd::Failed(ChatError::ShuttingDown.to_string())));
                            }
                            shutting_down = true;
                            let _ = sched_stop_tx.send(true);
                            tracing::info!(running = running.len(), grace = ?cfg.shutdown_grace, "shutting down: no new tasks will start");
                            shutdown_deadline = Some(Instant::now() + cfg.shutdown_grace);
                        }
                    }
                },
                Some(joined) = runners.set.join_next_with_id(), if !runners.set.is_empty() => {
                    let (tokio_id, panic) = match joined {
                        Ok((tokio_id, ())) => (tokio_id, None),
                        Err(e) => (e.id(), Some(panic_message(e))),
                    };
                    let Some((id, attempt)) = runners.attempts.remove(&tokio_id) else { continue };
                    let was_cleanup = runners.cleanups.remove(&tokio_id);
                    match panic {
                        // The attempt still counts as running until its end is recorded.
                        Some(why) if !was_cleanup => {
                            let cleanup = runners.set.spawn(crate::runner::after_panic(s.clone(), id, attempt, why, cfg.clone()));
                            runners.attempts.insert(cleanup.id(), (id, attempt));
                            runners.cleanups.insert(cleanup.id());
                        }
                        // The cleanup itself panicked: give up on it (crash recovery requeues
                        // the task at the next start) rather than loop.
                        _ => {
                            if was_cleanup && panic.is_some() {
                                tracing::error!(task = %id, attempt, "recording a panicked attempt panicked too; it stays running until the next start");
                            }
                            running.remove(&id);
                            parked.remove(&id);
                            resuming.retain(|(r, _)| *r != id);
                        }
                    }
                }
                Some(joined) = chats.set.join_next_with_id(), if !chats.set.is_empty() => {
                    let (tokio_id, end) = match joined {
                        Ok((tokio_id, end)) => (tokio_id, end),
                        Err(e) => {
                            let id = e.id();
                            let why = panic_message(e);
                            tracing::error!(panic = %why, "a chat turn panicked (this is a bug in owl)");
                            (id, ChatEnd::Failed(format!("owl's chat turn panicked ({why}); this is a bug in owl, and the daemon's log has the backtrace")))
                        }
                    };
                    let Some(chat) = chats.by_task.remove(&tokio_id) else { continue };
                    // Freed first, then told: a client that sees the end may send at once.
                    if let Some((_, updates)) = chats.running.remove(&chat) {
                        let _ = updates.send(ChatUpdate::End(end));
                    }
                }
                _ = sleep_until(wake_at), if wake_at.is_some() && !shutting_down => {}
                _ = sleep_until(next_heartbeat), if next_heartbeat.is_some() => {
                    s.loops.busy("dispatch");
                    next_heartbeat = Some(Instant::now() + cfg.lease / 3);
                    if self.heartbeat(&cfg, &running).await {
                        last_beat = Instant::now();
                    }
                }
                _ = sleep_until(next_node_beat), if next_node_beat.is_some() => {
                    s.loops.busy("dispatch");
                    next_node_beat = Some(Instant::now() + cfg.lease / 3);
                    let beat = owl_store::NodeBeat {
                        node: cfg.node.clone(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        pid: std::process::id(),
                        started_at,
                        workers: cfg.workers as u32,
                        now: s.clock.now(),
                    };
                    if let Err(e) = s.store.beat_node(beat).await {
                        tracing::warn!(error = %e, "cannot record this node's heartbeat");
                    }
                }
                _ = sleep_until(next_sweep), if next_sweep.is_some() && !shutting_down => {
                    s.loops.busy("dispatch");
                    next_sweep = Some(Instant::now() + cfg.lease / 2);
                    if self.sweep_expired_leases().await {
                        due = Some(Instant::now());
                    }
                    // Budget reservations nothing will settle (their task ended or was rescued,
                    // or a chat turn's daemon died) stop holding room.
                    match s.store.settle_orphans(s.clock.now().minus(Duration::from_secs(900))).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(entries = n, "settled orphaned budget reservations at their estimate"),
                        Err(e) => tracing::warn!(error = %e, "cannot settle orphaned budget reservations"),
                    }
                }
                _ = sleep_until(shutdown_deadline), if shutdown_deadline.is_some() => {
                    shutdown_deadline = None;
                    tracing::warn!(running = running.len(), "shutdown grace ended: stopping running tasks and requeueing them");
                    for r in running.values() {
                        let _ = r.stop.send(Some(Stop::Interrupt("the daemon is shutting down".into())));
                    }
                    for (halt, _) in chats.running.values() {
                        let _ = halt.send(Some(Halt::Interrupt("the daemon is shutting down".into())));
                    }
                }
            }
        }
        s.running.store(0, Ordering::Relaxed);
        let _ = sched_stop_tx.send(true);
        while loops.join_next().await.is_some() {}
        tracing::info!("dispatch stopped");
    }

    /// Promotes due tasks, claims as many as there are free workers and starts them; then
    /// computes when to look again.
    async fn fill(
        &self,
        cfg: &crate::EngineConfig,
        running: &mut HashMap<owl_core::TaskId, Running>,
        not_counted: isize,
        runners: &mut Runners,
        due: &mut Option<Instant>,
    ) -> Result<(), owl_store::StoreError> {
        let s = &self.shared;
        let now = s.clock.now();
        if due.is_some_and(|d| d <= Instant::now()) {
            for id in s.store.promote_due(now).await? {
                s.publish(EventKind::TaskChanged { task_id: id, status: owl_core::task::Status::Queued });
            }
        }
        // Parked tasks hold no worker slot; chat turns hold one each.
        let busy = (running.len() as isize - not_counted).max(0) as usize;
        let free = cfg.workers.saturating_sub(busy);
        // Low disk: new work waits (readiness says why) rather than failing for want of space.
        let low = if free > 0 { crate::health::disk_low(s) } else { None };
        if free > 0 && low.is_some() != s.disk_low.swap(low.is_some(), Ordering::Relaxed) {
            match &low {
                Some(why) => tracing::warn!("{why}"),
                None => tracing::info!("disk space is back above [health] min_free_disk_mb; starting tasks again"),
            }
        }
        if free > 0 && low.is_none() {
            let claimed = s.store.claim(Claim { node: cfg.node.clone(), now, lease: cfg.lease, limit: free }).await?;
            for task in claimed {
                tracing::debug!(task = %task.id, attempt = task.attempt, "claimed");
                let (stop_tx, stop_rx) = watch::channel(None);
                running.insert(task.id, Running { attempt: task.attempt, stop: stop_tx });
                let (id, attempt) = (task.id, task.attempt);
                let handle = runners.set.spawn(run_task(s.clone(), task, cfg.clone(), stop_rx));
                runners.attempts.insert(handle.id(), (id, attempt));
            }
        }
        *due = s.store.next_due().await?.map(|t| wake_at(t, s.clock.now()));
        if low.is_some() {
            // Look again soon: freed space sends no wake-up.
            *due = Some(due.map_or(Instant::now() + DISK_RECHECK, |d| d.min(Instant::now() + DISK_RECHECK)));
        }
        Ok(())
    }

    /// Processes of rescued attempts may still be running (their groups outlive a SIGKILLed
    /// daemon). Stop them before the tasks run again, so two copies never run at once.
    async fn kill_orphans(&self, changes: &owl_store::Changes) {
        let s = &self.shared;
        let mut wanted = std::collections::HashSet::new();
        for (id, _) in &changes.0 {
            if let Ok(task) = s.store.get(*id).await {
                wanted.insert((format!("OWL_TASK_ID={id}").into_bytes(), format!("OWL_ATTEMPT={}", task.attempts).into_bytes()));
            }
        }
        if wanted.is_empty() {
            return;
        }
        let dir = format!("OWL_DATA_DIR={}", s.layout.root().display()).into_bytes();
        let killed = owl_exec::kill_orphans(|vars| {
            vars.contains(&dir.as_slice())
                && wanted.iter().any(|(task, attempt)| vars.contains(&task.as_slice()) && vars.contains(&attempt.as_slice()))
        });
        if killed > 0 {
            tracing::warn!(groups = killed, "stopped process groups left running by the crashed daemon");
        }
    }

    /// Stops every process group that carries this data dir's marker: run before any task of
    /// this daemon started, they are all left from an earlier run of it.
    fn kill_leftovers_of_this_data_dir(&self) {
        let dir = format!("OWL_DATA_DIR={}", self.shared.layout.root().display()).into_bytes();
        let killed = owl_exec::kill_orphans(|vars| vars.contains(&dir.as_slice()) && vars.iter().any(|v| v.starts_with(b"OWL_TASK_ID=")));
        if killed > 0 {
            tracing::warn!(groups = killed, "stopped process groups an earlier run of this daemon left running");
        }
    }

    /// Requeues the attempts whose lease expired (their node stopped renewing it); true when
    /// there were any.
    async fn sweep_expired_leases(&self) -> bool {
        let s = &self.shared;
        match s.store.rescue(s.clock.now(), false, s.config().retry).await {
            Ok(changes) if changes.0.is_empty() => false,
            Ok(changes) => {
                tracing::warn!(tasks = changes.0.len(), "requeued attempts whose node stopped renewing their lease");
                self.kill_orphans(&changes).await;
                s.publish_changes(&changes);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "the sweep for expired leases failed; trying again later");
                false
            }
        }
    }

    /// Renews this node's leases; false when the store could not be reached.
    async fn heartbeat(&self, cfg: &crate::EngineConfig, running: &HashMap<owl_core::TaskId, Running>) -> bool {
        let s = &self.shared;
        let beat = Heartbeat {
            node: cfg.node.clone(),
            leases: running.iter().map(|(id, r)| (*id, r.attempt)).collect(),
            lease_until: s.clock.now().plus(cfg.lease),
        };
        match s.store.heartbeat(beat).await {
            Ok(reply) => {
                for id in reply.lost {
                    tracing::warn!(task = %id, "lease lost; stopping this attempt");
                    if let Some(r) = running.get(&id) {
                        let _ = r.stop.send(Some(Stop::Interrupt("the lease was lost".into())));
                    }
                }
                for id in reply.cancel_requested {
                    if let Some(r) = running.get(&id) {
                        let _ = r.stop.send_if_modified(|v| {
                            if v.is_none() {
                                *v = Some(Stop::Cancel(None));
                                true
                            } else {
                                false
                            }
                        });
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "heartbeat failed; leases may expire");
                return false;
            }
        }
        true
    }
}

/// When to wake for an instant `t`, given the clock's `now`. Both are whole milliseconds and
/// `now` is truncated, so waking exactly `t - now` later can land just before `t`, find nothing
/// due and cost a second pass; one millisecond more makes sure `t` has come.
fn wake_at(t: owl_core::Timestamp, now: owl_core::Timestamp) -> Instant {
    // A far-off instant (a budget wait that never resets) is looked at again within a day.
    Instant::now() + t.since(now).min(Duration::from_secs(86_400)) + Duration::from_millis(1)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Runs scheduler passes: when the earliest slot is due, when a schedule changes, and (while a
/// slot is buffered by `overlap = queue`) when a task finishes. Stops when `stop` flips.
async fn scheduler_loop(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut scheduler = crate::scheduler::Scheduler::new(s.store.clone());
    scheduler.metrics = s.metrics.clone();
    let mut events = s.events.subscribe();
    let mut last_prune: Option<Instant> = None;
    let mut jitter = || fastrand::f64();
    loop {
        s.loops.busy("scheduler");
        let now = s.clock.now();
        let mut failed = false;
        match scheduler.tick(now, &mut jitter).await {
            Ok(report) => {
                // Announce and dispatch first: the tasks are committed.
                if !report.created.is_empty() {
                    let _ = s.commands.send(Command::Wake);
                    for (name, slot, id) in &report.created {
                        s.publish(EventKind::TaskSubmitted { task_id: *id, status: owl_core::task::Status::Queued });
                        tracing::debug!(schedule = %name, slot = %slot, task = %id, "schedule fired");
                    }
                    tracing::info!(
                        fires = report.created.len(),
                        lateness_ms = now.since(report.created[0].1).as_millis() as u64,
                        "schedules fired"
                    );
                }
                for (id, reason) in report.cancel {
                    match s.store.cancel(id, Some(reason.clone()), s.clock.now()).await {
                        Ok(owl_store::CancelReply::Requested) => {
                            let _ = s.commands.send(Command::Cancel(id, Some(reason)));
                        }
                        Ok(owl_store::CancelReply::Cancelled(changes)) => s.publish_changes(&changes),
                        Err(e) => tracing::debug!(task = %id, error = %e, "replace: the previous run had already ended"),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduler pass failed; retrying shortly");
                failed = true;
            }
        }
        let (wake, has_pending) = match scheduler.next_wake().await {
            Ok((next, pending)) if !failed => (next.map(|t| wake_at(t, s.clock.now())), pending),
            Ok(_) => (Some(Instant::now() + STORE_RETRY), false),
            Err(e) => {
                tracing::error!(error = %e, "scheduler cannot read its next wake; retrying shortly");
                (Some(Instant::now() + STORE_RETRY), false)
            }
        };
        // Pruning may take long on a big history; it is housekeeping, not a stalled pass.
        s.loops.idle("scheduler");
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_prune = Some(Instant::now());
            let keep = s.config().schedules.history_retention;
            match s.store.prune_history(s.clock.now().minus(keep)).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "pruned schedule, trigger and finished-task history"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning history failed"),
            }
            // Settled ledger rows outlive the longest calendar period (a month) and the
            // history, whichever is longer; rolling windows longer than that are cut short.
            let ledger = keep.max(Duration::from_secs(32 * 86_400));
            if let Err(e) = s.store.prune_ledger(s.clock.now().minus(ledger)).await {
                tracing::warn!(error = %e, "pruning the budget ledger failed");
            }
        }
        s.loops.idle("scheduler");
        loop {
            tokio::select! {
                _ = sleep_until(wake) => break,
                _ = s.schedules_changed.notified() => break,
                ev = events.recv(), if has_pending => match ev {
                    Ok(e) if matches!(e.kind, EventKind::TaskChanged { status, .. } if status.is_terminal()) => break,
                    Ok(_) => continue,
                    Err(_) => break,
                },
                _ = stop.changed() => return,
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}
