//! Anomaly rules: is a run far outside the recent successful runs of its kind, or is a kind
//! failing again and again? Pure functions over numbers, so the same rules serve the daemon,
//! the reports and the tests with crafted history.
//!
//! A run is an outlier when its modified z-score (Iglewicz and Hoaglin: 0.6745 times its
//! distance from the median, over the median absolute deviation) is above 3.5 **and** it is
//! more than an absolute floor above the median, so a 2 s job that took 3 s is not news.
//! Only the high side counts: a run that was faster or cheaper than usual needs nobody.

use crate::task::TaskId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// At least this many baseline samples before anything is judged.
pub const MIN_SAMPLES: usize = 8;
/// The modified z-score above which a run is an outlier.
pub const Z_LIMIT: f64 = 3.5;
/// The score recorded for a run above a flat baseline (where the true score is infinite).
pub const Z_FLAT: f64 = 1e9;
/// Failures in a row that make a streak.
pub const STREAK: usize = 3;

/// The median and the median absolute deviation of a baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Baseline {
    pub median: f64,
    pub mad: f64,
    /// The mean absolute deviation, used where the MAD is zero (over half the samples equal).
    pub mean_ad: f64,
    pub samples: usize,
}

fn median_of(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

impl Baseline {
    /// `None` with fewer than [`MIN_SAMPLES`] finite samples.
    pub fn of(samples: &[f64]) -> Option<Baseline> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.len() < MIN_SAMPLES {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let median = median_of(&v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        dev.sort_by(|a, b| a.total_cmp(b));
        let mad = median_of(&dev);
        let mean_ad = dev.iter().sum::<f64>() / dev.len() as f64;
        Some(Baseline { median, mad, mean_ad, samples: v.len() })
    }

    /// The modified z-score of `x`: with a zero MAD, the mean absolute deviation scaled to
    /// match (1.2533); with both zero, any value above the median is infinitely far.
    pub fn z(&self, x: f64) -> f64 {
        let d = x - self.median;
        if self.mad > 0.0 {
            0.6745 * d / self.mad
        } else if self.mean_ad > 0.0 {
            d / (1.253_314 * self.mean_ad)
        } else if d > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }
}

/// Why a run is an outlier, with the evidence a person needs to judge it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outlier {
    pub value: f64,
    pub median: f64,
    pub mad: f64,
    pub z: f64,
    pub samples: usize,
}

/// Whether `x` is an outlier against `samples` (recent successful runs), above `floor` (in
/// the same unit) over their median.
pub fn outlier(samples: &[f64], x: f64, floor: f64) -> Option<Outlier> {
    let b = Baseline::of(samples)?;
    let z = b.z(x);
    (x.is_finite() && z > Z_LIMIT && x - b.median > floor).then_some(Outlier {
        value: x,
        median: b.median,
        mad: b.mad,
        z,
        samples: b.samples,
    })
}

/// How many of the latest outcomes (newest last) failed in a row, when that is a streak.
pub fn failure_streak(succeeded: &[bool]) -> Option<usize> {
    let n = succeeded.iter().rev().take_while(|ok| !**ok).count();
    (n >= STREAK).then_some(n)
}

/// Where a baseline is kept: the runs of one schedule, of one agent (or coding CLI), or of
/// one kind of task (`command`, `agent`, `cli`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Schedule,
    Agent,
    Kind,
}

impl Scope {
    /// Most specific first: the order in which a run is judged.
    pub const ALL: [Scope; 3] = [Scope::Schedule, Scope::Agent, Scope::Kind];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Schedule => "schedule",
            Scope::Agent => "agent",
            Scope::Kind => "kind",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, String> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| format!("`{s}` is not a scope; use schedule, agent or kind"))
    }
}

/// What was far from usual.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    DurationSeconds,
    Tokens,
    CostUsd,
    /// Failures in a row.
    Failures,
}

impl Metric {
    pub const OUTLIERS: [Metric; 3] = [Metric::DurationSeconds, Metric::Tokens, Metric::CostUsd];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::DurationSeconds => "duration_seconds",
            Metric::Tokens => "tokens",
            Metric::CostUsd => "cost_usd",
            Metric::Failures => "failures",
        }
    }

    pub fn parse(s: &str) -> Result<Metric, String> {
        [Metric::DurationSeconds, Metric::Tokens, Metric::CostUsd, Metric::Failures]
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a metric; use duration_seconds, tokens, cost_usd or failures"))
    }

    /// A value of this metric for people: `4m 10s`, `12,000 tokens`, `$0.42`.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::DurationSeconds if v.is_finite() && v >= 0.0 => {
                crate::duration::format(std::time::Duration::from_millis((v * 1000.0).round() as u64))
            }
            Metric::CostUsd => format!("${v:.2}"),
            Metric::Tokens => format!("{} tokens", v.round() as i64),
            _ => format!("{v}"),
        }
    }
}

/// One finished attempt, as the baselines see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSample {
    pub task_id: TaskId,
    pub attempt: u32,
    /// When the attempt ended.
    pub at: Timestamp,
    /// `command`, `agent` or `cli`.
    pub kind: String,
    pub schedule: Option<String>,
    /// The agent of an agent task, the CLI of a coding-CLI task.
    pub agent: Option<String>,
    pub succeeded: bool,
    pub duration_ms: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

