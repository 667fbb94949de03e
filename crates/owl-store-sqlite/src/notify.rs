//! Notification channels, rules and the outbox of deliveries.

use crate::{backend, SqliteStore};
use async_trait::async_trait;
use owl_core::notify::{Attempt, Channel, ChannelSpec, Delivery, DeliveryStatus, Notice, Rule, RuleSpec, ATTEMPTS_KEPT};
use owl_core::{Timestamp, ValidationError};
use owl_store::*;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

const CHANNEL_COLUMNS: &str = "name, spec, created_at, paused, failures, last_ok_at, last_error";
const DELIVERY_COLUMNS: &str = "id, channel, rule_id, notice, status, batch, attempts, next_at, created_at, updated_at, log";

fn bad(i: usize, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.to_string().into())
}

fn channel_row(r: &Row) -> rusqlite::Result<Channel> {
    let name: String = r.get(0)?;
    let target = serde_json::from_str(&r.get::<_, String>(1)?).map_err(|e| bad(1, e))?;
    Ok(Channel {
        spec: ChannelSpec { name, target },
        created_at: Timestamp(r.get(2)?),
        paused: r.get(3)?,
        failures: r.get(4)?,
        last_ok_at: r.get::<_, Option<i64>>(5)?.map(Timestamp),
        last_error: r.get(6)?,
    })
}

fn delivery_row(r: &Row) -> rusqlite::Result<Delivery> {
    let notice: Notice = serde_json::from_str(&r.get::<_, String>(3)?).map_err(|e| bad(3, e))?;
    let log: Vec<Attempt> = serde_json::from_str(&r.get::<_, String>(10)?).map_err(|e| bad(10, e))?;
    Ok(Delivery {
        id: r.get(0)?,
        channel: r.get(1)?,
        rule_id: r.get(2)?,
        notice,
        status: DeliveryStatus::parse(&r.get::<_, String>(4)?).map_err(|e| bad(4, e))?,
        batch: r.get(5)?,
        attempts: r.get(6)?,
        next_at: Timestamp(r.get(7)?),
        created_at: Timestamp(r.get(8)?),
        updated_at: Timestamp(r.get(9)?),
        log,
    })
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("cannot encode: {e}")))
}

fn no_channel(name: &str) -> StoreError {
    StoreError::Missing(format!("no notification channel named `{name}`; see `owl notify ls`"))
}

fn load_channel(c: &Connection, name: &str) -> Result<Channel, StoreError> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notify_channels WHERE name = ?1");
    c.query_row(&sql, [name], channel_row).optional().map_err(backend)?.ok_or_else(|| no_channel(name))
}

fn load_rules(c: &Connection) -> Result<Vec<Rule>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT id, spec, created_at FROM notify_rules ORDER BY id").map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            let spec: RuleSpec = serde_json::from_str(&r.get::<_, String>(1)?).map_err(|e| bad(1, e))?;
            Ok(Rule { id: r.get(0)?, spec, created_at: Timestamp(r.get(2)?) })
        })
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

fn load_delivery(c: &Connection, id: i64) -> Result<Delivery, StoreError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM notify_outbox WHERE id = ?1");
    c.query_row(&sql, [id], delivery_row)
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::Missing(format!("no delivery {id}; see `owl notify log`")))
}

