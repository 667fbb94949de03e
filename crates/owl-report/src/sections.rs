//! The report laid out once as sections of paragraphs, tables and charts, which each format
//! renders in its own way, so Markdown, HTML and PDF always say the same.

use crate::build::{seconds, GroupLine, Report, UsageLine};

/// One table cell: its text, and where it links (a task's page, when a link is configured).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub text: String,
    pub link: Option<String>,
    /// Shown as code (a command to run).
    pub code: bool,
    /// A state that needs someone (OVERDUE), shown strongly.
    pub alarm: bool,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell { text, link: None, code: false, alarm: false }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        text.to_string().into()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// What a section shows after its paragraphs.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    None,
    Table(Table),
    /// Titled subtables.
    Tables(Vec<(&'static str, Table)>),
    /// The run-time and cost charts (and, where a format has no images, their table).
    Charts(Table),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// A stable anchor: `failed`, `schedules`, ...
    pub id: &'static str,
    pub title: String,
    pub paragraphs: Vec<String>,
    pub body: Body,
}

fn task_cell(r: &Report, id: i64, attempt: u32) -> Cell {
    let text = format!("{id} (attempt {attempt})");
    match &r.task_link {
        Some(_) => Cell { text, link: Some(r.link(id)), code: false, alarm: false },
        None => text.into(),
    }
}

fn group_table(lines: &[GroupLine]) -> Table {
    Table {
        head: vec!["What", "Runs", "Failed", "p50", "p95", "Max", "Tokens", "Cost"],
        rows: lines
            .iter()
            .map(|g| {
                vec![
                    g.name.clone().into(),
                    g.runs.to_string().into(),
                    g.failed.to_string().into(),
                    seconds(g.p50_seconds).into(),
                    seconds(g.p95_seconds).into(),
                    seconds(g.max_seconds).into(),
                    g.tokens.to_string().into(),
                    format!("${:.2}", g.cost_usd).into(),
                ]
            })
            .collect(),
    }
}

fn usage_table(lines: &[UsageLine]) -> Table {
    Table {
        head: vec!["", "Calls", "Input", "Output", "Cost"],
        rows: lines
            .iter()
            .map(|u| {
                vec![
                    u.key.clone().into(),
                    u.calls.to_string().into(),
                    u.input_tokens.to_string().into(),
                    u.output_tokens.to_string().into(),
                    format!("${:.4}", u.cost_usd).into(),
                ]
            })
            .collect(),
    }
}

/// The report's sections, in order.
pub fn sections(r: &Report) -> Vec<Section> {
    let mut out = Vec::new();
    let mut failed = Section { id: "failed", title: format!("Failed ({})", r.failed_tasks), paragraphs: vec![], body: Body::None };
    if r.failures_total > r.failed_tasks {
        failed
            .paragraphs
            .push(format!("{} tasks failed, in {} failed attempts; each task's latest is listed.", r.failed_tasks, r.failures_total));
    }
    if r.failures.is_empty() {
        failed.paragraphs.push("Nothing failed.".into());
    } else {
        let rows = r
            .failures
            .iter()
            .map(|f| {
                let what = match &f.schedule {
                    Some(s) => format!("{} (schedule {s})", f.what),
                    None => f.what.clone(),
                };
                let see = Cell { text: format!("owl show {}", f.task_id), link: None, code: true, alarm: false };
                vec![task_cell(r, f.task_id, f.attempt), f.at.clone().into(), what.into(), f.reason.clone().into(), see]
            })
            .collect();
        failed.body = Body::Table(Table { head: vec!["Task", "When", "What", "Why", "See"], rows });
        if (r.failures.len() as u64) < r.failed_tasks {
            failed.paragraphs.push(format!("The latest {} are listed; `owl ls --status failed` has all.", r.failures.len()));
        }
    }
    out.push(failed);
    let mut sched = Section { id: "schedules", title: format!("Schedules ({} overdue)", r.overdue), paragraphs: vec![], body: Body::None };
    if r.schedules.is_empty() {
        sched.paragraphs.push("No schedules.".into());
    } else {
        let rows = r
            .schedules
            .iter()
            .map(|s| {
                let health = if s.overdue { Cell { alarm: true, ..Cell::from("OVERDUE") } } else { "ok".into() };
                vec![
                    s.name.clone().into(),
                    s.when.clone().into(),
                    s.state.clone().into(),
                    s.last_status.clone().unwrap_or_else(|| "-".into()).into(),
                    s.last_success_at.clone().unwrap_or_else(|| "never".into()).into(),
                    s.next_fire_at.clone().unwrap_or_else(|| "-".into()).into(),
                    format!("{}/{}/{}/{}", s.on_time, s.late, s.missed, s.skipped).into(),
                    health,
                ]
            })
            .collect();
        sched.body = Body::Table(Table {
            head: vec!["Schedule", "When", "State", "Last run", "Last success", "Next", "On time/late/missed/skipped", "Health"],
            rows,
        });
    }
    out.push(sched);
    let mut anomalies =
        Section { id: "anomalies", title: format!("Anomalies ({})", r.anomalies.len()), paragraphs: vec![], body: Body::None };
    if r.anomalies.is_empty() {
        anomalies.paragraphs.push("Nothing out of the ordinary.".into());
    } else {
        let rows =
            r.anomalies.iter().map(|a| vec![a.at.clone().into(), task_cell(r, a.task_id, a.attempt), a.summary.clone().into()]).collect();
        anomalies.body = Body::Table(Table { head: vec!["When", "Task", "What"], rows });
    }
    out.push(anomalies);
    let mut usage = Section { id: "usage", title: "Tokens and cost".into(), paragraphs: vec![], body: Body::None };
    if r.usage_by_agent.is_empty() {
        usage.paragraphs.push("No model calls.".into());
    } else {
        usage.body = Body::Tables(vec![("By agent", usage_table(&r.usage_by_agent)), ("By model", usage_table(&r.usage_by_model))]);
    }
    if !r.budgets.is_empty() {
        let rows = r
            .budgets
            .iter()
            .map(|b| {
                vec![
                    b.scope.clone().into(),
                    b.limit.clone().into(),
                    b.spent.clone().into(),
                    b.resets.clone().into(),
                    b.waiting.to_string().into(),
                ]
            })
            .collect();
        let table = ("Budgets now", Table { head: vec!["Scope", "Limit", "Spent", "Resets", "Waiting"], rows });
        usage.body = match std::mem::replace(&mut usage.body, Body::None) {
            Body::Tables(mut t) => {
                t.push(table);
                Body::Tables(t)
            }
            _ => Body::Tables(vec![table]),
        };
    }
    out.push(usage);
    let mut slowest = Section { id: "slowest", title: "Slowest".into(), paragraphs: vec![], body: Body::None };
    if r.slowest.is_empty() {
        slowest.paragraphs.push("Nothing ran.".into());
    } else {
        slowest.body = Body::Table(group_table(&r.slowest));
    }
    out.push(slowest);
    if !r.costliest.is_empty() {
        out.push(Section { id: "costliest", title: "Costliest".into(), paragraphs: vec![], body: Body::Table(group_table(&r.costliest)) });
    }
    let rows = r
        .buckets
        .iter()
        .map(|b| {
            vec![
                b.label.clone().into(),
                b.runs.to_string().into(),
                b.failed.to_string().into(),
                seconds(b.run_seconds).into(),
                format!("${:.2}", b.cost_usd).into(),
            ]
        })
        .collect();
    let head = vec![if r.bucket == "hour" { "Hour" } else { "Day" }, "Runs", "Failed", "Run time", "Cost"];
    out.push(Section { id: "charts", title: format!("Per {}", r.bucket), paragraphs: vec![], body: Body::Charts(Table { head, rows }) });
    out
}

/// The paragraphs before the first section: the window, and the headline.
pub fn preamble(r: &Report) -> Vec<String> {
    let mut p = vec![format!("{} to {}, written {}{}.", r.since, r.until, r.generated_at, if r.partial { " (so far)" } else { "" })];
    p.extend(r.notes.iter().cloned());
    p
}