impl RunSample {
    /// The run's name in `scope`, if it has one there.
    pub fn subject(&self, scope: Scope) -> Option<&str> {
        match scope {
            Scope::Schedule => self.schedule.as_deref(),
            Scope::Agent => self.agent.as_deref(),
            Scope::Kind => Some(&self.kind),
        }
    }

    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::DurationSeconds => self.duration_ms as f64 / 1000.0,
            Metric::Tokens => self.tokens as f64,
            Metric::CostUsd => self.cost_usd,
            Metric::Failures => f64::from(u8::from(!self.succeeded)),
        }
    }
}

/// How far above the median a run must also be, per metric, to be news.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Floors {
    pub duration_seconds: f64,
    pub tokens: f64,
    pub cost_usd: f64,
}

impl Default for Floors {
    fn default() -> Self {
        Floors { duration_seconds: 30.0, tokens: 5000.0, cost_usd: 0.05 }
    }
}

impl Floors {
    fn of(&self, m: Metric) -> f64 {
        match m {
            Metric::DurationSeconds => self.duration_seconds,
            Metric::Tokens => self.tokens,
            Metric::CostUsd => self.cost_usd,
            Metric::Failures => 0.0,
        }
    }
}

/// An anomaly found in one run: where, what, and the evidence.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub scope: Scope,
    pub subject: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub metric: Metric,
    /// The run's value (for `failures`, the streak's length).
    pub value: f64,
    /// The baseline's median and median absolute deviation (zero for a streak).
    pub median: f64,
    pub mad: f64,
    /// The modified z-score (zero for a streak; [`Z_FLAT`] above a flat baseline).
    pub z: f64,
    /// How many runs the baseline held.
    pub samples: u32,
}

impl Finding {
    /// One line for people.
    pub fn summary(&self) -> String {
        let who = format!("{} {}", self.scope.as_str(), self.subject);
        if self.metric == Metric::Failures {
            return format!("{who}: {} failures in a row", self.value);
        }
        let what = match self.metric {
            Metric::DurationSeconds => "took",
            Metric::Tokens => "used",
            _ => "cost",
        };
        let z = if self.z < Z_FLAT { format!("{:.1}", self.z) } else { "inf (every earlier run was the same)".into() };
        format!(
            "{who}: this run {what} {}, against a median of {} over the last {} successful runs (modified z-score {z})",
            self.metric.show(self.value),
            self.metric.show(self.median),
            self.samples
        )
    }
}

/// A finding as recorded by the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub id: i64,
    pub at: Timestamp,
    pub task_id: TaskId,
    pub attempt: u32,
    #[serde(flatten)]
    pub finding: Finding,
    pub summary: String,
}

/// Whether a streak of `n` failures is worth saying again: at [`STREAK`], then each time it
/// doubles, so a schedule failing all week is not a new anomaly every hour.
pub fn streak_worth_saying(n: usize) -> bool {
    n >= STREAK && n.is_multiple_of(STREAK) && (n / STREAK).is_power_of_two()
}

