//! The queue: submitting, state transitions with their cascades, the run path (promote,
//! claim, heartbeat, complete, rescue) and operator actions (cancel, retry, groups, lists).

use crate::rows::{attach, load, parse_status, status_of, task_row, TASK_COLUMNS};
use crate::{exec, in_read, in_write, query, query_one, query_opt, Fail, Param, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::deps::{insertion_order, DepRef};
use owl_core::lifecycle::{after_crash, after_run, RetryPolicy};
use owl_core::task::Status;
use owl_core::{GroupInfo, Run, RunOutcome, Task, TaskId, TaskState, Timestamp, WaitReason};
use owl_store::*;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;

/// Held by a reader while it numbers the finish log's new rows, until it commits: readers take
/// turns, so each numbers only rows committed before it and after every row numbered before.
const FINISH_LOCK: i64 = 0x6f77_6c5f_6669_6e69; // "owl_fini"
/// Held by claims while some group has a parallel limit: the running count of a group is then
/// read and raised by one claimer at a time across every node.
const GROUP_CLAIM_LOCK: i64 = 0x6f77_6c5f_6772_7570; // "owl_grup"

pub(crate) async fn submit(t: &Tx<'_>, batch: &[NewTask], now: Timestamp) -> R<Vec<Submitted>> {
    let plain = |i: &NewTask| i.batch_deps.is_empty() && i.spec.depends_on.is_empty() && i.spec.idempotency_key.is_none();
    if batch.len() > 1 && batch.iter().all(plain) {
        return submit_plain(t, batch, now).await;
    }
    let refs: Vec<Vec<DepRef>> = batch.iter().map(|t| t.batch_deps.iter().map(|i| DepRef::Batch(*i)).collect()).collect();
    let order = insertion_order(&refs);
    let mut out: Vec<Option<Submitted>> = vec![None; batch.len()];
    for i in order {
        let item = &batch[i];
        if let Some(key) = &item.spec.idempotency_key {
            if let Some(r) = query_opt(t, "SELECT id, status FROM tasks WHERE idempotency_key = $1", &[key]).await? {
                out[i] = Some(Submitted { id: TaskId(r.get(0)), created: false, status: parse_status(r.get(1))? });
                continue;
            }
        }
        let mut deps: Vec<TaskId> = item.spec.depends_on.clone();
        deps.extend(item.batch_deps.iter().map(|j| out[*j].as_ref().expect("insertion order puts dependencies first").id));
        deps.sort();
        deps.dedup();
        let mut statuses = Vec::with_capacity(deps.len());
        for d in &deps {
            // FOR SHARE: a dependency finishing now waits for this insert (or we see its end),
            // so its release or failure cascade cannot miss the new dependent.
            let s = status_of(t, *d, "FOR SHARE").await?.ok_or(StoreError::UnknownDependency { item: Some(i), id: *d })?;
            statuses.push((*d, s));
        }
        let init = owl_store::rules::initial_state(&statuses, item.spec.run_at, now);
        let (status, pending, due_at) = (init.status, init.pending, init.due_at);
        let (reason, finished, blocked_by) = (init.reason, init.finished_at.map(|f| f.0), init.blocked_by.map(|b| b.0));
        let s = &item.spec;
        let to_json = |v: &dyn erased::Json| v.json();
        let labels = serde_json::to_value(&s.labels).expect("labels serialize");
        let inputs = (!s.inputs.is_empty()).then(|| to_json(&s.inputs));
        let st = t
            .prepare_cached(
                "INSERT INTO tasks (created_at, updated_at, command, env, cwd, priority, grp, run_at, timeout_ms, max_attempts, \
                 idempotency_key, labels, status, due_at, deps_pending, finished_at, reason, blocked_by, inputs, sandbox, repo, origin) \
                 VALUES ($1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) RETURNING id",
            )
            .await?;
        let row = t
            .query_one(
                &st,
                &[
                    &now.0,
                    &to_json(&s.command),
                    &to_json(&s.env),
                    &s.cwd,
                    &s.priority,
                    &s.group,
                    &s.run_at.map(|t| t.0),
                    &s.timeout_ms.map(|v| v as i64),
                    &(s.max_attempts as i64),
                    &s.idempotency_key,
                    &labels,
                    &status.as_str(),
                    &due_at.0,
                    &pending,
                    &finished,
                    &reason,
                    &blocked_by,
                    &inputs,
                    &s.sandbox.as_ref().map(|b| to_json(b)),
                    &s.repo.as_ref().map(|r| to_json(r)),
                    &s.origin.as_ref().map(|o| to_json(o)),
                ],
            )
            .await
            .map_err(|e| match e.code() {
                // Another node inserted the same idempotency key a moment ago: run again and
                // return its task.
                Some(c)
                    if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                        && e.as_db_error().and_then(|d| d.constraint()) == Some("tasks_idempotency_key_key") =>
                {
                    Fail::Retry(crate::describe(&e))
                }
                _ => Fail::from(e),
            })?;
        let id = TaskId(row.get(0));
        if status == Status::Failed {
            record_finish(t, id, now).await?;
        }
        for d in &deps {
            exec(t, "INSERT INTO task_deps (task_id, dep_id) VALUES ($1, $2)", &[&id.0, &d.0]).await?;
        }
        out[i] = Some(Submitted { id, created: true, status });
    }
    Ok(out.into_iter().map(|s| s.expect("every item was handled")).collect())
}

/// A batch of tasks that depend on nothing and carry no idempotency key: one statement for all
/// of them, with ids taken from the table's sequence first so each item knows its own.
async fn submit_plain(t: &Tx<'_>, batch: &[NewTask], now: Timestamp) -> R<Vec<Submitted>> {
    let mut ids: Vec<i64> =
        query(t, "SELECT nextval(pg_get_serial_sequence('tasks', 'id')) FROM generate_series(1, $1::BIGINT)", &[&(batch.len() as i64)])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
    ids.sort();
    let json = |v: &dyn erased::Json| v.json();
    let specs: Vec<&owl_core::TaskSpec> = batch.iter().map(|i| &i.spec).collect();
    let due: Vec<i64> = specs.iter().map(|s| s.run_at.unwrap_or(now).max(now).0).collect();
    let status: Vec<Status> = due.iter().map(|d| if *d > now.0 { Status::Waiting } else { Status::Queued }).collect();
    let cols = (
        specs.iter().map(|s| json(&s.command)).collect::<Vec<_>>(),
        specs.iter().map(|s| json(&s.env)).collect::<Vec<_>>(),
        specs.iter().map(|s| s.cwd.clone()).collect::<Vec<_>>(),
        specs.iter().map(|s| s.priority).collect::<Vec<_>>(),
        specs.iter().map(|s| s.group.clone()).collect::<Vec<_>>(),
        specs.iter().map(|s| s.run_at.map(|t| t.0)).collect::<Vec<_>>(),
        specs.iter().map(|s| s.timeout_ms.map(|v| v as i64)).collect::<Vec<_>>(),
        specs.iter().map(|s| s.max_attempts as i64).collect::<Vec<_>>(),
        specs.iter().map(|s| serde_json::to_value(&s.labels).expect("labels serialize")).collect::<Vec<_>>(),
        status.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    );
    let more = (
        specs.iter().map(|s| (!s.inputs.is_empty()).then(|| json(&s.inputs))).collect::<Vec<_>>(),
        specs.iter().map(|s| s.sandbox.as_ref().map(|b| json(b))).collect::<Vec<_>>(),
        specs.iter().map(|s| s.repo.as_ref().map(|r| json(r))).collect::<Vec<_>>(),
        specs.iter().map(|s| s.origin.as_ref().map(|o| json(o))).collect::<Vec<_>>(),
    );
    exec(
        t,
        "INSERT INTO tasks (id, created_at, updated_at, command, env, cwd, priority, grp, run_at, timeout_ms, max_attempts, \
         labels, status, due_at, inputs, sandbox, repo, origin) \
         SELECT u.id, $1::BIGINT, $1::BIGINT, u.command, u.env, u.cwd, u.priority, u.grp, u.run_at, u.timeout_ms, u.max_attempts, \
           u.labels, u.status, u.due_at, u.inputs, u.sandbox, u.repo, u.origin \
         FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::INTEGER[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[], \
           $10::BIGINT[], $11::JSONB[], $12::TEXT[], $13::BIGINT[], $14::TEXT[], $15::TEXT[], $16::TEXT[], $17::TEXT[]) \
           AS u(id, command, env, cwd, priority, grp, run_at, timeout_ms, max_attempts, labels, status, due_at, inputs, sandbox, repo, origin)",
        &[
            &now.0, &ids, &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &cols.8, &cols.9, &due, &more.0, &more.1,
            &more.2, &more.3,
        ],
    )
    .await?;
    Ok(ids.into_iter().zip(status).map(|(id, status)| Submitted { id: TaskId(id), created: true, status }).collect())
}

/// Serializing the JSON columns without naming each type.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("task fields serialize")
        }
    }
}

