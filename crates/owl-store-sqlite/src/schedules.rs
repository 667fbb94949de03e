//! Schedules and their fires.

use crate::backend;
use owl_core::schedule::{Schedule, ScheduleSpec, ScheduleState};
use owl_core::{TaskId, Timestamp};
use owl_store::{ApplyFires, FireAction, FireRecord, NewTask, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str =
    "id, spec, state, next_fire_at, pending_slot, last_task_id, last_fire_at, fired, missed, skipped, late, created_at, updated_at, last_success_at, last_success_ms, active_since";

fn row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    let spec: String = r.get(1)?;
    let spec: ScheduleSpec =
        serde_json::from_str(&spec).map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?;
    let state = match r.get::<_, String>(2)?.as_str() {
        "active" => ScheduleState::Active,
        "paused" => ScheduleState::Paused,
        _ => ScheduleState::Finished,
    };
    let ts = |i: usize| -> rusqlite::Result<Option<Timestamp>> { Ok(r.get::<_, Option<i64>>(i)?.map(Timestamp)) };
    Ok(Schedule {
        id: r.get(0)?,
        spec,
        state,
        next_fire_at: ts(3)?,
        pending_slot: ts(4)?,
        last_task_id: r.get::<_, Option<i64>>(5)?.map(TaskId),
        last_fire_at: ts(6)?,
        fired: r.get::<_, i64>(7)? as u64,
        missed: r.get::<_, i64>(8)? as u64,
        skipped: r.get::<_, i64>(9)? as u64,
        late: r.get::<_, i64>(10)? as u64,
        created_at: Timestamp(r.get(11)?),
        updated_at: Timestamp(r.get(12)?),
        last_success_at: ts(13)?,
        last_success_ms: r.get::<_, Option<i64>>(14)?.map(|v| v.max(0) as u64),
        active_since: r.get::<_, Option<i64>>(15)?.map(Timestamp),
    })
}

pub fn get(conn: &Connection, name: &str) -> Result<Schedule, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM schedules WHERE name = ?1"))
        .map_err(backend)?
        .query_row([name], row)
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::ScheduleNotFound(name.to_string()))
}

fn by_id(conn: &Connection, id: i64) -> Result<Schedule, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM schedules WHERE id = ?1"))
        .map_err(backend)?
        .query_row([id], row)
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::ScheduleNotFound(format!("#{id}")))
}

pub fn list(conn: &Connection, sql_where: &str, args: &[i64]) -> Result<Vec<Schedule>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM schedules {sql_where}")).map_err(backend)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub fn create(conn: &Connection, spec: &ScheduleSpec, next: Option<Timestamp>, now: Timestamp) -> Result<Schedule, StoreError> {
    let taken: Option<i64> = conn
        .prepare_cached("SELECT id FROM schedules WHERE name = ?1")
        .map_err(backend)?
        .query_row([&spec.name], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if taken.is_some() {
        return Err(owl_store::rules::name_taken("schedule", &spec.name));
    }
    let state = if next.is_some() { ScheduleState::Active } else { ScheduleState::Finished };
    conn.prepare_cached("INSERT INTO schedules (name, spec, state, next_fire_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)")
        .map_err(backend)?
        .execute(params![spec.name, serde_json::to_string(spec).expect("spec serializes"), state.as_str(), next.map(|t| t.0), now.0])
        .map_err(backend)?;
    by_id(conn, conn.last_insert_rowid())
}

