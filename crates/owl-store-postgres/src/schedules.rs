//! Schedules and their fires. A pass locks its schedule's row, so two nodes applying the same
//! slot take turns and the second finds the slot's fire row: each slot fires once.

use crate::rows::parse_status;
use crate::{exec, in_read, in_write, query, query_opt, Fail, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::schedule::{Schedule, ScheduleSpec, ScheduleState};
use owl_core::{TaskId, Timestamp};
use owl_store::{ApplyFires, FireAction, FireRecord, NewTask, ScheduleStore, StoreError};
use tokio_postgres::Row;

const COLUMNS: &str =
    "id, spec, state, next_fire_at, pending_slot, last_task_id, last_fire_at, fired, missed, skipped, late, created_at, updated_at, last_success_at, last_success_ms, active_since";

fn row(r: &Row) -> R<Schedule> {
    let spec: ScheduleSpec = serde_json::from_str(r.get(1)).map_err(|e| crate::corrupt("schedule", e))?;
    let state = match r.get::<_, &str>(2) {
        "active" => ScheduleState::Active,
        "paused" => ScheduleState::Paused,
        _ => ScheduleState::Finished,
    };
    let ts = |i: usize| r.get::<_, Option<i64>>(i).map(Timestamp);
    Ok(Schedule {
        id: r.get(0),
        spec,
        state,
        next_fire_at: ts(3),
        pending_slot: ts(4),
        last_task_id: r.get::<_, Option<i64>>(5).map(TaskId),
        last_fire_at: ts(6),
        fired: r.get::<_, i64>(7) as u64,
        missed: r.get::<_, i64>(8) as u64,
        skipped: r.get::<_, i64>(9) as u64,
        late: r.get::<_, i64>(10) as u64,
        created_at: Timestamp(r.get(11)),
        updated_at: Timestamp(r.get(12)),
        last_success_at: ts(13),
        last_success_ms: r.get::<_, Option<i64>>(14).map(|v| v.max(0) as u64),
        active_since: r.get::<_, Option<i64>>(15).map(Timestamp),
    })
}

async fn get(t: &Tx<'_>, name: &str, lock: &str) -> R<Schedule> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE name = $1 {lock}");
    let r = query_opt(t, &sql, &[&name]).await?.ok_or_else(|| StoreError::ScheduleNotFound(name.to_string()))?;
    row(&r)
}

async fn by_id(t: &Tx<'_>, id: i64, lock: &str) -> R<Schedule> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = $1 {lock}");
    let r = query_opt(t, &sql, &[&id]).await?.ok_or_else(|| StoreError::ScheduleNotFound(format!("#{id}")))?;
    row(&r)
}

async fn list(t: &Tx<'_>, sql_where: &str, args: &[i64]) -> R<Vec<Schedule>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules {sql_where}");
    let params: Vec<crate::Param<'_>> = args.iter().map(|a| a as crate::Param<'_>).collect();
    query(t, &sql, &params).await?.iter().map(row).collect()
}

async fn create(t: &Tx<'_>, spec: &ScheduleSpec, next: Option<Timestamp>, now: Timestamp) -> R<Schedule> {
    let state = if next.is_some() { ScheduleState::Active } else { ScheduleState::Finished };
    let json = serde_json::to_string(spec).expect("spec serializes");
    let r = query_opt(
        t,
        "INSERT INTO schedules (name, spec, state, next_fire_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
        &[&spec.name, &json, &state.as_str(), &next.map(|t| t.0), &now.0],
    )
    .await?;
    match r {
        Some(r) => by_id(t, r.get(0), "").await,
        None => Err(owl_store::rules::name_taken("schedule", &spec.name).into()),
    }
}