/// The columns a state occupies in the `tasks` row: status, due_at, finished_at, reason,
/// exit_code, signal.
type StateColumns = (Status, Option<i64>, Option<i64>, Option<String>, Option<i32>, Option<i32>);

fn state_columns(state: &TaskState, now: Timestamp) -> R<StateColumns> {
    Ok(match state {
        TaskState::Queued => (Status::Queued, Some(now.0), None, None, None, None),
        TaskState::Waiting { reason: WaitReason::Time { until } | WaitReason::Retry { until, .. } } => {
            (Status::Waiting, Some(until.0), None, None, None, None)
        }
        TaskState::Waiting { reason: WaitReason::Dependencies { .. } } => (Status::Waiting, None, None, None, None, None),
        TaskState::Waiting { reason: WaitReason::Budget { until, scope, reason } } => {
            (Status::Waiting, Some(until.0), None, Some(WaitReason::budget_note(scope, reason)), None, None)
        }
        TaskState::Running { .. } => return Err(StoreError::Backend("set_state cannot start a task; claim does".into()).into()),
        TaskState::Succeeded { finished_at, .. } => (Status::Succeeded, None, Some(finished_at.0), None, None, None),
        TaskState::Failed { finished_at, reason, exit_code, signal } => {
            (Status::Failed, None, Some(finished_at.0), Some(reason.clone()), *exit_code, *signal)
        }
        TaskState::TimedOut { finished_at, .. } => (Status::TimedOut, None, Some(finished_at.0), None, None, None),
        TaskState::Cancelled { finished_at, reason } => (Status::Cancelled, None, Some(finished_at.0), reason.clone(), None, None),
    })
}

