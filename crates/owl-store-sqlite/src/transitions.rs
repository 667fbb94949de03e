//! Writing task states and their consequences: dependents released on success, failed on
//! failure, revived on retry. Everything here runs inside the writer's transaction.

use crate::backend;
use owl_core::task::Status;
use owl_core::{RunOutcome, TaskId, TaskState, Timestamp, WaitReason};
use owl_store::{Changes, StoreError};
use rusqlite::{params, Connection};

/// The columns a state occupies in the `tasks` row.
struct StateColumns {
    status: Status,
    due_at: Option<i64>,
    finished_at: Option<i64>,
    reason: Option<String>,
    exit_code: Option<i32>,
    signal: Option<i32>,
}

impl StateColumns {
    fn of(status: Status) -> Self {
        StateColumns { status, due_at: None, finished_at: None, reason: None, exit_code: None, signal: None }
    }
}

/// Writes `state` onto task `id`. Lease columns are kept for display; the status decides.
pub fn set_state(conn: &Connection, id: TaskId, state: &TaskState, now: Timestamp) -> Result<(), StoreError> {
    let c = match state {
        TaskState::Queued => StateColumns { due_at: Some(now.0), ..StateColumns::of(Status::Queued) },
        TaskState::Waiting { reason: WaitReason::Time { until } | WaitReason::Retry { until, .. } } => {
            StateColumns { due_at: Some(until.0), ..StateColumns::of(Status::Waiting) }
        }
        TaskState::Waiting { reason: WaitReason::Dependencies { .. } } => StateColumns::of(Status::Waiting),
        TaskState::Waiting { reason: WaitReason::Budget { until, scope, reason } } => StateColumns {
            due_at: Some(until.0),
            reason: Some(WaitReason::budget_note(scope, reason)),
            ..StateColumns::of(Status::Waiting)
        },
        TaskState::Running { .. } => return Err(StoreError::Backend("set_state cannot start a task; claim does".into())),
        TaskState::Succeeded { finished_at, .. } => {
            StateColumns { finished_at: Some(finished_at.0), ..StateColumns::of(Status::Succeeded) }
        }
        TaskState::Failed { finished_at, reason, exit_code, signal } => StateColumns {
            finished_at: Some(finished_at.0),
            reason: Some(reason.clone()),
            exit_code: *exit_code,
            signal: *signal,
            ..StateColumns::of(Status::Failed)
        },
        TaskState::TimedOut { finished_at, .. } => StateColumns { finished_at: Some(finished_at.0), ..StateColumns::of(Status::TimedOut) },
        TaskState::Cancelled { finished_at, reason } => {
            StateColumns { finished_at: Some(finished_at.0), reason: reason.clone(), ..StateColumns::of(Status::Cancelled) }
        }
    };
    conn.prepare_cached(
        "UPDATE tasks SET status = ?2, updated_at = ?3, due_at = coalesce(?4, due_at), finished_at = ?5, reason = ?6, \
         exit_code = coalesce(?7, exit_code), signal = coalesce(?8, signal), cancel_requested = 0 WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![id.0, c.status.as_str(), now.0, c.due_at, c.finished_at, c.reason, c.exit_code, c.signal])
    .map_err(backend)?;
    if c.status.is_terminal() {
        record_finish(conn, id, now)?;
    }
    Ok(())
}

/// Appends a finish to the commit-ordered log that completion cursors follow.
pub fn record_finish(conn: &Connection, id: TaskId, now: Timestamp) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO task_finishes (task_id, at) VALUES (?1, ?2)")
        .map_err(backend)?
        .execute(params![id.0, now.0])
        .map_err(backend)?;
    Ok(())
}

/// Ends the open run row of `attempt`.
pub fn end_run(
    conn: &Connection,
    id: TaskId,
    attempt: u32,
    outcome: &RunOutcome,
    exit_code: Option<i32>,
    signal: Option<i32>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(outcome).expect("outcome serializes");
    conn.prepare_cached("UPDATE runs SET ended_at = ?3, exit_code = ?4, signal = ?5, outcome = ?6 WHERE task_id = ?1 AND attempt = ?2")
        .map_err(backend)?
        .execute(params![id.0, attempt, now.0, exit_code, signal, json])
        .map_err(backend)?;
    Ok(())
}

