//! Run samples and anomalies: what the engine learns from finished work.

use crate::{exec, in_read, in_write, query, query_opt, Fail, PgStore, Tx, R};
use async_trait::async_trait;
use owl_core::anomaly::{Anomaly, Finding, Metric, RunSample, Scope};
use owl_core::{TaskId, Timestamp};
use owl_store::*;
use tokio_postgres::Row;

const SAMPLE_COLUMNS: &str = "task_id, attempt, at, kind, schedule, agent, succeeded, duration_ms, tokens, cost_usd";
const ANOMALY_COLUMNS: &str = "id, at, task_id, attempt, scope, subject, metric, value, median, mad, z, samples, summary";

fn sample_row(r: &Row) -> RunSample {
    RunSample {
        task_id: TaskId(r.get(0)),
        attempt: r.get::<_, i64>(1) as u32,
        at: Timestamp(r.get(2)),
        kind: r.get(3),
        schedule: r.get(4),
        agent: r.get(5),
        succeeded: r.get(6),
        duration_ms: r.get::<_, i64>(7).max(0) as u64,
        tokens: r.get::<_, i64>(8).max(0) as u64,
        cost_usd: r.get(9),
    }
}

fn anomaly_row(r: &Row) -> R<Anomaly> {
    let scope: String = r.get(4);
    let metric: String = r.get(6);
    Ok(Anomaly {
        id: r.get(0),
        at: Timestamp(r.get(1)),
        task_id: TaskId(r.get(2)),
        attempt: r.get::<_, i64>(3) as u32,
        finding: Finding {
            scope: Scope::parse(&scope).map_err(|e| crate::corrupt("anomaly scope", e))?,
            subject: r.get(5),
            metric: Metric::parse(&metric).map_err(|e| crate::corrupt("anomaly metric", e))?,
            value: r.get(7),
            median: r.get(8),
            mad: r.get(9),
            z: r.get(10),
            samples: r.get::<_, i64>(11) as u32,
        },
        summary: r.get(12),
    })
}

fn scope_column(scope: Scope) -> &'static str {
    match scope {
        Scope::Schedule => "schedule",
        Scope::Agent => "agent",
        Scope::Kind => "kind",
    }
}

async fn record_anomaly(t: &Tx<'_>, a: &NewAnomaly) -> R<Anomaly> {
    let f = &a.finding;
    exec(
        t,
        "INSERT INTO anomalies (at, task_id, attempt, scope, subject, metric, value, median, mad, z, samples, summary)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (task_id, attempt, metric) DO NOTHING",
        &[
            &a.at.0,
            &a.task_id.0,
            &i64::from(a.attempt),
            &f.scope.as_str(),
            &f.subject,
            &f.metric.as_str(),
            &f.value,
            &f.median,
            &f.mad,
            &f.z,
            &i64::from(f.samples),
            &f.summary(),
        ],
    )
    .await?;
    let sql = format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE task_id = $1 AND attempt = $2 AND metric = $3");
    let row = query_opt(t, &sql, &[&a.task_id.0, &i64::from(a.attempt), &f.metric.as_str()])
        .await?
        .ok_or_else(|| Fail::Store(StoreError::Backend("an anomaly just recorded is missing".into())))?;
    anomaly_row(&row)
}

#[async_trait]
impl InsightStore for PgStore {
    async fn record_sample(&self, s: RunSample) -> Result<(), StoreError> {
        let cost = if s.cost_usd.is_finite() { s.cost_usd } else { 0.0 };
        let (duration, tokens) = (s.duration_ms.min(i64::MAX as u64) as i64, s.tokens.min(i64::MAX as u64) as i64);
        in_write!(self, |t| async {
            exec(
                &t,
                "INSERT INTO run_samples (task_id, attempt, at, kind, schedule, agent, succeeded, duration_ms, tokens, cost_usd)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (task_id, attempt) DO NOTHING",
                &[&s.task_id.0, &i64::from(s.attempt), &s.at.0, &s.kind, &s.schedule, &s.agent, &s.succeeded, &duration, &tokens, &cost],
            )
            .await?;
            R::Ok(())
        }
        .await)
    }

    async fn recent_samples(&self, scope: Scope, subject: &str, limit: u32) -> Result<Vec<RunSample>, StoreError> {
        let sql = format!("SELECT {SAMPLE_COLUMNS} FROM run_samples WHERE {} = $1 ORDER BY id DESC LIMIT $2", scope_column(scope));
        in_read!(self, |t| async {
            let rows = query(&t, &sql, &[&subject, &i64::from(limit)]).await?;
            R::Ok(rows.iter().map(sample_row).collect())
        }
        .await)
    }

    async fn samples_between(&self, since: Timestamp, until: Timestamp, limit: u32) -> Result<Vec<RunSample>, StoreError> {
        let sql = format!("SELECT {SAMPLE_COLUMNS} FROM run_samples WHERE at >= $1 AND at < $2 ORDER BY at, id LIMIT $3");
        in_read!(self, |t| async {
            let rows = query(&t, &sql, &[&since.0, &until.0, &i64::from(limit)]).await?;
            R::Ok(rows.iter().map(sample_row).collect())
        }
        .await)
    }

    async fn record_anomaly(&self, anomaly: NewAnomaly) -> Result<Anomaly, StoreError> {
        in_write!(self, |t| record_anomaly(&t, &anomaly).await)
    }

    async fn anomalies(&self, f: AnomalyFilter) -> Result<Vec<Anomaly>, StoreError> {
        let sql = format!(
            "SELECT {ANOMALY_COLUMNS} FROM anomalies
             WHERE ($1::BIGINT IS NULL OR at >= $1) AND ($2::TEXT IS NULL OR scope = $2) AND ($3::TEXT IS NULL OR subject = $3)
               AND ($4::BIGINT IS NULL OR task_id = $4) AND ($5::BIGINT IS NULL OR id < $5) AND ($7::BIGINT IS NULL OR at < $7)
             ORDER BY id DESC LIMIT $6"
        );
        let (since, scope, task, until) = (f.since.map(|t| t.0), f.scope.map(|s| s.as_str()), f.task_id.map(|t| t.0), f.until.map(|t| t.0));
        let limit = i64::from(f.limit.max(1));
        in_read!(self, |t| async {
            let rows = query(&t, &sql, &[&since, &scope, &f.subject, &task, &f.before, &limit, &until]).await?;
            rows.iter().map(anomaly_row).collect::<R<Vec<_>>>()
        }
        .await)
    }
}
