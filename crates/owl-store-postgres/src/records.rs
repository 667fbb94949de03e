//! Agent records: transcripts, task results, usage, git records, approvals and chats.

use crate::{exec, in_read, in_write, query, query_one, query_opt, Fail, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::{TaskId, Timestamp};
use owl_store::*;
use tokio_postgres::Row;

const APPROVAL_COLUMNS: &str =
    "id, owner, agent, call_id, tool, arguments, reason, status, decision_reason, created_at, expires_at, decided_at";

fn approval_row(r: &Row) -> R<Approval> {
    let owner: String = r.get(1);
    Ok(Approval {
        id: r.get(0),
        owner: Owner::parse(&owner).ok_or_else(|| crate::corrupt("approval owner", &owner))?,
        agent: r.get(2),
        call_id: r.get(3),
        tool: r.get(4),
        arguments: serde_json::from_str(r.get(5)).unwrap_or(serde_json::Value::Null),
        reason: r.get(6),
        status: ApprovalStatus::parse(r.get(7)).unwrap_or(ApprovalStatus::Expired),
        decision_reason: r.get(8),
        created_at: Timestamp::from_millis(r.get(9)),
        expires_at: Timestamp::from_millis(r.get(10)),
        decided_at: r.get::<_, Option<i64>>(11).map(Timestamp::from_millis),
    })
}

async fn load_approval(t: &Tx<'_>, id: i64) -> R<Approval> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1");
    let r = query_opt(t, &sql, &[&id])
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("approval {id} does not exist; see `owl approvals`")))?;
    approval_row(&r)
}

async fn expire(t: &Tx<'_>, now: Timestamp) -> R<()> {
    exec(t, "UPDATE approvals SET status = 'expired', decided_at = $1 WHERE status = 'pending' AND expires_at <= $1", &[&now.millis()])
        .await?;
    Ok(())
}

fn chat_row(r: &Row) -> ChatInfo {
    ChatInfo {
        id: r.get(0),
        agent: r.get(1),
        title: r.get(2),
        created_at: Timestamp::from_millis(r.get(3)),
        updated_at: Timestamp::from_millis(r.get(4)),
    }
}

fn git(id: TaskId, s: &str) -> R<owl_core::coding::GitRecord> {
    serde_json::from_str(s).map_err(|e| crate::corrupt(&format!("git record of task {id}"), e))
}

fn usage_row(key: String, r: &Row, from: usize) -> UsageSummary {
    UsageSummary {
        key,
        calls: r.get::<_, i64>(from) as u64,
        input: r.get::<_, i64>(from + 1) as u64,
        output: r.get::<_, i64>(from + 2) as u64,
        cached: r.get::<_, i64>(from + 3) as u64,
        cost_usd: r.get(from + 4),
        price: r.get(from + 5),
    }
}

