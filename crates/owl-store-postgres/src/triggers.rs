//! Triggers, their fires, the finish log and the key-value facts they read. A fire locks its
//! trigger's row, so the duplicate check and the rate limit hold across nodes.

use crate::{exec, in_read, in_write, query, query_one, query_opt, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::trigger::{Trigger, TriggerSpec};
use owl_core::{Task, TaskId, Timestamp};
use owl_store::{FireTrigger, NewTask, StoreError, TriggerFireRecord, TriggerFired, TriggerStore};
use tokio_postgres::Row;

const COLUMNS: &str = "id, spec, enabled, fired, refused, last_fired_at, created_at, updated_at";

fn row(r: &Row) -> R<Trigger> {
    Ok(Trigger {
        id: r.get(0),
        spec: serde_json::from_str(r.get(1)).map_err(|e| crate::corrupt("trigger", e))?,
        enabled: r.get(2),
        fired: r.get::<_, i64>(3) as u64,
        refused: r.get::<_, i64>(4) as u64,
        last_fired_at: r.get::<_, Option<i64>>(5).map(Timestamp),
        created_at: Timestamp(r.get(6)),
        active_since: Timestamp(r.get(7)),
    })
}

async fn get(t: &Tx<'_>, name: &str, lock: &str) -> R<Trigger> {
    let sql = format!("SELECT {COLUMNS} FROM triggers WHERE name = $1 {lock}");
    let r = query_opt(t, &sql, &[&name]).await?.ok_or_else(|| StoreError::TriggerNotFound(name.to_string()))?;
    row(&r)
}

async fn record(t: &Tx<'_>, f: &FireTrigger, task: Option<TaskId>, outcome: &str, reason: Option<&str>) -> R<()> {
    exec(
        t,
        "INSERT INTO trigger_fires (trigger_id, source, at, task_id, outcome, reason) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&f.trigger_id, &f.source, &f.now.0, &task.map(|t| t.0), &outcome, &reason],
    )
    .await?;
    Ok(())
}

async fn fire(t: &Tx<'_>, f: &FireTrigger) -> R<TriggerFired> {
    let sql = format!("SELECT {COLUMNS} FROM triggers WHERE id = $1 FOR UPDATE");
    let tr = query_opt(t, &sql, &[&f.trigger_id]).await?.ok_or_else(|| StoreError::TriggerNotFound(format!("#{}", f.trigger_id)))?;
    let tr = row(&tr)?;
    if !tr.enabled {
        return Ok(TriggerFired::Disabled);
    }
    if query_opt(t, "SELECT 1 FROM trigger_fires WHERE trigger_id = $1 AND source = $2", &[&f.trigger_id, &f.source]).await?.is_some() {
        return Ok(TriggerFired::Duplicate);
    }
    let spec = match &f.task {
        Err(reason) => {
            record(t, f, None, "refused", Some(reason)).await?;
            exec(t, "UPDATE triggers SET refused = refused + 1 WHERE id = $1", &[&tr.id]).await?;
            return Ok(TriggerFired::Refused(reason.clone()));
        }
        Ok(spec) => spec,
    };
    if let Some(limit) = tr.spec.rate_limit {
        let since = f.now.0 - limit.per_ms as i64;
        let recent: i64 =
            query_one(t, "SELECT count(*) FROM trigger_fires WHERE trigger_id = $1 AND at > $2 AND outcome = 'fired'", &[&tr.id, &since])
                .await?
                .get(0);
        if recent >= limit.max as i64 {
            let reason = format!(
                "rate limit of {} per {} reached",
                limit.max,
                owl_core::duration::format(std::time::Duration::from_millis(limit.per_ms))
            );
            record(t, f, None, "rate_limited", Some(&reason)).await?;
            exec(t, "UPDATE triggers SET refused = refused + 1 WHERE id = $1", &[&tr.id]).await?;
            return Ok(TriggerFired::RateLimited);
        }
    }
    let id = crate::queue::submit(t, &[NewTask::new(spec.clone())], f.now).await?[0].id;
    record(t, f, Some(id), "fired", None).await?;
    exec(t, "UPDATE triggers SET fired = fired + 1, last_fired_at = $2 WHERE id = $1", &[&tr.id, &f.now.0]).await?;
    Ok(TriggerFired::Fired(id))
}

#[async_trait]
impl TriggerStore for PgStore {
    async fn insert_trigger(&self, spec: TriggerSpec, now: Timestamp) -> Result<Trigger, StoreError> {
        in_write!(self, |t| {
            async {
            let json = serde_json::to_string(&spec).expect("spec serializes");
            let inserted = query_opt(
                &t,
                "INSERT INTO triggers (name, spec, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[&spec.name, &json, &now.0],
            )
            .await?;
            if inserted.is_none() {
                return Err(owl_store::rules::name_taken("trigger", &spec.name).into());
            }
            get(&t, &spec.name, "").await
        }
        .await
        })
    }
    async fn get_trigger(&self, name: &str) -> Result<Trigger, StoreError> {
        in_read!(self, |t| get(&t, name, "").await)
    }
    async fn list_triggers(&self) -> Result<Vec<Trigger>, StoreError> {
        in_read!(self, |t| async {
            let sql = format!("SELECT {COLUMNS} FROM triggers ORDER BY name");
            query(&t, &sql, &[]).await?.iter().map(row).collect::<R<Vec<_>>>()
        }
        .await)
    }
    async fn set_trigger_enabled(&self, name: &str, enabled: bool, now: Timestamp) -> Result<Trigger, StoreError> {
        in_write!(self, |t| async {
            let tr = get(&t, name, "FOR UPDATE").await?;
            if tr.enabled == enabled {
                return R::Ok(tr); // enabling an enabled trigger must not move its active_since
            }
            exec(&t, "UPDATE triggers SET enabled = $2, updated_at = $3 WHERE id = $1", &[&tr.id, &enabled, &now.0]).await?;
            get(&t, name, "").await
        }
        .await)
    }
    async fn delete_trigger(&self, name: &str) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            let tr = get(&t, name, "FOR UPDATE").await?;
            exec(&t, "DELETE FROM trigger_fires WHERE trigger_id = $1", &[&tr.id]).await?;
            exec(&t, "DELETE FROM triggers WHERE id = $1", &[&tr.id]).await?;
            R::Ok(())
        }
        .await)
    }
    async fn record_trigger_fire(&self, f: FireTrigger) -> Result<TriggerFired, StoreError> {
        in_write!(self, |t| async {
            let fired = fire(&t, &f).await?;
            self.hint(&t, matches!(fired, TriggerFired::Fired(_))).await?;
            R::Ok(fired)
        }
        .await)
    }
    async fn trigger_history(&self, name: &str, limit: u32) -> Result<Vec<TriggerFireRecord>, StoreError> {
        in_read!(self, |t| {
            async {
            let tr = get(&t, name, "").await?;
            let rows = query(
                &t,
                "SELECT source, at, task_id, outcome, reason FROM trigger_fires WHERE trigger_id = $1 ORDER BY at DESC, source DESC LIMIT $2",
                &[&tr.id, &(limit as i64)],
            )
            .await?;
            R::Ok(
                rows.iter()
                    .map(|r| TriggerFireRecord {
                        source: r.get(0),
                        at: Timestamp(r.get(1)),
                        task_id: r.get::<_, Option<i64>>(2).map(TaskId),
                        outcome: r.get(3),
                        reason: r.get(4),
                    })
                    .collect(),
            )
        }
        .await
        })
    }
    async fn finished_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Task)>, StoreError> {
        in_write!(self, |t| async {
            crate::queue::sequence_finishes(&t).await?;
            let pos = query(&t, "SELECT seq, task_id FROM task_finishes WHERE seq > $1 ORDER BY seq LIMIT $2", &[&after, &(limit as i64)])
                .await?;
            let mut out = Vec::with_capacity(pos.len());
            for r in &pos {
                match crate::rows::load(&t, TaskId(r.get(1))).await {
                    Ok(task) => out.push((r.get::<_, i64>(0), task)),
                    Err(crate::Fail::Store(StoreError::NotFound(_))) => {}
                    Err(e) => return Err(e),
                }
            }
            R::Ok(out)
        }
        .await)
    }
    async fn last_finish_before(&self, before: Timestamp) -> Result<i64, StoreError> {
        in_write!(self, |t| async {
            crate::queue::sequence_finishes(&t).await?;
            // Positions follow commit order while `at` is each completing node's clock, so a
            // finish stamped later may hold a lower position: start before the first finish
            // stamped at or after `before` (the consumer filters by time and dedups by source).
            let r = query_one(
                &t,
                "SELECT coalesce((SELECT min(seq) FROM task_finishes WHERE at >= $1 AND seq IS NOT NULL) - 1, \
                   (SELECT coalesce(max(seq), 0) FROM task_finishes))::BIGINT",
                &[&before.0],
            )
            .await?;
            R::Ok(r.get::<_, i64>(0))
        }
        .await)
    }
    async fn failures_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        in_read!(self, |t| async {
            let r = query_one(
                &t,
                "SELECT count(DISTINCT f.task_id) FROM task_finishes f JOIN tasks t ON t.id = f.task_id \
                 WHERE f.at >= $1 AND t.status IN ('failed', 'timed_out')",
                &[&since.0],
            )
            .await?;
            R::Ok(r.get::<_, i64>(0) as u64)
        }
        .await)
    }
    async fn kv_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        in_read!(self, |t| async { R::Ok(query_opt(&t, "SELECT value FROM kv WHERE key = $1", &[&key]).await?.map(|r| r.get(0))) }.await)
    }
    async fn kv_swap(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
        in_write!(self, |t| async {
            // Swappers of one key take turns (the row may not exist yet, so a row lock is not
            // enough), and each reads what the one before it wrote.
            exec(&t, "SELECT pg_advisory_xact_lock(hashtextextended('owl.kv:' || $1, 0))", &[&key]).await?;
            let old: Option<String> = query_opt(&t, "SELECT value FROM kv WHERE key = $1", &[&key]).await?.map(|r| r.get(0));
            exec(&t, "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[&key, &value])
                .await?;
            R::Ok(old)
        }
        .await)
    }
    async fn kv_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            exec(&t, "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[&key, &value])
                .await?;
            R::Ok(())
        }
        .await)
    }
}
