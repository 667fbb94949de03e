//! Operator actions and listings: cancel, retry, groups, list, counts; and the `Store` impl
//! that routes each call to the writer or the reader pool.

use crate::backend;
use crate::rows::{attach, parse_status, task_row, TASK_COLUMNS};
use crate::transitions::{count_pending, fail_dependents, revive_dependents, set_state};
use crate::SqliteStore;
use async_trait::async_trait;
use owl_core::lifecycle::RetryPolicy;
use owl_core::schedule::{Schedule, ScheduleSpec, ScheduleState};
use owl_core::task::Status;
use owl_core::trigger::{Trigger, TriggerSpec};
use owl_core::{GroupInfo, Run, Task, TaskId, TaskState, Timestamp};
use owl_store::*;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

fn cancel(conn: &Connection, id: TaskId, reason: Option<String>, now: Timestamp) -> Result<CancelReply, StoreError> {
    let status = crate::rows::status_of(conn, id)?.ok_or(StoreError::NotFound(id))?;
    match status {
        Status::Queued | Status::Waiting => {
            set_state(conn, id, &TaskState::Cancelled { finished_at: now, reason }, now)?;
            let mut changes = Changes(vec![(id, Status::Cancelled)]);
            fail_dependents(conn, id, Status::Cancelled, now, &mut changes)?;
            Ok(CancelReply::Cancelled(changes))
        }
        Status::Running => {
            conn.prepare_cached("UPDATE tasks SET cancel_requested = 1, reason = ?2, updated_at = ?3 WHERE id = ?1")
                .map_err(backend)?
                .execute(params![id.0, reason, now.0])
                .map_err(backend)?;
            Ok(CancelReply::Requested)
        }
        s => Err(owl_store::rules::cannot_cancel(id, s)),
    }
}