async fn apply(t: &Tx<'_>, a: &ApplyFires) -> R<Vec<(Timestamp, TaskId)>> {
    let s = by_id(t, a.schedule_id, "FOR UPDATE").await?;
    if s.next_fire_at != a.expected_next {
        return Err(StoreError::Conflict(format!("schedule `{}` was advanced by another pass", s.spec.name)).into());
    }
    owl_store::rules::check_pass(&s.spec.name, s.state, &a.decisions)?;
    let mut created = vec![];
    let (mut fired, mut missed, mut skipped, mut late) = (0i64, 0i64, 0i64, 0i64);
    let mut last_task = s.last_task_id;
    for d in &a.decisions {
        let existing =
            query_opt(t, "SELECT outcome, task_id FROM schedule_fires WHERE schedule_id = $1 AND scheduled_for = $2", &[&s.id, &d.slot.0])
                .await?
                .map(|r| (r.get::<_, String>(0), r.get::<_, Option<i64>>(1)));
        match &d.action {
            FireAction::Fire(task) | FireAction::Manual(task) => {
                let outcome = if matches!(d.action, FireAction::Manual(_)) { "manual" } else { "fired" };
                let claim_queued = matches!(&existing, Some((o, None)) if o == "queued");
                if existing.is_some() && !claim_queued {
                    continue; // this slot already fired: exactly once
                }
                let id = crate::queue::submit(t, &[NewTask::new(task.clone())], a.now).await?[0].id;
                if claim_queued {
                    exec(
                        t,
                        "UPDATE schedule_fires SET task_id = $3, outcome = $4, fired_at = $5, reason = NULL WHERE schedule_id = $1 AND scheduled_for = $2",
                        &[&s.id, &d.slot.0, &id.0, &outcome, &a.now.0],
                    )
                    .await?;
                } else {
                    exec(
                        t,
                        "INSERT INTO schedule_fires (schedule_id, scheduled_for, fired_at, task_id, outcome) VALUES ($1, $2, $3, $4, $5)",
                        &[&s.id, &d.slot.0, &a.now.0, &id.0, &outcome],
                    )
                    .await?;
                }
                fired += 1;
                if a.now.0 - d.slot.0 > 1000 {
                    late += 1;
                }
                last_task = Some(id);
                created.push((d.slot, id));
            }
            FireAction::Missed(reason) | FireAction::Skipped(reason) => {
                if existing.is_some() {
                    continue;
                }
                let outcome = if matches!(d.action, FireAction::Missed(_)) { "missed" } else { "skipped" };
                exec(
                    t,
                    "INSERT INTO schedule_fires (schedule_id, scheduled_for, fired_at, outcome, reason) VALUES ($1, $2, $3, $4, $5)",
                    &[&s.id, &d.slot.0, &a.now.0, &outcome, reason],
                )
                .await?;
                if outcome == "missed" {
                    missed += 1;
                } else {
                    skipped += 1;
                }
            }
            FireAction::Queued => {
                if existing.is_none() {
                    exec(
                        t,
                        "INSERT INTO schedule_fires (schedule_id, scheduled_for, fired_at, outcome, reason) VALUES ($1, $2, $3, 'queued', \
                         'waiting for the active run to end (overlap policy queue)')",
                        &[&s.id, &d.slot.0, &a.now.0],
                    )
                    .await?;
                }
            }
        }
    }
    let state = if a.finished { ScheduleState::Finished } else { s.state };
    exec(
        t,
        "UPDATE schedules SET next_fire_at = $2, pending_slot = $3, state = $4, fired = fired + $5, missed = missed + $6, \
         skipped = skipped + $7, late = late + $8, last_task_id = $9, last_fire_at = CASE WHEN $5 > 0 THEN $10 ELSE last_fire_at END, \
         updated_at = $10 WHERE id = $1",
        &[
            &s.id,
            &a.next_fire_at.map(|t| t.0),
            &a.pending_slot.map(|t| t.0),
            &state.as_str(),
            &fired,
            &missed,
            &skipped,
            &late,
            &last_task.map(|t| t.0),
            &a.now.0,
        ],
    )
    .await?;
    Ok(created)
}

