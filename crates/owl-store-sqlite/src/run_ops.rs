//! The run path: promote, claim, heartbeat, complete, rescue.

use crate::backend;
use crate::transitions::{end_run, fail_dependents, release_dependents, set_state};
use owl_core::lifecycle::{after_crash, after_run, RetryPolicy};
use owl_core::task::Status;
use owl_core::{RunOutcome, TaskId, TaskState, Timestamp};
use owl_store::{Changes, Claim, ClaimedTask, Completion, Heartbeat, HeartbeatReply, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

pub fn promote_due(conn: &Connection, now: Timestamp) -> Result<Vec<TaskId>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'queued', updated_at = ?1 WHERE status = 'waiting' AND deps_pending = 0 AND due_at <= ?1 RETURNING id",
        )
        .map_err(backend)?;
    let mut ids: Vec<TaskId> =
        stmt.query_map([now.0], |r| Ok(TaskId(r.get(0)?))).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)?;
    ids.sort();
    Ok(ids)
}

pub fn next_due(conn: &Connection) -> Result<Option<Timestamp>, StoreError> {
    conn.prepare_cached("SELECT min(due_at) FROM tasks WHERE status = 'waiting' AND deps_pending = 0")
        .map_err(backend)?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map(|v| v.map(Timestamp))
        .map_err(backend)
}

/// How far past the first candidate the claim scans to find tasks of groups with room.
const CLAIM_SCAN: usize = 512;