fn retry(conn: &Connection, id: TaskId, now: Timestamp) -> Result<Changes, StoreError> {
    let status = crate::rows::status_of(conn, id)?.ok_or(StoreError::NotFound(id))?;
    if !matches!(status, Status::Failed | Status::TimedOut | Status::Cancelled) {
        return Err(owl_store::rules::cannot_retry(id, status));
    }
    let (pending, dead) = count_pending(conn, id)?;
    if let Some((d, s)) = dead {
        return Err(owl_store::rules::retry_dependency_first(id, d, s));
    }
    let new_status = if pending > 0 { Status::Waiting } else { Status::Queued };
    conn.prepare_cached(
        "UPDATE tasks SET status = ?2, deps_pending = ?3, failures = 0, interruptions = 0, finished_at = NULL, reason = NULL, \
         exit_code = NULL, signal = NULL, blocked_by = NULL, cancel_requested = 0, due_at = ?4, updated_at = ?4 WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![id.0, new_status.as_str(), pending, now.0])
    .map_err(backend)?;
    let mut changes = Changes(vec![(id, new_status)]);
    revive_dependents(conn, id, now, &mut changes)?;
    Ok(changes)
}

fn list(conn: &Connection, f: &TaskFilter) -> Result<Vec<Task>, StoreError> {
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = vec![];
    if !f.statuses.is_empty() {
        sql += &format!(" AND status IN ({})", vec!["?"; f.statuses.len()].join(","));
        args.extend(f.statuses.iter().map(|s| s.as_str().to_string().into()));
    }
    if let Some(g) = &f.group {
        sql += " AND grp = ?";
        args.push(g.clone().into());
    }
    if let Some(l) = &f.label {
        sql += " AND EXISTS (SELECT 1 FROM json_each(tasks.labels) WHERE value = ?)";
        args.push(l.clone().into());
    }
    if !f.ids.is_empty() {
        sql += &format!(" AND id IN ({})", vec!["?"; f.ids.len()].join(","));
        args.extend(f.ids.iter().map(|i| i.0.into()));
    }
    match f.kind.as_deref() {
        Some("agent") => sql += " AND json_type(command, '$.agent') IS NOT NULL",
        Some("cli") => sql += " AND json_type(command, '$.cli') IS NOT NULL",
        Some(_) => sql += " AND json_type(command, '$.agent') IS NULL AND json_type(command, '$.cli') IS NULL",
        None => {}
    }
    if let Some(s) = &f.schedule {
        sql += " AND json_extract(origin, '$.kind') = 'schedule' AND json_extract(origin, '$.name') = ?";
        args.push(s.clone().into());
    }
    if let Some(t) = f.created_since {
        sql += " AND created_at >= ?";
        args.push(t.0.into());
    }
    if let Some(b) = f.before {
        sql += " AND id < ?";
        args.push(b.0.into());
    }
    sql += " ORDER BY id DESC";
    if let Some(n) = f.limit {
        sql += " LIMIT ?";
        args.push((n as i64).into());
    }
    let mut stmt = conn.prepare(&sql).map_err(backend)?;
    let rows: Vec<_> = stmt
        .query_map(params_from_iter(args), |r| task_row(r).map(|(t, _)| t))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    rows.into_iter().map(|r| attach(conn, r)).collect()
}

fn groups(conn: &Connection) -> Result<Vec<GroupInfo>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT n.name, g.parallel, \
               (SELECT count(*) FROM tasks WHERE grp = n.name AND status = 'running'), \
               (SELECT count(*) FROM tasks WHERE grp = n.name AND status = 'queued') \
             FROM (SELECT name FROM groups UNION SELECT 'default' UNION SELECT DISTINCT grp FROM tasks WHERE status IN ('queued','waiting','running')) n \
             LEFT JOIN groups g ON g.name = n.name ORDER BY n.name",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(GroupInfo {
                name: r.get(0)?,
                parallel: r.get::<_, Option<u32>>(1)?,
                running: r.get::<_, i64>(2)? as u64,
                queued: r.get::<_, i64>(3)? as u64,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn insert_batch(&self, batch: Vec<NewTask>, now: Timestamp) -> Result<Vec<Submitted>, StoreError> {
        self.write(move |c| crate::submit::submit(c, batch, now)).await
    }
    async fn get(&self, id: TaskId) -> Result<Task, StoreError> {
        self.read(move |c| crate::rows::load(c, id)).await
    }
    async fn list(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.read(move |c| list(c, &filter)).await
    }
    async fn runs(&self, id: TaskId) -> Result<Vec<Run>, StoreError> {
        self.read(move |c| {
            crate::rows::status_of(c, id)?.ok_or(StoreError::NotFound(id))?;
            crate::rows::runs(c, id)
        })
        .await
    }
    async fn promote_due(&self, now: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        self.write(move |c| crate::run_ops::promote_due(c, now)).await
    }
    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(crate::run_ops::next_due).await
    }
    async fn claim(&self, claim: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
        self.write(move |c| crate::run_ops::claim(c, &claim)).await
    }
    async fn heartbeat(&self, beat: Heartbeat) -> Result<HeartbeatReply, StoreError> {
        self.write(move |c| crate::run_ops::heartbeat(c, &beat)).await
    }
    async fn complete(&self, completion: Completion) -> Result<Changes, StoreError> {
        self.write(move |c| crate::run_ops::complete(c, &completion)).await
    }
    async fn rescue(&self, now: Timestamp, all: bool, policy: RetryPolicy) -> Result<Changes, StoreError> {
        self.write(move |c| crate::run_ops::rescue(c, now, all, &policy)).await
    }
    async fn cancel(&self, id: TaskId, reason: Option<String>, now: Timestamp) -> Result<CancelReply, StoreError> {
        self.write(move |c| cancel(c, id, reason, now)).await
    }
    async fn retry(&self, id: TaskId, now: Timestamp) -> Result<Changes, StoreError> {
        self.write(move |c| retry(c, id, now)).await
    }
    async fn store_group(&self, name: &str, parallel: Option<u32>) -> Result<GroupInfo, StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO groups (name, parallel) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET parallel = excluded.parallel",
            )
            .map_err(backend)?
            .execute(params![name, parallel])
            .map_err(backend)?;
            groups(c)?.into_iter().find(|g| g.name == name).ok_or_else(|| StoreError::Backend("group vanished".into()))
        })
        .await
    }
    async fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        self.read(groups).await
    }
    async fn beat_node(&self, b: NodeBeat) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO nodes (name, version, pid, started_at, last_seen, workers) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT(name) DO UPDATE SET version = excluded.version, pid = excluded.pid, started_at = excluded.started_at, \
                 last_seen = excluded.last_seen, workers = excluded.workers",
            )
            .map_err(backend)?
            .execute(params![b.node, b.version, b.pid, b.started_at.0, b.now.0, b.workers])
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }
    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT n.name, n.version, n.pid, n.started_at, n.last_seen, n.workers, \
                     (SELECT count(*) FROM tasks t WHERE t.status = 'running' AND t.node = n.name) FROM nodes n ORDER BY n.name",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(NodeInfo {
                        node: r.get(0)?,
                        version: r.get(1)?,
                        pid: r.get(2)?,
                        started_at: Timestamp(r.get(3)?),
                        last_seen: Timestamp(r.get(4)?),
                        workers: r.get(5)?,
                        running: r.get::<_, i64>(6)? as u64,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }
    async fn health(&self) -> Result<StoreHealth, StoreError> {
        let location = self.path().display().to_string();
        self.read(move |c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(backend);
            let bytes = one("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")?;
            let free = one("SELECT freelist_count * page_size FROM pragma_freelist_count(), pragma_page_size()")?;
            Ok(StoreHealth {
                backend: "sqlite".into(),
                location,
                schema_version: one("SELECT coalesce(max(version), 0) FROM schema_migrations")?,
                facts: [("database_bytes".to_string(), bytes), ("free_bytes".to_string(), free)].into(),
            })
        })
        .await
    }
    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT status, count(*) FROM tasks GROUP BY status").map_err(backend)?;
            let mut out = StatusCounts::default();
            for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(backend)? {
                let (s, n) = r.map_err(backend)?;
                out.0.insert(parse_status(&s)?, n as u64);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn insert_schedule(&self, spec: ScheduleSpec, next: Option<Timestamp>, now: Timestamp) -> Result<Schedule, StoreError> {
        self.write(move |c| crate::schedules::create(c, &spec, next, now)).await
    }
    async fn get_schedule(&self, name: &str) -> Result<Schedule, StoreError> {
        let name = name.to_string();
        self.read(move |c| crate::schedules::get(c, &name)).await
    }
    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.read(|c| crate::schedules::list(c, "ORDER BY name", &[])).await
    }
    async fn set_schedule_state(
        &self,
        name: &str,
        state: ScheduleState,
        next: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Schedule, StoreError> {
        let name = name.to_string();
        self.write(move |c| crate::schedules::set_state(c, &name, state, next, now)).await
    }
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |c| crate::schedules::delete(c, &name)).await
    }
    async fn due_schedules(&self, now: Timestamp) -> Result<Vec<Schedule>, StoreError> {
        // Two index-driven queries: an OR of the two conditions makes SQLite scan every
        // schedule. INDEXED BY: left to itself, the planner answers the second one by walking
        // schedules_due over every future schedule; the partial index holds only the few
        // schedules with a buffered slot.
        self.read(move |c| {
            let mut due = crate::schedules::list(c, "WHERE state = 'active' AND next_fire_at <= ?1 ORDER BY next_fire_at", &[now.0])?;
            let buffered = crate::schedules::list(
                c,
                "INDEXED BY schedules_pending WHERE pending_slot IS NOT NULL AND state = 'active' AND (next_fire_at IS NULL OR next_fire_at > ?1)",
                &[now.0],
            )?;
            due.extend(buffered);
            Ok(due)
        })
        .await
    }
    async fn any_pending_slot(&self) -> Result<bool, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM schedules INDEXED BY schedules_pending WHERE pending_slot IS NOT NULL AND state = 'active')",
            )
            .map_err(backend)?
            .query_row([], |r| r.get::<_, bool>(0))
            .map_err(backend)
        })
        .await
    }
    async fn next_schedule_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT min(next_fire_at) FROM schedules WHERE state = 'active'")
                .map_err(backend)?
                .query_row([], |r| r.get::<_, Option<i64>>(0))
                .map(|v| v.map(Timestamp))
                .map_err(backend)
        })
        .await
    }
    async fn record_fires(&self, fires: ApplyFires) -> Result<Vec<(Timestamp, TaskId)>, StoreError> {
        self.write(move |c| crate::schedules::apply(c, &fires)).await
    }
    async fn schedule_history(&self, name: &str, limit: u32) -> Result<Vec<FireRecord>, StoreError> {
        let name = name.to_string();
        self.read(move |c| crate::schedules::history(c, &name, limit)).await
    }
    async fn prune_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            let mut n = 0;
            for sql in [
                "DELETE FROM schedule_fires WHERE fired_at < ?1",
                "DELETE FROM trigger_fires WHERE at < ?1",
                "DELETE FROM task_finishes WHERE at < ?1",
                "DELETE FROM run_samples WHERE at < ?1",
                "DELETE FROM anomalies WHERE at < ?1",
            ] {
                n += c.execute(sql, [before.0]).map_err(backend)? as u64;
            }
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl TriggerStore for SqliteStore {
    async fn insert_trigger(&self, spec: TriggerSpec, now: Timestamp) -> Result<Trigger, StoreError> {
        self.write(move |c| crate::triggers::create(c, &spec, now)).await
    }
    async fn get_trigger(&self, name: &str) -> Result<Trigger, StoreError> {
        let name = name.to_string();
        self.read(move |c| crate::triggers::get(c, &name)).await
    }
    async fn list_triggers(&self) -> Result<Vec<Trigger>, StoreError> {
        self.read(crate::triggers::list).await
    }
    async fn set_trigger_enabled(&self, name: &str, enabled: bool, now: Timestamp) -> Result<Trigger, StoreError> {
        let name = name.to_string();
        self.write(move |c| crate::triggers::set_enabled(c, &name, enabled, now)).await
    }
    async fn delete_trigger(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |c| crate::triggers::delete(c, &name)).await
    }
    async fn record_trigger_fire(&self, fire: FireTrigger) -> Result<TriggerFired, StoreError> {
        self.write(move |c| crate::triggers::fire(c, &fire)).await
    }
    async fn trigger_history(&self, name: &str, limit: u32) -> Result<Vec<TriggerFireRecord>, StoreError> {
        let name = name.to_string();
        self.read(move |c| crate::triggers::history(c, &name, limit)).await
    }
    async fn finished_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Task)>, StoreError> {
        self.read(move |c| {
            let pos: Vec<(i64, i64)> = c
                .prepare_cached("SELECT seq, task_id FROM task_finishes WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                .map_err(backend)?
                .query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            let mut out = Vec::with_capacity(pos.len());
            for (seq, id) in pos {
                match crate::rows::load(c, TaskId(id)) {
                    Ok(t) => out.push((seq, t)),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }
    async fn last_finish_before(&self, before: Timestamp) -> Result<i64, StoreError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT coalesce((SELECT min(seq) FROM task_finishes WHERE at >= ?1) - 1, (SELECT coalesce(max(seq), 0) FROM task_finishes))",
            )
                .map_err(backend)?
                .query_row([before.0], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }
    async fn failures_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT count(DISTINCT f.task_id) FROM task_finishes f JOIN tasks t ON t.id = f.task_id \
                 WHERE f.at >= ?1 AND t.status IN ('failed', 'timed_out')",
            )
            .map_err(backend)?
            .query_row([since.0], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }
    async fn kv_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT value FROM kv WHERE key = ?1")
                .map_err(backend)?
                .query_row([key], |r| r.get(0))
                .optional()
                .map_err(backend)
        })
        .await
    }
    async fn kv_swap(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        // The single writer makes the read and the write one step.
        self.write(move |c| {
            let old: Option<String> = c
                .prepare_cached("SELECT value FROM kv WHERE key = ?1")
                .map_err(backend)?
                .query_row([&key], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            c.prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                .map_err(backend)?
                .execute(params![key, value])
                .map_err(backend)?;
            Ok(old)
        })
        .await
    }
    async fn kv_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |c| {
            c.prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                .map_err(backend)?
                .execute(params![key, value])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn append_transcript(&self, owner: Owner, attempt: u32, entries: Vec<Entry>, now: Timestamp) -> Result<Vec<u64>, StoreError> {
        self.append_transcript_impl(owner, attempt, entries, now).await
    }
    async fn transcript(&self, owner: Owner, after: u64) -> Result<Vec<TranscriptEntry>, StoreError> {
        self.transcript_impl(owner, after).await
    }
    async fn set_task_result(&self, id: TaskId, result: &str) -> Result<(), StoreError> {
        self.set_task_result_impl(id, result).await
    }
    async fn task_result(&self, id: TaskId) -> Result<Option<String>, StoreError> {
        self.task_result_impl(id).await
    }
    async fn record_usage(&self, usage: UsageRecord, at: Timestamp) -> Result<(), StoreError> {
        self.record_usage_impl(usage, at).await
    }
    async fn owner_usage(&self, owner: Owner) -> Result<UsageSummary, StoreError> {
        self.owner_usage_impl(owner).await
    }
    async fn set_task_git(&self, id: TaskId, record: owl_core::coding::GitRecord) -> Result<(), StoreError> {
        self.set_task_git_impl(id, record).await
    }
    async fn task_git(&self, id: TaskId) -> Result<Option<owl_core::coding::GitRecord>, StoreError> {
        self.task_git_impl(id).await
    }
    async fn worktrees_to_remove(&self, finished_before: Timestamp) -> Result<Vec<(TaskId, owl_core::coding::GitRecord)>, StoreError> {
        self.worktrees_to_remove_impl(finished_before).await
    }
    async fn usage_summary(&self, since: Timestamp, until: Timestamp, by: UsageBy) -> Result<Vec<UsageSummary>, StoreError> {
        self.usage_summary_impl(since, until, by).await
    }
    async fn request_approval(&self, req: NewApproval, now: Timestamp) -> Result<Approval, StoreError> {
        self.request_approval_impl(req, now).await
    }
    async fn get_approval(&self, id: i64) -> Result<Approval, StoreError> {
        self.get_approval_impl(id).await
    }
    async fn list_approvals(&self, pending_only: bool, now: Timestamp) -> Result<Vec<Approval>, StoreError> {
        self.list_approvals_impl(pending_only, now).await
    }
    async fn decide_approval(&self, id: i64, approve: bool, reason: Option<String>, now: Timestamp) -> Result<Approval, StoreError> {
        self.decide_approval_impl(id, approve, reason, now).await
    }
    async fn consume_approval(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        self.consume_approval_impl(id, now).await
    }
    async fn create_chat(&self, agent: &str, now: Timestamp) -> Result<ChatInfo, StoreError> {
        self.create_chat_impl(agent, now).await
    }
    async fn get_chat(&self, id: i64) -> Result<ChatInfo, StoreError> {
        self.get_chat_impl(id).await
    }
    async fn list_chats(&self) -> Result<Vec<ChatInfo>, StoreError> {
        self.list_chats_impl().await
    }
    async fn touch_chat(&self, id: i64, title: Option<String>, now: Timestamp) -> Result<(), StoreError> {
        self.touch_chat_impl(id, title, now).await
    }
}
