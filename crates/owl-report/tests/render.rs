//! A report built from crafted history, rendered in every format: the figures are right and
//! each format says them; the PDF is read back with poppler's `pdftotext`.

use owl_core::anomaly::{Anomaly, Finding, Metric, RunSample, Scope};
use owl_core::{TaskId, Timestamp};
use owl_report::*;

const DAY: i64 = 86_400_000;

fn at(date: &str, hms: &str) -> Timestamp {
    Timestamp::parse_rfc3339(&format!("{date}T{hms}Z")).unwrap()
}

fn sample(id: i64, t: Timestamp, ok: bool, secs: u64, schedule: Option<&str>, agent: Option<&str>, cost: f64) -> RunSample {
    RunSample {
        task_id: TaskId(id),
        attempt: 1,
        at: t,
        kind: if agent.is_some() { "agent".into() } else { "command".into() },
        schedule: schedule.map(Into::into),
        agent: agent.map(Into::into),
        succeeded: ok,
        duration_ms: secs * 1000,
        tokens: if agent.is_some() { 1200 } else { 0 },
        cost_usd: cost,
    }
}

fn inputs() -> Inputs {
    let (since, until) = day_bounds(chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(), chrono_tz::UTC);
    let mut samples = vec![];
    for h in 0..10 {
        samples.push(sample(h, at("2026-12-01", &format!("{h:02}:05:00")), true, 60 + h as u64, Some("nightly <backup>"), None, 0.0));
    }
    samples.push(sample(50, at("2026-12-01", "13:00:00"), false, 5, None, None, 0.0));
    samples.push(sample(51, at("2026-12-01", "14:00:00"), true, 40, None, Some("researcher"), 0.75));
    samples.push(sample(52, at("2026-12-01", "15:00:00"), true, 20, None, Some("researcher"), 0.25));
    let anomaly = Anomaly {
        id: 3,
        at: at("2026-12-01", "09:06:00"),
        task_id: TaskId(9),
        attempt: 1,
        finding: Finding {
            scope: Scope::Schedule,
            subject: "nightly".into(),
            metric: Metric::DurationSeconds,
            value: 3600.0,
            median: 64.0,
            mad: 2.0,
            z: 1180.0,
            samples: 9,
        },
        summary: "schedule nightly: this run took 1h, against a median of 1m 4s over the last 9 successful runs (modified z-score 1180.0)"
            .into(),
    };
    Inputs {
        kind: Kind::Daily,
        since,
        until,
        tz: chrono_tz::UTC,
        generated_at: at("2026-12-02", "07:00:00"),
        samples,
        samples_capped: false,
        failures: vec![Failure {
            task_id: 50,
            attempt: 1,
            at: "2026-12-01 13:00 UTC".into(),
            what: "make | deploy".into(),
            reason: "exited with code 2".into(),
            schedule: None,
        }],
        schedules: vec![ScheduleLine {
            name: "nightly <backup>".into(),
            state: "active".into(),
            when: "cron \"5 * * * *\" in UTC".into(),
            last_status: Some("succeeded".into()),
            last_success_at: Some("2026-12-01 09:06 UTC".into()),
            next_fire_at: Some("2026-12-02 08:05 UTC".into()),
            on_time: 9,
            late: 1,
            missed: 2,
            skipped: 0,
            overdue: true,
        }],
        anomalies: vec![anomaly],
        usage_by_agent: vec![UsageLine { key: "researcher".into(), calls: 4, input_tokens: 2000, output_tokens: 400, cost_usd: 1.0 }],
        usage_by_model: vec![UsageLine { key: "claude-x".into(), calls: 4, input_tokens: 2000, output_tokens: 400, cost_usd: 1.0 }],
        budgets: vec![BudgetLine {
            scope: "agent.researcher".into(),
            limit: "$1.00 / day".into(),
            spent: "$0.98".into(),
            resets: "2026-12-03 00:00 UTC".into(),
            waiting: 2,
        }],
        task_link: None,
        notes: vec![],
    }
}