pub fn claim(conn: &Connection, c: &Claim) -> Result<Vec<ClaimedTask>, StoreError> {
    if c.limit == 0 {
        return Ok(vec![]);
    }
    let mut limits: HashMap<String, i64> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached("SELECT name, parallel FROM groups WHERE parallel IS NOT NULL").map_err(backend)?;
        for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(backend)? {
            let (n, p) = r.map_err(backend)?;
            limits.insert(n, p);
        }
    }
    let mut running: HashMap<String, i64> = HashMap::new();
    if !limits.is_empty() {
        let mut stmt = conn.prepare_cached("SELECT grp, count(*) FROM tasks WHERE status = 'running' GROUP BY grp").map_err(backend)?;
        for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(backend)? {
            let (g, n) = r.map_err(backend)?;
            running.insert(g, n);
        }
    }
    let candidates: Vec<(i64, String, i64)> = conn
        .prepare_cached("SELECT id, grp, updated_at FROM tasks WHERE status = 'queued' ORDER BY priority DESC, id LIMIT ?1")
        .map_err(backend)?
        .query_map([(c.limit + CLAIM_SCAN) as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    let lease_until = c.now.plus(c.lease);
    let mut out = Vec::with_capacity(c.limit);
    for (id, grp, queued_since) in candidates {
        if out.len() >= c.limit {
            break;
        }
        if let Some(limit) = limits.get(&grp) {
            let n = running.entry(grp.clone()).or_insert(0);
            if *n >= *limit {
                continue;
            }
            *n += 1;
        }
        let attempt: u32 = conn
            .prepare_cached(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, node = ?2, started_at = ?3, lease_until = ?4, \
                 cancel_requested = 0, updated_at = ?3 WHERE id = ?1 AND status = 'queued' RETURNING attempts",
            )
            .map_err(backend)?
            .query_row(params![id, c.node, c.now.0, lease_until.0], |r| r.get(0))
            .map_err(backend)?;
        conn.prepare_cached("INSERT INTO runs (task_id, attempt, node, started_at) VALUES (?1, ?2, ?3, ?4)")
            .map_err(backend)?
            .execute(params![id, attempt, c.node, c.now.0])
            .map_err(backend)?;
        let task = crate::rows::load(conn, TaskId(id))?;
        out.push(ClaimedTask { id: TaskId(id), attempt, spec: task.spec, queued_since: owl_core::Timestamp(queued_since) });
    }
    Ok(out)
}

pub fn heartbeat(conn: &Connection, b: &Heartbeat) -> Result<HeartbeatReply, StoreError> {
    let mut reply = HeartbeatReply::default();
    let mut stmt = conn
        .prepare_cached(
            "UPDATE tasks SET lease_until = ?4 WHERE id = ?1 AND attempts = ?2 AND node = ?3 AND status = 'running' RETURNING cancel_requested",
        )
        .map_err(backend)?;
    for (id, attempt) in &b.leases {
        let cancel: Option<i64> =
            stmt.query_row(params![id.0, attempt, b.node, b.lease_until.0], |r| r.get(0)).optional().map_err(backend)?;
        match cancel {
            None => reply.lost.push(*id),
            Some(1) => reply.cancel_requested.push(*id),
            Some(_) => {}
        }
    }
    Ok(reply)
}

pub fn complete(conn: &Connection, c: &Completion) -> Result<Changes, StoreError> {
    let row: Option<(String, u32, u32, u32)> = conn
        .prepare_cached("SELECT status, attempts, failures, max_attempts FROM tasks WHERE id = ?1")
        .map_err(backend)?
        .query_row([c.id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()
        .map_err(backend)?;
    let (status, attempts, failures, max_attempts) = row.ok_or(StoreError::NotFound(c.id))?;
    let status = crate::rows::parse_status(&status)?;
    if status != Status::Running || attempts != c.attempt {
        return Err(StoreError::StaleAttempt { id: c.id, attempt: c.attempt, current: attempts, status });
    }
    let (state, failures) = after_run(&c.outcome, c.attempt, failures, max_attempts, &c.policy, c.now, c.jitter);
    end_run(conn, c.id, c.attempt, &c.outcome, c.exit_code, c.signal, c.now)?;
    conn.prepare_cached("UPDATE tasks SET failures = ?2 WHERE id = ?1")
        .map_err(backend)?
        .execute(params![c.id.0, failures])
        .map_err(backend)?;
    if matches!(c.outcome, RunOutcome::Failed { .. } | RunOutcome::TimedOut) {
        conn.prepare_cached("UPDATE tasks SET exit_code = ?2, signal = ?3 WHERE id = ?1")
            .map_err(backend)?
            .execute(params![c.id.0, c.exit_code, c.signal])
            .map_err(backend)?;
    }
    set_state(conn, c.id, &state, c.now)?;
    let mut changes = Changes(vec![(c.id, state.status())]);
    match state.status() {
        Status::Succeeded => {
            // A schedule's run: its last success, for schedule health.
            conn.prepare_cached(
                "UPDATE schedules SET last_success_at = ?2, last_success_ms = ?2 - coalesce(t.started_at, ?2) \
                 FROM (SELECT started_at, origin FROM tasks WHERE id = ?1) AS t \
                 WHERE t.origin IS NOT NULL AND json_extract(t.origin, '$.kind') = 'schedule' AND schedules.name = json_extract(t.origin, '$.name')",
            )
            .map_err(backend)?
            .execute(params![c.id.0, c.now.0])
            .map_err(backend)?;
            release_dependents(conn, c.id, c.now, &mut changes)?
        }
        s @ (Status::Failed | Status::TimedOut | Status::Cancelled) => fail_dependents(conn, c.id, s, c.now, &mut changes)?,
        _ => {}
    }
    Ok(changes)
}

pub fn rescue(conn: &Connection, now: Timestamp, all: bool, policy: &RetryPolicy) -> Result<Changes, StoreError> {
    let rows: Vec<(i64, u32, u32, bool, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, attempts, interruptions, cancel_requested, reason FROM tasks WHERE status = 'running' AND (?2 OR lease_until < ?1) ORDER BY id",
        )
        .map_err(backend)?
        .query_map(params![now.0, all], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0, r.get(4)?)))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    let mut changes = Changes::default();
    for (id, attempt, interruptions, cancel, cancel_reason) in rows {
        let id = TaskId(id);
        if cancel {
            // Someone asked to cancel it before its run ended: it ends here.
            end_run(conn, id, attempt, &RunOutcome::Cancelled { reason: cancel_reason.clone() }, None, None, now)?;
            set_state(conn, id, &TaskState::Cancelled { finished_at: now, reason: cancel_reason }, now)?;
            changes.0.push((id, Status::Cancelled));
            fail_dependents(conn, id, Status::Cancelled, now, &mut changes)?;
            continue;
        }
        let reason = if all {
            "the daemon stopped before this attempt finished (recovered at restart)".to_string()
        } else {
            "the lease expired: the node running this attempt stopped renewing it".to_string()
        };
        end_run(conn, id, attempt, &RunOutcome::Interrupted { reason }, None, None, now)?;
        conn.prepare_cached("UPDATE tasks SET interruptions = interruptions + 1 WHERE id = ?1")
            .map_err(backend)?
            .execute([id.0])
            .map_err(backend)?;
        let state = after_crash(interruptions, policy, now);
        set_state(conn, id, &state, now)?;
        changes.0.push((id, state.status()));
        if let TaskState::Failed { .. } = state {
            fail_dependents(conn, id, Status::Failed, now, &mut changes)?;
        }
    }
    Ok(changes)
}
