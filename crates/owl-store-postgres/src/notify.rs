//! Notification channels, rules and the outbox of deliveries. Claims skip rows another node
//! has locked, so each send has one sender at a time.

use crate::{corrupt, exec, in_read, in_write, query, query_opt, Fail, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::notify::{Attempt, Channel, ChannelSpec, Delivery, DeliveryStatus, Rule, RuleSpec, ATTEMPTS_KEPT};
use owl_core::{Timestamp, ValidationError};
use owl_store::*;
use tokio_postgres::Row;

const CHANNEL_COLUMNS: &str = "name, spec, created_at, paused, failures, last_ok_at, last_error";
const DELIVERY_COLUMNS: &str = "id, channel, rule_id, notice, status, batch, attempts, next_at, created_at, updated_at, log";

fn channel_row(r: &Row) -> R<Channel> {
    let spec: String = r.get(1);
    Ok(Channel {
        spec: ChannelSpec { name: r.get(0), target: serde_json::from_str(&spec).map_err(|e| corrupt("channel", e))? },
        created_at: Timestamp(r.get(2)),
        paused: r.get(3),
        failures: r.get::<_, i64>(4).max(0) as u32,
        last_ok_at: r.get::<_, Option<i64>>(5).map(Timestamp),
        last_error: r.get(6),
    })
}

fn delivery_row(r: &Row) -> R<Delivery> {
    let notice: String = r.get(3);
    let status: String = r.get(4);
    let log: String = r.get(10);
    Ok(Delivery {
        id: r.get(0),
        channel: r.get(1),
        rule_id: r.get(2),
        notice: serde_json::from_str(&notice).map_err(|e| corrupt("delivery notice", e))?,
        status: DeliveryStatus::parse(&status).map_err(|e| corrupt("delivery status", e))?,
        batch: r.get(5),
        attempts: r.get::<_, i64>(6).max(0) as u32,
        next_at: Timestamp(r.get(7)),
        created_at: Timestamp(r.get(8)),
        updated_at: Timestamp(r.get(9)),
        log: serde_json::from_str(&log).map_err(|e| corrupt("delivery log", e))?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> R<String> {
    serde_json::to_string(v).map_err(|e| Fail::Store(StoreError::Backend(format!("cannot encode: {e}"))))
}

fn no_channel(name: &str) -> Fail {
    Fail::Store(StoreError::Missing(format!("no notification channel named `{name}`; see `owl notify ls`")))
}

async fn load_channel(t: &Tx<'_>, name: &str) -> R<Channel> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notify_channels WHERE name = $1");
    match query_opt(t, &sql, &[&name]).await? {
        Some(r) => channel_row(&r),
        None => Err(no_channel(name)),
    }
}

async fn load_rules(t: &Tx<'_>) -> R<Vec<Rule>> {
    let rows = query(t, "SELECT id, spec, created_at FROM notify_rules ORDER BY id", &[]).await?;
    rows.iter()
        .map(|r| {
            let spec: String = r.get(1);
            Ok(Rule { id: r.get(0), spec: serde_json::from_str(&spec).map_err(|e| corrupt("rule", e))?, created_at: Timestamp(r.get(2)) })
        })
        .collect()
}

async fn load_delivery(t: &Tx<'_>, id: i64) -> R<Delivery> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM notify_outbox WHERE id = $1");
    match query_opt(t, &sql, &[&id]).await? {
        Some(r) => delivery_row(&r),
        None => Err(Fail::Store(StoreError::Missing(format!("no delivery {id}; see `owl notify log`")))),
    }
}

async fn claim(t: &Tx<'_>, now: i64, lease_until: i64, limit: i64) -> R<Vec<Vec<Delivery>>> {
    let due = query(
        t,
        "SELECT o.id, o.batch FROM notify_outbox o JOIN notify_channels ch ON ch.name = o.channel
         WHERE o.status IN ('pending', 'sending') AND o.next_at <= $1 AND ch.paused IS NULL
         ORDER BY o.next_at, o.id LIMIT $2 FOR UPDATE OF o SKIP LOCKED",
        &[&now, &limit],
    )
    .await?;
    let mut groups: Vec<Vec<i64>> = Vec::new();
    let mut batches = std::collections::HashSet::new();
    for r in &due {
        let (id, batch): (i64, Option<String>) = (r.get(0), r.get(1));
        match batch {
            None => groups.push(vec![id]),
            Some(b) if batches.insert(b.clone()) => {
                let rows = query(
                    t,
                    "SELECT id FROM notify_outbox WHERE batch = $1 AND status IN ('pending', 'sending') AND next_at <= $2
                     ORDER BY id FOR UPDATE SKIP LOCKED",
                    &[&b, &now],
                )
                .await?;
                let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                if !ids.contains(&id) {
                    ids.push(id);
                }
                groups.push(ids);
            }
            Some(_) => {}
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ids in groups {
        let attempt: i64 = crate::query_one(t, "SELECT max(attempts) + 1 FROM notify_outbox WHERE id = ANY($1)", &[&ids]).await?.get(0);
        exec(
            t,
            "UPDATE notify_outbox SET status = 'sending', attempts = $2, next_at = $3, updated_at = $4 WHERE id = ANY($1)",
            &[&ids, &attempt, &lease_until, &now],
        )
        .await?;
        let mut group = Vec::with_capacity(ids.len());
        for id in ids {
            group.push(load_delivery(t, id).await?);
        }
        out.push(group);
    }
    Ok(out)
}

async fn finish(t: &Tx<'_>, d: &DeliveryDone) -> R<()> {
    let entry = Attempt { n: d.attempt, at: d.now, ok: d.ok, answer: d.answer.chars().take(1000).collect() };
    let attempt = i64::from(d.attempt);
    for id in &d.ids {
        let row = query_opt(
            t,
            "SELECT log FROM notify_outbox WHERE id = $1 AND status = 'sending' AND attempts = $2 FOR UPDATE",
            &[id, &attempt],
        )
        .await?;
        let Some(row) = row else { continue };
        let mut log: Vec<Attempt> = serde_json::from_str(&row.get::<_, String>(0)).unwrap_or_default();
        log.push(entry.clone());
        let drop = log.len().saturating_sub(ATTEMPTS_KEPT);
        log.drain(..drop);
        let (status, next) = match (d.ok, d.retry_at) {
            (true, _) => (DeliveryStatus::Delivered, d.now),
            (false, Some(at)) => (DeliveryStatus::Pending, at),
            (false, None) => (DeliveryStatus::Dead, d.now),
        };
        exec(
            t,
            "UPDATE notify_outbox SET status = $2, next_at = $3, updated_at = $4, log = $5, failed = failed OR $6 WHERE id = $1",
            &[id, &status.as_str(), &next.0, &d.now.0, &json(&log)?, &!d.ok],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl NotifyStore for PgStore {
    async fn insert_channel(&self, spec: ChannelSpec, now: Timestamp) -> Result<Channel, StoreError> {
        in_write!(self, |t| async {
            let n = exec(
                &t,
                "INSERT INTO notify_channels (name, spec, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[&spec.name, &json(&spec.target)?, &now.0],
            )
            .await?;
            if n == 0 {
                return Err(Fail::Store(StoreError::Conflict(format!(
                    "a notification channel named `{}` exists; remove it first (`owl notify rm {}`) or pick another name",
                    spec.name, spec.name
                ))));
            }
            load_channel(&t, &spec.name).await
        }
        .await)
    }

    async fn update_channel(&self, spec: ChannelSpec) -> Result<Channel, StoreError> {
        spec.validate().map_err(|(f, m)| StoreError::from(ValidationError::new(f, m)))?;
        in_write!(self, |t| async {
            if exec(&t, "UPDATE notify_channels SET spec = $2 WHERE name = $1", &[&spec.name, &json(&spec.target)?]).await? == 0 {
                return Err(no_channel(&spec.name));
            }
            load_channel(&t, &spec.name).await
        }
        .await)
    }

    async fn get_channel(&self, name: &str) -> Result<Channel, StoreError> {
        in_read!(self, |t| load_channel(&t, name).await)
    }

    async fn list_channels(&self) -> Result<Vec<Channel>, StoreError> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notify_channels ORDER BY name");
        in_read!(self, |t| async { query(&t, &sql, &[]).await?.iter().map(channel_row).collect::<R<Vec<_>>>() }.await)
    }

    async fn delete_channel(&self, name: &str) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            exec(&t, "SELECT 1 FROM notify_channels WHERE name = $1 FOR UPDATE", &[&name]).await?;
            load_channel(&t, name).await?;
            if let Some(r) = load_rules(&t).await?.into_iter().find(|r| r.spec.to.iter().any(|c| c == name)) {
                return Err(Fail::Store(StoreError::Conflict(format!(
                    "rule {} sends to `{name}`; remove it first (`owl notify rule rm {}`)",
                    r.id, r.id
                ))));
            }
            exec(&t, "DELETE FROM notify_outbox WHERE channel = $1 AND status IN ('pending', 'sending')", &[&name]).await?;
            exec(&t, "DELETE FROM notify_channels WHERE name = $1", &[&name]).await?;
            R::Ok(())
        }
        .await)
    }

    async fn channel_result(
        &self,
        name: &str,
        ok: bool,
        error: Option<String>,
        pause: Option<String>,
        now: Timestamp,
    ) -> Result<Channel, StoreError> {
        in_write!(self, |t| async {
            if ok {
                exec(&t, "UPDATE notify_channels SET failures = 0, last_ok_at = $2, last_error = NULL WHERE name = $1", &[&name, &now.0])
                    .await?;
            } else {
                exec(
                    &t,
                    "UPDATE notify_channels SET failures = failures + 1, last_error = $2, paused = coalesce(paused, $3) WHERE name = $1",
                    &[&name, &error, &pause],
                )
                .await?;
            }
            load_channel(&t, name).await
        }
        .await)
    }

    async fn resume_channel(&self, name: &str, now: Timestamp) -> Result<Channel, StoreError> {
        in_write!(self, |t| async {
            load_channel(&t, name).await?;
            exec(&t, "UPDATE notify_channels SET paused = NULL, failures = 0 WHERE name = $1", &[&name]).await?;
            exec(
                &t,
                "UPDATE notify_outbox SET next_at = $2 WHERE channel = $1 AND status = 'pending' AND next_at > $2 AND batch IS NULL",
                &[&name, &now.0],
            )
            .await?;
            load_channel(&t, name).await
        }
        .await)
    }

    async fn insert_rule(&self, spec: RuleSpec, now: Timestamp) -> Result<Rule, StoreError> {
        in_write!(self, |t| async {
            for ch in &spec.to {
                // FOR SHARE: a channel removed at this moment cannot miss its new rule.
                if query_opt(&t, "SELECT 1 FROM notify_channels WHERE name = $1 FOR SHARE", &[ch]).await?.is_none() {
                    return Err(Fail::Store(
                        ValidationError::new("to", format!("no notification channel named `{ch}`; add it with `owl notify add {ch} ...`"))
                            .into(),
                    ));
                }
            }
            let id: i64 =
                crate::query_one(&t, "INSERT INTO notify_rules (spec, created_at) VALUES ($1, $2) RETURNING id", &[&json(&spec)?, &now.0])
                    .await?
                    .get(0);
            R::Ok(Rule { id, spec: spec.clone(), created_at: now })
        }
        .await)
    }

    async fn list_rules(&self) -> Result<Vec<Rule>, StoreError> {
        in_read!(self, |t| load_rules(&t).await)
    }

    async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        in_write!(self, |t| async {
            if exec(&t, "DELETE FROM notify_rules WHERE id = $1", &[&id]).await? == 0 {
                return Err(Fail::Store(StoreError::Missing(format!("no notification rule {id}; see `owl notify rule ls`"))));
            }
            R::Ok(())
        }
        .await)
    }

    async fn enqueue(&self, deliveries: Vec<NewDelivery>, now: Timestamp) -> Result<u64, StoreError> {
        in_write!(self, |t| {
            async {
            let mut added = 0;
            for d in &deliveries {
                added += exec(
                    &t,
                    "INSERT INTO notify_outbox (channel, rule_id, key, event, task_id, notice, status, batch, next_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $9) ON CONFLICT (channel, key) DO NOTHING",
                    &[
                        &d.channel,
                        &d.rule_id,
                        &d.notice.key,
                        &d.notice.event.as_str(),
                        &d.notice.task_id,
                        &json(&d.notice)?,
                        &d.batch,
                        &d.not_before.0,
                        &now.0,
                    ],
                )
                .await?;
            }
            R::Ok(added)
        }
        .await
        })
    }

    async fn claim_deliveries(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<Vec<Delivery>>, StoreError> {
        in_write!(self, |t| claim(&t, now.0, lease_until.0, i64::from(limit)).await)
    }

    async fn finish_delivery(&self, done: DeliveryDone) -> Result<(), StoreError> {
        in_write!(self, |t| finish(&t, &done).await)
    }

    async fn deliveries(&self, f: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM notify_outbox
             WHERE ($1::TEXT IS NULL OR channel = $1) AND ($2::TEXT IS NULL OR status = $2) AND ($3::BIGINT IS NULL OR task_id = $3)
               AND ($4::BIGINT IS NULL OR id < $4) AND (NOT $5 OR failed)
             ORDER BY id DESC LIMIT $6"
        );
        let status = f.status.map(|s| s.as_str());
        let limit = i64::from(f.limit.clamp(1, 1000));
        in_read!(self, |t| async {
            query(&t, &sql, &[&f.channel, &status, &f.task_id, &f.before, &f.failed, &limit])
                .await?
                .iter()
                .map(delivery_row)
                .collect::<R<Vec<_>>>()
        }
        .await)
    }

    async fn get_delivery(&self, id: i64) -> Result<Delivery, StoreError> {
        in_read!(self, |t| load_delivery(&t, id).await)
    }

    async fn deliveries_since(&self, rule_id: i64, channel: &str, since: Timestamp) -> Result<u64, StoreError> {
        in_read!(self, |t| async {
            let n: i64 = crate::query_one(
                &t,
                "SELECT count(*) FROM notify_outbox WHERE rule_id = $1 AND channel = $2 AND created_at >= $3 AND batch IS NULL",
                &[&rule_id, &channel, &since.0],
            )
            .await?
            .get(0);
            R::Ok(n.max(0) as u64)
        }
        .await)
    }

    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64, StoreError> {
        in_write!(self, |t| async {
            exec(&t, "DELETE FROM notify_outbox WHERE status IN ('delivered', 'dead') AND updated_at < $1", &[&before.0]).await
        }
        .await)
    }
}