/// One lock key per transcript owner: appends to one transcript take turns, so positions
/// never collide.
fn owner_lock(key: &str) -> i64 {
    // FNV-1a: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

#[async_trait]
impl AgentStore for PgStore {
    async fn append_transcript(&self, owner: Owner, attempt: u32, entries: Vec<Entry>, now: Timestamp) -> Result<Vec<u64>, StoreError> {
        let key = owner.key();
        in_write!(self, |t| async {
            exec(&t, "SELECT pg_advisory_xact_lock($1)", &[&owner_lock(&key)]).await?;
            let last: i64 = query_one(&t, "SELECT coalesce(max(seq), 0)::BIGINT FROM transcript WHERE owner = $1", &[&key]).await?.get(0);
            let mut out = Vec::with_capacity(entries.len());
            for (i, e) in entries.iter().enumerate() {
                let seq = last + 1 + i as i64;
                let body = serde_json::to_string(e).expect("transcript entries serialize");
                exec(
                    &t,
                    "INSERT INTO transcript (owner, seq, attempt, at, body) VALUES ($1, $2, $3, $4, $5)",
                    &[&key, &seq, &(attempt as i64), &now.millis(), &body],
                )
                .await?;
                out.push(seq as u64);
            }
            R::Ok(out)
        }
        .await)
    }
    async fn transcript(&self, owner: Owner, after: u64) -> Result<Vec<TranscriptEntry>, StoreError> {
        let key = owner.key();
        in_read!(self, |t| async {
            let rows = query(
                &t,
                "SELECT seq, attempt, at, body FROM transcript WHERE owner = $1 AND seq > $2 ORDER BY seq",
                &[&key, &(after as i64)],
            )
            .await?;
            R::Ok(
                rows.iter()
                    .map(|r| TranscriptEntry {
                        seq: r.get::<_, i64>(0) as u64,
                        attempt: r.get::<_, i64>(1) as u32,
                        at: Timestamp::from_millis(r.get(2)),
                        body: Entry::from_stored(r.get(3)),
                    })
                    .collect(),
            )
        }
        .await)
    }
    async fn set_task_result(&self, id: TaskId, result: &str) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            exec(
                &t,
                "INSERT INTO task_results (task_id, result) VALUES ($1, $2) ON CONFLICT (task_id) DO UPDATE SET result = excluded.result",
                &[&id.0, &result],
            )
            .await?;
            R::Ok(())
        }
        .await)
    }
    async fn task_result(&self, id: TaskId) -> Result<Option<String>, StoreError> {
        in_read!(self, |t| async {
            R::Ok(query_opt(&t, "SELECT result FROM task_results WHERE task_id = $1", &[&id.0]).await?.map(|r| r.get(0)))
        }
        .await)
    }
    async fn record_usage(&self, u: UsageRecord, at: Timestamp) -> Result<(), StoreError> {
        in_write!(self, |t| {
            async {
            exec(
                &t,
                "INSERT INTO usage (owner, agent, provider, model, input, output, cached, cost_usd, at, price) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &u.owner.key(),
                    &u.agent,
                    &u.provider,
                    &u.model,
                    &(u.usage.input as i64),
                    &(u.usage.output as i64),
                    &(u.usage.cached as i64),
                    &u.cost_usd,
                    &at.millis(),
                    &u.price,
                ],
            )
            .await?;
            R::Ok(())
        }
        .await
        })
    }
    async fn owner_usage(&self, owner: Owner) -> Result<UsageSummary, StoreError> {
        in_read!(self, |t| async {
            let r = query_one(
                &t,
                "SELECT count(*), coalesce(sum(input), 0)::BIGINT, coalesce(sum(output), 0)::BIGINT, coalesce(sum(cached), 0)::BIGINT, \
                 coalesce(sum(cost_usd), 0.0)::DOUBLE PRECISION, \
                 coalesce((SELECT price FROM usage WHERE owner = $1 ORDER BY id DESC LIMIT 1), '') FROM usage WHERE owner = $1",
                &[&owner.key()],
            )
            .await?;
            R::Ok(usage_row(owner.key(), &r, 0))
        }
        .await)
    }
    async fn set_task_git(&self, id: TaskId, rec: owl_core::coding::GitRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&rec).expect("git record serializes");
        in_write!(self, |t| async {
            exec(
                &t,
                "INSERT INTO task_git (task_id, record, removed) VALUES ($1, $2, $3) \
                 ON CONFLICT (task_id) DO UPDATE SET record = excluded.record, removed = excluded.removed",
                &[&id.0, &json, &rec.removed],
            )
            .await?;
            R::Ok(())
        }
        .await)
    }
    async fn task_git(&self, id: TaskId) -> Result<Option<owl_core::coding::GitRecord>, StoreError> {
        in_read!(self, |t| async {
            match query_opt(&t, "SELECT record FROM task_git WHERE task_id = $1", &[&id.0]).await? {
                Some(r) => Ok(Some(git(id, r.get(0))?)),
                None => R::Ok(None),
            }
        }
        .await)
    }
    async fn worktrees_to_remove(&self, finished_before: Timestamp) -> Result<Vec<(TaskId, owl_core::coding::GitRecord)>, StoreError> {
        in_read!(self, |t| async {
            let rows = query(
                &t,
                "SELECT g.task_id, g.record FROM task_git g JOIN tasks t ON t.id = g.task_id \
                 WHERE NOT g.removed AND t.finished_at IS NOT NULL AND t.finished_at <= $1 \
                 AND t.status IN ('succeeded', 'failed', 'timed_out', 'cancelled') ORDER BY g.task_id",
                &[&finished_before.millis()],
            )
            .await?;
            rows.iter()
                .map(|r| {
                    let id = TaskId(r.get(0));
                    Ok((id, git(id, r.get(1))?))
                })
                .collect::<R<Vec<_>>>()
        }
        .await)
    }
    async fn usage_summary(&self, since: Timestamp, until: Timestamp, by: UsageBy) -> Result<Vec<UsageSummary>, StoreError> {
        let key = match by {
            UsageBy::Agent => "agent",
            UsageBy::Provider => "provider",
            UsageBy::Model => "model",
            UsageBy::Day => "to_char(to_timestamp(at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        };
        let sql = format!(
            "SELECT {key} AS k, count(*), sum(input)::BIGINT, sum(output)::BIGINT, sum(cached)::BIGINT, sum(cost_usd)::DOUBLE PRECISION, max(price) \
             FROM usage WHERE at >= $1 AND at < $2 GROUP BY k ORDER BY k"
        );
        in_read!(self, |t| async {
            let rows = query(&t, &sql, &[&since.millis(), &until.millis()]).await?;
            R::Ok(rows.iter().map(|r| usage_row(r.get(0), r, 1)).collect())
        }
        .await)
    }
    async fn request_approval(&self, req: NewApproval, now: Timestamp) -> Result<Approval, StoreError> {
        in_write!(self, |t| async {
            exec(
                &t,
                "INSERT INTO approvals (owner, agent, call_id, tool, arguments, reason, status, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) ON CONFLICT (owner, call_id) DO NOTHING",
                &[
                    &req.owner.key(),
                    &req.agent,
                    &req.call_id,
                    &req.tool,
                    &req.arguments.to_string(),
                    &req.reason,
                    &now.millis(),
                    &req.expires_at.millis(),
                ],
            )
            .await?;
            expire(&t, now).await?;
            let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE owner = $1 AND call_id = $2");
            approval_row(&query_one(&t, &sql, &[&req.owner.key(), &req.call_id]).await?)
        }
        .await)
    }
    async fn get_approval(&self, id: i64) -> Result<Approval, StoreError> {
        in_read!(self, |t| load_approval(&t, id).await)
    }
    async fn list_approvals(&self, pending_only: bool, now: Timestamp) -> Result<Vec<Approval>, StoreError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals {} ORDER BY id DESC LIMIT 500",
            if pending_only { "WHERE status = 'pending'" } else { "" }
        );
        in_write!(self, |t| async {
            expire(&t, now).await?;
            query(&t, &sql, &[]).await?.iter().map(approval_row).collect::<R<Vec<_>>>()
        }
        .await)
    }
    async fn decide_approval(&self, id: i64, approve: bool, reason: Option<String>, now: Timestamp) -> Result<Approval, StoreError> {
        in_write!(self, |t| async {
            expire(&t, now).await?;
            let changed = exec(
                &t,
                "UPDATE approvals SET status = $2, decision_reason = $3, decided_at = $4 WHERE id = $1 AND status = 'pending'",
                &[&id, &if approve { "approved" } else { "denied" }, &reason, &now.millis()],
            )
            .await?;
            let a = load_approval(&t, id).await?;
            if changed == 0 {
                return Err(Fail::Store(StoreError::Conflict(format!(
                    "approval {id} is already {}; only a pending request can be decided",
                    a.status.as_str()
                ))));
            }
            Ok(a)
        }
        .await)
    }
    async fn consume_approval(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        in_write!(self, |t| async {
            let n = exec(
                &t,
                "UPDATE approvals SET status = 'used', decided_at = coalesce(decided_at, $2) WHERE id = $1 AND status = 'approved'",
                &[&id, &now.millis()],
            )
            .await?;
            R::Ok(n == 1)
        }
        .await)
    }
    async fn create_chat(&self, agent: &str, now: Timestamp) -> Result<ChatInfo, StoreError> {
        in_write!(self, |t| async {
            let r = query_one(
                &t,
                "INSERT INTO chats (agent, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id",
                &[&agent, &now.millis()],
            )
            .await?;
            R::Ok(ChatInfo { id: r.get(0), agent: agent.to_string(), title: String::new(), created_at: now, updated_at: now })
        }
        .await)
    }
    async fn get_chat(&self, id: i64) -> Result<ChatInfo, StoreError> {
        in_read!(self, |t| async {
            let r = query_opt(&t, "SELECT id, agent, title, created_at, updated_at FROM chats WHERE id = $1", &[&id])
                .await?
                .ok_or_else(|| StoreError::Conflict(format!("chat {id} does not exist; see `owl chat --list`")))?;
            R::Ok(chat_row(&r))
        }
        .await)
    }
    async fn list_chats(&self) -> Result<Vec<ChatInfo>, StoreError> {
        in_read!(self, |t| async {
            let rows =
                query(&t, "SELECT id, agent, title, created_at, updated_at FROM chats ORDER BY updated_at DESC LIMIT 200", &[]).await?;
            R::Ok(rows.iter().map(chat_row).collect())
        }
        .await)
    }
    async fn touch_chat(&self, id: i64, title: Option<String>, now: Timestamp) -> Result<(), StoreError> {
        in_write!(self, |t| {
            async {
            exec(
                &t,
                "UPDATE chats SET updated_at = $2, title = CASE WHEN title = '' AND $3::TEXT IS NOT NULL THEN $3 ELSE title END WHERE id = $1",
                &[&id, &now.millis(), &title],
            )
            .await?;
            R::Ok(())
        }
        .await
        })
    }
}
