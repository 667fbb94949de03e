//! Submitting batches: validation, idempotency, dependency resolution, insertion.

use crate::backend;
use owl_core::deps::{insertion_order, DepRef};
use owl_core::task::Status;
use owl_core::{TaskId, Timestamp};
use owl_store::{NewTask, StoreError, Submitted};
use rusqlite::{params, Connection, OptionalExtension};

pub fn submit(conn: &Connection, batch: Vec<NewTask>, now: Timestamp) -> Result<Vec<Submitted>, StoreError> {
    let refs: Vec<Vec<DepRef>> = batch.iter().map(|t| t.batch_deps.iter().map(|i| DepRef::Batch(*i)).collect()).collect();
    let order = insertion_order(&refs);
    let mut out: Vec<Option<Submitted>> = vec![None; batch.len()];
    for i in order {
        let t = &batch[i];
        if let Some(key) = &t.spec.idempotency_key {
            let existing: Option<(i64, String)> = conn
                .prepare_cached("SELECT id, status FROM tasks WHERE idempotency_key = ?1")
                .map_err(backend)?
                .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(backend)?;
            if let Some((id, status)) = existing {
                out[i] = Some(Submitted { id: TaskId(id), created: false, status: crate::rows::parse_status(&status)? });
                continue;
            }
        }
        let mut deps: Vec<TaskId> = t.spec.depends_on.clone();
        deps.extend(t.batch_deps.iter().map(|j| out[*j].as_ref().expect("insertion order puts dependencies first").id));
        deps.sort();
        deps.dedup();
        let mut statuses = Vec::with_capacity(deps.len());
        for d in &deps {
            let s = crate::rows::status_of(conn, *d)?.ok_or(StoreError::UnknownDependency { item: Some(i), id: *d })?;
            statuses.push((*d, s));
        }
        let init = owl_store::rules::initial_state(&statuses, t.spec.run_at, now);
        let (status, pending, due_at) = (init.status, init.pending, init.due_at);
        let (reason, finished, blocked_by) = (init.reason, init.finished_at.map(|f| f.0), init.blocked_by.map(|b| b.0));
        let s = &t.spec;
        conn.prepare_cached(
            "INSERT INTO tasks (created_at, updated_at, command, env, cwd, priority, grp, run_at, timeout_ms, max_attempts, \
             idempotency_key, labels, status, due_at, deps_pending, finished_at, reason, blocked_by, inputs, sandbox, repo, origin) \
             VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        )
        .map_err(backend)?
        .execute(params![
            now.0,
            serde_json::to_string(&s.command).expect("command serializes"),
            serde_json::to_string(&s.env).expect("env serializes"),
            s.cwd,
            s.priority,
            s.group,
            s.run_at.map(|t| t.0),
            s.timeout_ms.map(|v| v as i64),
            s.max_attempts,
            s.idempotency_key,
            serde_json::to_string(&s.labels).expect("labels serialize"),
            status.as_str(),
            due_at.0,
            pending,
            finished,
            reason,
            blocked_by,
            (!s.inputs.is_empty()).then(|| serde_json::to_string(&s.inputs).expect("inputs serialize")),
            s.sandbox.as_ref().map(|b| serde_json::to_string(b).expect("sandbox serializes")),
            s.repo.as_ref().map(|r| serde_json::to_string(r).expect("repo serializes")),
            s.origin.as_ref().map(|o| serde_json::to_string(o).expect("origin serializes")),
        ])
        .map_err(backend)?;
        let id = TaskId(conn.last_insert_rowid());
        if status == Status::Failed {
            crate::transitions::record_finish(conn, id, now)?;
        }
        let mut ins = conn.prepare_cached("INSERT INTO task_deps (task_id, dep_id) VALUES (?1, ?2)").map_err(backend)?;
        for d in &deps {
            ins.execute(params![id.0, d.0]).map_err(backend)?;
        }
        out[i] = Some(Submitted { id, created: true, status });
    }
    Ok(out.into_iter().map(|s| s.expect("every item was handled")).collect())
}