/// Writes `state` onto task `id`. Lease columns are kept for display; the status decides.
pub(crate) async fn set_state(t: &Tx<'_>, id: TaskId, state: &TaskState, now: Timestamp) -> R<()> {
    let (status, due_at, finished_at, reason, exit_code, signal) = state_columns(state, now)?;
    exec(
        t,
        "UPDATE tasks SET status = $2, updated_at = $3, due_at = coalesce($4, due_at), finished_at = $5, reason = $6, \
         exit_code = coalesce($7, exit_code), signal = coalesce($8, signal), cancel_requested = false WHERE id = $1",
        &[&id.0, &status.as_str(), &now.0, &due_at, &finished_at, &reason, &exit_code, &signal],
    )
    .await?;
    if status.is_terminal() {
        record_finish(t, id, now).await?;
    }
    Ok(())
}

/// Appends a finish to the log that completion cursors follow; its position comes later, from
/// [`sequence_finishes`].
pub(crate) async fn record_finish(t: &Tx<'_>, id: TaskId, now: Timestamp) -> R<()> {
    exec(t, "INSERT INTO task_finishes (task_id, at) VALUES ($1, $2)", &[&id.0, &now.0]).await?;
    Ok(())
}

/// Gives the committed finishes that have none their positions, in the order they were
/// written. A sequence hands out numbers when a row is written, not when it commits, so
/// numbering at write time could let a cursor pass a number whose transaction commits a moment
/// later; numbering here, one reader at a time, only ever numbers rows already committed, each
/// after every row numbered before it. Writers take no lock for it.
pub(crate) async fn sequence_finishes(t: &Tx<'_>) -> R<()> {
    exec(t, "SELECT pg_advisory_xact_lock($1)", &[&FINISH_LOCK]).await?;
    exec(
        t,
        "WITH n AS (SELECT id, nextval('task_finish_seq') AS seq FROM \
           (SELECT id FROM task_finishes WHERE seq IS NULL ORDER BY id LIMIT 10000) q) \
         UPDATE task_finishes f SET seq = n.seq FROM n WHERE f.id = n.id",
        &[],
    )
    .await?;
    Ok(())
}

async fn end_run(t: &Tx<'_>, id: TaskId, attempt: u32, outcome: &RunOutcome, code: Option<i32>, sig: Option<i32>, now: Timestamp) -> R<()> {
    let json = serde_json::to_string(outcome).expect("outcome serializes");
    exec(
        t,
        "UPDATE runs SET ended_at = $3, exit_code = $4, signal = $5, outcome = $6 WHERE task_id = $1 AND attempt = $2",
        &[&id.0, &(attempt as i64), &now.0, &code, &sig, &json],
    )
    .await?;
    Ok(())
}

/// After `id` succeeded: each waiting dependent has one dependency fewer; those with none
/// left become queued (or stay waiting for their start time).
async fn release_dependents(t: &Tx<'_>, id: TaskId, now: Timestamp, changes: &mut Changes) -> R<()> {
    let rows = query(
        t,
        "UPDATE tasks SET deps_pending = deps_pending - 1, updated_at = $2 \
         WHERE status = 'waiting' AND deps_pending > 0 AND id IN (SELECT task_id FROM task_deps WHERE dep_id = $1) \
         RETURNING id, deps_pending, due_at",
        &[&id.0, &now.0],
    )
    .await?;
    let mut ready: Vec<i64> = rows.iter().filter(|r| r.get::<_, i64>(1) == 0 && r.get::<_, i64>(2) <= now.0).map(|r| r.get(0)).collect();
    ready.sort();
    for dep in ready {
        exec(t, "UPDATE tasks SET status = 'queued' WHERE id = $1", &[&dep]).await?;
        changes.0.push((TaskId(dep), Status::Queued));
    }
    Ok(())
}

