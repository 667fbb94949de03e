//! The team on PostgreSQL: messages with one delivery row per recipient (readers on several
//! nodes take deliveries with `SKIP LOCKED`, so none is handed out twice), and agents' state
//! written with a version check in the statement itself.

use crate::{exec, in_read, in_write, query, query_opt, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::{TaskId, Timestamp};
use owl_store::{Message, MessageDelivery, MessageFilter, NewMessage, StateEntry, StoreError, TeamStore};
use tokio_postgres::Row;

const COLUMNS: &str = "id, thread, sender, sender_task, recipient, kind, content, reply_to, metadata, attachments, created_at";

fn message_row(r: &Row) -> Message {
    let metadata: String = r.get(8);
    let attachments: String = r.get(9);
    Message {
        id: r.get(0),
        thread: r.get(1),
        sender: r.get(2),
        sender_task: r.get::<_, Option<i64>>(3).map(TaskId),
        recipient: r.get(4),
        kind: r.get(5),
        content: r.get(6),
        reply_to: r.get(7),
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        attachments: serde_json::from_str(&attachments).unwrap_or_default(),
        created_at: Timestamp(r.get(10)),
        deliveries: vec![],
    }
}

async fn with_deliveries(t: &Tx<'_>, mut ms: Vec<Message>) -> R<Vec<Message>> {
    for m in &mut ms {
        m.deliveries = query(
            t,
            "SELECT recipient, delivered_at, claim, acked_at FROM message_deliveries WHERE message_id = $1 ORDER BY recipient",
            &[&m.id],
        )
        .await?
        .iter()
        .map(|r| MessageDelivery {
            to: r.get(0),
            delivered_at: r.get::<_, Option<i64>>(1).map(Timestamp),
            claim: r.get(2),
            acked_at: r.get::<_, Option<i64>>(3).map(Timestamp),
        })
        .collect();
    }
    Ok(ms)
}

async fn by_ids(t: &Tx<'_>, ids: &[i64]) -> R<Vec<Message>> {
    let rows = query(t, &format!("SELECT {COLUMNS} FROM messages WHERE id = ANY($1) ORDER BY id"), &[&ids]).await?;
    with_deliveries(t, rows.iter().map(message_row).collect()).await
}

fn entry_row(r: &Row) -> StateEntry {
    StateEntry { agent: r.get(0), key: r.get(1), value: r.get(2), version: r.get::<_, i64>(3) as u64, updated_at: Timestamp(r.get(4)) }
}

async fn version_of(t: &Tx<'_>, agent: &str, key: &str) -> R<u64> {
    Ok(query_opt(t, "SELECT version FROM agent_state WHERE agent = $1 AND key = $2", &[&agent, &key])
        .await?
        .map_or(0, |r| r.get::<_, i64>(0) as u64))
}

fn conflict(agent: &str, key: &str, wanted: u64, found: u64) -> crate::Fail {
    crate::Fail::Store(StoreError::Conflict(owl_store::state_conflict(agent, key, wanted, found)))
}

#[async_trait]
impl TeamStore for PgStore {
    async fn send_message(&self, m: NewMessage, now: Timestamp) -> Result<(Message, bool), StoreError> {
        in_write!(self, |t| {
            async {
            let attachments = serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into());
            let made = query_opt(
                &t,
                "INSERT INTO messages (key, thread, sender, sender_task, recipient, kind, content, reply_to, metadata, attachments, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (key) DO NOTHING RETURNING id",
                &[
                    &m.key,
                    &m.thread,
                    &m.sender,
                    &m.sender_task.map(|x| x.0),
                    &m.recipient,
                    &m.kind,
                    &m.content,
                    &m.reply_to,
                    &m.metadata.to_string(),
                    &attachments,
                    &now.0,
                ],
            )
            .await?;
            let Some(row) = made else {
                let id: i64 = query_opt(&t, "SELECT id FROM messages WHERE key = $1", &[&m.key])
                    .await?
                    .ok_or_else(|| crate::Fail::Retry("a message with this key was being written".into()))?
                    .get(0);
                return R::Ok((by_ids(&t, &[id]).await?.remove(0), false));
            };
            let id: i64 = row.get(0);
            for to in &m.deliver_to {
                exec(&t, "INSERT INTO message_deliveries (message_id, recipient) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&id, to])
                    .await?;
            }
            R::Ok((by_ids(&t, &[id]).await?.remove(0), true))
        }
        .await
        })
    }

    async fn read_messages(&self, to: Vec<String>, claim: &str, limit: u32, now: Timestamp) -> Result<Vec<Message>, StoreError> {
        in_write!(self, |t| async {
            let mut ids: Vec<i64> =
                query(&t, "SELECT DISTINCT message_id FROM message_deliveries WHERE claim = $1 ORDER BY message_id", &[&claim])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
            if ids.is_empty() {
                let rows = query(
                    &t,
                    "UPDATE message_deliveries d SET claim = $2, delivered_at = $3 FROM ( \
                       SELECT message_id, recipient FROM message_deliveries WHERE recipient = ANY($1) AND claim IS NULL \
                       ORDER BY message_id LIMIT $4 FOR UPDATE SKIP LOCKED) p \
                     WHERE d.message_id = p.message_id AND d.recipient = p.recipient RETURNING d.message_id",
                    &[&to, &claim, &now.0, &(limit as i64)],
                )
                .await?;
                ids = rows.iter().map(|r| r.get(0)).collect();
                ids.sort();
                ids.dedup();
            }
            by_ids(&t, &ids).await
        }
        .await)
    }

    async fn ack_messages(&self, claim_prefix: &str, except: Option<&str>, now: Timestamp) -> Result<u64, StoreError> {
        in_write!(self, |t| {
            async {
            exec(
                &t,
                "UPDATE message_deliveries SET acked_at = $2 WHERE starts_with(claim, $1) AND acked_at IS NULL AND ($3::TEXT IS NULL OR claim <> $3)",
                &[&claim_prefix, &now.0, &except],
            )
            .await
        }
        .await
        })
    }

    async fn messages(&self, f: MessageFilter) -> Result<Vec<Message>, StoreError> {
        in_read!(self, |t| {
            async {
            let limit = if f.limit == 0 { 200i64 } else { f.limit as i64 };
            let task = f.party.as_deref().and_then(|p| p.strip_prefix("task:")).and_then(|t| t.parse::<i64>().ok());
            let rows = query(
                &t,
                &format!(
                    "SELECT {COLUMNS} FROM messages WHERE ($1::TEXT IS NULL OR thread = $1) AND ($2::TEXT IS NULL OR sender = $2 OR recipient = $2 \
                     OR sender_task = $4 OR id IN (SELECT message_id FROM message_deliveries WHERE recipient = $2)) ORDER BY id DESC LIMIT $3"
                ),
                &[&f.thread, &f.party, &limit, &task],
            )
            .await?;
            let mut ms: Vec<Message> = rows.iter().map(message_row).collect();
            ms.reverse();
            with_deliveries(&t, ms).await
        }
        .await
        })
    }

    async fn unread_count(&self, to: &str) -> Result<u64, StoreError> {
        in_read!(self, |t| async {
            let r = query(&t, "SELECT count(*) FROM message_deliveries WHERE recipient = $1 AND claim IS NULL", &[&to]).await?;
            R::Ok(r[0].get::<_, i64>(0) as u64)
        }
        .await)
    }

    async fn agent_state(&self, agent: &str) -> Result<Vec<StateEntry>, StoreError> {
        in_read!(self, |t| async {
            let rows = query(&t, "SELECT agent, key, value, version, updated_at FROM agent_state WHERE agent = $1 ORDER BY key", &[&agent])
                .await?;
            R::Ok(rows.iter().map(entry_row).collect())
        }
        .await)
    }

    async fn put_agent_state(
        &self,
        agent: &str,
        key: &str,
        value: &str,
        expected: Option<u64>,
        now: Timestamp,
    ) -> Result<StateEntry, StoreError> {
        in_write!(self, |t| async {
            let want = expected.map(|v| v.min(i64::MAX as u64) as i64);
            // An existing key moves one version on, if it is at the version expected.
            if want != Some(0) {
                if let Some(r) = query_opt(
                    &t,
                    "UPDATE agent_state SET value = $3, version = version + 1, updated_at = $4 \
                     WHERE agent = $1 AND key = $2 AND ($5::BIGINT IS NULL OR version = $5) \
                     RETURNING agent, key, value, version, updated_at",
                    &[&agent, &key, &value, &now.0, &want],
                )
                .await?
                {
                    return R::Ok(entry_row(&r));
                }
            }
            if want.is_some_and(|w| w > 0) {
                return Err(conflict(agent, key, expected.unwrap_or(0), version_of(&t, agent, key).await?));
            }
            // A new key: version 1, unless another writer made it first.
            let made = query_opt(
                &t,
                "INSERT INTO agent_state (agent, key, value, version, updated_at) VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (agent, key) DO NOTHING RETURNING agent, key, value, version, updated_at",
                &[&agent, &key, &value, &now.0],
            )
            .await?;
            match made {
                Some(r) => R::Ok(entry_row(&r)),
                None if want.is_none() => Err(crate::Fail::Retry("the key was made meanwhile".into())),
                None => Err(conflict(agent, key, 0, version_of(&t, agent, key).await?)),
            }
        }
        .await)
    }

    async fn delete_agent_state(&self, agent: &str, key: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        in_write!(self, |t| async {
            let want = expected.map(|v| v.min(i64::MAX as u64) as i64);
            let n = exec(
                &t,
                "DELETE FROM agent_state WHERE agent = $1 AND key = $2 AND ($3::BIGINT IS NULL OR version = $3)",
                &[&agent, &key, &want],
            )
            .await?;
            if n == 0 {
                let found = version_of(&t, agent, key).await?;
                if found > 0 {
                    return Err(conflict(agent, key, expected.unwrap_or(0), found));
                }
                return R::Ok(false);
            }
            R::Ok(true)
        }
        .await)
    }
}
