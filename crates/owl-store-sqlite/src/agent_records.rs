//! Agent records: transcripts, task results, usage, approvals and chats.

use crate::{backend, SqliteStore};
use owl_core::{TaskId, Timestamp};
use owl_store::*;
use rusqlite::{params, Connection, OptionalExtension, Row};

const APPROVAL_COLUMNS: &str =
    "id, owner, agent, call_id, tool, arguments, reason, status, decision_reason, created_at, expires_at, decided_at";

fn owner_of(s: String) -> rusqlite::Result<Owner> {
    Owner::parse(&s)
        .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("bad owner `{s}`").into()))
}

fn approval_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    let status: String = r.get(7)?;
    Ok(Approval {
        id: r.get(0)?,
        owner: owner_of(r.get(1)?)?,
        agent: r.get(2)?,
        call_id: r.get(3)?,
        tool: r.get(4)?,
        arguments: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(serde_json::Value::Null),
        reason: r.get(6)?,
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Expired),
        decision_reason: r.get(8)?,
        created_at: Timestamp::from_millis(r.get(9)?),
        expires_at: Timestamp::from_millis(r.get(10)?),
        decided_at: r.get::<_, Option<i64>>(11)?.map(Timestamp::from_millis),
    })
}

fn load_approval(c: &Connection, id: i64) -> Result<Approval, StoreError> {
    c.prepare_cached(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"))
        .map_err(backend)?
        .query_row([id], approval_row)
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::Conflict(format!("approval {id} does not exist; see `owl approvals`")))
}

fn expire(c: &Connection, now: Timestamp) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE approvals SET status = 'expired', decided_at = ?1 WHERE status = 'pending' AND expires_at <= ?1")
        .map_err(backend)?
        .execute([now.millis()])
        .map_err(backend)?;
    Ok(())
}

fn chat_row(r: &Row<'_>) -> rusqlite::Result<ChatInfo> {
    Ok(ChatInfo {
        id: r.get(0)?,
        agent: r.get(1)?,
        title: r.get(2)?,
        created_at: Timestamp::from_millis(r.get(3)?),
        updated_at: Timestamp::from_millis(r.get(4)?),
    })
}

