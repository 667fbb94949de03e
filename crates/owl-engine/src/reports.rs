//! Reports: what the store knows about a window, gathered for `owl_report` to lay out, and
//! the daily report written every morning to a file.

use crate::{Engine, Shared};
use chrono::TimeZone;
use owl_core::{RunOutcome, TaskId, TaskState, Timestamp};
use owl_report::{BudgetLine, Failure, Format, Inputs, Kind, Report, ScheduleLine, UsageLine};
use owl_store::{AnomalyFilter, StoreError, TaskFilter, UsageBy};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// At most this many run samples are read for one report (about 60 MB at the peak).
pub const SAMPLE_CAP: u32 = 500_000;
/// Failed attempts a report lists by name.
pub const FAILURES_LISTED: usize = 50;
/// Anomalies a report lists.
pub const ANOMALIES_LISTED: u32 = 500;

fn reason(outcome: Option<&RunOutcome>, state: Option<&TaskState>) -> String {
    match outcome {
        Some(RunOutcome::Failed { error: Some(e), .. }) => e.clone(),
        Some(RunOutcome::Failed { exit_code: Some(c), .. }) => format!("exited with code {c}"),
        Some(RunOutcome::Failed { signal: Some(sig), .. }) => format!("killed by signal {sig}"),
        Some(RunOutcome::TimedOut) => "timed out".into(),
        _ => match state {
            Some(TaskState::Failed { reason, .. }) => reason.clone(),
            _ => "failed".into(),
        },
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max - 3).collect::<String>())
    } else {
        s
    }
}

fn usage_lines(rows: Vec<owl_store::UsageSummary>) -> Vec<UsageLine> {
    rows.into_iter()
        .map(|u| UsageLine { key: u.key, calls: u.calls, input_tokens: u.input, output_tokens: u.output, cost_usd: u.cost_usd })
        .collect()
}

impl Engine {
    /// The reports' time zone: `[reports] tz`, else the scheduler's default.
    pub fn report_tz(&self) -> chrono_tz::Tz {
        let cfg = self.config();
        let name = if cfg.reports.tz.is_empty() { cfg.schedules.tz.clone() } else { cfg.reports.tz.clone() };
        name.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The local day `date` (in the reports' zone) as a window.
    pub fn report_day(&self, date: chrono::NaiveDate) -> (Timestamp, Timestamp) {
        owl_report::day_bounds(date, self.report_tz())
    }

    /// Today's date in the reports' zone.
    pub fn report_today(&self) -> chrono::NaiveDate {
        let tz = self.report_tz();
        tz.timestamp_millis_opt(self.now().0).single().map(|t| t.date_naive()).unwrap_or_default()
    }

    /// The report of `kind` over `[since, until)`.
    pub async fn report(&self, kind: Kind, since: Timestamp, until: Timestamp) -> Result<Report, StoreError> {
        let store = self.store();
        let cfg = self.config().reports;
        let mut samples = store.samples_between(since, until, SAMPLE_CAP + 1).await?;
        let samples_capped = samples.len() > SAMPLE_CAP as usize;
        samples.truncate(SAMPLE_CAP as usize);
        // The latest failed attempt of each task that failed, newest first.
        let mut seen = HashSet::new();
        let failed: Vec<&owl_core::anomaly::RunSample> =
            samples.iter().rev().filter(|x| !x.succeeded && seen.insert(x.task_id)).take(FAILURES_LISTED).collect();
        let ids: Vec<TaskId> = failed.iter().map(|x| x.task_id).collect();
        let tasks: HashMap<TaskId, owl_core::Task> = if ids.is_empty() {
            HashMap::new()
        } else {
            let page = TaskFilter { ids: ids.clone(), limit: Some(ids.len() as u32), ..Default::default() };
            store.list(page).await?.into_iter().map(|t| (t.id, t)).collect()
        };
        let tz = self.report_tz();
        let show =
            |t: Timestamp| tz.timestamp_millis_opt(t.0).single().map(|l| l.format("%Y-%m-%d %H:%M %Z").to_string()).unwrap_or_default();
        let mut failures = Vec::new();
        for x in failed {
            let runs = store.runs(x.task_id).await.unwrap_or_default();
            let run = runs.iter().find(|r| r.attempt == x.attempt);
            let task = tasks.get(&x.task_id);
            failures.push(Failure {
                task_id: x.task_id.0,
                attempt: x.attempt,
                at: show(x.at),
                what: task.map(|t| one_line(&t.spec.command.display(), 100)).unwrap_or_else(|| "(task removed)".into()),
                reason: one_line(&reason(run.and_then(|r| r.outcome.as_ref()), task.map(|t| &t.state)), 200),
                schedule: x.schedule.clone(),
            });
        }
        let list = store.list_schedules().await?;
        let health = self.schedule_health(&list).await?;
        let schedules = list
            .iter()
            .zip(health)
            .map(|(s, h)| ScheduleLine {
                name: s.spec.name.clone(),
                state: format!("{:?}", s.state).to_lowercase(),
                when: s.spec.when.describe(),
                last_status: h.last_status.map(|st| st.as_str().to_string()),
                last_success_at: s.last_success_at.map(show),
                next_fire_at: s.next_fire_at.map(show),
                on_time: s.fired.saturating_sub(s.late),
                late: s.late,
                missed: s.missed,
                skipped: s.skipped,
                overdue: h.overdue,
            })
            .collect();
        let anomalies = store
            .anomalies(AnomalyFilter { since: Some(since), until: Some(until), limit: ANOMALIES_LISTED, ..Default::default() })
            .await?;
        let mut notes = Vec::new();
        if anomalies.len() == ANOMALIES_LISTED as usize {
            notes.push(format!("The window holds more anomalies than a report lists; these are the latest {ANOMALIES_LISTED}."));
        }
        let kept_from = self.now().minus(self.config().schedules.history_retention);
        if since < kept_from {
            notes
                .push(format!("Runs and anomalies before {} are past [scheduler] history_retention and are not counted.", show(kept_from)));
        }
        let usage_by_agent = usage_lines(store.usage_summary(since, until, UsageBy::Agent).await?);
        let usage_by_model = usage_lines(store.usage_summary(since, until, UsageBy::Model).await?);
        let budgets = self
            .budgets()
            .await?
            .into_iter()
            .map(|b| {
                let mut limit = vec![];
                if let Some(u) = b.usd {
                    limit.push(crate::budget::money(u));
                }
                if let Some(t) = b.tokens {
                    limit.push(format!("{t} tokens"));
                }
                if let Some(w) = b.window_percent {
                    limit.push(format!("window {}%/{}% day/night", w.day, w.night));
                }
                let mut spent = vec![crate::budget::money(b.spent_usd + b.reserved_usd)];
                if b.tokens.is_some() {
                    spent.push(format!("{} tokens", b.spent_tokens + b.reserved_tokens));
                }
                BudgetLine {
                    scope: b.scope,
                    limit: format!("{} / {}", limit.join(" + "), b.period),
                    spent: spent.join(", "),
                    resets: b.resets_at.filter(|t| *t < owl_core::budget::NO_RESET).map(show).unwrap_or_else(|| "never".into()),
                    waiting: b.waiting.len() as u64,
                }
            })
            .collect();
        Ok(owl_report::build(Inputs {
            kind,
            since,
            until,
            tz,
            generated_at: self.now(),
            samples,
            samples_capped,
            failures,
            schedules,
            anomalies,
            usage_by_agent,
            usage_by_model,
            budgets,
            task_link: (!cfg.task_link.is_empty()).then_some(cfg.task_link),
            notes,
        }))
    }
}

/// Renders off the async threads (typesetting a PDF takes a while).
pub async fn render(report: Report, format: Format) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || owl_report::render(&report, format))
        .await
        .map_err(|e| format!("rendering the report panicked: {e}"))?
}

