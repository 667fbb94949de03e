//! The scheduler: turns due schedule slots into tasks, following each schedule's misfire and
//! overlap policies. `tick(now)` is one pass; the loop in `DispatchLoop` calls it when the
//! earliest slot is due, when a schedule changes, or when a buffered slot may start. Time is
//! an argument, so tests drive a simulated day through it in milliseconds.

use futures_util::StreamExt;
use owl_core::schedule::{plan_due, Compiled, Overlap, Schedule};
use owl_core::{TaskId, TaskSpec, Timestamp};
use owl_store::{ApplyFires, FireAction, FireDecision, Store, StoreError, TaskFilter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What one pass did, for the engine to act on.
#[derive(Debug, Default)]
pub struct TickReport {
    /// (schedule name, slot, task) for every task created.
    pub created: Vec<(String, Timestamp, TaskId)>,
    /// Tasks to cancel because a schedule with `overlap = replace` fired over them.
    pub cancel: Vec<(TaskId, String)>,
}

/// The task a fire of `schedule` at `slot` creates.
pub fn task_for(schedule: &Schedule, slot: Timestamp, jitter: f64) -> TaskSpec {
    let mut t = schedule.spec.template.clone();
    let label = format!("schedule:{}", schedule.spec.name);
    if !t.labels.contains(&label) {
        t.labels.push(label);
    }
    t.origin = Some(owl_core::task::Origin::Schedule { name: schedule.spec.name.clone(), slot });
    t.env.insert("OWL_SCHEDULE".into(), schedule.spec.name.clone());
    t.env.insert("OWL_SCHEDULED_FOR".into(), slot.to_rfc3339());
    if schedule.spec.jitter_ms > 0 {
        t.run_at = Some(slot.plus(Duration::from_millis((schedule.spec.jitter_ms as f64 * jitter) as u64)));
    }
    t
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    compiled: HashMap<i64, (owl_core::schedule::When, Compiled)>,
    /// How many schedule passes are applied at once (they share group commits).
    pub concurrency: usize,
    /// Where fires, misses and skips are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Scheduler { store, compiled: HashMap::new(), concurrency: 256, metrics: Default::default() }
    }

    fn compiled(&mut self, s: &Schedule) -> Option<Compiled> {
        if let Some((when, c)) = self.compiled.get(&s.id) {
            if *when == s.spec.when {
                return Some(c.clone());
            }
        }
        match Compiled::new(s.spec.when.clone()) {
            Ok(c) => {
                self.compiled.insert(s.id, (s.spec.when.clone(), c.clone()));
                Some(c)
            }
            Err(e) => {
                tracing::error!(schedule = %s.spec.name, error = %e, "stored schedule no longer compiles");
                None
            }
        }
    }

    /// One pass over every due schedule. `jitter` yields numbers in [0, 1).
    pub async fn tick(&mut self, now: Timestamp, jitter: &mut (dyn FnMut() -> f64 + Send)) -> Result<TickReport, StoreError> {
        let t0 = std::time::Instant::now();
        let due = self.store.due_schedules(now).await?;
        let t_due = t0.elapsed();
        let mut report = TickReport::default();
        // The status of each schedule's latest task, in batches.
        let ids: Vec<TaskId> = due.iter().filter_map(|s| s.last_task_id).collect();
        let mut active: HashMap<TaskId, bool> = HashMap::new();
        for chunk in ids.chunks(500) {
            for t in self.store.list(TaskFilter { ids: chunk.to_vec(), ..Default::default() }).await? {
                active.insert(t.id, !t.state.is_terminal());
            }
        }
        let t_active = t0.elapsed();
        let mut passes = Vec::with_capacity(due.len());
        for s in &due {
            let Some(compiled) = self.compiled(s) else { continue };
            let (pass, cancel) = plan_pass(s, &compiled, now, s.last_task_id.is_some_and(|t| active.get(&t) == Some(&true)), jitter);
            report.cancel.extend(cancel);
            let count = |f: fn(&FireAction) -> bool| pass.decisions.iter().filter(|d| f(&d.action)).count() as u64;
            let passed = (count(|a| matches!(a, FireAction::Missed(_))), count(|a| matches!(a, FireAction::Skipped(_))));
            passes.push((s.spec.name.clone(), (pass, passed)));
        }
        let store = self.store.clone();
        let results: Vec<(String, Result<(Vec<(Timestamp, TaskId)>, (u64, u64)), StoreError>)> = futures_util::stream::iter(passes)
            .map(|(name, (pass, passed))| {
                let store = store.clone();
                async move { (name, store.apply_fires(pass).await.map(|created| (created, passed))) }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        tracing::debug!(
            due = due.len(),
            due_us = t_due.as_micros() as u64,
            active_us = t_active.as_micros() as u64,
            applied_us = t0.elapsed().as_micros() as u64,
            "scheduler pass"
        );
        for (name, r) in results {
            match r {
                Ok((created, (missed, skipped))) => {
                    for (slot, _) in &created {
                        self.metrics.fired(&name, now.since(*slot));
                        self.metrics.enqueued_from("schedule");
                    }
                    self.metrics.slot_passed(&name, "missed", missed);
                    self.metrics.slot_passed(&name, "skipped_overlap", skipped);
                    report.created.extend(created.into_iter().map(|(slot, id)| (name.clone(), slot, id)))
                }
                // Another pass advanced it first: nothing to do, by design.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// When to run the next pass, and whether a buffered slot waits on a finishing task.
    /// Separate from `tick` so the caller can announce the fires first.
    pub async fn next_wake(&self) -> Result<(Option<Timestamp>, bool), StoreError> {
        Ok((self.store.next_schedule_due().await?, self.store.any_pending_slot().await?))
    }
}

/// Plans one schedule's pass. Returns the pass and the tasks to cancel (overlap replace).
fn plan_pass(
    s: &Schedule,
    compiled: &Compiled,
    now: Timestamp,
    mut active: bool,
    jitter: &mut (dyn FnMut() -> f64 + Send),
) -> (ApplyFires, Vec<(TaskId, String)>) {
    let spec = &s.spec;
    let mut decisions = vec![];
    let mut cancel = vec![];
    let mut pending = s.pending_slot;
    let mut runs = s.fired;
    let mut finished = false;
    let limit_reached = |runs: u64| spec.max_runs.is_some_and(|m| runs >= m);
    if let Some(p) = pending {
        if !active {
            decisions.push(FireDecision { slot: p, action: FireAction::Fire(task_for(s, p, jitter())) });
            pending = None;
            active = true;
            runs += 1;
        }
    }
    let mut next = s.next_fire_at;
    if let Some(first) = s.next_fire_at.filter(|t| *t <= now) {
        let plan = plan_due(compiled, first, now, Duration::from_millis(spec.max_lateness_ms), spec.misfire, spec.misfire_cap as usize);
        for (slot, reason) in plan.missed {
            decisions.push(FireDecision { slot, action: FireAction::Missed(reason) });
        }
        if plan.missed_uncounted > 0 {
            tracing::warn!(schedule = %spec.name, slots = plan.missed_uncounted, "more missed slots than are recorded one by one");
        }
        for slot in plan.fire {
            if spec.end_at.is_some_and(|e| slot > e) || limit_reached(runs) {
                finished = true;
                break;
            }
            if active {
                let prev = s.last_task_id.map(|t| t.to_string()).unwrap_or_else(|| "?".into());
                match spec.overlap {
                    Overlap::Allow => {}
                    Overlap::Skip => {
                        let why = format!("skipped: the previous run (task {prev}) was still active (overlap policy skip)");
                        decisions.push(FireDecision { slot, action: FireAction::Skipped(why) });
                        continue;
                    }
                    Overlap::Queue => {
                        if pending.is_none() {
                            pending = Some(slot);
                            decisions.push(FireDecision { slot, action: FireAction::Queued });
                        } else {
                            let why = "skipped: a run is already waiting (overlap policy queue buffers one)".to_string();
                            decisions.push(FireDecision { slot, action: FireAction::Skipped(why) });
                        }
                        continue;
                    }
                    Overlap::Replace => {
                        if let Some(t) = s.last_task_id {
                            if cancel.is_empty() {
                                cancel.push((t, format!("replaced by the {} run of schedule {}", slot, spec.name)));
                            }
                        }
                    }
                }
            }
            decisions.push(FireDecision { slot, action: FireAction::Fire(task_for(s, slot, jitter())) });
            active = true;
            runs += 1;
        }
        next = plan.next;
    }
    if next.is_none() || next.is_some_and(|n| spec.end_at.is_some_and(|e| n > e)) || limit_reached(runs) {
        finished = finished || pending.is_none();
    }
    let pass = ApplyFires {
        schedule_id: s.id,
        expected_next: s.next_fire_at,
        decisions,
        next_fire_at: if finished { None } else { next },
        finished,
        pending_slot: pending,
        now,
    };
    (pass, cancel)
}
