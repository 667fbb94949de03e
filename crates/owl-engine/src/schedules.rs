//! Schedule operations on the engine handle: each validates, computes the next slot with the
//! engine's clock, stores, and wakes the scheduler loop.

use crate::Engine;
use owl_core::schedule::{Compiled, Schedule, ScheduleSpec, ScheduleState};
use owl_core::{EventKind, TaskId, ValidationError};
use owl_store::{ApplyFires, FireAction, FireDecision, StoreError};

/// A schedule's health beside its counters: how its latest run went and whether it is overdue.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleHealth {
    pub last_status: Option<owl_core::task::Status>,
    /// By when it should succeeded again (see `owl_core::schedule::success_due_by`).
    pub success_due_by: Option<owl_core::Timestamp>,
    /// Past `success_due_by` with no success since.
    pub overdue: bool,
}

impl Engine {
    /// The health of each schedule in `list`, in order. One store read for the latest runs.
    pub async fn schedule_health(&self, list: &[Schedule]) -> Result<Vec<ScheduleHealth>, StoreError> {
        let grace = self.config().health.schedule_grace;
        let now = self.now();
        let ids: Vec<TaskId> = list.iter().filter_map(|s| s.last_task_id).collect();
        let mut status = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let page = owl_store::TaskFilter { ids: chunk.to_vec(), limit: Some(chunk.len() as u32), ..Default::default() };
            for t in self.shared.store.list(page).await? {
                status.insert(t.id, t.state.status());
            }
        }
        Ok(list
            .iter()
            .map(|s| {
                let due = Compiled::new(s.spec.when.clone()).ok().and_then(|c| owl_core::schedule::success_due_by(s, &c, grace));
                ScheduleHealth {
                    last_status: s.last_task_id.and_then(|t| status.get(&t).copied()),
                    success_due_by: due,
                    overdue: due.is_some_and(|d| now > d),
                }
            })
            .collect())
    }

    pub async fn create_schedule(&self, spec: ScheduleSpec) -> Result<Schedule, StoreError> {
        let compiled = Compiled::new(spec.when.clone())?;
        let now = self.now();
        let next = compiled.next_after(now);
        if next.is_none() {
            return Err(
                ValidationError::new("at", "the schedule has no future slot (a one-time instant in the past?); pick a later time").into()
            );
        }
        let s = self.shared.store.create_schedule(spec, next, now).await?;
        self.shared.schedules_changed.notify_one();
        Ok(s)
    }

    pub async fn pause_schedule(&self, name: &str) -> Result<Schedule, StoreError> {
        let s = self.shared.store.get_schedule(name).await?;
        if s.state == ScheduleState::Finished {
            return Err(StoreError::Conflict(format!("schedule `{name}` has finished; there is nothing to pause")));
        }
        let s = self.shared.store.set_schedule_state(name, ScheduleState::Paused, s.next_fire_at, self.now()).await?;
        self.shared.schedules_changed.notify_one();
        Ok(s)
    }

    /// Resumes from now: slots that passed while paused are not caught up; each is recorded in
    /// the history as skipped (up to the schedule's misfire cap).
    pub async fn resume_schedule(&self, name: &str) -> Result<Schedule, StoreError> {
        let s = self.shared.store.get_schedule(name).await?;
        if s.state == ScheduleState::Active {
            return Ok(s);
        }
        let compiled = Compiled::new(s.spec.when.clone())?;
        let now = self.now();
        if s.state == ScheduleState::Paused {
            let mut slots = vec![];
            let mut t = s.next_fire_at;
            while let Some(slot) = t.filter(|t| *t <= now && slots.len() < s.spec.misfire_cap as usize) {
                slots.push(slot);
                t = compiled.next_after(slot);
            }
            if !slots.is_empty() {
                let n = slots.len() as u64;
                let pass = ApplyFires {
                    schedule_id: s.id,
                    expected_next: s.next_fire_at,
                    decisions: slots
                        .into_iter()
                        .map(|slot| FireDecision { slot, action: FireAction::Skipped("skipped: the schedule was paused".into()) })
                        .collect(),
                    next_fire_at: s.next_fire_at,
                    finished: false,
                    pending_slot: s.pending_slot,
                    now,
                };
                // A concurrent resume recorded them first: fine either way.
                if self.shared.store.apply_fires(pass).await.is_ok() {
                    self.shared.metrics.slot_passed(name, "skipped_paused", n);
                }
            }
        }
        let next = compiled.next_after(now);
        let state = if next.is_some() { ScheduleState::Active } else { ScheduleState::Finished };
        let s = self.shared.store.set_schedule_state(name, state, next, self.now()).await?;
        self.shared.schedules_changed.notify_one();
        Ok(s)
    }

    /// Creates the schedule's task now, outside its slots; recorded in its history as `manual`.
    pub async fn run_schedule_now(&self, name: &str) -> Result<TaskId, StoreError> {
        for _ in 0..5 {
            let s = self.shared.store.get_schedule(name).await?;
            let now = self.now();
            let task = crate::scheduler::task_for(&s, now, 0.0);
            let pass = ApplyFires {
                schedule_id: s.id,
                expected_next: s.next_fire_at,
                decisions: vec![FireDecision { slot: now, action: FireAction::Manual(task) }],
                next_fire_at: s.next_fire_at,
                finished: s.state == ScheduleState::Finished,
                pending_slot: s.pending_slot,
                now,
            };
            match self.shared.store.apply_fires(pass).await {
                Ok(created) if !created.is_empty() => {
                    let id = created[0].1;
                    self.shared.metrics.enqueued_from("schedule");
                    self.shared.publish(EventKind::TaskSubmitted { task_id: id, status: owl_core::task::Status::Queued });
                    let _ = self.shared.commands.send(crate::Command::Wake);
                    return Ok(id);
                }
                // The same millisecond as a slot, or a concurrent pass: try again.
                Ok(_) | Err(StoreError::Conflict(_)) => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!("schedule `{name}` is busy; try again")))
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        self.shared.store.delete_schedule(name).await?;
        self.shared.schedules_changed.notify_one();
        Ok(())
    }
}