async fn history(t: &Tx<'_>, name: &str, limit: u32) -> R<Vec<FireRecord>> {
    let s = get(t, name, "").await?;
    let rows = query(
        t,
        "SELECT f.scheduled_for, f.fired_at, f.task_id, f.outcome, f.reason, t.status FROM schedule_fires f \
         LEFT JOIN tasks t ON t.id = f.task_id WHERE f.schedule_id = $1 ORDER BY f.scheduled_for DESC LIMIT $2",
        &[&s.id, &(limit as i64)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FireRecord {
                scheduled_for: Timestamp(r.get(0)),
                fired_at: Timestamp(r.get(1)),
                task_id: r.get::<_, Option<i64>>(2).map(TaskId),
                outcome: r.get(3),
                reason: r.get(4),
                task_status: r.get::<_, Option<&str>>(5).map(parse_status).transpose()?,
            })
        })
        .collect()
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn insert_schedule(&self, spec: ScheduleSpec, next: Option<Timestamp>, now: Timestamp) -> Result<Schedule, StoreError> {
        in_write!(self, |t| create(&t, &spec, next, now).await)
    }
    async fn get_schedule(&self, name: &str) -> Result<Schedule, StoreError> {
        in_read!(self, |t| get(&t, name, "").await)
    }
    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        in_read!(self, |t| list(&t, "ORDER BY name", &[]).await)
    }
    async fn set_schedule_state(
        &self,
        name: &str,
        state: ScheduleState,
        next: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Schedule, StoreError> {
        in_write!(self, |t| async {
            let s = get(&t, name, "FOR UPDATE").await?;
            exec(
                &t,
                "UPDATE schedules SET active_since = CASE WHEN $2 = 'active' AND state <> 'active' THEN $4 ELSE active_since END, \
                 state = $2, next_fire_at = $3, pending_slot = NULL, updated_at = $4 WHERE id = $1",
                &[&s.id, &state.as_str(), &next.map(|t| t.0), &now.0],
            )
            .await?;
            by_id(&t, s.id, "").await
        }
        .await)
    }
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            let s = get(&t, name, "FOR UPDATE").await?;
            exec(&t, "DELETE FROM schedule_fires WHERE schedule_id = $1", &[&s.id]).await?;
            exec(&t, "DELETE FROM schedules WHERE id = $1", &[&s.id]).await?;
            R::Ok(())
        }
        .await)
    }
    async fn due_schedules(&self, now: Timestamp) -> Result<Vec<Schedule>, StoreError> {
        in_read!(self, |t| async {
            let mut due = list(&t, "WHERE state = 'active' AND next_fire_at <= $1 ORDER BY next_fire_at", &[now.0]).await?;
            let buffered =
                list(&t, "WHERE pending_slot IS NOT NULL AND state = 'active' AND (next_fire_at IS NULL OR next_fire_at > $1)", &[now.0])
                    .await?;
            due.extend(buffered);
            R::Ok(due)
        }
        .await)
    }
    async fn any_pending_slot(&self) -> Result<bool, StoreError> {
        in_read!(self, |t| async {
            let r =
                crate::query_one(&t, "SELECT EXISTS (SELECT 1 FROM schedules WHERE pending_slot IS NOT NULL AND state = 'active')", &[])
                    .await?;
            R::Ok(r.get::<_, bool>(0))
        }
        .await)
    }
    async fn next_schedule_due(&self) -> Result<Option<Timestamp>, StoreError> {
        in_read!(self, |t| async {
            let r = crate::query_one(&t, "SELECT min(next_fire_at) FROM schedules WHERE state = 'active'", &[]).await?;
            R::Ok(r.get::<_, Option<i64>>(0).map(Timestamp))
        }
        .await)
    }
    async fn record_fires(&self, fires: ApplyFires) -> Result<Vec<(Timestamp, TaskId)>, StoreError> {
        in_write!(self, |t| async {
            let created = apply(&t, &fires).await?;
            self.hint(&t, !created.is_empty()).await?;
            R::Ok(created)
        }
        .await)
    }
    async fn schedule_history(&self, name: &str, limit: u32) -> Result<Vec<FireRecord>, StoreError> {
        in_read!(self, |t| history(&t, name, limit).await)
    }
    async fn prune_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        in_write!(self, |t| async {
            let mut n = 0;
            for sql in [
                "DELETE FROM schedule_fires WHERE fired_at < $1",
                "DELETE FROM trigger_fires WHERE at < $1",
                "DELETE FROM task_finishes WHERE at < $1",
                "DELETE FROM run_samples WHERE at < $1",
                "DELETE FROM anomalies WHERE at < $1",
            ] {
                n += exec(&t, sql, &[&before.0]).await?;
            }
            Result::<u64, Fail>::Ok(n)
        }
        .await)
    }
}
