//! `owl schedule ...` and `owl cron next`.

use crate::cli::{CronNextArgs, ScheduleAction, ScheduleAddArgs};
use crate::client::Client;
use crate::output::{now, print_json, relative, table, truncate};
use anyhow::{anyhow, Result};
use owl_api::schedule::{CreateSchedule, History, RunNow, ScheduleList, ScheduleView};
use owl_core::schedule::{Compiled, When};
use owl_core::Timestamp;

fn build(a: ScheduleAddArgs) -> Result<CreateSchedule> {
    Ok(CreateSchedule {
        name: a.name,
        cron: a.cron,
        tz: a.tz,
        every: a.every,
        anchor: a.anchor,
        at: a.once_at,
        misfire: a.misfire,
        misfire_cap: a.misfire_cap,
        overlap: a.overlap,
        max_lateness: a.max_lateness,
        jitter: a.jitter,
        until: a.until,
        max_runs: a.max_runs,
        task: crate::commands::add::build_task(a.task, a.tags)?,
    })
}

fn when_next(v: &ScheduleView) -> String {
    match (v.state, v.next_fire_at) {
        (owl_core::schedule::ScheduleState::Active, Some(t)) => relative(t, now()),
        (owl_core::schedule::ScheduleState::Active, None) => "waiting on a run".into(),
        (s, _) => s.as_str().into(),
    }
}

fn print_view(v: &ScheduleView) {
    println!("schedule {}  {}", v.name, v.state.as_str());
    println!("  when       {}", v.describe);
    println!("  command    {}", v.display);
    println!(
        "  policies   misfire {:?} (cap {}), overlap {:?}, max lateness {}",
        v.misfire,
        v.misfire_cap,
        v.overlap,
        owl_core::duration::format(std::time::Duration::from_millis(v.max_lateness_ms))
    );
    if v.jitter_ms > 0 {
        println!("  jitter     {}", owl_core::duration::format(std::time::Duration::from_millis(v.jitter_ms)));
    }
    if let Some(e) = v.end_at {
        println!("  until      {e}");
    }
    if let Some(m) = v.max_runs {
        println!("  max runs   {m}");
    }
    match (&v.next_fire_local, v.next_fire_at) {
        (Some(local), Some(t)) => println!("  next       {local} ({})", relative(t, now())),
        _ => println!("  next       none"),
    }
    if let Some(t) = v.last_fire_at {
        println!("  last fire  {t} ({}), task {}", relative(t, now()), v.last_task_id.map(|i| i.to_string()).unwrap_or_default());
    }
    println!("  fires      {} on time, {} late, {} missed, {} skipped", v.on_time, v.late, v.missed, v.skipped);
    match v.last_success_at {
        Some(t) => println!(
            "  last ok    {t} ({}), ran {}",
            relative(t, now()),
            owl_core::duration::format(std::time::Duration::from_millis(v.last_success_ms.unwrap_or(0)))
        ),
        None => println!("  last ok    never"),
    }
    if let Some(s) = v.last_status {
        println!("  last run   {s}");
    }
    println!("  health     {}", health_word(v));
    if let Some(p) = v.pending_slot {
        println!("  waiting    slot {p} runs when the active run ends");
    }
    if v.upcoming.len() > 1 {
        println!("upcoming:");
        for t in &v.upcoming {
            println!("  {t}");
        }
    }
}

