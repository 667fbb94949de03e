//! From what the store knows to a [`Report`]: totals, failures, schedules, anomalies, usage,
//! the slowest and costliest kinds of work, and a time series for the charts.

use chrono::{Datelike, TimeZone, Timelike};
use owl_core::anomaly::{Anomaly, RunSample};
use owl_core::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One calendar day, by hour.
    Daily,
    /// A window of days, by day.
    Performance,
}

/// A failed attempt, as the engine found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub task_id: i64,
    pub attempt: u32,
    pub at: String,
    /// The command, agent prompt or CLI prompt, on one line.
    pub what: String,
    /// Why it failed, as the task's state says.
    pub reason: String,
    pub schedule: Option<String>,
}

/// One schedule's health.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleLine {
    pub name: String,
    pub state: String,
    /// `every 1h`, `cron 0 2 * * *`.
    pub when: String,
    pub last_status: Option<String>,
    pub last_success_at: Option<String>,
    pub next_fire_at: Option<String>,
    pub on_time: u64,
    pub late: u64,
    pub missed: u64,
    pub skipped: u64,
    pub overdue: bool,
}

/// Tokens and cost of one agent or model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageLine {
    pub key: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// One budget scope as it stood when the report was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetLine {
    pub scope: String,
    /// `$5.00 / day`, `2000000 tokens / 1d`.
    pub limit: String,
    pub spent: String,
    /// When its period resets, in the report's zone; `never` for a task's cap.
    pub resets: String,
    /// Tasks waiting for room in it.
    pub waiting: u64,
}

/// What the engine gathered for one report.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub kind: Kind,
    pub since: Timestamp,
    pub until: Timestamp,
    pub tz: chrono_tz::Tz,
    pub generated_at: Timestamp,
    /// Every finished attempt in the window, oldest first.
    pub samples: Vec<RunSample>,
    /// True when there were more samples than were read.
    pub samples_capped: bool,
    /// The latest failed attempts (at most a page), newest first.
    pub failures: Vec<Failure>,
    pub schedules: Vec<ScheduleLine>,
    pub anomalies: Vec<Anomaly>,
    pub usage_by_agent: Vec<UsageLine>,
    pub usage_by_model: Vec<UsageLine>,
    /// The budgets now.
    pub budgets: Vec<BudgetLine>,
    /// Where a task's page is, `{id}` replaced (a dashboard URL); otherwise `owl show ID`.
    pub task_link: Option<String>,
    /// Caveats the engine knows of (a window past the retention, a capped list).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Distinct tasks that ran.
    pub tasks: u64,
    pub run_seconds: f64,
    pub tokens: u64,
    pub cost_usd: f64,
}

/// The runs of one schedule, agent or kind of task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupLine {
    /// `schedule nightly`, `agent researcher`, `cli claude`, or `command`.
    pub name: String,
    pub runs: u64,
    pub failed: u64,
    pub p50_seconds: f64,
    pub p95_seconds: f64,
    pub max_seconds: f64,
    pub tokens: u64,
    pub cost_usd: f64,
}

/// One hour (daily report) or day (performance report).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub label: String,
    pub runs: u64,
    pub failed: u64,
    pub run_seconds: f64,
    pub cost_usd: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyLine {
    pub id: i64,
    pub at: String,
    pub task_id: i64,
    pub attempt: u32,
    pub summary: String,
}

/// A report, ready to render.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kind: Kind,
    pub title: String,
    pub since: String,
    pub until: String,
    pub tz: String,
    pub generated_at: String,
    pub totals: Totals,
    pub failures: Vec<Failure>,
    /// Failed attempts in the window.
    pub failures_total: u64,
    /// Distinct tasks with a failed attempt in the window (the list above may hold fewer).
    pub failed_tasks: u64,
    pub schedules: Vec<ScheduleLine>,
    pub overdue: u64,
    pub anomalies: Vec<AnomalyLine>,
    pub usage_by_agent: Vec<UsageLine>,
    pub usage_by_model: Vec<UsageLine>,
    /// The budgets when the report was written.
    #[serde(default)]
    pub budgets: Vec<BudgetLine>,
    pub slowest: Vec<GroupLine>,
    pub costliest: Vec<GroupLine>,
    /// `hour` or `day`.
    pub bucket: String,
    pub buckets: Vec<Bucket>,
    pub task_link: Option<String>,
    /// Caveats, such as a window with more runs than were read.
    pub notes: Vec<String>,
    /// The window had not ended when the report was written.
    #[serde(default)]
    pub partial: bool,
}