#[test]
fn the_figures_of_a_day_are_right() {
    let r = build(inputs());
    assert_eq!(r.title, "owl daily report: Tuesday 2026-12-01");
    assert_eq!((r.totals.runs, r.totals.succeeded, r.totals.failed, r.totals.tasks), (13, 12, 1, 13));
    assert!((r.totals.cost_usd - 1.0).abs() < 1e-9 && r.totals.tokens == 2400);
    assert_eq!(r.overdue, 1);
    assert_eq!(r.buckets.len(), 24, "every hour of the day, runs or not");
    assert_eq!((r.buckets[13].label.as_str(), r.buckets[13].runs, r.buckets[13].failed), ("13", 1, 1));
    assert_eq!(r.buckets[23].runs, 0);
    let nightly = r.slowest.iter().find(|g| g.name == "schedule nightly <backup>").unwrap();
    assert_eq!((nightly.runs, nightly.p50_seconds, nightly.p95_seconds, nightly.max_seconds), (10, 64.0, 69.0, 69.0));
    assert_eq!(r.slowest[0].name, "schedule nightly <backup>", "the slowest first");
    assert_eq!(r.costliest.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), vec!["agent researcher"], "only what cost anything");
    assert!(
        r.headline().contains("13 runs of 13 tasks: 12 succeeded, 1 failed") && r.headline().contains("1 schedule overdue; 1 anomaly;")
    );
    // A performance week: one bucket per day.
    let mut week = inputs();
    week.kind = Kind::Performance;
    week.since = Timestamp(week.until.0 - 7 * DAY);
    let w = build(week);
    assert_eq!(w.buckets.len(), 7);
    assert_eq!(w.buckets.last().unwrap().label, "2026-12-01");
    assert_eq!(w.buckets.last().unwrap().runs, 13);
}

#[test]
fn a_local_day_follows_its_time_zone_and_daylight_saving() {
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let (a, b) = day_bounds(chrono::NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(), tz);
    assert_eq!(a, at("2026-03-28", "23:00:00"));
    assert_eq!(b.0 - a.0, 23 * 3_600_000, "the spring-forward day has 23 hours");
    // Samoa skipped 2011-12-30 entirely: the day is empty, and nothing panics.
    let apia: chrono_tz::Tz = "Pacific/Apia".parse().unwrap();
    let (a, b) = day_bounds(chrono::NaiveDate::from_ymd_opt(2011, 12, 30).unwrap(), apia);
    assert_eq!(a, b, "a day that did not happen holds no time");
}

#[test]
fn markdown_and_html_say_the_same_and_escape_what_they_show() {
    let r = build(inputs());
    let md = render_markdown(&r);
    for want in [
        "# owl daily report",
        "## Failed (1)",
        "make \\| deploy",
        "`owl show 50`",
        "**OVERDUE**",
        "## Anomalies (1)",
        "researcher",
        "Budgets now",
        "agent.researcher",
        "$1.00 / day",
        "## Per hour",
        "| 13 | 1 | 1 |",
    ] {
        assert!(md.contains(want), "markdown lacks {want:?}:\n{md}");
    }
    let html = render_html(&r);
    for want in [
        "<h2 id=\"failed\">Failed (1)</h2>",
        "nightly &lt;backup&gt;",
        "<code>owl show 50</code>",
        "class=\"bad\">OVERDUE",
        "<svg",
        "Cost per hour (USD)",
    ] {
        assert!(html.contains(want), "html lacks {want:?}");
    }
    assert!(!html.contains("<backup>") && !html.contains("<script"), "nothing unescaped, no script");
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    // With a dashboard link configured, tasks link there.
    let mut linked = inputs();
    linked.task_link = Some("http://127.0.0.1:7717/ui/tasks/{id}".into());
    let html = render_html(&build(linked));
    assert!(html.contains("<a href=\"http://127.0.0.1:7717/ui/tasks/50\">50 (attempt 1)</a>"), "{html}");
    let json: serde_json::Value = serde_json::from_slice(&render(&r, Format::Json).unwrap()).unwrap();
    assert_eq!(json["totals"]["runs"], 13);
}

#[test]
fn an_empty_day_reads_well() {
    let mut i = inputs();
    i.samples.clear();
    i.failures.clear();
    i.schedules.clear();
    i.anomalies.clear();
    i.usage_by_agent.clear();
    i.usage_by_model.clear();
    let r = build(i);
    let md = render_markdown(&r);
    assert!(md.contains("Nothing failed.") && md.contains("Nothing out of the ordinary.") && md.contains("Nothing ran."), "{md}");
    assert!(render_html(&r).contains("<svg"));
}

#[cfg(feature = "pdf")]
#[test]
fn the_pdf_holds_every_section_as_text() {
    let r = build(inputs());
    let pdf = render(&r, Format::Pdf).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let dir = std::env::temp_dir().join(format!("owl-report-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("daily.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let out = match std::process::Command::new("pdftotext").args(["-layout"]).arg(&path).arg("-").output() {
        Ok(o) => o,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping the pdftotext check: {e} (install poppler-utils)");
            return;
        }
        Err(e) => panic!("pdftotext is needed under CI: {e}"),
    };
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "owl daily report: Tuesday 2026-12-01",
        "Failed (1)",
        "make | deploy",
        "exited with code 2",
        "owl show 50",
        "OVERDUE",
        "Anomalies (1)",
        "Tokens and cost",
        "researcher",
        "Per hour",
        "Run time per hour",
    ] {
        assert!(text.contains(want), "the PDF lacks {want:?}:\n{text}");
    }
    if std::env::var_os("OWL_KEEP_REPORT").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