pub async fn run(client: &Client, action: ScheduleAction, json: bool) -> Result<()> {
    match action {
        ScheduleAction::Add(a) => {
            let v: ScheduleView = client.post("/v1/schedules", &build(a)?).await?;
            if json {
                print_json(&v)
            } else {
                println!("schedule {} created: {}", v.name, v.describe);
                if let (Some(local), Some(t)) = (&v.next_fire_local, v.next_fire_at) {
                    println!("next run {local} ({})", relative(t, now()));
                }
            }
        }
        ScheduleAction::Ls => {
            let list: ScheduleList = client.get("/v1/schedules").await?;
            if json {
                print_json(&list);
            } else if list.schedules.is_empty() {
                println!("no schedules");
            } else {
                let rows = list
                    .schedules
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            v.state.as_str().to_string(),
                            truncate(&v.describe, 40),
                            when_next(v),
                            match (v.last_fire_at, v.last_status) {
                                (Some(t), Some(s)) => format!("{} {s}", relative(t, now())),
                                (Some(t), None) => relative(t, now()),
                                _ => "never".into(),
                            },
                            v.last_success_at.map(|t| relative(t, now())).unwrap_or_else(|| "never".into()),
                            if v.overdue { "OVERDUE".into() } else { "ok".into() },
                            format!("{}/{}/{}/{}", v.on_time, v.late, v.missed, v.skipped),
                            truncate(&v.display, 40),
                        ]
                    })
                    .collect();
                table(&["NAME", "STATE", "WHEN", "NEXT", "LAST RUN", "LAST OK", "HEALTH", "ON TIME/LATE/MISSED/SKIPPED", "COMMAND"], rows);
            }
        }
        ScheduleAction::Show { name } => {
            let v: ScheduleView = client.get(&format!("/v1/schedules/{name}")).await?;
            if json {
                print_json(&v)
            } else {
                print_view(&v)
            }
        }
        ScheduleAction::History { name, limit } => {
            let h: History = client.get(&format!("/v1/schedules/{name}/history?limit={limit}")).await?;
            if json {
                print_json(&h);
            } else if h.history.is_empty() {
                println!("no fires yet");
            } else {
                let rows = h
                    .history
                    .iter()
                    .map(|f| {
                        vec![
                            f.scheduled_for.to_string(),
                            format!("{}ms", f.lateness_ms),
                            f.outcome.clone(),
                            f.task_id.map(|t| t.to_string()).unwrap_or_default(),
                            f.task_status.map(|s| s.to_string()).unwrap_or_default(),
                            f.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(&["SCHEDULED FOR", "LATENESS", "OUTCOME", "TASK", "TASK STATUS", "REASON"], rows);
            }
        }
        ScheduleAction::Pause { name } => state_change(client, &name, "pause", json).await?,
        ScheduleAction::Resume { name } => state_change(client, &name, "resume", json).await?,
        ScheduleAction::RunNow { name } => {
            let r: RunNow = client.post(&format!("/v1/schedules/{name}/run"), &serde_json::json!({})).await?;
            if json {
                print_json(&r)
            } else {
                println!("{}", r.task_id)
            }
        }
        ScheduleAction::Rm { name } => {
            client.request(reqwest::Method::DELETE, &format!("/v1/schedules/{name}"), None::<&()>).await?;
            if json {
                print_json(&serde_json::json!({"removed": name}))
            } else {
                println!("schedule {name} removed")
            }
        }
    }
    Ok(())
}

async fn state_change(client: &Client, name: &str, verb: &str, json: bool) -> Result<()> {
    let v: ScheduleView = client.post(&format!("/v1/schedules/{name}/{verb}"), &serde_json::json!({})).await?;
    if json {
        print_json(&v)
    } else {
        println!("schedule {}: {} (next: {})", v.name, v.state.as_str(), when_next(&v));
    }
    Ok(())
}

/// `owl cron next`: computed here, with the same code the scheduler uses; no daemon needed.
pub fn cron_next(a: CronNextArgs, default_tz: &str, json: bool) -> Result<()> {
    let tz = a.tz.unwrap_or_else(|| default_tz.to_string());
    let compiled = Compiled::new(When::Cron { expr: a.expr.clone(), tz: tz.clone() }).map_err(|e| anyhow!("{}", e.message))?;
    let after = match a.after.as_deref() {
        Some(s) => Timestamp::parse_rfc3339(s).map_err(|m| anyhow!("--after: {m}"))?,
        None => now(),
    };
    let times = compiled.upcoming(after, a.count.min(10_000));
    if json {
        let items: Vec<serde_json::Value> = times.iter().map(|t| serde_json::json!({"utc": t, "local": compiled.local(*t)})).collect();
        print_json(&serde_json::json!({"expr": a.expr, "tz": tz, "after": after, "next": items}));
    } else {
        for t in &times {
            println!("{}   {}", compiled.local(*t), t);
        }
        if times.is_empty() {
            println!("no fire times after {after}");
        }
    }
    Ok(())
}

/// One phrase for a schedule's health.
fn health_word(v: &ScheduleView) -> String {
    match (v.overdue, v.success_due_by) {
        (true, Some(d)) => format!("OVERDUE: no success since it was due by {d} ({})", relative(d, now())),
        (true, None) => "OVERDUE".into(),
        (false, Some(d)) => format!("ok (next success due by {d})"),
        (false, None) => "ok".into(),
    }
}