/// After `id` succeeded: each waiting dependent has one dependency fewer; those with none
/// left become queued (or stay waiting for their start time).
pub fn release_dependents(conn: &Connection, id: TaskId, now: Timestamp, changes: &mut Changes) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE tasks SET deps_pending = deps_pending - 1, updated_at = ?2 \
             WHERE status = 'waiting' AND deps_pending > 0 AND id IN (SELECT task_id FROM task_deps WHERE dep_id = ?1) \
             RETURNING id, deps_pending, due_at",
        )
        .map_err(backend)?;
    let rows: Vec<(i64, i64, i64)> = stmt
        .query_map(params![id.0, now.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    for (dep_id, pending, due_at) in rows {
        if pending == 0 && due_at <= now.0 {
            conn.prepare_cached("UPDATE tasks SET status = 'queued' WHERE id = ?1").map_err(backend)?.execute([dep_id]).map_err(backend)?;
            changes.0.push((TaskId(dep_id), Status::Queued));
        }
    }
    Ok(())
}

/// After `id` failed, timed out or was cancelled: every task that waits on it, directly or
/// through others, fails with a reason naming the dependency that failed it.
pub fn fail_dependents(conn: &Connection, id: TaskId, how: Status, now: Timestamp, changes: &mut Changes) -> Result<(), StoreError> {
    let mut frontier = vec![(id, how)];
    while let Some((failed, how)) = frontier.pop() {
        let reason = owl_store::rules::dependency_failed(failed, how);
        let mut stmt = conn
            .prepare_cached(
                "UPDATE tasks SET status = 'failed', updated_at = ?2, finished_at = ?2, reason = ?3, blocked_by = ?1 \
                 WHERE status IN ('waiting', 'queued') AND id IN (SELECT task_id FROM task_deps WHERE dep_id = ?1) RETURNING id",
            )
            .map_err(backend)?;
        let ids: Vec<i64> =
            stmt.query_map(params![failed.0, now.0, reason], |r| r.get(0)).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)?;
        for d in ids {
            record_finish(conn, TaskId(d), now)?;
            changes.0.push((TaskId(d), Status::Failed));
            frontier.push((TaskId(d), Status::Failed));
        }
    }
    Ok(())
}

/// Recounts the unmet dependencies of `id` and returns (pending, any dependency dead).
pub fn count_pending(conn: &Connection, id: TaskId) -> Result<(i64, Option<(TaskId, Status)>), StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT d.dep_id, t.status FROM task_deps d JOIN tasks t ON t.id = d.dep_id WHERE d.task_id = ?1 ORDER BY d.dep_id")
        .map_err(backend)?;
    let deps: Vec<(i64, String)> =
        stmt.query_map([id.0], |r| Ok((r.get(0)?, r.get(1)?))).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)?;
    let mut pending = 0;
    let mut dead = None;
    for (d, s) in deps {
        let s = crate::rows::parse_status(&s)?;
        if s != Status::Succeeded {
            pending += 1;
            if s.is_terminal() && dead.is_none() {
                dead = Some((TaskId(d), s));
            }
        }
    }
    Ok((pending, dead))
}

/// After `id` was queued again by `owl retry`: tasks that failed only because of it wait again.
pub fn revive_dependents(conn: &Connection, id: TaskId, now: Timestamp, changes: &mut Changes) -> Result<(), StoreError> {
    let mut frontier = vec![id];
    while let Some(revived) = frontier.pop() {
        let blocked: Vec<i64> = conn
            .prepare_cached("SELECT id FROM tasks WHERE blocked_by = ?1 AND status = 'failed'")
            .map_err(backend)?
            .query_map([revived.0], |r| r.get(0))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        for b in blocked {
            let (pending, _) = count_pending(conn, TaskId(b))?;
            conn.prepare_cached(
                "UPDATE tasks SET status = 'waiting', deps_pending = ?2, updated_at = ?3, due_at = ?3, finished_at = NULL, reason = NULL, \
                 blocked_by = NULL, exit_code = NULL, signal = NULL WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![b, pending, now.0])
            .map_err(backend)?;
            changes.0.push((TaskId(b), Status::Waiting));
            frontier.push(TaskId(b));
        }
    }
    Ok(())
}
