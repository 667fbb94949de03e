//! Run samples and anomalies: what the engine learns from finished work.

use crate::{backend, SqliteStore};
use async_trait::async_trait;
use owl_core::anomaly::{Anomaly, Finding, Metric, RunSample, Scope};
use owl_core::{TaskId, Timestamp};
use owl_store::*;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

const SAMPLE_COLUMNS: &str = "task_id, attempt, at, kind, schedule, agent, succeeded, duration_ms, tokens, cost_usd";
const ANOMALY_COLUMNS: &str = "id, at, task_id, attempt, scope, subject, metric, value, median, mad, z, samples, summary";

fn sample_row(r: &Row) -> rusqlite::Result<RunSample> {
    Ok(RunSample {
        task_id: TaskId(r.get(0)?),
        attempt: r.get(1)?,
        at: Timestamp(r.get(2)?),
        kind: r.get(3)?,
        schedule: r.get(4)?,
        agent: r.get(5)?,
        succeeded: r.get(6)?,
        duration_ms: r.get::<_, i64>(7)?.max(0) as u64,
        tokens: r.get::<_, i64>(8)?.max(0) as u64,
        cost_usd: r.get(9)?,
    })
}

fn anomaly_row(r: &Row) -> rusqlite::Result<Anomaly> {
    let bad = |i: usize, e: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into());
    Ok(Anomaly {
        id: r.get(0)?,
        at: Timestamp(r.get(1)?),
        task_id: TaskId(r.get(2)?),
        attempt: r.get(3)?,
        finding: Finding {
            scope: Scope::parse(&r.get::<_, String>(4)?).map_err(|e| bad(4, e))?,
            subject: r.get(5)?,
            metric: Metric::parse(&r.get::<_, String>(6)?).map_err(|e| bad(6, e))?,
            value: r.get(7)?,
            median: r.get(8)?,
            mad: r.get(9)?,
            z: r.get(10)?,
            samples: r.get(11)?,
        },
        summary: r.get(12)?,
    })
}

fn scope_column(scope: Scope) -> &'static str {
    match scope {
        Scope::Schedule => "schedule",
        Scope::Agent => "agent",
        Scope::Kind => "kind",
    }
}

fn record_anomaly(c: &Connection, a: &NewAnomaly) -> Result<Anomaly, StoreError> {
    let f = &a.finding;
    c.prepare_cached(
        "INSERT INTO anomalies (at, task_id, attempt, scope, subject, metric, value, median, mad, z, samples, summary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (task_id, attempt, metric) DO NOTHING",
    )
    .map_err(backend)?
    .execute(params![
        a.at.0,
        a.task_id.0,
        a.attempt,
        f.scope.as_str(),
        f.subject,
        f.metric.as_str(),
        f.value,
        f.median,
        f.mad,
        f.z,
        f.samples,
        f.summary()
    ])
    .map_err(backend)?;
    let sql = format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE task_id = ?1 AND attempt = ?2 AND metric = ?3");
    c.query_row(&sql, params![a.task_id.0, a.attempt, f.metric.as_str()], anomaly_row)
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::Backend("an anomaly just recorded is missing".into()))
}

#[async_trait]
impl InsightStore for SqliteStore {
    async fn record_sample(&self, s: RunSample) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO run_samples (task_id, attempt, at, kind, schedule, agent, succeeded, duration_ms, tokens, cost_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (task_id, attempt) DO NOTHING",
            )
            .map_err(backend)?
            .execute(params![
                s.task_id.0,
                s.attempt,
                s.at.0,
                s.kind,
                s.schedule,
                s.agent,
                s.succeeded,
                s.duration_ms.min(i64::MAX as u64) as i64,
                s.tokens.min(i64::MAX as u64) as i64,
                if s.cost_usd.is_finite() { s.cost_usd } else { 0.0 }
            ])
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn recent_samples(&self, scope: Scope, subject: &str, limit: u32) -> Result<Vec<RunSample>, StoreError> {
        let subject = subject.to_string();
        self.read(move |c| {
            let col = scope_column(scope);
            let sql = format!("SELECT {SAMPLE_COLUMNS} FROM run_samples WHERE {col} = ?1 ORDER BY id DESC LIMIT ?2");
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt.query_map(params![subject, limit], sample_row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn samples_between(&self, since: Timestamp, until: Timestamp, limit: u32) -> Result<Vec<RunSample>, StoreError> {
        self.read(move |c| {
            let sql = format!("SELECT {SAMPLE_COLUMNS} FROM run_samples WHERE at >= ?1 AND at < ?2 ORDER BY at, id LIMIT ?3");
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt.query_map(params![since.0, until.0, limit], sample_row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn record_anomaly(&self, anomaly: NewAnomaly) -> Result<Anomaly, StoreError> {
        self.write(move |c| record_anomaly(c, &anomaly)).await
    }

    async fn anomalies(&self, f: AnomalyFilter) -> Result<Vec<Anomaly>, StoreError> {
        self.read(move |c| {
            let mut sql = format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut arg = |sql: &mut String, cond: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&format!(" AND {cond} ?{}", args.len()));
            };
            if let Some(t) = f.since {
                arg(&mut sql, "at >=", t.0.into());
            }
            if let Some(t) = f.until {
                arg(&mut sql, "at <", t.0.into());
            }
            if let Some(s) = f.scope {
                arg(&mut sql, "scope =", s.as_str().to_string().into());
            }
            if let Some(s) = &f.subject {
                arg(&mut sql, "subject =", s.clone().into());
            }
            if let Some(t) = f.task_id {
                arg(&mut sql, "task_id =", t.0.into());
            }
            if let Some(b) = f.before {
                arg(&mut sql, "id <", b.into());
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit.max(1)));
            let mut stmt = c.prepare(&sql).map_err(backend)?;
            let rows = stmt.query_map(params_from_iter(args), anomaly_row).map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }
}
