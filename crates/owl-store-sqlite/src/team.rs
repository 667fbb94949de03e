//! The team on SQLite: messages with one delivery row per recipient, and agents' state.

use crate::{backend, SqliteStore};
use async_trait::async_trait;
use owl_core::{TaskId, Timestamp};
use owl_store::{Message, MessageDelivery, MessageFilter, NewMessage, StateEntry, StoreError, TeamStore};
use rusqlite::{params, Connection, OptionalExtension};

const COLUMNS: &str = "id, thread, sender, sender_task, recipient, kind, content, reply_to, metadata, attachments, created_at";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let metadata: String = r.get(8)?;
    let attachments: String = r.get(9)?;
    Ok(Message {
        id: r.get(0)?,
        thread: r.get(1)?,
        sender: r.get(2)?,
        sender_task: r.get::<_, Option<i64>>(3)?.map(TaskId),
        recipient: r.get(4)?,
        kind: r.get(5)?,
        content: r.get(6)?,
        reply_to: r.get(7)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        attachments: serde_json::from_str(&attachments).unwrap_or_default(),
        created_at: Timestamp(r.get(10)?),
        deliveries: vec![],
    })
}

fn with_deliveries(c: &Connection, mut ms: Vec<Message>) -> Result<Vec<Message>, StoreError> {
    let mut q = c
        .prepare_cached("SELECT recipient, delivered_at, claim, acked_at FROM message_deliveries WHERE message_id = ?1 ORDER BY recipient")
        .map_err(backend)?;
    for m in &mut ms {
        m.deliveries = q
            .query_map([m.id], |r| {
                Ok(MessageDelivery {
                    to: r.get(0)?,
                    delivered_at: r.get::<_, Option<i64>>(1)?.map(Timestamp),
                    claim: r.get(2)?,
                    acked_at: r.get::<_, Option<i64>>(3)?.map(Timestamp),
                })
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
    }
    Ok(ms)
}

fn by_ids(c: &Connection, ids: &[i64]) -> Result<Vec<Message>, StoreError> {
    let mut q = c.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1")).map_err(backend)?;
    let mut out = Vec::new();
    for id in ids {
        out.push(q.query_row([id], message_row).map_err(backend)?);
    }
    with_deliveries(c, out)
}

fn claimed(c: &Connection, claim: &str) -> Result<Vec<i64>, StoreError> {
    let mut q =
        c.prepare_cached("SELECT DISTINCT message_id FROM message_deliveries WHERE claim = ?1 ORDER BY message_id").map_err(backend)?;
    let ids: Vec<i64> = q.query_map([claim], |r| r.get(0)).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)?;
    Ok(ids)
}

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StateEntry> {
    Ok(StateEntry {
        agent: r.get(0)?,
        key: r.get(1)?,
        value: r.get(2)?,
        version: r.get::<_, i64>(3)? as u64,
        updated_at: Timestamp(r.get(4)?),
    })
}

fn state_of(c: &Connection, agent: &str, key: &str) -> Result<Option<StateEntry>, StoreError> {
    c.prepare_cached("SELECT agent, key, value, version, updated_at FROM agent_state WHERE agent = ?1 AND key = ?2")
        .map_err(backend)?
        .query_row([agent, key], entry_row)
        .optional()
        .map_err(backend)
}

#[async_trait]
impl TeamStore for SqliteStore {
    async fn send_message(&self, m: NewMessage, now: Timestamp) -> Result<(Message, bool), StoreError> {
        self.write(move |c| {
            let existing: Option<i64> = c
                .prepare_cached("SELECT id FROM messages WHERE key = ?1")
                .map_err(backend)?
                .query_row([&m.key], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            if let Some(id) = existing {
                return Ok((by_ids(c, &[id])?.remove(0), false));
            }
            let id: i64 = c
                .prepare_cached(
                    "INSERT INTO messages (key, thread, sender, sender_task, recipient, kind, content, reply_to, metadata, attachments, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
                )
                .map_err(backend)?
                .query_row(
                    params![
                        m.key,
                        m.thread,
                        m.sender,
                        m.sender_task.map(|t| t.0),
                        m.recipient,
                        m.kind,
                        m.content,
                        m.reply_to,
                        m.metadata.to_string(),
                        serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()),
                        now.0
                    ],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let mut ins = c.prepare_cached("INSERT OR IGNORE INTO message_deliveries (message_id, recipient) VALUES (?1, ?2)").map_err(backend)?;
            for to in &m.deliver_to {
                ins.execute(params![id, to]).map_err(backend)?;
            }
            Ok((by_ids(c, &[id])?.remove(0), true))
        })
        .await
    }

    async fn read_messages(&self, to: Vec<String>, claim: &str, limit: u32, now: Timestamp) -> Result<Vec<Message>, StoreError> {
        let claim = claim.to_string();
        self.write(move |c| {
            let mut ids = claimed(c, &claim)?;
            if ids.is_empty() {
                let mut pick = c
                    .prepare_cached(
                        "SELECT message_id, recipient FROM message_deliveries WHERE recipient = ?1 AND claim IS NULL ORDER BY message_id LIMIT ?2",
                    )
                    .map_err(backend)?;
                let mut rows: Vec<(i64, String)> = Vec::new();
                for t in &to {
                    let found: Vec<(i64, String)> = pick
                        .query_map(params![t, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(backend)?
                        .collect::<Result<_, _>>()
                        .map_err(backend)?;
                    rows.extend(found);
                }
                rows.sort();
                rows.truncate(limit as usize);
                let mut take = c
                    .prepare_cached("UPDATE message_deliveries SET claim = ?1, delivered_at = ?2 WHERE message_id = ?3 AND recipient = ?4")
                    .map_err(backend)?;
                for (id, r) in &rows {
                    take.execute(params![claim, now.0, id, r]).map_err(backend)?;
                }
                ids = rows.iter().map(|(id, _)| *id).collect();
                ids.dedup();
            }
            by_ids(c, &ids)
        })
        .await
    }

    async fn ack_messages(&self, claim_prefix: &str, except: Option<&str>, now: Timestamp) -> Result<u64, StoreError> {
        let pattern = format!("{}%", claim_prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let except = except.map(str::to_string);
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE message_deliveries SET acked_at = ?2 WHERE claim LIKE ?1 ESCAPE '\\' AND acked_at IS NULL AND (?3 IS NULL OR claim <> ?3)",
            )
            .map_err(backend)?
            .execute(params![pattern, now.0, except])
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn messages(&self, f: MessageFilter) -> Result<Vec<Message>, StoreError> {
        self.read(move |c| {
            let limit = if f.limit == 0 { 200 } else { f.limit };
            let mut q = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM messages WHERE (?1 IS NULL OR thread = ?1) AND (?2 IS NULL OR sender = ?2 OR recipient = ?2 \
                     OR sender_task = ?4 OR id IN (SELECT message_id FROM message_deliveries WHERE recipient = ?2)) ORDER BY id DESC LIMIT ?3"
                ))
                .map_err(backend)?;
            let task = f.party.as_deref().and_then(|p| p.strip_prefix("task:")).and_then(|t| t.parse::<i64>().ok());
            let mut ms: Vec<Message> =
                q.query_map(params![f.thread, f.party, limit, task], message_row).map_err(backend)?.collect::<Result<_, _>>().map_err(backend)?;
            ms.reverse();
            with_deliveries(c, ms)
        })
        .await
    }

    async fn unread_count(&self, to: &str) -> Result<u64, StoreError> {
        let to = to.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT count(*) FROM message_deliveries WHERE recipient = ?1 AND claim IS NULL")
                .map_err(backend)?
                .query_row([to], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }

    async fn agent_state(&self, agent: &str) -> Result<Vec<StateEntry>, StoreError> {
        let agent = agent.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT agent, key, value, version, updated_at FROM agent_state WHERE agent = ?1 ORDER BY key")
                .map_err(backend)?
                .query_map([agent], entry_row)
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)
        })
        .await
    }

    async fn put_agent_state(
        &self,
        agent: &str,
        key: &str,
        value: &str,
        expected: Option<u64>,
        now: Timestamp,
    ) -> Result<StateEntry, StoreError> {
        let (agent, key, value) = (agent.to_string(), key.to_string(), value.to_string());
        self.write(move |c| {
            let found = state_of(c, &agent, &key)?;
            let at = found.as_ref().map_or(0, |e| e.version);
            if let Some(want) = expected.filter(|w| *w != at) {
                return Err(StoreError::Conflict(owl_store::state_conflict(&agent, &key, want, at)));
            }
            c.prepare_cached(
                "INSERT INTO agent_state (agent, key, value, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (agent, key) DO UPDATE SET value = excluded.value, version = excluded.version, updated_at = excluded.updated_at",
            )
            .map_err(backend)?
            .execute(params![agent, key, value, (at + 1) as i64, now.0])
            .map_err(backend)?;
            Ok(StateEntry { agent, key, value, version: at + 1, updated_at: now })
        })
        .await
    }

    async fn delete_agent_state(&self, agent: &str, key: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let (agent, key) = (agent.to_string(), key.to_string());
        self.write(move |c| {
            let Some(found) = state_of(c, &agent, &key)? else { return Ok(false) };
            if let Some(want) = expected.filter(|w| *w != found.version) {
                return Err(StoreError::Conflict(owl_store::state_conflict(&agent, &key, want, found.version)));
            }
            c.prepare_cached("DELETE FROM agent_state WHERE agent = ?1 AND key = ?2")
                .map_err(backend)?
                .execute([&agent, &key])
                .map_err(backend)?;
            Ok(true)
        })
        .await
    }
}