/// How many lines the slowest and costliest tables hold.
pub const TOP: usize = 10;

fn local(tz: chrono_tz::Tz, t: Timestamp) -> chrono::DateTime<chrono_tz::Tz> {
    tz.timestamp_millis_opt(t.0).single().unwrap_or_else(|| tz.timestamp_millis_opt(0).unwrap())
}

fn show(tz: chrono_tz::Tz, t: Timestamp) -> String {
    local(tz, t).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// The group a run counts in: its schedule, else its agent or CLI, else its kind.
pub fn group_of(s: &RunSample) -> String {
    match (&s.schedule, &s.agent) {
        (Some(name), _) => format!("schedule {name}"),
        (None, Some(a)) if s.kind == "cli" => format!("cli {a}"),
        (None, Some(a)) => format!("agent {a}"),
        (None, None) => s.kind.clone(),
    }
}

/// The nearest-rank percentile `p` (0 to 1) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The local day `[start, end)` that holds `date` in `tz`, as timestamps.
pub fn day_bounds(date: chrono::NaiveDate, tz: chrono_tz::Tz) -> (Timestamp, Timestamp) {
    let start_of = |d: chrono::NaiveDate| {
        let midnight = d.and_time(chrono::NaiveTime::MIN);
        // A zone whose midnight is skipped starts the day at its first instant; one that
        // skipped the whole day (Pacific/Apia, 2011-12-30) at the next instant that exists.
        let t = (0..48).find_map(|h| tz.from_local_datetime(&(midnight + chrono::Duration::hours(h))).earliest());
        Timestamp(t.map(|t| t.timestamp_millis()).unwrap_or_else(|| midnight.and_utc().timestamp_millis()))
    };
    (start_of(date), start_of(date.succ_opt().unwrap_or(date)))
}

/// The report of `inputs`.
pub fn build(inputs: Inputs) -> Report {
    let tz = inputs.tz;
    let mut totals = Totals::default();
    let mut tasks = std::collections::HashSet::new();
    let mut groups: BTreeMap<String, (Vec<f64>, u64, u64, f64)> = BTreeMap::new();
    let mut buckets: BTreeMap<String, Bucket> = BTreeMap::new();
    let by_hour = inputs.kind == Kind::Daily;
    let label = |t: Timestamp| {
        let l = local(tz, t);
        if by_hour {
            format!("{:02}", l.hour())
        } else {
            format!("{:04}-{:02}-{:02}", l.year(), l.month(), l.day())
        }
    };
    // Every bucket of the window, runs or not, so the charts have no gaps.
    if by_hour {
        for h in 0..24 {
            let l = format!("{h:02}");
            buckets.insert(l.clone(), Bucket { label: l, runs: 0, failed: 0, run_seconds: 0.0, cost_usd: 0.0 });
        }
    } else {
        let (mut d, last) = (local(tz, inputs.since).date_naive(), local(tz, Timestamp(inputs.until.0 - 1)).date_naive());
        for _ in 0..400 {
            if d > last {
                break;
            }
            let l = d.format("%Y-%m-%d").to_string();
            buckets.insert(l.clone(), Bucket { label: l, runs: 0, failed: 0, run_seconds: 0.0, cost_usd: 0.0 });
            d = d.succ_opt().unwrap_or(last);
        }
    }
    for s in &inputs.samples {
        let secs = s.duration_ms as f64 / 1000.0;
        totals.runs += 1;
        if s.succeeded {
            totals.succeeded += 1;
        } else {
            totals.failed += 1;
        }
        tasks.insert(s.task_id);
        totals.run_seconds += secs;
        totals.tokens += s.tokens;
        totals.cost_usd += s.cost_usd;
        let g = groups.entry(group_of(s)).or_default();
        g.0.push(secs);
        g.1 += u64::from(!s.succeeded);
        g.2 += s.tokens;
        g.3 += s.cost_usd;
        let b = buckets.entry(label(s.at)).or_insert_with_key(|l| Bucket {
            label: l.clone(),
            runs: 0,
            failed: 0,
            run_seconds: 0.0,
            cost_usd: 0.0,
        });
        b.runs += 1;
        b.failed += u64::from(!s.succeeded);
        b.run_seconds += secs;
        b.cost_usd += s.cost_usd;
    }
    totals.tasks = tasks.len() as u64;
    let failed_tasks =
        inputs.samples.iter().filter(|s| !s.succeeded).map(|s| s.task_id).collect::<std::collections::HashSet<_>>().len() as u64;
    let mut lines: Vec<GroupLine> = groups
        .into_iter()
        .map(|(name, (mut secs, failed, tokens, cost))| {
            secs.sort_by(|a, b| a.total_cmp(b));
            GroupLine {
                name,
                runs: secs.len() as u64,
                failed,
                p50_seconds: percentile(&secs, 0.5),
                p95_seconds: percentile(&secs, 0.95),
                max_seconds: secs.last().copied().unwrap_or(0.0),
                tokens,
                cost_usd: cost,
            }
        })
        .collect();
    lines.sort_by(|a, b| b.p95_seconds.total_cmp(&a.p95_seconds).then_with(|| a.name.cmp(&b.name)));
    let slowest: Vec<GroupLine> = lines.iter().take(TOP).cloned().collect();
    lines.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then_with(|| a.name.cmp(&b.name)));
    let costliest: Vec<GroupLine> = lines.into_iter().filter(|l| l.cost_usd > 0.0 || l.tokens > 0).take(TOP).collect();
    let title = match inputs.kind {
        Kind::Daily => format!("owl daily report: {}", local(tz, inputs.since).format("%A %Y-%m-%d")),
        Kind::Performance => format!(
            "owl performance report: {} to {}",
            local(tz, inputs.since).format("%Y-%m-%d"),
            local(tz, Timestamp(inputs.until.0 - 1)).format("%Y-%m-%d")
        ),
    };
    let mut notes = inputs.notes.clone();
    if inputs.samples_capped {
        notes.push(format!("The window held more runs than a report reads; the figures cover the first {} of them.", inputs.samples.len()));
    }
    let overdue = inputs.schedules.iter().filter(|s| s.overdue).count() as u64;
    Report {
        kind: inputs.kind,
        title,
        since: show(tz, inputs.since),
        until: show(tz, inputs.until),
        tz: tz.name().to_string(),
        generated_at: show(tz, inputs.generated_at),
        failures_total: totals.failed,
        failed_tasks,
        totals,
        failures: inputs.failures,
        schedules: inputs.schedules,
        overdue,
        anomalies: inputs
            .anomalies
            .into_iter()
            .map(|a| AnomalyLine { id: a.id, at: show(tz, a.at), task_id: a.task_id.0, attempt: a.attempt, summary: a.summary })
            .collect(),
        usage_by_agent: inputs.usage_by_agent,
        usage_by_model: inputs.usage_by_model,
        budgets: inputs.budgets,
        slowest,
        costliest,
        bucket: if by_hour { "hour" } else { "day" }.into(),
        buckets: buckets.into_values().collect(),
        task_link: inputs.task_link,
        notes,
        partial: inputs.generated_at < inputs.until,
    }
}

