//! The rules every backend keeps, checked once above the backends: the [`Store`](crate::Store)
//! trait's provided methods run them before calling the backend's own method, so a new
//! backend cannot skip them (the shape of atuin's record store, where `push` wraps
//! `push_batch`).

use crate::{NewTask, StoreError};
use owl_core::deps::{check_batch, DepRef};
use owl_core::task::Status;
use owl_core::validate::{check_spec, ValidationError};
use owl_core::TaskId;

/// A batch to submit: not empty, every spec valid, its dependencies acyclic. Needs no
/// database, so bad input costs no commit.
pub fn check_submit(batch: &[NewTask]) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Err(ValidationError::new("tasks", "the batch is empty; submit at least one task").into());
    }
    for (i, t) in batch.iter().enumerate() {
        check_spec(&t.spec).map_err(|e| {
            if batch.len() > 1 {
                ValidationError::new(format!("tasks[{i}].{}", e.field), e.message)
            } else {
                e
            }
        })?;
    }
    let refs: Vec<Vec<DepRef>> = batch
        .iter()
        .map(|t| t.spec.depends_on.iter().map(|d| DepRef::Existing(*d)).chain(t.batch_deps.iter().map(|i| DepRef::Batch(*i))).collect())
        .collect();
    check_batch(&refs).map_err(|e| ValidationError::new("tasks", e.to_string()))?;
    Ok(())
}

/// A group limit: a valid name, and at least 1 (`None` lifts it).
pub fn check_group(name: &str, parallel: Option<u32>) -> Result<(), StoreError> {
    owl_core::validate::check_name("name", "group", name)?;
    if parallel == Some(0) {
        return Err(ValidationError::new("parallel", "must be at least 1; to hold a group's tasks, cancel them or raise it later").into());
    }
    Ok(())
}

// The refusals and reasons every backend gives, worded once so the backends cannot drift.

/// How a dependency ended, as a dependent's failure reason says it: "failed", "timed out",
/// "was cancelled".
pub fn ended(s: Status) -> &'static str {
    match s {
        Status::Cancelled => "was cancelled",
        Status::TimedOut => "timed out",
        _ => "failed",
    }
}

/// The reason of a task failed by its dependency `dep`, which ended as `how`.
pub fn dependency_failed(dep: TaskId, how: Status) -> String {
    format!("dependency task {dep} {}", ended(how))
}

/// A cancel of a task that already ended.
pub fn cannot_cancel(id: TaskId, s: Status) -> StoreError {
    let past = match s {
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::TimedOut => "timed out",
        Status::Cancelled => "was cancelled",
        _ => "is active",
    };
    StoreError::Conflict(format!("task {id} already {past}; only queued, waiting or running tasks can be cancelled"))
}

/// A retry of a task that has not ended badly.
pub fn cannot_retry(id: TaskId, s: Status) -> StoreError {
    StoreError::Conflict(format!(
        "task {id} is {s}; only failed, timed out or cancelled tasks can be retried (submit a new task to run it again)"
    ))
}

/// A retry of a task whose dependency `dep` ended badly too.
pub fn retry_dependency_first(id: TaskId, dep: TaskId, s: Status) -> StoreError {
    StoreError::Conflict(format!("task {id} depends on task {dep}, which is {s}; retry task {dep} first"))
}

/// A new schedule or trigger (`what`) whose name is taken.
pub fn name_taken(what: &str, name: &str) -> StoreError {
    StoreError::Conflict(format!("a {what} named `{name}` already exists; remove it with `owl {what} rm {name}` or choose another name"))
}

/// Where a new task starts, from its dependencies' statuses: failed at once when one of them
/// already ended badly (naming it), waiting while any is unfinished or its start time is to
/// come, queued otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initial {
    pub status: Status,
    /// Dependencies not yet succeeded.
    pub pending: i64,
    pub reason: Option<String>,
    pub finished_at: Option<owl_core::Timestamp>,
    /// The dependency whose end failed this task.
    pub blocked_by: Option<TaskId>,
    pub due_at: owl_core::Timestamp,
}

pub fn initial_state(deps: &[(TaskId, Status)], run_at: Option<owl_core::Timestamp>, now: owl_core::Timestamp) -> Initial {
    let pending = deps.iter().filter(|(_, s)| *s != Status::Succeeded).count() as i64;
    let dead = deps.iter().find(|(_, s)| *s != Status::Succeeded && s.is_terminal());
    let due_at = run_at.unwrap_or(now).max(now);
    let base = Initial { status: Status::Queued, pending, reason: None, finished_at: None, blocked_by: None, due_at };
    match dead {
        Some((d, s)) => Initial {
            status: Status::Failed,
            reason: Some(format!("{} before this task was submitted", dependency_failed(*d, *s))),
            finished_at: Some(now),
            blocked_by: Some(*d),
            ..base
        },
        None if pending > 0 || due_at > now => Initial { status: Status::Waiting, ..base },
        None => base,
    }
}

/// Whether a schedule pass may be applied to a schedule in `state`: one planned before a pause
/// must not fire (or buffer a slot) after it. A manual run-now still may, and so may records
/// of slots that passed without a run (missed, or skipped while paused).
pub fn check_pass(name: &str, state: owl_core::schedule::ScheduleState, decisions: &[crate::FireDecision]) -> Result<(), StoreError> {
    use crate::FireAction;
    let starts = decisions.iter().any(|d| matches!(d.action, FireAction::Fire(_) | FireAction::Queued));
    if state != owl_core::schedule::ScheduleState::Active && starts {
        return Err(StoreError::Conflict(format!("schedule `{name}` is {}", state.as_str())));
    }
    Ok(())
}
