//! Reading tasks and runs back from rows into the domain types.

use crate::backend;
use owl_core::task::Status;
use owl_core::{Command, Run, RunOutcome, Task, TaskId, TaskSpec, TaskState, Timestamp, WaitReason};
use owl_store::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub const TASK_COLUMNS: &str = "id, created_at, updated_at, command, env, cwd, priority, grp, run_at, timeout_ms, max_attempts, \
     idempotency_key, labels, status, due_at, deps_pending, attempts, failures, interruptions, node, started_at, lease_until, \
     cancel_requested, finished_at, exit_code, signal, reason, inputs, sandbox, repo, origin";

/// A task row before its dependencies are attached.
pub struct TaskRow {
    pub task: Task,
}

pub fn parse_status(s: &str) -> Result<Status, StoreError> {
    s.parse::<Status>().map_err(|e| StoreError::Backend(format!("corrupt status in database: {e}")))
}

fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("{what}: {e}").into()))
}

pub fn task_row(r: &Row<'_>) -> rusqlite::Result<(TaskRow, String)> {
    let command: Command = json(&r.get::<_, String>(3)?, "command")?;
    let spec = TaskSpec {
        command,
        env: json(&r.get::<_, String>(4)?, "env")?,
        cwd: r.get(5)?,
        priority: r.get(6)?,
        group: r.get(7)?,
        run_at: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        timeout_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        max_attempts: r.get(10)?,
        idempotency_key: r.get(11)?,
        labels: json(&r.get::<_, String>(12)?, "labels")?,
        depends_on: vec![],
        inputs: match r.get::<_, Option<String>>(27)? {
            Some(j) => json(&j, "inputs")?,
            None => vec![],
        },
        sandbox: match r.get::<_, Option<String>>(28)? {
            Some(j) => Some(json(&j, "sandbox")?),
            None => None,
        },
        repo: match r.get::<_, Option<String>>(29)? {
            Some(j) => Some(json(&j, "repo")?),
            None => None,
        },
        origin: match r.get::<_, Option<String>>(30)? {
            Some(j) => Some(json(&j, "origin")?),
            None => None,
        },
    };
    let status: String = r.get(13)?;
    let due_at = Timestamp(r.get(14)?);
    let deps_pending: i64 = r.get(15)?;
    let attempts: u32 = r.get(16)?;
    let failures: u32 = r.get(17)?;
    let finished_at = r.get::<_, Option<i64>>(23)?.map(Timestamp).unwrap_or_default();
    let reason: Option<String> = r.get(26)?;
    let state = match status.as_str() {
        "queued" => TaskState::Queued,
        // Dependencies are filled in by `attach`; the time reasons are complete here.
        "waiting" if deps_pending > 0 => TaskState::Waiting { reason: WaitReason::Dependencies { pending: vec![] } },
        "waiting" if reason.as_deref().and_then(|n| WaitReason::from_budget_note(n, due_at)).is_some() => {
            TaskState::Waiting { reason: reason.as_deref().and_then(|n| WaitReason::from_budget_note(n, due_at)).expect("checked above") }
        }
        "waiting" if failures > 0 => TaskState::Waiting { reason: WaitReason::Retry { until: due_at, failed_attempts: failures } },
        "waiting" => TaskState::Waiting { reason: WaitReason::Time { until: due_at } },
        "running" => TaskState::Running {
            attempt: attempts,
            node: r.get::<_, Option<String>>(19)?.unwrap_or_default(),
            started_at: Timestamp(r.get::<_, Option<i64>>(20)?.unwrap_or_default()),
            lease_until: Timestamp(r.get::<_, Option<i64>>(21)?.unwrap_or_default()),
            cancel_requested: r.get::<_, i64>(22)? != 0,
        },
        "succeeded" => TaskState::Succeeded { attempt: attempts, finished_at },
        "failed" => TaskState::Failed {
            finished_at,
            reason: reason.clone().unwrap_or_else(|| "failed".into()),
            exit_code: r.get(24)?,
            signal: r.get(25)?,
        },
        "timed_out" => TaskState::TimedOut { attempt: attempts, finished_at },
        "cancelled" => TaskState::Cancelled { finished_at, reason: reason.clone() },
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                13,
                rusqlite::types::Type::Text,
                format!("unknown status {other}").into(),
            ))
        }
    };
    let task = Task {
        id: TaskId(r.get(0)?),
        spec,
        state,
        created_at: Timestamp(r.get(1)?),
        updated_at: Timestamp(r.get(2)?),
        attempts,
        failures,
        interruptions: r.get(18)?,
    };
    Ok((TaskRow { task }, status))
}

/// Attaches the dependency list, and the pending dependencies of a waiting task.
pub fn attach(conn: &Connection, row: TaskRow) -> Result<Task, StoreError> {
    let mut task = row.task;
    let mut stmt = conn
        .prepare_cached(
            "SELECT d.dep_id, t.status FROM task_deps d LEFT JOIN tasks t ON t.id = d.dep_id WHERE d.task_id = ?1 ORDER BY d.dep_id",
        )
        .map_err(backend)?;
    let deps: Vec<(i64, Option<String>)> =
        stmt.query_map([task.id.0], |r| Ok((r.get(0)?, r.get(1)?))).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)?;
    task.spec.depends_on = deps.iter().map(|(d, _)| TaskId(*d)).collect();
    if let TaskState::Waiting { reason: WaitReason::Dependencies { pending } } = &mut task.state {
        *pending = deps.iter().filter(|(_, s)| s.as_deref() != Some("succeeded")).map(|(d, _)| TaskId(*d)).collect();
    }
    Ok(task)
}

pub fn load(conn: &Connection, id: TaskId) -> Result<Task, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
    let row = conn
        .prepare_cached(&sql)
        .map_err(backend)?
        .query_row([id.0], |r| task_row(r).map(|(t, _)| t))
        .optional()
        .map_err(backend)?
        .ok_or(StoreError::NotFound(id))?;
    attach(conn, row)
}

pub fn status_of(conn: &Connection, id: TaskId) -> Result<Option<Status>, StoreError> {
    let s: Option<String> = conn
        .prepare_cached("SELECT status FROM tasks WHERE id = ?1")
        .map_err(backend)?
        .query_row([id.0], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    s.map(|s| parse_status(&s)).transpose()
}

pub fn runs(conn: &Connection, id: TaskId) -> Result<Vec<Run>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT attempt, node, started_at, ended_at, exit_code, signal, outcome FROM runs WHERE task_id = ?1 ORDER BY attempt",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![id.0], |r| {
            let outcome: Option<String> = r.get(6)?;
            Ok(Run {
                task_id: id,
                attempt: r.get(0)?,
                node: r.get(1)?,
                started_at: Timestamp(r.get(2)?),
                ended_at: r.get::<_, Option<i64>>(3)?.map(Timestamp),
                exit_code: r.get(4)?,
                signal: r.get(5)?,
                outcome: outcome.map(|o| json::<RunOutcome>(&o, "outcome")).transpose()?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}