impl Report {
    /// Where task `id` is: the configured link, or the command that shows it.
    pub fn link(&self, id: i64) -> String {
        match &self.task_link {
            Some(l) => l.replace("{id}", &id.to_string()),
            None => format!("owl show {id}"),
        }
    }

    /// The one line a reader needs first.
    pub fn headline(&self) -> String {
        let t = &self.totals;
        let mut parts = vec![format!("{} runs of {} tasks: {} succeeded, {} failed", t.runs, t.tasks, t.succeeded, t.failed)];
        if self.overdue > 0 {
            parts.push(format!("{} overdue", plural(self.overdue, "schedule", "schedules")));
        }
        if !self.anomalies.is_empty() {
            parts.push(plural(self.anomalies.len() as u64, "anomaly", "anomalies"));
        }
        if t.tokens > 0 || t.cost_usd > 0.0 {
            parts.push(format!("{} tokens, ${:.2}", t.tokens, t.cost_usd));
        }
        parts.join("; ")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Seconds for people: `42s`, `3m 5s`, `1h 2m`.
pub fn seconds(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "-".into();
    }
    if v < 1.0 {
        return format!("{}ms", (v * 1000.0).round());
    }
    if v < 10.0 {
        return format!("{v:.1}s");
    }
    let s = v.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}
