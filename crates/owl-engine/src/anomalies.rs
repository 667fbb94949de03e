//! Anomaly detection: each finished attempt becomes a run sample, judged against the recent
//! runs of its schedule, agent and kind (`owl_core::anomaly`) before it joins them. What is
//! far from usual is recorded with its evidence, counted, logged and announced as an event.

use crate::Shared;
use owl_core::agent::Owner;
use owl_core::anomaly::{judge, RunSample, Scope};
use owl_core::{Command, EventKind, RunOutcome};
use owl_store::{ClaimedTask, NewAnomaly};
use std::sync::Arc;
use std::time::Duration;

/// Tokens and cost a task had used before this attempt, so the attempt's own share is known.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UsedBefore {
    tokens: u64,
    cost_usd: f64,
}

fn uses_models(task: &ClaimedTask) -> bool {
    matches!(task.spec.command, Command::Agent { .. } | Command::Cli { .. })
}

/// What the task has used so far (before an attempt starts, and again after it ends).
pub(crate) async fn used(s: &Shared, task: &ClaimedTask) -> Option<UsedBefore> {
    if !uses_models(task) {
        return Some(UsedBefore::default());
    }
    match s.store.owner_usage(Owner::Task(task.id)).await {
        Ok(u) => Some(UsedBefore { tokens: u.input + u.output, cost_usd: u.cost_usd }),
        Err(e) => {
            tracing::warn!(task = %task.id, error = %e, "cannot read the task's usage; this attempt is left out of the baselines");
            None
        }
    }
}

/// The run sample of an attempt that ended with `outcome` after `ran`; `None` for an attempt
/// that was cancelled or interrupted (neither says anything about the work).
fn sample(s: &Shared, task: &ClaimedTask, outcome: &RunOutcome, ran: Duration, before: UsedBefore, after: UsedBefore) -> Option<RunSample> {
    let succeeded = match outcome {
        RunOutcome::Succeeded => true,
        RunOutcome::Failed { .. } | RunOutcome::TimedOut => false,
        RunOutcome::Cancelled { .. } | RunOutcome::Interrupted { .. } | RunOutcome::Paused { .. } => return None,
    };
    let agent = match &task.spec.command {
        Command::Agent { agent, .. } => Some(agent.clone()),
        Command::Cli { cli, .. } => Some(cli.clone()),
        _ => None,
    };
    let schedule = match &task.spec.origin {
        Some(owl_core::task::Origin::Schedule { name, .. }) => Some(name.clone()),
        _ => None,
    };
    Some(RunSample {
        task_id: task.id,
        attempt: task.attempt,
        at: s.clock.now(),
        kind: crate::metrics::kind_of(&task.spec).to_string(),
        schedule,
        agent,
        succeeded,
        duration_ms: ran.as_millis().min(u128::from(u64::MAX)) as u64,
        tokens: after.tokens.saturating_sub(before.tokens),
        cost_usd: (after.cost_usd - before.cost_usd).max(0.0),
    })
}

/// Records the attempt's sample and whatever is anomalous about it. Never fails the task: a
/// store error is logged and the attempt is left out.
pub(crate) async fn after_run(s: &Arc<Shared>, task: &ClaimedTask, outcome: &RunOutcome, ran: Duration, before: Option<UsedBefore>) {
    let Some(before) = before else { return };
    let Some(after) = used(s, task).await else { return };
    let Some(run) = sample(s, task, outcome, ran, before, after) else { return };
    let cfg = s.config().anomalies.clone();
    let _one_at_a_time = s.judging.lock().await;
    let mut histories = Vec::new();
    if cfg.enabled {
        for scope in Scope::ALL {
            let Some(subject) = run.subject(scope) else { continue };
            match s.store.recent_samples(scope, subject, cfg.baseline_runs).await {
                Ok(h) => histories.push((scope, h)),
                Err(e) => {
                    tracing::warn!(task = %task.id, error = %e, "cannot read the baselines; anomalies are not judged for this run");
                    histories.clear();
                    break;
                }
            }
        }
    }
    if let Err(e) = s.store.record_sample(run.clone()).await {
        tracing::warn!(task = %task.id, error = %e, "cannot record the run sample");
        return;
    }
    let views: Vec<(Scope, &[RunSample])> = histories.iter().map(|(scope, h)| (*scope, h.as_slice())).collect();
    for finding in judge(&run, &views, &cfg.floors()) {
        let new = NewAnomaly { at: run.at, task_id: run.task_id, attempt: run.attempt, finding };
        match s.store.record_anomaly(new).await {
            Ok(a) => {
                tracing::warn!(task = %a.task_id, attempt = a.attempt, anomaly = a.id, "{}", a.summary);
                let labels = crate::metrics::AnomalyLabels { scope: a.finding.scope.as_str(), metric: a.finding.metric.as_str() };
                s.metrics.anomalies.get_or_create(&labels).inc();
                s.publish(EventKind::AnomalyDetected {
                    anomaly_id: a.id,
                    task_id: a.task_id,
                    scope: a.finding.scope.as_str().into(),
                    subject: a.finding.subject.clone(),
                    metric: a.finding.metric.as_str().into(),
                    summary: a.summary.clone(),
                });
            }
            Err(e) => tracing::warn!(task = %task.id, error = %e, "cannot record an anomaly"),
        }
    }
}
