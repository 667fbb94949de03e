//! Triggers on the engine: task-event chains walked from a durable cursor over finished
//! tasks (events only wake the walk, so a lagged event bus or a crash cannot lose a chain),
//! and webhook deliveries handed over by the API after it verified their signature.

use crate::{Command, Engine, Shared};
use owl_core::trigger::{chain_depth, matches, On, Trigger, TriggerSpec, CHAIN_DEPTH_ENV};
use owl_core::{EventKind, InputFile, Task, TaskSpec, TaskState, Timestamp};
use owl_store::{FireTrigger, StoreError, TriggerFired};
use std::sync::Arc;
use tokio::sync::watch;

const CURSOR_KEY: &str = "trigger_cursor";

fn finished_at(t: &Task) -> Option<Timestamp> {
    match &t.state {
        TaskState::Succeeded { finished_at, .. }
        | TaskState::Failed { finished_at, .. }
        | TaskState::TimedOut { finished_at, .. }
        | TaskState::Cancelled { finished_at, .. } => Some(*finished_at),
        _ => None,
    }
}

/// The task a trigger creates, marked with the trigger and its place in the chain.
pub(crate) fn task_for(trigger: &Trigger, depth: u32) -> TaskSpec {
    let mut t = trigger.spec.template.clone();
    let label = format!("trigger:{}", trigger.spec.name);
    if !t.labels.contains(&label) {
        t.labels.push(label);
    }
    t.origin = Some(owl_core::task::Origin::Trigger { name: trigger.spec.name.clone(), depth });
    t.env.insert("OWL_TRIGGER".into(), trigger.spec.name.clone());
    t.env.insert(CHAIN_DEPTH_ENV.into(), depth.to_string());
    t
}

pub(crate) fn announce(s: &Shared, r: &TriggerFired) {
    if let TriggerFired::Fired(id) = r {
        s.metrics.enqueued_from("trigger");
        s.publish(EventKind::TaskSubmitted { task_id: *id, status: owl_core::task::Status::Queued });
        let _ = s.commands.send(Command::Wake);
    }
}

/// Offers every finished task after the cursor to the task-event triggers, then moves it.
async fn walk(s: &Shared) -> Result<(), StoreError> {
    let triggers: Vec<Trigger> =
        s.store.list_triggers().await?.into_iter().filter(|t| t.enabled && matches!(t.spec.on, On::TaskEvent { .. })).collect();
    let stored: Option<i64> = s.store.kv_get(CURSOR_KEY).await?.and_then(|v| v.parse().ok());
    let mut cursor = match (stored, triggers.iter().map(|t| t.active_since).min()) {
        // Nothing listens: drop the cursor once and write nothing per finished task. When a
        // trigger appears, the first walk starts from its creation time (the arm below).
        (_, None) => {
            if stored.is_some() {
                s.store.kv_set(CURSOR_KEY, "").await?;
            }
            return Ok(());
        }
        (Some(c), Some(_)) => c,
        // First walk with listeners: start before the oldest listener became active (created
        // or enabled), so nothing it should see is skipped however late this walk runs.
        (None, Some(oldest)) => s.store.last_finish_before(oldest).await?,
    };
    loop {
        let batch = s.store.finished_after(cursor, 500).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for (seq, task) in &batch {
            let done = finished_at(task).unwrap_or(task.updated_at);
            for trig in triggers.iter().filter(|t| done >= t.active_since && matches(&t.spec.on, task)) {
                let depth = chain_depth(task) + 1;
                let offer = if depth > trig.spec.max_chain_depth {
                    Err(format!(
                        "refused: the chain would be {depth} deep, past max_chain_depth {} (task {} was itself triggered)",
                        trig.spec.max_chain_depth, task.id
                    ))
                } else {
                    let mut spec = task_for(trig, depth);
                    spec.env.insert("OWL_TRIGGER_TASK".into(), task.id.to_string());
                    Ok(spec)
                };
                // The finish position, not the task id, is the source: a task that is retried
                // and finishes again is a new event.
                let r = s
                    .store
                    .fire_trigger(FireTrigger {
                        trigger_id: trig.id,
                        source: format!("finish:{seq}:task:{}", task.id),
                        task: offer,
                        now: s.clock.now(),
                    })
                    .await?;
                if let TriggerFired::Refused(reason) = &r {
                    tracing::warn!(trigger = %trig.spec.name, task = %task.id, %reason, "trigger refused");
                }
                announce(s, &r);
            }
            cursor = *seq;
        }
        s.store.kv_set(CURSOR_KEY, &cursor.to_string()).await?;
    }
}

