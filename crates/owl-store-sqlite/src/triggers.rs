//! Triggers and their fires.

use crate::backend;
use owl_core::trigger::{Trigger, TriggerSpec};
use owl_core::{TaskId, Timestamp};
use owl_store::{FireTrigger, NewTask, StoreError, TriggerFireRecord, TriggerFired};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "id, spec, enabled, fired, refused, last_fired_at, created_at, updated_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Trigger> {
    let spec: String = r.get(1)?;
    Ok(Trigger {
        id: r.get(0)?,
        spec: serde_json::from_str(&spec)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?,
        enabled: r.get::<_, i64>(2)? != 0,
        fired: r.get::<_, i64>(3)? as u64,
        refused: r.get::<_, i64>(4)? as u64,
        last_fired_at: r.get::<_, Option<i64>>(5)?.map(Timestamp),
        created_at: Timestamp(r.get(6)?),
        active_since: Timestamp(r.get(7)?),
    })
}

pub fn get(conn: &Connection, name: &str) -> Result<Trigger, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM triggers WHERE name = ?1"))
        .map_err(backend)?
        .query_row([name], row)
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::TriggerNotFound(name.to_string()))
}

pub fn list(conn: &Connection) -> Result<Vec<Trigger>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM triggers ORDER BY name")).map_err(backend)?;
    let rows = stmt.query_map([], row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub fn create(conn: &Connection, spec: &TriggerSpec, now: Timestamp) -> Result<Trigger, StoreError> {
    if get(conn, &spec.name).is_ok() {
        return Err(owl_store::rules::name_taken("trigger", &spec.name));
    }
    conn.prepare_cached("INSERT INTO triggers (name, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)")
        .map_err(backend)?
        .execute(params![spec.name, serde_json::to_string(spec).expect("spec serializes"), now.0])
        .map_err(backend)?;
    get(conn, &spec.name)
}

pub fn set_enabled(conn: &Connection, name: &str, enabled: bool, now: Timestamp) -> Result<Trigger, StoreError> {
    let t = get(conn, name)?;
    if t.enabled == enabled {
        return Ok(t); // enabling an enabled trigger must not move its active_since
    }
    conn.execute("UPDATE triggers SET enabled = ?2, updated_at = ?3 WHERE id = ?1", params![t.id, enabled, now.0]).map_err(backend)?;
    get(conn, name)
}

pub fn delete(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let t = get(conn, name)?;
    conn.execute("DELETE FROM trigger_fires WHERE trigger_id = ?1", [t.id]).map_err(backend)?;
    conn.execute("DELETE FROM triggers WHERE id = ?1", [t.id]).map_err(backend)?;
    Ok(())
}

fn record(conn: &Connection, f: &FireTrigger, task: Option<TaskId>, outcome: &str, reason: Option<&str>) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO trigger_fires (trigger_id, source, at, task_id, outcome, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .map_err(backend)?
        .execute(params![f.trigger_id, f.source, f.now.0, task.map(|t| t.0), outcome, reason])
        .map_err(backend)?;
    Ok(())
}

pub fn fire(conn: &Connection, f: &FireTrigger) -> Result<TriggerFired, StoreError> {
    let t = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM triggers WHERE id = ?1"))
        .map_err(backend)?
        .query_row([f.trigger_id], row)
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::TriggerNotFound(format!("#{}", f.trigger_id)))?;
    if !t.enabled {
        return Ok(TriggerFired::Disabled);
    }
    let seen: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM trigger_fires WHERE trigger_id = ?1 AND source = ?2")
        .map_err(backend)?
        .query_row(params![f.trigger_id, f.source], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if seen.is_some() {
        return Ok(TriggerFired::Duplicate);
    }
    let refuse = |reason: &str, outcome: &str| -> Result<(), StoreError> {
        record(conn, f, None, outcome, Some(reason))?;
        conn.execute("UPDATE triggers SET refused = refused + 1 WHERE id = ?1", [t.id]).map_err(backend)?;
        Ok(())
    };
    let spec = match &f.task {
        Err(reason) => {
            refuse(reason, "refused")?;
            return Ok(TriggerFired::Refused(reason.clone()));
        }
        Ok(spec) => spec,
    };
    if let Some(limit) = t.spec.rate_limit {
        let since = f.now.0 - limit.per_ms as i64;
        let recent: i64 = conn
            .prepare_cached("SELECT count(*) FROM trigger_fires WHERE trigger_id = ?1 AND at > ?2 AND outcome = 'fired'")
            .map_err(backend)?
            .query_row(params![t.id, since], |r| r.get(0))
            .map_err(backend)?;
        if recent >= limit.max as i64 {
            let reason = format!(
                "rate limit of {} per {} reached",
                limit.max,
                owl_core::duration::format(std::time::Duration::from_millis(limit.per_ms))
            );
            refuse(&reason, "rate_limited")?;
            return Ok(TriggerFired::RateLimited);
        }
    }
    let id = crate::submit::submit(conn, vec![NewTask::new(spec.clone())], f.now)?[0].id;
    record(conn, f, Some(id), "fired", None)?;
    conn.execute("UPDATE triggers SET fired = fired + 1, last_fired_at = ?2 WHERE id = ?1", params![t.id, f.now.0]).map_err(backend)?;
    Ok(TriggerFired::Fired(id))
}

pub fn history(conn: &Connection, name: &str, limit: u32) -> Result<Vec<TriggerFireRecord>, StoreError> {
    let t = get(conn, name)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT source, at, task_id, outcome, reason FROM trigger_fires WHERE trigger_id = ?1 ORDER BY at DESC, source DESC LIMIT ?2",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![t.id, limit], |r| {
            Ok(TriggerFireRecord {
                source: r.get(0)?,
                at: Timestamp(r.get(1)?),
                task_id: r.get::<_, Option<i64>>(2)?.map(TaskId),
                outcome: r.get(3)?,
                reason: r.get(4)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}