/// Judges `run` against the recent runs of each scope it belongs to (`histories`: newest
/// first, without `run`, most specific scope first). Each metric is judged in the most
/// specific scope that has a baseline, so a nightly job that always takes an hour is compared
/// with its own nights, not with every command. A failure streak is judged in the most
/// specific scope the run has.
pub fn judge(run: &RunSample, histories: &[(Scope, &[RunSample])], floors: &Floors) -> Vec<Finding> {
    let mut found = Vec::new();
    for metric in Metric::OUTLIERS {
        for (scope, history) in histories {
            let Some(subject) = run.subject(*scope) else { continue };
            let samples: Vec<f64> = history.iter().filter(|h| h.succeeded).map(|h| h.value(metric)).collect();
            if Baseline::of(&samples).is_none() {
                continue;
            }
            if let Some(o) = outlier(&samples, run.value(metric), floors.of(metric)) {
                found.push(Finding {
                    scope: *scope,
                    subject: subject.to_string(),
                    metric,
                    value: o.value,
                    median: o.median,
                    mad: o.mad,
                    // Kept finite so it survives JSON and every store.
                    z: o.z.min(Z_FLAT),
                    samples: o.samples as u32,
                });
            }
            break;
        }
    }
    if !run.succeeded {
        if let Some((scope, history)) = histories.iter().find(|(s, _)| run.subject(*s).is_some()) {
            let mut outcomes: Vec<bool> = history.iter().rev().map(|h| h.succeeded).collect();
            outcomes.push(false);
            if let Some(n) = failure_streak(&outcomes).filter(|n| streak_worth_saying(*n)) {
                found.push(Finding {
                    scope: *scope,
                    subject: run.subject(*scope).unwrap_or_default().to_string(),
                    metric: Metric::Failures,
                    value: n as f64,
                    median: 0.0,
                    mad: 0.0,
                    z: 0.0,
                    samples: history.len() as u32,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_far_outside_a_noisy_baseline_is_an_outlier_and_a_close_one_is_not() {
        let history = [60.0, 62.0, 58.0, 61.0, 59.0, 63.0, 60.0, 57.0, 64.0, 60.0];
        let b = Baseline::of(&history).unwrap();
        assert_eq!((b.median, b.mad), (60.0, 1.5));
        let o = outlier(&history, 300.0, 30.0).expect("five minutes against one is news");
        assert!(o.z > 100.0 && o.samples == 10, "{o:?}");
        assert_eq!(outlier(&history, 64.0, 30.0), None, "within the noise");
        assert_eq!(outlier(&history, 70.0, 30.0), None, "far in z, but under the floor");
        assert_eq!(outlier(&history, 10.0, 0.0), None, "faster is not a problem");
    }

    #[test]
    fn flat_baselines_and_short_histories() {
        assert_eq!(Baseline::of(&[1.0; 7]), None, "too few samples to judge");
        let flat = [5.0; 10];
        assert!(outlier(&flat, 5.0, 0.0).is_none());
        assert!(outlier(&flat, 50.0, 1.0).unwrap().z.is_infinite(), "a constant job that changes is news");
        // More than half equal: the MAD is zero, the mean absolute deviation decides.
        let mostly = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0, 7.0, 9.0, 5.0];
        let b = Baseline::of(&mostly).unwrap();
        assert_eq!(b.mad, 0.0);
        assert!(b.z(6.0) < Z_LIMIT && b.z(40.0) > Z_LIMIT);
        assert_eq!(Baseline::of(&[f64::NAN; 20]), None, "non-finite samples are ignored");
        assert_eq!(outlier(&history_with_inf(), f64::INFINITY, 0.0), None);
    }

    fn history_with_inf() -> Vec<f64> {
        let mut v = vec![1.0; 9];
        v.push(f64::INFINITY);
        v
    }

    #[test]
    fn a_streak_is_three_failures_in_a_row_at_the_end() {
        assert_eq!(failure_streak(&[true, false, false, false]), Some(3));
        assert_eq!(failure_streak(&[false, false, false, false, true]), None, "a success ends it");
        assert_eq!(failure_streak(&[true, false, false]), None);
        assert_eq!(failure_streak(&[]), None);
    }

    fn sample(n: i64, ok: bool, secs: u64, schedule: Option<&str>) -> RunSample {
        RunSample {
            task_id: TaskId(n),
            attempt: 1,
            at: Timestamp(n * 1000),
            kind: "command".into(),
            schedule: schedule.map(Into::into),
            agent: None,
            succeeded: ok,
            duration_ms: secs * 1000,
            tokens: 0,
            cost_usd: 0.0,
        }
    }

    #[test]
    fn a_run_is_judged_in_its_most_specific_scope_with_a_baseline() {
        // The nightly job always takes ten minutes; other commands take seconds.
        let nightly: Vec<RunSample> = (0..10).map(|i| sample(i, true, 600 + i as u64, Some("nightly"))).collect();
        let commands: Vec<RunSample> = (0..20).map(|i| sample(100 + i, true, 2 + (i as u64 % 3), None)).collect();
        let run = sample(200, true, 605, Some("nightly"));
        let h = [(Scope::Schedule, nightly.as_slice()), (Scope::Kind, commands.as_slice())];
        assert!(judge(&run, &h, &Floors::default()).is_empty(), "usual for its schedule, even if long for a command");
        let slow = sample(201, true, 3600, Some("nightly"));
        let f = judge(&slow, &h, &Floors::default());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].scope, f[0].subject.as_str(), f[0].metric), (Scope::Schedule, "nightly", Metric::DurationSeconds));
        assert!(f[0].summary().contains("took 1h") && f[0].summary().contains("10m"), "{}", f[0].summary());
        // Too little history of its own: the kind decides.
        let short = &nightly[..3];
        let h2 = [(Scope::Schedule, short), (Scope::Kind, commands.as_slice())];
        let f = judge(&run, &h2, &Floors::default());
        assert_eq!(f.iter().map(|f| f.scope).collect::<Vec<_>>(), vec![Scope::Kind]);
        // Zero tokens and cost never flag.
        assert!(f.iter().all(|f| f.metric == Metric::DurationSeconds));
    }

    #[test]
    fn a_streak_is_said_at_three_and_each_time_it_doubles() {
        let mut history: Vec<RunSample> = vec![sample(1, true, 1, Some("s"))];
        let mut said = vec![];
        for i in 2..=26 {
            let run = sample(i, false, 1, Some("s"));
            let newest_first: Vec<RunSample> = history.iter().rev().cloned().collect();
            let f = judge(&run, &[(Scope::Schedule, &newest_first)], &Floors::default());
            if let Some(f) = f.iter().find(|f| f.metric == Metric::Failures) {
                said.push(f.value as u32);
                assert!(f.summary().contains("failures in a row"));
            }
            history.push(run);
        }
        assert_eq!(said, vec![3, 6, 12, 24]);
        assert!(streak_worth_saying(3) && !streak_worth_saying(4) && !streak_worth_saying(9));
    }
}