/// After `id` failed, timed out or was cancelled: every task that waits on it, directly or
/// through others, fails with a reason naming the dependency that failed it.
async fn fail_dependents(t: &Tx<'_>, id: TaskId, how: Status, now: Timestamp, changes: &mut Changes) -> R<()> {
    let mut frontier = vec![(id, how)];
    while let Some((failed, how)) = frontier.pop() {
        let reason = owl_store::rules::dependency_failed(failed, how);
        let rows = query(
            t,
            "UPDATE tasks SET status = 'failed', updated_at = $2, finished_at = $2, reason = $3, blocked_by = $1 \
             WHERE status IN ('waiting', 'queued') AND id IN (SELECT task_id FROM task_deps WHERE dep_id = $1) RETURNING id",
            &[&failed.0, &now.0, &reason],
        )
        .await?;
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort();
        for d in ids {
            record_finish(t, TaskId(d), now).await?;
            changes.0.push((TaskId(d), Status::Failed));
            frontier.push((TaskId(d), Status::Failed));
        }
    }
    Ok(())
}

/// Recounts the unmet dependencies of `id` and returns (pending, a dependency that is dead).
async fn count_pending(t: &Tx<'_>, id: TaskId) -> R<(i64, Option<(TaskId, Status)>)> {
    let rows = query(
        t,
        "SELECT d.dep_id, t.status FROM task_deps d JOIN tasks t ON t.id = d.dep_id WHERE d.task_id = $1 ORDER BY d.dep_id FOR SHARE OF t",
        &[&id.0],
    )
    .await?;
    let mut pending = 0;
    let mut dead = None;
    for r in &rows {
        let s = parse_status(r.get(1))?;
        if s != Status::Succeeded {
            pending += 1;
            if s.is_terminal() && dead.is_none() {
                dead = Some((TaskId(r.get(0)), s));
            }
        }
    }
    Ok((pending, dead))
}

/// After `id` was queued again by `owl retry`: tasks that failed only because of it wait again.
async fn revive_dependents(t: &Tx<'_>, id: TaskId, now: Timestamp, changes: &mut Changes) -> R<()> {
    let mut frontier = vec![id];
    while let Some(revived) = frontier.pop() {
        let rows =
            query(t, "SELECT id FROM tasks WHERE blocked_by = $1 AND status = 'failed' ORDER BY id FOR UPDATE", &[&revived.0]).await?;
        for b in rows.iter().map(|r| TaskId(r.get(0))) {
            let (pending, _) = count_pending(t, b).await?;
            exec(
                t,
                "UPDATE tasks SET status = 'waiting', deps_pending = $2, updated_at = $3, due_at = $3, finished_at = NULL, reason = NULL, \
                 blocked_by = NULL, exit_code = NULL, signal = NULL WHERE id = $1",
                &[&b.0, &pending, &now.0],
            )
            .await?;
            changes.0.push((b, Status::Waiting));
            frontier.push(b);
        }
    }
    Ok(())
}

/// How far past the first candidate a claim scans to find tasks of groups with room.
const CLAIM_SCAN: i64 = 512;

