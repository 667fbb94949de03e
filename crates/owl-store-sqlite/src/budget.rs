//! The budget ledger on SQLite. The single writer makes a reservation's check and insert one
//! step no other write can come between.

use crate::{backend, SqliteStore};
use async_trait::async_trait;
use owl_core::{TaskId, Timestamp};
use owl_store::{BudgetStore, Reserve, Reserved, ScopeSpend, Settle, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

fn spend_of(c: &Connection, scope: &str, since: Timestamp, until: Timestamp) -> Result<ScopeSpend, StoreError> {
    c.prepare_cached(
        "SELECT coalesce(sum(CASE WHEN open = 0 THEN usd END), 0.0), coalesce(sum(CASE WHEN open = 0 THEN tokens END), 0), \
         coalesce(sum(CASE WHEN open = 1 THEN usd END), 0.0), coalesce(sum(CASE WHEN open = 1 THEN tokens END), 0), count(*), min(at) \
         FROM budget_ledger WHERE scope = ?1 AND ((at >= ?2 AND at < ?3) OR open = 1)",
    )
    .map_err(backend)?
    .query_row(params![scope, since.0, until.0], |r| {
        Ok(ScopeSpend {
            scope: scope.to_string(),
            usd: r.get(0)?,
            tokens: r.get::<_, i64>(1)? as u64,
            reserved_usd: r.get(2)?,
            reserved_tokens: r.get::<_, i64>(3)? as u64,
            entries: r.get::<_, i64>(4)? as u64,
            oldest: r.get::<_, Option<i64>>(5)?.map(Timestamp),
        })
    })
    .map_err(backend)
}

fn reserve(c: &Connection, r: &Reserve) -> Result<Reserved, StoreError> {
    let mut short = vec![];
    for l in &r.limits {
        let s = spend_of(c, &l.scope, l.since, Timestamp(i64::MAX))?;
        let over_usd = l.usd.is_some_and(|max| s.usd + s.reserved_usd + r.usd > max + owl_store::usd_slack(max));
        let over_tokens = l.tokens.is_some_and(|max| s.tokens + s.reserved_tokens + r.tokens > max);
        if over_usd || over_tokens {
            short.push(s);
        }
    }
    if !short.is_empty() {
        return Ok(Reserved::NoRoom(short));
    }
    let mut ins = c
        .prepare_cached("INSERT INTO budget_ledger (key, scope, task_id, usd, tokens, open, at) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)")
        .map_err(backend)?;
    for scope in &r.scopes {
        ins.execute(params![r.key, scope, r.task.map(|t| t.0), r.usd, r.tokens as i64, r.now.0]).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Conflict(format!("the reservation `{}` exists already", r.key))
            }
            e => backend(e),
        })?;
    }
    Ok(Reserved::Granted)
}

fn settle(c: &Connection, s: &Settle) -> Result<(), StoreError> {
    let task: Option<Option<i64>> = c
        .prepare_cached("SELECT task_id FROM budget_ledger WHERE key = ?1 AND open = 1 LIMIT 1")
        .map_err(backend)?
        .query_row([&s.key], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let Some(task) = task else {
        return Err(StoreError::Conflict(format!("no open reservation `{}` to settle (unknown, or settled already)", s.key)));
    };
    c.prepare_cached("DELETE FROM budget_ledger WHERE key = ?1").map_err(backend)?.execute([&s.key]).map_err(backend)?;
    let mut ins = c
        .prepare_cached("INSERT INTO budget_ledger (key, scope, task_id, usd, tokens, open, at) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)")
        .map_err(backend)?;
    for scope in &s.scopes {
        ins.execute(params![s.key, scope, task, s.usd.max(0.0), s.tokens as i64, s.now.0]).map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl BudgetStore for SqliteStore {
    async fn reserve(&self, r: Reserve) -> Result<Reserved, StoreError> {
        self.write(move |c| reserve(c, &r)).await
    }
    async fn settle(&self, s: Settle) -> Result<(), StoreError> {
        self.write(move |c| settle(c, &s)).await
    }
    async fn settle_open(&self, task: TaskId, now: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            c.prepare_cached("UPDATE budget_ledger SET open = 0, at = min(at, ?2) WHERE task_id = ?1 AND open = 1")
                .map_err(backend)?
                .execute(params![task.0, now.0])
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }
    async fn spend(&self, scopes: Vec<String>, since: Vec<Timestamp>) -> Result<Vec<ScopeSpend>, StoreError> {
        self.read(move |c| scopes.iter().zip(since).map(|(s, t)| spend_of(c, s, t, Timestamp(i64::MAX))).collect()).await
    }
    async fn spend_by_scope(&self, since: Timestamp, until: Timestamp) -> Result<Vec<ScopeSpend>, StoreError> {
        self.read(move |c| {
            let scopes: Vec<String> = c
                .prepare_cached("SELECT DISTINCT scope FROM budget_ledger WHERE at >= ?1 AND at < ?2 ORDER BY scope")
                .map_err(backend)?
                .query_map(params![since.0, until.0], |r| r.get(0))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            scopes.iter().map(|s| spend_of(c, s, since, until)).collect()
        })
        .await
    }
    async fn wake_budget_waits(&self, now: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        self.write(move |c| {
            let mut ids: Vec<TaskId> = c
                .prepare_cached(
                    "UPDATE tasks SET status = 'queued', due_at = ?1, updated_at = ?1 \
                     WHERE status = 'waiting' AND deps_pending = 0 AND reason LIKE '{\"budget\":%' RETURNING id",
                )
                .map_err(backend)?
                .query_map([now.0], |r| Ok(TaskId(r.get(0)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            ids.sort();
            Ok(ids)
        })
        .await
    }
    async fn settle_orphans(&self, chats_before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE budget_ledger SET open = 0 WHERE open = 1 AND ( \
                 (task_id IS NULL AND at < ?1) OR \
                 (task_id IS NOT NULL AND task_id NOT IN (SELECT id FROM tasks WHERE status = 'running')))",
            )
            .map_err(backend)?
            .execute([chats_before.0])
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }
    async fn prune_ledger(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM budget_ledger WHERE open = 0 AND at < ?1")
                .map_err(backend)?
                .execute([before.0])
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }
}
