//! Conformance cases. What the engine learns from finished work: run samples and anomalies.

use super::*;
use owl_core::anomaly::{Finding, Metric, RunSample, Scope};

fn sample(task: i64, attempt: u32, at: i64, schedule: Option<&str>, agent: Option<&str>, ok: bool) -> RunSample {
    RunSample {
        task_id: TaskId(task),
        attempt,
        at: T0.plus(Duration::from_secs(at as u64)),
        kind: if agent.is_some() { "agent".into() } else { "command".into() },
        schedule: schedule.map(Into::into),
        agent: agent.map(Into::into),
        succeeded: ok,
        duration_ms: 1500 + task as u64,
        tokens: 40 * task as u64,
        cost_usd: 0.25 * task as f64,
    }
}

pub async fn run_samples_are_kept_per_scope_newest_first(s: DynStore) {
    let all = [
        sample(1, 1, 10, Some("nightly"), None, true),
        sample(2, 1, 20, None, Some("researcher"), false),
        sample(2, 2, 30, None, Some("researcher"), true),
        sample(3, 1, 40, Some("nightly"), None, false),
        sample(4, 1, 50, Some("hourly"), Some("researcher"), true),
    ];
    for x in &all {
        s.record_sample(x.clone()).await.unwrap();
    }
    let mut again = all[0].clone();
    again.duration_ms = 1;
    s.record_sample(again).await.unwrap();
    let nightly = s.recent_samples(Scope::Schedule, "nightly", 10).await.unwrap();
    assert_eq!(nightly, vec![all[3].clone(), all[0].clone()], "newest first, and a repeat record changes nothing");
    let researcher = s.recent_samples(Scope::Agent, "researcher", 2).await.unwrap();
    assert_eq!(researcher, vec![all[4].clone(), all[2].clone()], "the limit keeps the newest");
    assert_eq!(s.recent_samples(Scope::Kind, "command", 10).await.unwrap().len(), 2);
    assert_eq!(s.recent_samples(Scope::Kind, "agent", 10).await.unwrap().len(), 3);
    assert!(s.recent_samples(Scope::Schedule, "missing", 10).await.unwrap().is_empty());
    let window = s.samples_between(T0.plus(Duration::from_secs(20)), T0.plus(Duration::from_secs(50)), 100).await.unwrap();
    assert_eq!(window, all[1..4].to_vec(), "oldest first, the end excluded");
    assert_eq!(s.samples_between(T0, T0.plus(Duration::from_secs(100)), 2).await.unwrap(), all[..2].to_vec());
    // Pruned with the history.
    s.prune_history(T0.plus(Duration::from_secs(35))).await.unwrap();
    assert_eq!(s.recent_samples(Scope::Schedule, "nightly", 10).await.unwrap(), vec![all[3].clone()]);
}

fn finding(metric: Metric, subject: &str, value: f64) -> Finding {
    Finding { scope: Scope::Schedule, subject: subject.into(), metric, value, median: 60.0, mad: 1.5, z: 1e9, samples: 12 }
}

pub async fn anomalies_are_recorded_once_and_listed_newest_first(s: DynStore) {
    let at = |secs| T0.plus(Duration::from_secs(secs));
    let a = s
        .record_anomaly(NewAnomaly {
            at: at(10),
            task_id: TaskId(7),
            attempt: 1,
            finding: finding(Metric::DurationSeconds, "nightly", 600.0),
        })
        .await
        .unwrap();
    assert!(a.id > 0);
    assert_eq!((a.task_id, a.attempt, a.at), (TaskId(7), 1, at(10)));
    assert_eq!(a.finding, finding(Metric::DurationSeconds, "nightly", 600.0), "the evidence round-trips, a flat baseline's score too");
    assert_eq!(a.summary, a.finding.summary());
    let same = s
        .record_anomaly(NewAnomaly {
            at: at(11),
            task_id: TaskId(7),
            attempt: 1,
            finding: finding(Metric::DurationSeconds, "nightly", 1.0),
        })
        .await
        .unwrap();
    assert_eq!(same, a, "the same run and metric is one anomaly");
    let cost = s
        .record_anomaly(NewAnomaly { at: at(20), task_id: TaskId(7), attempt: 1, finding: finding(Metric::CostUsd, "nightly", 3.5) })
        .await
        .unwrap();
    let mut streak = finding(Metric::Failures, "hourly", 3.0);
    streak.scope = Scope::Agent;
    let other = s.record_anomaly(NewAnomaly { at: at(30), task_id: TaskId(9), attempt: 2, finding: streak }).await.unwrap();
    let ids = |v: Vec<owl_core::anomaly::Anomaly>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let list = |f: AnomalyFilter| {
        let s = s.clone();
        async move { s.anomalies(AnomalyFilter { limit: 100, ..f }).await.unwrap() }
    };
    assert_eq!(ids(list(AnomalyFilter::default()).await), vec![other.id, cost.id, a.id]);
    assert_eq!(ids(list(AnomalyFilter { since: Some(at(20)), ..Default::default() }).await), vec![other.id, cost.id]);
    assert_eq!(ids(list(AnomalyFilter { until: Some(at(30)), ..Default::default() }).await), vec![cost.id, a.id], "the end is excluded");
    assert_eq!(ids(list(AnomalyFilter { scope: Some(Scope::Agent), ..Default::default() }).await), vec![other.id]);
    assert_eq!(ids(list(AnomalyFilter { subject: Some("nightly".into()), ..Default::default() }).await), vec![cost.id, a.id]);
    assert_eq!(ids(list(AnomalyFilter { task_id: Some(TaskId(9)), ..Default::default() }).await), vec![other.id]);
    assert_eq!(ids(list(AnomalyFilter { before: Some(cost.id), ..Default::default() }).await), vec![a.id]);
    assert_eq!(ids(s.anomalies(AnomalyFilter { limit: 1, ..Default::default() }).await.unwrap()), vec![other.id]);
    s.prune_history(at(15)).await.unwrap();
    assert_eq!(ids(list(AnomalyFilter::default()).await), vec![other.id, cost.id], "pruned with the history");
}