fn claim(c: &Connection, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<Vec<Delivery>>, StoreError> {
    let due: Vec<(i64, Option<String>)> = {
        let mut stmt = c
            .prepare_cached(
                "SELECT o.id, o.batch FROM notify_outbox o JOIN notify_channels ch ON ch.name = o.channel
                 WHERE o.status IN ('pending', 'sending') AND o.next_at <= ?1 AND ch.paused IS NULL
                 ORDER BY o.next_at, o.id LIMIT ?2",
            )
            .map_err(backend)?;
        let rows = stmt.query_map(params![now.0, limit], |r| Ok((r.get(0)?, r.get(1)?))).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    let mut groups: Vec<Vec<i64>> = Vec::new();
    let mut batches = std::collections::HashSet::new();
    for (id, batch) in due {
        match batch {
            None => groups.push(vec![id]),
            Some(b) if batches.insert(b.clone()) => {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id FROM notify_outbox WHERE batch = ?1 AND status IN ('pending', 'sending') AND next_at <= ?2 ORDER BY id",
                    )
                    .map_err(backend)?;
                let ids = stmt.query_map(params![b, now.0], |r| r.get(0)).map_err(backend)?;
                groups.push(ids.collect::<Result<_, _>>().map_err(backend)?);
            }
            Some(_) => {}
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ids in groups {
        let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let attempt: u32 =
            c.query_row(&format!("SELECT max(attempts) + 1 FROM notify_outbox WHERE id IN ({list})"), [], |r| r.get(0)).map_err(backend)?;
        c.execute(
            &format!("UPDATE notify_outbox SET status = 'sending', attempts = ?1, next_at = ?2, updated_at = ?3 WHERE id IN ({list})"),
            params![attempt, lease_until.0, now.0],
        )
        .map_err(backend)?;
        out.push(ids.iter().map(|id| load_delivery(c, *id)).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(out)
}

fn finish(c: &Connection, d: &DeliveryDone) -> Result<(), StoreError> {
    let entry = Attempt { n: d.attempt, at: d.now, ok: d.ok, answer: d.answer.chars().take(1000).collect() };
    for id in &d.ids {
        let current: Option<String> = c
            .query_row(
                "SELECT log FROM notify_outbox WHERE id = ?1 AND status = 'sending' AND attempts = ?2",
                params![id, d.attempt],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let Some(log) = current else { continue };
        let mut log: Vec<Attempt> = serde_json::from_str(&log).unwrap_or_default();
        log.push(entry.clone());
        let drop = log.len().saturating_sub(ATTEMPTS_KEPT);
        log.drain(..drop);
        let (status, next) = match (d.ok, d.retry_at) {
            (true, _) => (DeliveryStatus::Delivered, d.now),
            (false, Some(at)) => (DeliveryStatus::Pending, at),
            (false, None) => (DeliveryStatus::Dead, d.now),
        };
        c.execute(
            "UPDATE notify_outbox SET status = ?2, next_at = ?3, updated_at = ?4, log = ?5, failed = failed OR ?6 WHERE id = ?1",
            params![id, status.as_str(), next.0, d.now.0, json(&log)?, !d.ok],
        )
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl NotifyStore for SqliteStore {
    async fn insert_channel(&self, spec: ChannelSpec, now: Timestamp) -> Result<Channel, StoreError> {
        self.write(move |c| {
            let n = c
                .execute(
                    "INSERT INTO notify_channels (name, spec, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                    params![spec.name, json(&spec.target)?, now.0],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "a notification channel named `{}` exists; remove it first (`owl notify rm {}`) or pick another name",
                    spec.name, spec.name
                )));
            }
            load_channel(c, &spec.name)
        })
        .await
    }

    async fn update_channel(&self, spec: ChannelSpec) -> Result<Channel, StoreError> {
        spec.validate().map_err(|(f, m)| ValidationError::new(f, m))?;
        self.write(move |c| {
            if c.execute("UPDATE notify_channels SET spec = ?2 WHERE name = ?1", params![spec.name, json(&spec.target)?])
                .map_err(backend)?
                == 0
            {
                return Err(no_channel(&spec.name));
            }
            load_channel(c, &spec.name)
        })
        .await
    }

    async fn get_channel(&self, name: &str) -> Result<Channel, StoreError> {
        let name = name.to_string();
        self.read(move |c| load_channel(c, &name)).await
    }

    async fn list_channels(&self) -> Result<Vec<Channel>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {CHANNEL_COLUMNS} FROM notify_channels ORDER BY name")).map_err(backend)?;
            let rows = stmt.query_map([], channel_row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn delete_channel(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            load_channel(c, &name)?;
            if let Some(r) = load_rules(c)?.into_iter().find(|r| r.spec.to.contains(&name)) {
                return Err(StoreError::Conflict(format!(
                    "rule {} sends to `{name}`; remove it first (`owl notify rule rm {}`)",
                    r.id, r.id
                )));
            }
            c.execute("DELETE FROM notify_outbox WHERE channel = ?1 AND status IN ('pending', 'sending')", [&name]).map_err(backend)?;
            c.execute("DELETE FROM notify_channels WHERE name = ?1", [&name]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn channel_result(
        &self,
        name: &str,
        ok: bool,
        error: Option<String>,
        pause: Option<String>,
        now: Timestamp,
    ) -> Result<Channel, StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            if ok {
                c.execute(
                    "UPDATE notify_channels SET failures = 0, last_ok_at = ?2, last_error = NULL WHERE name = ?1",
                    params![name, now.0],
                )
            } else {
                c.execute(
                    "UPDATE notify_channels SET failures = failures + 1, last_error = ?2, paused = coalesce(paused, ?3) WHERE name = ?1",
                    params![name, error, pause],
                )
            }
            .map_err(backend)?;
            load_channel(c, &name)
        })
        .await
    }

    async fn resume_channel(&self, name: &str, now: Timestamp) -> Result<Channel, StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            load_channel(c, &name)?;
            c.execute("UPDATE notify_channels SET paused = NULL, failures = 0 WHERE name = ?1", [&name]).map_err(backend)?;
            c.execute(
                "UPDATE notify_outbox SET next_at = ?2 WHERE channel = ?1 AND status = 'pending' AND next_at > ?2 AND batch IS NULL",
                params![name, now.0],
            )
            .map_err(backend)?;
            load_channel(c, &name)
        })
        .await
    }

    async fn insert_rule(&self, spec: RuleSpec, now: Timestamp) -> Result<Rule, StoreError> {
        self.write(move |c| {
            for ch in &spec.to {
                let exists: Option<i64> =
                    c.query_row("SELECT 1 FROM notify_channels WHERE name = ?1", [ch], |r| r.get(0)).optional().map_err(backend)?;
                if exists.is_none() {
                    return Err(ValidationError::new(
                        "to",
                        format!("no notification channel named `{ch}`; add it with `owl notify add {ch} ...`"),
                    )
                    .into());
                }
            }
            c.execute("INSERT INTO notify_rules (spec, created_at) VALUES (?1, ?2)", params![json(&spec)?, now.0]).map_err(backend)?;
            Ok(Rule { id: c.last_insert_rowid(), spec, created_at: now })
        })
        .await
    }

    async fn list_rules(&self) -> Result<Vec<Rule>, StoreError> {
        self.read(load_rules).await
    }

    async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            if c.execute("DELETE FROM notify_rules WHERE id = ?1", [id]).map_err(backend)? == 0 {
                return Err(StoreError::Missing(format!("no notification rule {id}; see `owl notify rule ls`")));
            }
            Ok(())
        })
        .await
    }

    async fn enqueue(&self, deliveries: Vec<NewDelivery>, now: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "INSERT INTO notify_outbox (channel, rule_id, key, event, task_id, notice, status, batch, next_at, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?9) ON CONFLICT (channel, key) DO NOTHING",
                )
                .map_err(backend)?;
            let mut added = 0;
            for d in &deliveries {
                added += stmt
                    .execute(params![
                        d.channel,
                        d.rule_id,
                        d.notice.key,
                        d.notice.event.as_str(),
                        d.notice.task_id,
                        json(&d.notice)?,
                        d.batch,
                        d.not_before.0,
                        now.0
                    ])
                    .map_err(backend)? as u64;
            }
            Ok(added)
        })
        .await
    }

    async fn claim_deliveries(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<Vec<Delivery>>, StoreError> {
        self.write(move |c| claim(c, now, lease_until, limit)).await
    }

    async fn finish_delivery(&self, done: DeliveryDone) -> Result<(), StoreError> {
        self.write(move |c| finish(c, &done)).await
    }

    async fn deliveries(&self, f: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.read(move |c| {
            let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM notify_outbox WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut arg = |sql: &mut String, cond: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&format!(" AND {cond} ?{}", args.len()));
            };
            if let Some(ch) = &f.channel {
                arg(&mut sql, "channel =", ch.clone().into());
            }
            if let Some(s) = f.status {
                arg(&mut sql, "status =", s.as_str().to_string().into());
            }
            if let Some(t) = f.task_id {
                arg(&mut sql, "task_id =", t.into());
            }
            if let Some(b) = f.before {
                arg(&mut sql, "id <", b.into());
            }
            if f.failed {
                sql.push_str(" AND failed = 1");
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit.clamp(1, 1000)));
            let mut stmt = c.prepare(&sql).map_err(backend)?;
            let rows = stmt.query_map(params_from_iter(args), delivery_row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn get_delivery(&self, id: i64) -> Result<Delivery, StoreError> {
        self.read(move |c| load_delivery(c, id)).await
    }

    async fn deliveries_since(&self, rule_id: i64, channel: &str, since: Timestamp) -> Result<u64, StoreError> {
        let channel = channel.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT count(*) FROM notify_outbox WHERE rule_id = ?1 AND channel = ?2 AND created_at >= ?3 AND batch IS NULL",
                params![rule_id, channel, since.0],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(backend)
        })
        .await
    }

    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write(move |c| {
            c.execute("DELETE FROM notify_outbox WHERE status IN ('delivered', 'dead') AND updated_at < ?1", [before.0])
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }
}