async fn claim(t: &Tx<'_>, c: &Claim) -> R<Vec<ClaimedTask>> {
    if c.limit == 0 {
        return Ok(vec![]);
    }
    let lease_until = c.now.plus(c.lease).0;
    let limits: HashMap<String, i64> =
        query(t, "SELECT name, parallel FROM groups WHERE parallel IS NOT NULL", &[]).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    let claimed: Vec<(i64, i32, i64, i64)> = if limits.is_empty() {
        // The common case, one statement: lock the best queued rows no other claimer holds and
        // start them.
        query(
            t,
            "WITH c AS (SELECT id, updated_at FROM tasks WHERE status = 'queued' ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE tasks SET status = 'running', attempts = tasks.attempts + 1, node = $2, started_at = $3, lease_until = $4, \
             cancel_requested = false, updated_at = $3 FROM c WHERE tasks.id = c.id RETURNING tasks.id, tasks.priority, tasks.attempts, c.updated_at",
            &[&(c.limit as i64), &c.node, &c.now.0, &lease_until],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    } else {
        exec(t, "SELECT pg_advisory_xact_lock($1)", &[&GROUP_CLAIM_LOCK]).await?;
        let mut running: HashMap<String, i64> = query(t, "SELECT grp, count(*) FROM tasks WHERE status = 'running' GROUP BY grp", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let candidates = query(
            t,
            "SELECT id, grp, updated_at FROM tasks WHERE status = 'queued' ORDER BY priority DESC, id LIMIT $1",
            &[&(c.limit as i64 + CLAIM_SCAN)],
        )
        .await?;
        let mut out = vec![];
        for r in &candidates {
            if out.len() >= c.limit {
                break;
            }
            let (id, grp, queued_since): (i64, String, i64) = (r.get(0), r.get(1), r.get(2));
            if let Some(limit) = limits.get(&grp) {
                let n = running.entry(grp).or_insert(0);
                if *n >= *limit {
                    continue;
                }
                *n += 1;
            }
            // A task cancelled since the scan is no longer queued and is passed over.
            if let Some(r) = query_opt(
                t,
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, node = $2, started_at = $3, lease_until = $4, \
                 cancel_requested = false, updated_at = $3 WHERE id = $1 AND status = 'queued' RETURNING id, priority, attempts",
                &[&id, &c.node, &c.now.0, &lease_until],
            )
            .await?
            {
                out.push((r.get(0), r.get(1), r.get(2), queued_since));
            }
        }
        out
    };
    let mut claimed = claimed;
    claimed.sort_by_key(|(id, prio, _, _)| (-(*prio as i64), *id));
    if claimed.is_empty() {
        return Ok(vec![]);
    }
    // Three statements however many were claimed: their run rows, their specs, their
    // dependency lists.
    let ids: Vec<i64> = claimed.iter().map(|c| c.0).collect();
    let attempts: Vec<i64> = claimed.iter().map(|c| c.2).collect();
    exec(
        t,
        "INSERT INTO runs (task_id, attempt, node, started_at) SELECT u.id, u.attempt, $3, $4 FROM unnest($1::BIGINT[], $2::BIGINT[]) AS u(id, attempt)",
        &[&ids, &attempts, &c.node, &c.now.0],
    )
    .await?;
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)");
    let mut specs: HashMap<i64, owl_core::TaskSpec> = HashMap::new();
    for r in query(t, &sql, &[&ids]).await? {
        let task = task_row(&r)?;
        specs.insert(task.id.0, task.spec);
    }
    for r in query(t, "SELECT task_id, dep_id FROM task_deps WHERE task_id = ANY($1) ORDER BY task_id, dep_id", &[&ids]).await? {
        if let Some(spec) = specs.get_mut(&r.get::<_, i64>(0)) {
            spec.depends_on.push(TaskId(r.get(1)));
        }
    }
    claimed
        .into_iter()
        .map(|(id, _, attempt, queued_since)| {
            let spec = specs.remove(&id).ok_or_else(|| StoreError::Backend(format!("claimed task {id} vanished")))?;
            Ok(ClaimedTask { id: TaskId(id), attempt: attempt as u32, spec, queued_since: Timestamp(queued_since) })
        })
        .collect()
}

async fn heartbeat(t: &Tx<'_>, b: &Heartbeat) -> R<HeartbeatReply> {
    let mut reply = HeartbeatReply::default();
    for (id, attempt) in &b.leases {
        let r = query_opt(
            t,
            "UPDATE tasks SET lease_until = $4 WHERE id = $1 AND attempts = $2 AND node = $3 AND status = 'running' RETURNING cancel_requested",
            &[&id.0, &(*attempt as i64), &b.node, &b.lease_until.0],
        )
        .await?;
        match r.map(|r| r.get::<_, bool>(0)) {
            None => reply.lost.push(*id),
            Some(true) => reply.cancel_requested.push(*id),
            Some(false) => {}
        }
    }
    Ok(reply)
}

async fn complete(t: &Tx<'_>, c: &Completion) -> R<Changes> {
    let row = query_opt(t, "SELECT status, attempts, failures, max_attempts FROM tasks WHERE id = $1 FOR UPDATE", &[&c.id.0])
        .await?
        .ok_or(StoreError::NotFound(c.id))?;
    let status = parse_status(row.get(0))?;
    let attempts = row.get::<_, i64>(1) as u32;
    let (failures, max_attempts) = (row.get::<_, i64>(2) as u32, row.get::<_, i64>(3) as u32);
    if status != Status::Running || attempts != c.attempt {
        return Err(StoreError::StaleAttempt { id: c.id, attempt: c.attempt, current: attempts, status }.into());
    }
    let (state, failures) = after_run(&c.outcome, c.attempt, failures, max_attempts, &c.policy, c.now, c.jitter);
    // One statement ends the run, writes the new state (a failed attempt's exit code stays on
    // the task even when it will be retried) and appends a final status to the finish log.
    let (st, due_at, finished_at, reason, exit_code, signal) = state_columns(&state, c.now)?;
    let failed_run = matches!(c.outcome, RunOutcome::Failed { .. } | RunOutcome::TimedOut);
    let outcome = serde_json::to_string(&c.outcome).expect("outcome serializes");
    exec(
        t,
        "WITH r AS (UPDATE runs SET ended_at = $2, exit_code = $9, signal = $10, outcome = $11 WHERE task_id = $1 AND attempt = $12), \
              f AS (INSERT INTO task_finishes (task_id, at) SELECT $1, $2 WHERE $15) \
         UPDATE tasks SET failures = $13, status = $3, updated_at = $2, due_at = coalesce($4, due_at), finished_at = $5, reason = $6, \
           exit_code = coalesce($7, CASE WHEN $14 THEN $9 ELSE exit_code END), \
           signal = coalesce($8, CASE WHEN $14 THEN $10 ELSE signal END), cancel_requested = false WHERE id = $1",
        &[
            &c.id.0,
            &c.now.0,
            &st.as_str(),
            &due_at,
            &finished_at,
            &reason,
            &exit_code,
            &signal,
            &c.exit_code,
            &c.signal,
            &outcome,
            &(c.attempt as i64),
            &(failures as i64),
            &failed_run,
            &st.is_terminal(),
        ],
    )
    .await?;
    let mut changes = Changes(vec![(c.id, state.status())]);
    match state.status() {
        Status::Succeeded => {
            // A schedule's run: its last success, for schedule health.
            exec(
                t,
                "UPDATE schedules SET last_success_at = $2, last_success_ms = $2 - coalesce(t.started_at, $2) \
                 FROM (SELECT started_at, origin::jsonb AS o FROM tasks WHERE id = $1 AND origin IS NOT NULL) AS t \
                 WHERE t.o ->> 'kind' = 'schedule' AND schedules.name = t.o ->> 'name'",
                &[&c.id.0, &c.now.0],
            )
            .await?;
            release_dependents(t, c.id, c.now, &mut changes).await?
        }
        s @ (Status::Failed | Status::TimedOut | Status::Cancelled) => fail_dependents(t, c.id, s, c.now, &mut changes).await?,
        _ => {}
    }
    Ok(changes)
}

async fn rescue(t: &Tx<'_>, now: Timestamp, all: bool, policy: &RetryPolicy) -> R<Changes> {
    let rows = query(
        t,
        "SELECT id, attempts, interruptions, cancel_requested, reason FROM tasks \
         WHERE status = 'running' AND ($2 OR lease_until < $1) ORDER BY id FOR UPDATE SKIP LOCKED",
        &[&now.0, &all],
    )
    .await?;
    let mut changes = Changes::default();
    for r in &rows {
        let id = TaskId(r.get(0));
        let (attempt, interruptions) = (r.get::<_, i64>(1) as u32, r.get::<_, i64>(2) as u32);
        if r.get::<_, bool>(3) {
            // Someone asked to cancel it while its node was gone: it ends here.
            let reason: Option<String> = r.get(4);
            end_run(t, id, attempt, &RunOutcome::Cancelled { reason: reason.clone() }, None, None, now).await?;
            set_state(t, id, &TaskState::Cancelled { finished_at: now, reason }, now).await?;
            changes.0.push((id, Status::Cancelled));
            fail_dependents(t, id, Status::Cancelled, now, &mut changes).await?;
            continue;
        }
        let reason = if all {
            "the daemon stopped before this attempt finished (recovered at restart)".to_string()
        } else {
            "the lease expired: the node running this attempt stopped renewing it".to_string()
        };
        end_run(t, id, attempt, &RunOutcome::Interrupted { reason }, None, None, now).await?;
        exec(t, "UPDATE tasks SET interruptions = interruptions + 1 WHERE id = $1", &[&id.0]).await?;
        let state = after_crash(interruptions, policy, now);
        set_state(t, id, &state, now).await?;
        changes.0.push((id, state.status()));
        if let TaskState::Failed { .. } = state {
            fail_dependents(t, id, Status::Failed, now, &mut changes).await?;
        }
    }
    Ok(changes)
}

async fn cancel(t: &Tx<'_>, id: TaskId, reason: &Option<String>, now: Timestamp) -> R<CancelReply> {
    let status = status_of(t, id, "FOR UPDATE").await?.ok_or(StoreError::NotFound(id))?;
    match status {
        Status::Queued | Status::Waiting => {
            set_state(t, id, &TaskState::Cancelled { finished_at: now, reason: reason.clone() }, now).await?;
            let mut changes = Changes(vec![(id, Status::Cancelled)]);
            fail_dependents(t, id, Status::Cancelled, now, &mut changes).await?;
            Ok(CancelReply::Cancelled(changes))
        }
        Status::Running => {
            exec(t, "UPDATE tasks SET cancel_requested = true, reason = $2, updated_at = $3 WHERE id = $1", &[&id.0, reason, &now.0])
                .await?;
            Ok(CancelReply::Requested)
        }
        s => Err(owl_store::rules::cannot_cancel(id, s).into()),
    }
}

async fn retry(t: &Tx<'_>, id: TaskId, now: Timestamp) -> R<Changes> {
    let status = status_of(t, id, "FOR UPDATE").await?.ok_or(StoreError::NotFound(id))?;
    if !matches!(status, Status::Failed | Status::TimedOut | Status::Cancelled) {
        return Err(owl_store::rules::cannot_retry(id, status).into());
    }
    let (pending, dead) = count_pending(t, id).await?;
    if let Some((d, s)) = dead {
        return Err(owl_store::rules::retry_dependency_first(id, d, s).into());
    }
    let new_status = if pending > 0 { Status::Waiting } else { Status::Queued };
    // The attempt count stays: it is the fencing token, and a retried task's new attempt must
    // not share a number with one that ran before.
    exec(
        t,
        "UPDATE tasks SET status = $2, deps_pending = $3, failures = 0, interruptions = 0, finished_at = NULL, reason = NULL, \
         exit_code = NULL, signal = NULL, blocked_by = NULL, cancel_requested = false, due_at = $4, updated_at = $4 WHERE id = $1",
        &[&id.0, &new_status.as_str(), &pending, &now.0],
    )
    .await?;
    let mut changes = Changes(vec![(id, new_status)]);
    revive_dependents(t, id, now, &mut changes).await?;
    Ok(changes)
}

async fn list(t: &Tx<'_>, f: &TaskFilter) -> R<Vec<Task>> {
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE true");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![];
    let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
        args.push(v);
        *sql += &clause.replace("$?", &format!("${}", args.len()));
    };
    if !f.statuses.is_empty() {
        arg(&mut sql, " AND status = ANY($?)", Box::new(f.statuses.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>()));
    }
    if let Some(g) = &f.group {
        arg(&mut sql, " AND grp = $?", Box::new(g.clone()));
    }
    if let Some(l) = &f.label {
        arg(&mut sql, " AND labels @> $?", Box::new(serde_json::json!([l])));
    }
    if !f.ids.is_empty() {
        arg(&mut sql, " AND id = ANY($?)", Box::new(f.ids.iter().map(|i| i.0).collect::<Vec<i64>>()));
    }
    match f.kind.as_deref() {
        Some("agent") => sql += " AND command::jsonb ? 'agent'",
        Some("cli") => sql += " AND command::jsonb ? 'cli'",
        Some(_) => sql += " AND NOT (command::jsonb ?| array['agent', 'cli'])",
        None => {}
    }
    if let Some(s) = &f.schedule {
        arg(
            &mut sql,
            " AND origin IS NOT NULL AND origin::jsonb @> jsonb_build_object('kind', 'schedule', 'name', $?::TEXT)",
            Box::new(s.clone()),
        );
    }
    if let Some(t) = f.created_since {
        arg(&mut sql, " AND created_at >= $?", Box::new(t.0));
    }
    if let Some(b) = f.before {
        arg(&mut sql, " AND id < $?", Box::new(b.0));
    }
    sql += " ORDER BY id DESC";
    if let Some(n) = f.limit {
        arg(&mut sql, " LIMIT $?", Box::new(n as i64));
    }
    let params: Vec<Param<'_>> = args.iter().map(|a| a.as_ref() as Param<'_>).collect();
    let rows = t.query(&sql, &params).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(attach(t, task_row(r)?).await?);
    }
    Ok(out)
}