impl SqliteStore {
    pub(crate) async fn append_transcript_impl(
        &self,
        owner: Owner,
        attempt: u32,
        entries: Vec<Entry>,
        now: Timestamp,
    ) -> Result<Vec<u64>, StoreError> {
        let key = owner.key();
        self.write(move |c| {
            let last: i64 = c
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM transcript WHERE owner = ?1")
                .map_err(backend)?
                .query_row([&key], |r| r.get(0))
                .map_err(backend)?;
            let mut stmt =
                c.prepare_cached("INSERT INTO transcript (owner, seq, attempt, at, body) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(backend)?;
            let mut out = Vec::with_capacity(entries.len());
            for (i, e) in entries.iter().enumerate() {
                let seq = last + 1 + i as i64;
                let body = serde_json::to_string(e).expect("transcript entries serialize");
                stmt.execute(params![key, seq, attempt, now.millis(), body]).map_err(backend)?;
                out.push(seq as u64);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn transcript_impl(&self, owner: Owner, after: u64) -> Result<Vec<TranscriptEntry>, StoreError> {
        let key = owner.key();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT seq, attempt, at, body FROM transcript WHERE owner = ?1 AND seq > ?2 ORDER BY seq")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![key, after as i64], |r| {
                    Ok(TranscriptEntry {
                        seq: r.get::<_, i64>(0)? as u64,
                        attempt: r.get(1)?,
                        at: Timestamp::from_millis(r.get(2)?),
                        body: Entry::from_stored(&r.get::<_, String>(3)?),
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    pub(crate) async fn set_task_result_impl(&self, id: TaskId, result: &str) -> Result<(), StoreError> {
        let result = result.to_string();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO task_results (task_id, result) VALUES (?1, ?2) ON CONFLICT(task_id) DO UPDATE SET result = excluded.result",
            )
            .map_err(backend)?
            .execute(params![id.0, result])
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    pub(crate) async fn task_result_impl(&self, id: TaskId) -> Result<Option<String>, StoreError> {
        self.read(move |c| {
            c.prepare_cached("SELECT result FROM task_results WHERE task_id = ?1")
                .map_err(backend)?
                .query_row([id.0], |r| r.get(0))
                .optional()
                .map_err(backend)
        })
        .await
    }

    pub(crate) async fn set_task_git_impl(&self, id: TaskId, rec: owl_core::coding::GitRecord) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO task_git (task_id, record, removed) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(task_id) DO UPDATE SET record = excluded.record, removed = excluded.removed",
            )
            .map_err(backend)?
            .execute(params![id.0, serde_json::to_string(&rec).expect("git record serializes"), rec.removed])
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    pub(crate) async fn task_git_impl(&self, id: TaskId) -> Result<Option<owl_core::coding::GitRecord>, StoreError> {
        self.read(move |c| {
            let s: Option<String> = c
                .prepare_cached("SELECT record FROM task_git WHERE task_id = ?1")
                .map_err(backend)?
                .query_row([id.0], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            s.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Backend(format!("corrupt git record of task {id}: {e}"))))
                .transpose()
        })
        .await
    }

    pub(crate) async fn worktrees_to_remove_impl(
        &self,
        finished_before: Timestamp,
    ) -> Result<Vec<(TaskId, owl_core::coding::GitRecord)>, StoreError> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT g.task_id, g.record FROM task_git g JOIN tasks t ON t.id = g.task_id \
                     WHERE g.removed = 0 AND t.finished_at IS NOT NULL AND t.finished_at <= ?1 \
                     AND t.status IN ('succeeded', 'failed', 'timed_out', 'cancelled') ORDER BY g.task_id",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([finished_before.millis()], |r| Ok((TaskId(r.get(0)?), r.get::<_, String>(1)?)))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            rows.into_iter()
                .map(|(id, s)| {
                    serde_json::from_str(&s)
                        .map(|r| (id, r))
                        .map_err(|e| StoreError::Backend(format!("corrupt git record of task {id}: {e}")))
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn record_usage_impl(&self, u: UsageRecord, at: Timestamp) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO usage (owner, agent, provider, model, input, output, cached, cost_usd, at, price) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(backend)?
            .execute(params![
                u.owner.key(),
                u.agent,
                u.provider,
                u.model,
                u.usage.input as i64,
                u.usage.output as i64,
                u.usage.cached as i64,
                u.cost_usd,
                at.millis(),
                u.price
            ])
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    pub(crate) async fn owner_usage_impl(&self, owner: Owner) -> Result<UsageSummary, StoreError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT count(*), coalesce(sum(input), 0), coalesce(sum(output), 0), coalesce(sum(cached), 0), coalesce(sum(cost_usd), 0.0), \
                 coalesce((SELECT price FROM usage WHERE owner = ?1 ORDER BY id DESC LIMIT 1), '') FROM usage WHERE owner = ?1",
            )
            .map_err(backend)?
            .query_row([owner.key()], |r| {
                Ok(UsageSummary {
                    key: owner.key(),
                    calls: r.get::<_, i64>(0)? as u64,
                    input: r.get::<_, i64>(1)? as u64,
                    output: r.get::<_, i64>(2)? as u64,
                    cached: r.get::<_, i64>(3)? as u64,
                    cost_usd: r.get(4)?,
                    price: r.get(5)?,
                })
            })
            .map_err(backend)
        })
        .await
    }

    pub(crate) async fn usage_summary_impl(
        &self,
        since: Timestamp,
        until: Timestamp,
        by: UsageBy,
    ) -> Result<Vec<UsageSummary>, StoreError> {
        let key = match by {
            UsageBy::Agent => "agent",
            UsageBy::Provider => "provider",
            UsageBy::Model => "model",
            UsageBy::Day => "strftime('%Y-%m-%d', at / 1000, 'unixepoch')",
        };
        self.read(move |c| {
            let sql = format!(
                "SELECT {key} AS k, count(*), sum(input), sum(output), sum(cached), sum(cost_usd), max(price) FROM usage WHERE at >= ?1 AND at < ?2 GROUP BY k ORDER BY k"
            );
            let mut stmt = c.prepare(&sql).map_err(backend)?;
            let rows = stmt
                .query_map([since.millis(), until.millis()], |r| {
                    Ok(UsageSummary {
                        key: r.get(0)?,
                        calls: r.get::<_, i64>(1)? as u64,
                        input: r.get::<_, i64>(2)? as u64,
                        output: r.get::<_, i64>(3)? as u64,
                        cached: r.get::<_, i64>(4)? as u64,
                        cost_usd: r.get(5)?,
                        price: r.get(6)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    pub(crate) async fn request_approval_impl(&self, req: NewApproval, now: Timestamp) -> Result<Approval, StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO approvals (owner, agent, call_id, tool, arguments, reason, status, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8) ON CONFLICT(owner, call_id) DO NOTHING",
            )
            .map_err(backend)?
            .execute(params![
                req.owner.key(),
                req.agent,
                req.call_id,
                req.tool,
                req.arguments.to_string(),
                req.reason,
                now.millis(),
                req.expires_at.millis()
            ])
            .map_err(backend)?;
            expire(c, now)?;
            c.prepare_cached(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE owner = ?1 AND call_id = ?2"))
                .map_err(backend)?
                .query_row(params![req.owner.key(), req.call_id], approval_row)
                .map_err(backend)
        })
        .await
    }

    pub(crate) async fn get_approval_impl(&self, id: i64) -> Result<Approval, StoreError> {
        self.read(move |c| load_approval(c, id)).await
    }

    pub(crate) async fn list_approvals_impl(&self, pending_only: bool, now: Timestamp) -> Result<Vec<Approval>, StoreError> {
        self.write(move |c| {
            expire(c, now)?;
            let sql = format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals {} ORDER BY id DESC LIMIT 500",
                if pending_only { "WHERE status = 'pending'" } else { "" }
            );
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt.query_map([], approval_row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    pub(crate) async fn decide_approval_impl(
        &self,
        id: i64,
        approve: bool,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<Approval, StoreError> {
        self.write(move |c| {
            expire(c, now)?;
            let changed = c
                .prepare_cached(
                    "UPDATE approvals SET status = ?2, decision_reason = ?3, decided_at = ?4 WHERE id = ?1 AND status = 'pending'",
                )
                .map_err(backend)?
                .execute(params![id, if approve { "approved" } else { "denied" }, reason, now.millis()])
                .map_err(backend)?;
            let a = load_approval(c, id)?;
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "approval {id} is already {}; only a pending request can be decided",
                    a.status.as_str()
                )));
            }
            Ok(a)
        })
        .await
    }

    pub(crate) async fn consume_approval_impl(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE approvals SET status = 'used', decided_at = coalesce(decided_at, ?2) WHERE id = ?1 AND status = 'approved'",
            )
            .map_err(backend)?
            .execute(params![id, now.millis()])
            .map(|n| n == 1)
            .map_err(backend)
        })
        .await
    }

    pub(crate) async fn create_chat_impl(&self, agent: &str, now: Timestamp) -> Result<ChatInfo, StoreError> {
        let agent = agent.to_string();
        self.write(move |c| {
            c.prepare_cached("INSERT INTO chats (agent, created_at, updated_at) VALUES (?1, ?2, ?2)")
                .map_err(backend)?
                .execute(params![agent, now.millis()])
                .map_err(backend)?;
            let id = c.last_insert_rowid();
            Ok(ChatInfo { id, agent, title: String::new(), created_at: now, updated_at: now })
        })
        .await
    }

    pub(crate) async fn get_chat_impl(&self, id: i64) -> Result<ChatInfo, StoreError> {
        self.read(move |c| {
            c.prepare_cached("SELECT id, agent, title, created_at, updated_at FROM chats WHERE id = ?1")
                .map_err(backend)?
                .query_row([id], chat_row)
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::Conflict(format!("chat {id} does not exist; see `owl chat --list`")))
        })
        .await
    }

    pub(crate) async fn list_chats_impl(&self) -> Result<Vec<ChatInfo>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, agent, title, created_at, updated_at FROM chats ORDER BY updated_at DESC LIMIT 200")
                .map_err(backend)?;
            let rows = stmt.query_map([], chat_row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    pub(crate) async fn touch_chat_impl(&self, id: i64, title: Option<String>, now: Timestamp) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE chats SET updated_at = ?2, title = CASE WHEN title = '' AND ?3 IS NOT NULL THEN ?3 ELSE title END WHERE id = ?1",
            )
            .map_err(backend)?
            .execute(params![id, now.millis(), title])
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }
}
