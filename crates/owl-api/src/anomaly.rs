//! Anomalies: runs far from the usual of their schedule, agent or kind, and failure streaks.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnomalyView {
    pub id: i64,
    pub at: String,
    pub task_id: i64,
    pub attempt: u32,
    /// schedule, agent or kind.
    pub scope: String,
    /// The schedule's, agent's or kind's name.
    pub subject: String,
    /// duration_seconds, tokens, cost_usd or failures.
    pub metric: String,
    /// The run's value (for failures, the streak's length).
    pub value: f64,
    /// The baseline: median and median absolute deviation of recent successful runs.
    pub median: f64,
    pub mad: f64,
    /// The modified z-score (1e9 above a baseline where every run was the same; 0 for a streak).
    pub z: f64,
    /// Runs in the baseline.
    pub samples: u32,
    pub summary: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnomalyList {
    pub anomalies: Vec<AnomalyView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

impl From<owl_core::anomaly::Anomaly> for AnomalyView {
    fn from(a: owl_core::anomaly::Anomaly) -> Self {
        AnomalyView {
            id: a.id,
            at: a.at.to_rfc3339(),
            task_id: a.task_id.0,
            attempt: a.attempt,
            scope: a.finding.scope.as_str().into(),
            subject: a.finding.subject,
            metric: a.finding.metric.as_str().into(),
            value: a.finding.value,
            median: a.finding.median,
            mad: a.finding.mad,
            z: a.finding.z,
            samples: a.finding.samples,
            summary: a.summary,
        }
    }
}