pub fn set_state(
    conn: &Connection,
    name: &str,
    state: ScheduleState,
    next: Option<Timestamp>,
    now: Timestamp,
) -> Result<Schedule, StoreError> {
    let s = get(conn, name)?;
    conn.prepare_cached(
        "UPDATE schedules SET active_since = CASE WHEN ?2 = 'active' AND state <> 'active' THEN ?4 ELSE active_since END, \
         state = ?2, next_fire_at = ?3, pending_slot = NULL, updated_at = ?4 WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![s.id, state.as_str(), next.map(|t| t.0), now.0])
    .map_err(backend)?;
    by_id(conn, s.id)
}

pub fn delete(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let s = get(conn, name)?;
    conn.execute("DELETE FROM schedule_fires WHERE schedule_id = ?1", [s.id]).map_err(backend)?;
    conn.execute("DELETE FROM schedules WHERE id = ?1", [s.id]).map_err(backend)?;
    Ok(())
}

pub fn apply(conn: &Connection, a: &ApplyFires) -> Result<Vec<(Timestamp, TaskId)>, StoreError> {
    let s = by_id(conn, a.schedule_id)?;
    if s.next_fire_at != a.expected_next {
        return Err(StoreError::Conflict(format!("schedule `{}` was advanced by another pass", s.spec.name)));
    }
    owl_store::rules::check_pass(&s.spec.name, s.state, &a.decisions)?;
    let mut created = vec![];
    let (mut fired, mut missed, mut skipped, mut late) = (0i64, 0i64, 0i64, 0i64);
    let mut last_task = s.last_task_id;
    for d in &a.decisions {
        let existing: Option<(String, Option<i64>)> = conn
            .prepare_cached("SELECT outcome, task_id FROM schedule_fires WHERE schedule_id = ?1 AND scheduled_for = ?2")
            .map_err(backend)?
            .query_row(params![s.id, d.slot.0], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        match &d.action {
            FireAction::Fire(task) | FireAction::Manual(task) => {
                let outcome = if matches!(d.action, FireAction::Manual(_)) { "manual" } else { "fired" };
                let claim_queued = matches!(&existing, Some((o, None)) if o == "queued");
                if existing.is_some() && !claim_queued {
                    continue; // this slot already fired: exactly once
                }
                let id = crate::submit::submit(conn, vec![NewTask::new(task.clone())], a.now)?[0].id;
                if claim_queued {
                    conn.prepare_cached("UPDATE schedule_fires SET task_id = ?3, outcome = ?4, fired_at = ?5, reason = NULL WHERE schedule_id = ?1 AND scheduled_for = ?2")
                        .map_err(backend)?
                        .execute(params![s.id, d.slot.0, id.0, outcome, a.now.0])
                        .map_err(backend)?;
                } else {
                    conn.prepare_cached(
                        "INSERT INTO schedule_fires (schedule_id, scheduled_for, fired_at, task_id, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(backend)?
                    .execute(params![s.id, d.slot.0, a.now.0, id.0, outcome])
                    .map_err(backend)?;
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
                conn.prepare_cached(
                    "INSERT INTO schedule_fires (schedule_id, scheduled_for, fired_at, outcome, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(backend)?
                .execute(params![s.id, d.slot.0, a.now.0, outcome, reason])
                .map_err(backend)?;
                if outcome == "missed" {
                    missed += 1;
                } else {
                    skipped += 1;
                }
            }
            FireAction::Queued => {
                if existing.is_none() {
                    conn.prepare_cached("INSERT INTO schedule_fires (schedule_id, scheduled_for, fired_at, outcome, reason) VALUES (?1, ?2, ?3, 'queued', 'waiting for the active run to end (overlap policy queue)')")
                        .map_err(backend)?
                        .execute(params![s.id, d.slot.0, a.now.0])
                        .map_err(backend)?;
                }
            }
        }
    }
    let state = if a.finished { ScheduleState::Finished } else { s.state };
    conn.prepare_cached(
        "UPDATE schedules SET next_fire_at = ?2, pending_slot = ?3, state = ?4, fired = fired + ?5, missed = missed + ?6, \
         skipped = skipped + ?7, late = late + ?8, last_task_id = ?9, last_fire_at = CASE WHEN ?5 > 0 THEN ?10 ELSE last_fire_at END, \
         updated_at = ?10 WHERE id = ?1",
    )
    .map_err(backend)?
    .execute(params![
        s.id,
        a.next_fire_at.map(|t| t.0),
        a.pending_slot.map(|t| t.0),
        state.as_str(),
        fired,
        missed,
        skipped,
        late,
        last_task.map(|t| t.0),
        a.now.0
    ])
    .map_err(backend)?;
    Ok(created)
}

pub fn history(conn: &Connection, name: &str, limit: u32) -> Result<Vec<FireRecord>, StoreError> {
    let s = get(conn, name)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT f.scheduled_for, f.fired_at, f.task_id, f.outcome, f.reason, t.status FROM schedule_fires f \
             LEFT JOIN tasks t ON t.id = f.task_id WHERE f.schedule_id = ?1 ORDER BY f.scheduled_for DESC LIMIT ?2",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![s.id, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .map_err(backend)?;
    let mut out = vec![];
    for r in rows {
        let (slot, fired_at, task, outcome, reason, status) = r.map_err(backend)?;
        out.push(FireRecord {
            scheduled_for: Timestamp(slot),
            fired_at: Timestamp(fired_at),
            task_id: task.map(TaskId),
            outcome,
            reason,
            task_status: status.map(|s| crate::rows::parse_status(&s)).transpose()?,
        });
    }
    Ok(out)
}