/// Writes `bytes` to `path` whole or not at all.
/// Reports say what tasks ran, so they are the owner's alone (0600), like the data dir.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn reports_dir(s: &Shared) -> PathBuf {
    let dir = s.config().reports.dir;
    if dir.is_empty() {
        s.layout.reports()
    } else {
        PathBuf::from(dir)
    }
}

/// Writes yesterday's report once today's `daily_at` has passed, in each configured format
/// not yet on disk; returns the files written. Then deletes reports older than `keep`.
pub(crate) async fn write_daily(s: &Arc<Shared>) -> Result<Vec<PathBuf>, String> {
    use chrono::Timelike;
    let engine = Engine { shared: s.clone() };
    let cfg = s.config().reports;
    let (h, m) = cfg.daily_time()?;
    let tz = engine.report_tz();
    let now = tz.timestamp_millis_opt(engine.now().0).single().ok_or("the clock is out of range")?;
    let dir = reports_dir(s);
    let mut written = Vec::new();
    if (now.hour(), now.minute()) >= (h, m) {
        let day = now.date_naive().pred_opt().ok_or("the calendar ran out")?;
        let wanted: Vec<(Format, PathBuf)> = cfg
            .formats
            .iter()
            .filter_map(|f| Format::parse(f).ok())
            .filter(|f| f.available())
            .map(|f| (f, dir.join(format!("daily-{day}.{}", f.extension()))))
            .filter(|(_, p)| !p.exists())
            .collect();
        if !wanted.is_empty() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let (since, until) = engine.report_day(day);
            let report = engine.report(Kind::Daily, since, until).await.map_err(|e| e.to_string())?;
            // Each format on its own: one that fails does not keep the others from being written.
            let mut failed = Vec::new();
            for (format, path) in wanted {
                let done = match render(report.clone(), format).await {
                    Ok(bytes) => write_atomically(&path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display())),
                    Err(e) => Err(e),
                };
                match done {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "wrote the daily report");
                        written.push(path);
                    }
                    Err(e) => failed.push(format!("{}: {e}", format.extension())),
                }
            }
            if !failed.is_empty() {
                prune(&dir, cfg.keep, std::time::SystemTime::now());
                return Err(failed.join("; "));
            }
        }
        // The morning notice, once the day's files are all there (its key makes it once a day).
        let files: Vec<PathBuf> = cfg
            .formats
            .iter()
            .filter_map(|f| Format::parse(f).ok())
            .filter(|f| f.available())
            .map(|f| dir.join(format!("daily-{day}.{}", f.extension())))
            .filter(|p| p.exists())
            .collect();
        crate::notify::daily_report(s, day, &files).await;
    }
    prune(&dir, cfg.keep, std::time::SystemTime::now());
    Ok(written)
}

