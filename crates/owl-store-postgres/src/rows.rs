//! Reading tasks and runs back from rows into the domain types.

use crate::{corrupt, query, query_opt, Tx, R};
use owl_core::task::Status;
use owl_core::{Command, Run, RunOutcome, Task, TaskId, TaskSpec, TaskState, Timestamp, WaitReason};
use owl_store::StoreError;
use tokio_postgres::Row;

pub const TASK_COLUMNS: &str = "id, created_at, updated_at, command, env, cwd, priority, grp, run_at, timeout_ms, max_attempts, \
     idempotency_key, labels, status, due_at, deps_pending, attempts, failures, interruptions, node, started_at, lease_until, \
     cancel_requested, finished_at, exit_code, signal, reason, inputs, sandbox, repo, origin";

pub fn parse_status(s: &str) -> R<Status> {
    s.parse::<Status>().map_err(|e| corrupt("status", e))
}

fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> R<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn opt_json<T: serde::de::DeserializeOwned>(s: Option<String>, what: &str) -> R<Option<T>> {
    s.map(|s| json(&s, what)).transpose()
}

/// A task from its row, before its dependencies are attached.
pub fn task_row(r: &Row) -> R<Task> {
    let command: Command = json(r.get(3), "command")?;
    let labels: serde_json::Value = r.get(12);
    let spec = TaskSpec {
        command,
        env: json(r.get(4), "env")?,
        cwd: r.get(5),
        priority: r.get(6),
        group: r.get(7),
        run_at: r.get::<_, Option<i64>>(8).map(Timestamp),
        timeout_ms: r.get::<_, Option<i64>>(9).map(|v| v as u64),
        max_attempts: r.get::<_, i64>(10) as u32,
        idempotency_key: r.get(11),
        labels: serde_json::from_value(labels).map_err(|e| corrupt("labels", e))?,
        depends_on: vec![],
        inputs: opt_json(r.get(27), "inputs")?.unwrap_or_default(),
        sandbox: opt_json(r.get(28), "sandbox")?,
        repo: opt_json(r.get(29), "repo")?,
        origin: opt_json(r.get(30), "origin")?,
    };
    let status: &str = r.get(13);
    let due_at = Timestamp(r.get(14));
    let deps_pending: i64 = r.get(15);
    let attempts = r.get::<_, i64>(16) as u32;
    let failures = r.get::<_, i64>(17) as u32;
    let finished_at = r.get::<_, Option<i64>>(23).map(Timestamp).unwrap_or_default();
    let reason: Option<String> = r.get(26);
    let state = match status {
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
            node: r.get::<_, Option<String>>(19).unwrap_or_default(),
            started_at: Timestamp(r.get::<_, Option<i64>>(20).unwrap_or_default()),
            lease_until: Timestamp(r.get::<_, Option<i64>>(21).unwrap_or_default()),
            cancel_requested: r.get(22),
        },
        "succeeded" => TaskState::Succeeded { attempt: attempts, finished_at },
        "failed" => TaskState::Failed {
            finished_at,
            reason: reason.clone().unwrap_or_else(|| "failed".into()),
            exit_code: r.get(24),
            signal: r.get(25),
        },
        "timed_out" => TaskState::TimedOut { attempt: attempts, finished_at },
        "cancelled" => TaskState::Cancelled { finished_at, reason: reason.clone() },
        other => return Err(corrupt("status", format!("unknown status {other}"))),
    };
    Ok(Task {
        id: TaskId(r.get(0)),
        spec,
        state,
        created_at: Timestamp(r.get(1)),
        updated_at: Timestamp(r.get(2)),
        attempts,
        failures,
        interruptions: r.get::<_, i64>(18) as u32,
    })
}

/// Attaches the dependency list, and the pending dependencies of a waiting task.
pub async fn attach(t: &Tx<'_>, mut task: Task) -> R<Task> {
    let deps = query(
        t,
        "SELECT d.dep_id, t.status FROM task_deps d LEFT JOIN tasks t ON t.id = d.dep_id WHERE d.task_id = $1 ORDER BY d.dep_id",
        &[&task.id.0],
    )
    .await?;
    let deps: Vec<(i64, Option<String>)> = deps.iter().map(|r| (r.get(0), r.get(1))).collect();
    task.spec.depends_on = deps.iter().map(|(d, _)| TaskId(*d)).collect();
    if let TaskState::Waiting { reason: WaitReason::Dependencies { pending } } = &mut task.state {
        *pending = deps.iter().filter(|(_, s)| s.as_deref() != Some("succeeded")).map(|(d, _)| TaskId(*d)).collect();
    }
    Ok(task)
}

pub async fn load(t: &Tx<'_>, id: TaskId) -> R<Task> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
    let row = query_opt(t, &sql, &[&id.0]).await?.ok_or(StoreError::NotFound(id))?;
    attach(t, task_row(&row)?).await
}

/// The task's status; `lock` takes the row for the rest of the transaction (`FOR UPDATE`, or
/// `FOR SHARE` for a dependency whose status must not change under us).
pub async fn status_of(t: &Tx<'_>, id: TaskId, lock: &str) -> R<Option<Status>> {
    let sql = format!("SELECT status FROM tasks WHERE id = $1 {lock}");
    match query_opt(t, &sql, &[&id.0]).await? {
        Some(r) => Ok(Some(parse_status(r.get(0))?)),
        None => Ok(None),
    }
}

pub async fn runs(t: &Tx<'_>, id: TaskId) -> R<Vec<Run>> {
    let rows = query(
        t,
        "SELECT attempt, node, started_at, ended_at, exit_code, signal, outcome FROM runs WHERE task_id = $1 ORDER BY attempt",
        &[&id.0],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Run {
                task_id: id,
                attempt: r.get::<_, i64>(0) as u32,
                node: r.get(1),
                started_at: Timestamp(r.get(2)),
                ended_at: r.get::<_, Option<i64>>(3).map(Timestamp),
                exit_code: r.get(4),
                signal: r.get(5),
                outcome: opt_json::<RunOutcome>(r.get(6), "outcome")?,
            })
        })
        .collect()
}
