//! The budget ledger on PostgreSQL. Reservations of all nodes take turns on one advisory lock
//! inside their transaction, so a check and its insert see every reservation committed before.

use crate::{exec, in_read, in_write, query, query_one, query_opt, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::{TaskId, Timestamp};
use owl_store::{BudgetStore, Reserve, Reserved, ScopeSpend, Settle, StoreError};

/// The advisory lock reservations take turns on.
const BUDGET_LOCK: i64 = 0x6f77_6c5f_6275_6467; // "owl_budg"

async fn spend_of(t: &Tx<'_>, scope: &str, since: Timestamp, until: Timestamp) -> R<ScopeSpend> {
    let r = query_one(
        t,
        "SELECT coalesce(sum(usd) FILTER (WHERE NOT open), 0.0)::DOUBLE PRECISION, coalesce(sum(tokens) FILTER (WHERE NOT open), 0)::BIGINT, \
         coalesce(sum(usd) FILTER (WHERE open), 0.0)::DOUBLE PRECISION, coalesce(sum(tokens) FILTER (WHERE open), 0)::BIGINT, count(*), min(at) \
         FROM budget_ledger WHERE scope = $1 AND ((at >= $2 AND at < $3) OR open)",
        &[&scope, &since.0, &until.0],
    )
    .await?;
    Ok(ScopeSpend {
        scope: scope.to_string(),
        usd: r.get(0),
        tokens: r.get::<_, i64>(1) as u64,
        reserved_usd: r.get(2),
        reserved_tokens: r.get::<_, i64>(3) as u64,
        entries: r.get::<_, i64>(4) as u64,
        oldest: r.get::<_, Option<i64>>(5).map(Timestamp),
    })
}

#[async_trait]
impl BudgetStore for PgStore {
    async fn reserve(&self, r: Reserve) -> Result<Reserved, StoreError> {
        in_write!(self, |t| async {
            exec(&t, "SELECT pg_advisory_xact_lock($1)", &[&BUDGET_LOCK]).await?;
            let mut short = vec![];
            for l in &r.limits {
                let s = spend_of(&t, &l.scope, l.since, Timestamp(i64::MAX)).await?;
                let over_usd = l.usd.is_some_and(|max| s.usd + s.reserved_usd + r.usd > max + owl_store::usd_slack(max));
                let over_tokens = l.tokens.is_some_and(|max| s.tokens + s.reserved_tokens + r.tokens > max);
                if over_usd || over_tokens {
                    short.push(s);
                }
            }
            if !short.is_empty() {
                return R::Ok(Reserved::NoRoom(short));
            }
            for scope in &r.scopes {
                let n = exec(
                    &t,
                    "INSERT INTO budget_ledger (key, scope, task_id, usd, tokens, open, at) VALUES ($1, $2, $3, $4, $5, true, $6) \
                     ON CONFLICT (key, scope) DO NOTHING",
                    &[&r.key, scope, &r.task.map(|x| x.0), &r.usd, &(r.tokens as i64), &r.now.0],
                )
                .await?;
                if n == 0 {
                    return Err(crate::Fail::Store(StoreError::Conflict(format!("the reservation `{}` exists already", r.key))));
                }
            }
            Ok(Reserved::Granted)
        }
        .await)
    }
    async fn settle(&self, s: Settle) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            let Some(row) =
                query_opt(&t, "SELECT task_id FROM budget_ledger WHERE key = $1 AND open FOR UPDATE LIMIT 1", &[&s.key]).await?
            else {
                return Err(crate::Fail::Store(StoreError::Conflict(format!(
                    "no open reservation `{}` to settle (unknown, or settled already)",
                    s.key
                ))));
            };
            let task: Option<i64> = row.get(0);
            exec(&t, "DELETE FROM budget_ledger WHERE key = $1", &[&s.key]).await?;
            for scope in &s.scopes {
                exec(
                    &t,
                    "INSERT INTO budget_ledger (key, scope, task_id, usd, tokens, open, at) VALUES ($1, $2, $3, $4, $5, false, $6)",
                    &[&s.key, scope, &task, &s.usd.max(0.0), &(s.tokens as i64), &s.now.0],
                )
                .await?;
            }
            R::Ok(())
        }
        .await)
    }
    async fn settle_open(&self, task: TaskId, now: Timestamp) -> Result<u64, StoreError> {
        in_write!(self, |t| async {
            exec(&t, "UPDATE budget_ledger SET open = false, at = least(at, $2) WHERE task_id = $1 AND open", &[&task.0, &now.0]).await
        }
        .await)
    }
    async fn spend(&self, scopes: Vec<String>, since: Vec<Timestamp>) -> Result<Vec<ScopeSpend>, StoreError> {
        in_read!(self, |t| async {
            let mut out = vec![];
            for (s, at) in scopes.iter().zip(&since) {
                out.push(spend_of(&t, s, *at, Timestamp(i64::MAX)).await?);
            }
            R::Ok(out)
        }
        .await)
    }
    async fn spend_by_scope(&self, since: Timestamp, until: Timestamp) -> Result<Vec<ScopeSpend>, StoreError> {
        in_read!(self, |t| async {
            let rows =
                query(&t, "SELECT DISTINCT scope FROM budget_ledger WHERE at >= $1 AND at < $2 ORDER BY scope", &[&since.0, &until.0])
                    .await?;
            let mut out = vec![];
            for r in rows {
                let scope: String = r.get(0);
                out.push(spend_of(&t, &scope, since, until).await?);
            }
            R::Ok(out)
        }
        .await)
    }
    async fn wake_budget_waits(&self, now: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        in_write!(self, |t| async {
            let rows = query(
                &t,
                "UPDATE tasks SET status = 'queued', due_at = $1, updated_at = $1 \
                 WHERE status = 'waiting' AND deps_pending = 0 AND reason LIKE '{\"budget\":%' RETURNING id",
                &[&now.0],
            )
            .await?;
            let mut ids: Vec<TaskId> = rows.iter().map(|r| TaskId(r.get(0))).collect();
            ids.sort();
            R::Ok(ids)
        }
        .await)
    }
    async fn settle_orphans(&self, chats_before: Timestamp) -> Result<u64, StoreError> {
        in_write!(self, |t| async {
            exec(
                &t,
                "UPDATE budget_ledger SET open = false WHERE open AND ( \
                 (task_id IS NULL AND at < $1) OR \
                 (task_id IS NOT NULL AND task_id NOT IN (SELECT id FROM tasks WHERE status = 'running')))",
                &[&chats_before.0],
            )
            .await
        }
        .await)
    }
    async fn prune_ledger(&self, before: Timestamp) -> Result<u64, StoreError> {
        in_write!(self, |t| async { exec(&t, "DELETE FROM budget_ledger WHERE NOT open AND at < $1", &[&before.0]).await }.await)
    }
}