/// Whether `name` is one of ours: `daily-YYYY-MM-DD.<format>` (or its temporary file).
fn is_daily_report(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("daily-") else { return false };
    let (date, ext) = rest.split_at(rest.len().min(10));
    let ext = ext.strip_suffix(".partial").unwrap_or(ext);
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok() && [".md", ".html", ".pdf", ".json"].contains(&ext)
}

/// Deletes daily reports in `dir` last written more than `keep` before `now`; nothing else
/// (the directory may be shared).
fn prune(dir: &Path, keep: Duration, now: std::time::SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !is_daily_report(&name) {
            continue;
        }
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok()).is_some_and(|age| age > keep);
        if old {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::info!(path = %e.path().display(), "deleted a report past [reports] keep"),
                Err(err) => tracing::warn!(path = %e.path().display(), error = %err, "cannot delete an old report"),
            }
        }
    }
}

/// The daily report, when it is due (checked at start, at daily_at and at least hourly). After a failure, an hour's pause (a
/// report of half a million runs is not rebuilt every minute for a format that cannot render).
pub(crate) async fn daily_loop(s: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut failed_at: Option<std::time::Instant> = None;
    loop {
        let paused = failed_at.is_some_and(|t| t.elapsed() < Duration::from_secs(3600));
        if s.config().reports.daily && !paused {
            s.loops.busy("reports");
            match write_daily(&s).await {
                Ok(_) => failed_at = None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the daily report; trying again in an hour");
                    failed_at = Some(std::time::Instant::now());
                }
            }
            s.loops.idle("reports");
        }
        if !crate::sleep_unless_stopped(until_next_daily(&s), &mut stop).await {
            return;
        }
    }
}

/// Until the next `daily_at` (a second past it), at most an hour, so a changed setting or a
/// jumped clock is seen within the hour.
fn until_next_daily(s: &Arc<Shared>) -> Duration {
    let engine = Engine { shared: s.clone() };
    match s.config().reports.daily_time() {
        Ok((h, m)) => wait_for_daily(engine.now(), engine.report_tz(), h, m),
        Err(_) => Duration::from_secs(3600),
    }
}

fn wait_for_daily(now: Timestamp, tz: chrono_tz::Tz, h: u32, m: u32) -> Duration {
    let hour = Duration::from_secs(3600);
    let Some(local) = tz.timestamp_millis_opt(now.0).single() else { return hour };
    let at = |d: chrono::NaiveDate| d.and_hms_opt(h, m, 1).and_then(|t| tz.from_local_datetime(&t).earliest());
    let today = local.date_naive();
    let next = at(today).filter(|t| t.timestamp_millis() > now.0).or_else(|| today.succ_opt().and_then(at));
    next.map(|t| Duration::from_millis((t.timestamp_millis() - now.0).max(0) as u64).min(hour)).unwrap_or(hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_deletes_old_daily_reports_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["daily-2026-01-01.md", "daily-2026-01-01.pdf", "daily-notes.txt", "daily-2026-01-01.md.bak", "mine.md"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let later = std::time::SystemTime::now() + Duration::from_secs(100 * 86400);
        prune(dir.path(), Duration::from_secs(90 * 86400), later);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, vec!["daily-2026-01-01.md.bak", "daily-notes.txt", "mine.md"]);
        assert!(is_daily_report("daily-2026-12-01.md.partial") && !is_daily_report("daily-2026-13-01.md"));
    }

    #[test]
    fn the_loop_wakes_just_after_daily_at_and_at_least_hourly() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        // 06:30 in Berlin (05:30 UTC): 30 minutes and a second to 07:00:01.
        assert_eq!(wait_for_daily(t("2026-12-02T05:30:00Z"), berlin, 7, 0), Duration::from_secs(1801));
        // Past it: tomorrow's is far, so an hour.
        assert_eq!(wait_for_daily(t("2026-12-02T06:30:00Z"), berlin, 7, 0), Duration::from_secs(3600));
        // A time the spring-forward night skips (02:30 on 2026-03-29) waits at most an hour.
        assert!(wait_for_daily(t("2026-03-29T00:10:00Z"), berlin, 2, 30) <= Duration::from_secs(3600));
    }
}