async fn groups(t: &Tx<'_>) -> R<Vec<GroupInfo>> {
    let rows = query(
        t,
        "SELECT n.name, g.parallel, \
           (SELECT count(*) FROM tasks WHERE grp = n.name AND status = 'running'), \
           (SELECT count(*) FROM tasks WHERE grp = n.name AND status = 'queued') \
         FROM (SELECT name FROM groups UNION SELECT 'default' UNION SELECT DISTINCT grp FROM tasks WHERE status IN ('queued','waiting','running')) n \
         LEFT JOIN groups g ON g.name = n.name ORDER BY n.name",
        &[],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| GroupInfo {
            name: r.get(0),
            parallel: r.get::<_, Option<i64>>(1).map(|p| p as u32),
            running: r.get::<_, i64>(2) as u64,
            queued: r.get::<_, i64>(3) as u64,
        })
        .collect())
}

fn queued(changes: &Changes) -> bool {
    changes.0.iter().any(|(_, s)| *s == Status::Queued)
}

impl PgStore {
    /// The wake-up hint, sent when the transaction commits (PostgreSQL folds repeats within one
    /// transaction into one); nothing when hints are off or nothing became claimable.
    pub(crate) async fn hint(&self, t: &Tx<'_>, claimable: bool) -> R<()> {
        if self.notify && claimable {
            exec(t, "SELECT pg_notify($1 || '.' || current_schema(), '')", &[&crate::WORK_CHANNEL]).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl QueueStore for PgStore {
    async fn insert_batch(&self, batch: Vec<NewTask>, now: Timestamp) -> Result<Vec<Submitted>, StoreError> {
        in_write!(self, |t| async {
            let out = submit(&t, &batch, now).await?;
            self.hint(&t, out.iter().any(|s| s.created && s.status == Status::Queued)).await?;
            R::Ok(out)
        }
        .await)
    }
    async fn get(&self, id: TaskId) -> Result<Task, StoreError> {
        in_read!(self, |t| load(&t, id).await)
    }
    async fn list(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        in_read!(self, |t| list(&t, &filter).await)
    }
    async fn runs(&self, id: TaskId) -> Result<Vec<Run>, StoreError> {
        in_read!(self, |t| async {
            status_of(&t, id, "").await?.ok_or(StoreError::NotFound(id))?;
            crate::rows::runs(&t, id).await
        }
        .await)
    }
    async fn promote_due(&self, now: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        in_write!(self, |t| {
            async {
            let rows = query(
                &t,
                "UPDATE tasks SET status = 'queued', updated_at = $1 WHERE status = 'waiting' AND deps_pending = 0 AND due_at <= $1 RETURNING id",
                &[&now.0],
            )
            .await?;
            let mut ids: Vec<TaskId> = rows.iter().map(|r| TaskId(r.get(0))).collect();
            ids.sort();
            R::Ok(ids)
        }
        .await
        })
    }
    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        in_read!(self, |t| async {
            let r = query_one(&t, "SELECT min(due_at) FROM tasks WHERE status = 'waiting' AND deps_pending = 0", &[]).await?;
            R::Ok(r.get::<_, Option<i64>>(0).map(Timestamp))
        }
        .await)
    }
    async fn claim(&self, c: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
        in_write!(self, |t| claim(&t, &c).await)
    }
    async fn heartbeat(&self, beat: Heartbeat) -> Result<HeartbeatReply, StoreError> {
        in_write!(self, |t| heartbeat(&t, &beat).await)
    }
    async fn complete(&self, c: Completion) -> Result<Changes, StoreError> {
        in_write!(self, |t| async {
            let changes = complete(&t, &c).await?;
            self.hint(&t, queued(&changes)).await?;
            R::Ok(changes)
        }
        .await)
    }
    async fn rescue(&self, now: Timestamp, all: bool, policy: RetryPolicy) -> Result<Changes, StoreError> {
        in_write!(self, |t| async {
            let changes = rescue(&t, now, all, &policy).await?;
            self.hint(&t, queued(&changes)).await?;
            R::Ok(changes)
        }
        .await)
    }
    async fn cancel(&self, id: TaskId, reason: Option<String>, now: Timestamp) -> Result<CancelReply, StoreError> {
        in_write!(self, |t| cancel(&t, id, &reason, now).await)
    }
    async fn retry(&self, id: TaskId, now: Timestamp) -> Result<Changes, StoreError> {
        in_write!(self, |t| async {
            let changes = retry(&t, id, now).await?;
            self.hint(&t, queued(&changes)).await?;
            R::Ok(changes)
        }
        .await)
    }
    async fn store_group(&self, name: &str, parallel: Option<u32>) -> Result<GroupInfo, StoreError> {
        let parallel = parallel.map(|p| p as i64);
        in_write!(self, |t| async {
            exec(
                &t,
                "INSERT INTO groups (name, parallel) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET parallel = excluded.parallel",
                &[&name, &parallel],
            )
            .await?;
            let all = groups(&t).await?;
            all.into_iter().find(|g| g.name == name).ok_or_else(|| Fail::Store(StoreError::Backend("group vanished".into())))
        }
        .await)
    }
    async fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        in_read!(self, |t| groups(&t).await)
    }
    async fn beat_node(&self, b: NodeBeat) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            exec(
                &t,
                "INSERT INTO nodes (name, version, pid, started_at, last_seen, workers) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, pid = excluded.pid, started_at = excluded.started_at, \
                 last_seen = excluded.last_seen, workers = excluded.workers",
                &[&b.node, &b.version, &(b.pid as i64), &b.started_at.0, &b.now.0, &(b.workers as i64)],
            )
            .await?;
            R::Ok(())
        }
        .await)
    }
    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        in_read!(self, |t| async {
            let rows = query(
                &t,
                "SELECT n.name, n.version, n.pid, n.started_at, n.last_seen, n.workers, \
                 (SELECT count(*) FROM tasks t WHERE t.status = 'running' AND t.node = n.name) FROM nodes n ORDER BY n.name",
                &[],
            )
            .await?;
            R::Ok(
                rows.iter()
                    .map(|r| NodeInfo {
                        node: r.get(0),
                        version: r.get(1),
                        pid: r.get::<_, i64>(2) as u32,
                        started_at: Timestamp(r.get(3)),
                        last_seen: Timestamp(r.get(4)),
                        workers: r.get::<_, i64>(5) as u32,
                        running: r.get::<_, i64>(6) as u64,
                    })
                    .collect(),
            )
        }
        .await)
    }
    async fn health(&self) -> Result<StoreHealth, StoreError> {
        in_read!(self, |t| {
            async {
            let r = query_one(
                &t,
                "SELECT pg_database_size(current_database()), \
                   (SELECT coalesce(sum(n_dead_tup), 0)::BIGINT FROM pg_stat_user_tables WHERE schemaname = current_schema()), \
                   (SELECT coalesce(max(n_dead_tup), 0)::BIGINT FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'tasks'), \
                   (SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::BIGINT FROM pg_stat_activity \
                      WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()), \
                   (SELECT coalesce(max(version), 0)::BIGINT FROM schema_migrations)",
                &[],
            )
            .await?;
            R::Ok(StoreHealth {
                backend: "postgres".into(),
                location: self.url().to_string(),
                schema_version: r.get(4),
                facts: [
                    ("database_bytes".to_string(), r.get::<_, i64>(0)),
                    ("dead_tuples".to_string(), r.get(1)),
                    ("tasks_dead_tuples".to_string(), r.get(2)),
                    ("oldest_transaction_seconds".to_string(), r.get(3)),
                ]
                .into(),
            })
        }
        .await
        })
    }
    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        in_read!(self, |t| async {
            let mut out = StatusCounts::default();
            for r in query(&t, "SELECT status, count(*) FROM tasks GROUP BY status", &[]).await? {
                out.0.insert(parse_status(r.get(0))?, r.get::<_, i64>(1) as u64);
            }
            R::Ok(out)
        }
        .await)
    }
}