/// Runs `walk` at start, whenever a task finishes, and when triggers change.
pub(crate) async fn trigger_loop(s: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut events = s.events.subscribe();
    // With no task-event trigger, one walk clears the cursor; later finishes cost nothing.
    let mut idle_walked = false;
    loop {
        s.loops.busy("triggers");
        let listening = s.has_task_event_triggers.load(std::sync::atomic::Ordering::Relaxed);
        if listening || !idle_walked {
            match walk(&s).await {
                Ok(()) => idle_walked = !listening,
                Err(e) => tracing::error!(error = %e, "trigger pass failed; retrying on the next event"),
            }
        }
        s.loops.idle("triggers");
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(e) if matches!(e.kind, EventKind::TaskChanged { status, .. } if status.is_terminal()) => break,
                    Ok(_) => continue,
                    // Lagged: some events were dropped; the cursor walk catches up regardless.
                    Err(_) => break,
                },
                _ = s.triggers_changed.notified() => break,
                _ = stop.changed() => return,
            }
        }
    }
}

impl Engine {
    pub async fn create_trigger(&self, spec: TriggerSpec) -> Result<Trigger, StoreError> {
        if let On::Watch { path, .. } = &spec.on {
            if !std::path::Path::new(path).exists() {
                return Err(owl_core::ValidationError::new("watch", format!("{path} does not exist; create it first")).into());
            }
        }
        let t = self.shared.store.create_trigger(spec, self.now()).await?;
        self.changed_triggers_async().await;
        Ok(t)
    }

    pub async fn set_trigger_enabled(&self, name: &str, enabled: bool) -> Result<Trigger, StoreError> {
        let t = self.shared.store.set_trigger_enabled(name, enabled, self.now()).await?;
        self.changed_triggers_async().await;
        Ok(t)
    }

    pub async fn delete_trigger(&self, name: &str) -> Result<(), StoreError> {
        self.shared.store.delete_trigger(name).await?;
        self.changed_triggers_async().await;
        Ok(())
    }

    async fn changed_triggers_async(&self) {
        self.shared.refresh_withheld_env().await;
        self.changed_triggers();
    }

    fn changed_triggers(&self) {
        self.shared.triggers_changed.notify_one();
        self.shared.watches_changed.notify_one();
        self.shared.conditions_changed.notify_one();
    }

    /// A webhook delivery whose signature the caller has verified: creates the trigger's
    /// task with the payload as an input file (`$OWL_WEBHOOK_PAYLOAD`).
    pub async fn fire_webhook(&self, trigger: &Trigger, delivery: &str, payload: String) -> Result<TriggerFired, StoreError> {
        let mut spec = task_for(trigger, 1);
        spec.env.insert("OWL_WEBHOOK_DELIVERY".into(), delivery.to_string());
        spec.inputs.push(InputFile { env: "OWL_WEBHOOK_PAYLOAD".into(), file: "webhook-payload.json".into(), content: payload });
        let r = self
            .shared
            .store
            .fire_trigger(FireTrigger { trigger_id: trigger.id, source: delivery.to_string(), task: Ok(spec), now: self.now() })
            .await?;
        announce(&self.shared, &r);
        Ok(r)
    }
}
