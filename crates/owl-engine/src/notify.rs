//! Notifications: what happened becomes notices, rules route them into the outbox, and the
//! senders deliver them.
//!
//! Sources are read by cursor, never from the event broadcast (which only wakes the loop), so
//! a lagged channel or a crash loses nothing: finished tasks from the finish log, anomalies by
//! id, waiting approvals and missed schedule slots by their stable keys, and the daily report
//! when it is written. A notice is written once per (channel, key) before its cursor moves
//! on, so a replay after a crash, or a second node reading the same source, adds nothing.
//! Deliveries are claimed with a lease, sent at least once, retried on `[notify] retry` with
//! jitter, and end delivered or as a dead letter; a channel whose last `pause_after` attempts
//! failed, or whose endpoint answered 410, is paused.

use crate::{Engine, Shared};
use owl_core::notify::{Channel, Delivery, EventName, Notice, Target};
use owl_core::task::{Command, Origin, TaskState};
use owl_core::Timestamp;
use owl_notify::Outcome;
use owl_store::{AnomalyFilter, DeliveryDone, NewDelivery, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const FINISH_CURSOR: &str = "notify.finish_cursor";
const ANOMALY_CURSOR: &str = "notify.anomaly_cursor";
/// Schedule misses and approvals older than this (when notifications first ran) are history.
const SINCE_KEY: &str = "notify.since";
/// How often the loop looks even when nothing woke it (retries coming due).
const TICK: Duration = Duration::from_secs(1);
/// How often schedules and approvals are read.
const SLOW_EVERY: Duration = Duration::from_secs(10);
/// Sends in flight at once per node.
const PARALLEL: u32 = 8;

/// The secrets file's entries, for webhook signing secrets and the SMTP password. Its Debug
/// output names no value.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(pub Arc<BTreeMap<String, String>>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} entries)", self.0.len())
    }
}

impl Secrets {
    pub(crate) fn lookup(&self, env: Option<&str>, entry: Option<&str>) -> Result<String, String> {
        if let Some(var) = env.filter(|v| !v.is_empty()) {
            return std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the daemon's environment has no `{var}`; set it and restart the daemon"));
        }
        if let Some(name) = entry.filter(|v| !v.is_empty()) {
            return self
                .0
                .get(name)
                .cloned()
                .ok_or_else(|| format!("secrets.toml has no entry `{name}`; add it and reload (`owl reload`)"));
        }
        Err("no secret is configured".into())
    }
}

fn link(s: &Shared, id: i64) -> Option<String> {
    let l = s.config().reports.task_link;
    (!l.is_empty()).then(|| l.replace("{id}", &id.to_string()))
}

fn last_lines(path: &std::path::Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(4096))).is_err() || f.take(4096).read_to_end(&mut tail).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn short(s: &str, n: usize) -> String {
    let one = s.replace(['\n', '\r'], " ");
    if one.chars().count() <= n {
        one
    } else {
        format!("{}…", one.chars().take(n).collect::<String>())
    }
}

/// The notice for a finished task, if its end is one people are told about.
async fn task_notice(s: &Shared, task: &owl_core::Task) -> Option<Notice> {
    let id = task.id.0;
    let what = short(&task.spec.command.display(), 80);
    let (event, title, mut text) = match &task.state {
        TaskState::Succeeded { attempt, .. } => {
            let mut text = format!("Attempt {attempt} succeeded.");
            if let Ok(Some(r)) = s.store.task_result(task.id).await {
                text.push_str(&format!("\n\nResult:\n{}", short(&r, 600)));
            }
            (EventName::TaskSucceeded, format!("task {id} succeeded: {what}"), text)
        }
        TaskState::Failed { reason, exit_code, .. } => {
            let mut text = format!("Why: {reason}");
            if let Some(c) = exit_code.filter(|c| !reason.contains(&c.to_string())) {
                text.push_str(&format!(" (exit code {c})"));
            }
            text.push_str(&format!("\nAttempts: {} of {}", task.attempts, task.spec.max_attempts.max(1)));
            (EventName::TaskFailed, format!("task {id} failed: {what}"), text)
        }
        TaskState::TimedOut { attempt, .. } => {
            let limit = task.spec.timeout_ms.map(|ms| owl_core::duration::format(Duration::from_millis(ms))).unwrap_or_default();
            (EventName::TaskTimedOut, format!("task {id} timed out: {what}"), format!("Attempt {attempt} ran past its timeout {limit}."))
        }
        _ => return None,
    };
    if event != EventName::TaskSucceeded && task.attempts > 0 {
        let tail = last_lines(&s.layout.log_file(task.id, task.attempts), 5);
        if !tail.is_empty() {
            text.push_str(&format!("\n\nLast lines of the log:\n{tail}"));
        }
    }
    let (schedule, agent) = facts(task);
    Some(Notice {
        event,
        key: format!("{}:{id}:{}", event.as_str(), task.attempts),
        at: task.updated_at,
        title,
        text,
        command: Some(if event == EventName::TaskSucceeded { format!("owl show {id}") } else { format!("owl logs {id}") }),
        link: link(s, id),
        task_id: Some(id),
        labels: task.spec.labels.clone(),
        group: Some(task.spec.group.clone()),
        schedule,
        agent,
        attachment: None,
    })
}

fn facts(task: &owl_core::Task) -> (Option<String>, Option<String>) {
    let schedule = match &task.spec.origin {
        Some(Origin::Schedule { name, .. }) => Some(name.clone()),
        _ => None,
    };
    let agent = match &task.spec.command {
        Command::Agent { agent, .. } => Some(agent.clone()),
        Command::Cli { cli, .. } => Some(cli.clone()),
        _ => None,
    };
    (schedule, agent)
}

/// Turns notices into deliveries for every channel a matching rule names.
/// Routes one notice made outside the notification loop (a budget warning) by the rules.
pub(crate) async fn route_now(s: &Shared, notice: Notice) {
    let sent = async {
        let rules = s.store.list_rules().await?;
        route(s, vec![notice], &rules).await
    };
    match sent.await {
        Ok(()) => s.notify_changed.notify_one(),
        Err(e) => tracing::warn!(error = %e, "cannot route a notice"),
    }
}

async fn route(s: &Shared, notices: Vec<Notice>, rules: &[owl_core::notify::Rule]) -> Result<(), StoreError> {
    let now = s.clock.now();
    let mut out: Vec<NewDelivery> = Vec::new();
    let channels: Option<Vec<String>> = if notices.iter().any(|n| n.labels.iter().any(|l| l.starts_with("slack:"))) {
        Some(s.store.list_channels().await?.into_iter().map(|c| c.spec.name).collect())
    } else {
        None
    };
    for n in notices {
        let mut seen = std::collections::HashSet::new();
        // A task added from Slack reports back where it was asked.
        let task_end = matches!(n.event, EventName::TaskSucceeded | EventName::TaskFailed | EventName::TaskTimedOut);
        for conv in n.labels.iter().filter_map(|l| l.strip_prefix("slack:")).filter(|_| task_end) {
            let name = crate::slack::origin_channel(conv);
            if channels.as_ref().is_some_and(|c| c.contains(&name)) && seen.insert(name.clone()) {
                out.push(NewDelivery { channel: name, rule_id: None, notice: n.clone(), batch: None, not_before: now });
            }
        }
        for r in rules.iter().filter(|r| r.spec.matches(&n)) {
            for ch in &r.spec.to {
                if !seen.insert(ch.clone()) {
                    continue;
                }
                let (mut batch, mut not_before) = (None, now);
                if let Some(w) = r.spec.digest_ms {
                    let (start, end) = owl_core::notify::digest_window(now, w);
                    batch = Some(format!("digest:{}:{ch}:{}", r.id, start.0));
                    not_before = end;
                } else if let Some(max) = r.spec.max_per_hour {
                    let hour = Duration::from_secs(3600);
                    let pending = out.iter().filter(|d| d.rule_id == Some(r.id) && d.channel == *ch && d.batch.is_none()).count() as u64;
                    if s.store.deliveries_since(r.id, ch, now.minus(hour)).await? + pending >= u64::from(max) {
                        let (start, end) = owl_core::notify::digest_window(now, 3_600_000);
                        batch = Some(format!("rate:{}:{ch}:{}", r.id, start.0));
                        not_before = end;
                    }
                }
                out.push(NewDelivery { channel: ch.clone(), rule_id: Some(r.id), notice: n.clone(), batch, not_before });
            }
        }
    }
    if !out.is_empty() {
        let added = s.store.enqueue(out, now).await?;
        if added > 0 {
            s.metrics.notify_queued(added);
        }
    }
    Ok(())
}

async fn cursor(s: &Shared, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(s.store.kv_get(key).await?.and_then(|v| v.parse().ok()))
}

/// New finishes and anomalies since the cursors; when no rule exists the cursors still move,
/// so a rule made later is not flooded with the past.
async fn collect_fast(s: &Shared, rules: &[owl_core::notify::Rule]) -> Result<(), StoreError> {
    let mut finish = match cursor(s, FINISH_CURSOR).await? {
        Some(c) => c,
        None => s.store.last_finish_before(s.clock.now().plus(Duration::from_secs(1))).await?,
    };
    loop {
        let batch = s.store.finished_after(finish, 200).await?;
        let Some((last, _)) = batch.last() else { break };
        let last = *last;
        // Without rules only tasks added from Slack have somewhere to report to.
        let mut notices = Vec::new();
        for (_, t) in &batch {
            if rules.is_empty() && !t.spec.labels.iter().any(|l| l.starts_with("slack:")) {
                continue;
            }
            if let Some(n) = task_notice(s, t).await {
                notices.push(n);
            }
        }
        if !notices.is_empty() {
            route(s, notices, rules).await?;
        }
        finish = last;
        s.store.kv_set(FINISH_CURSOR, &finish.to_string()).await?;
        if batch.len() < 200 {
            break;
        }
    }
    if cursor(s, FINISH_CURSOR).await?.is_none() {
        s.store.kv_set(FINISH_CURSOR, &finish.to_string()).await?;
    }

    // Every second on an idle daemon: one row says whether anything is new.
    let head = s.store.anomalies(AnomalyFilter { limit: 1, ..Default::default() }).await?;
    let top = head.first().map(|a| a.id).unwrap_or(0);
    let Some(after) = cursor(s, ANOMALY_CURSOR).await? else {
        return s.store.kv_set(ANOMALY_CURSOR, &top.to_string()).await;
    };
    if top <= after {
        return Ok(());
    }
    let mut newest = s.store.anomalies(AnomalyFilter { limit: 200, ..Default::default() }).await?;
    // More than a page since the cursor: read back until it is reached.
    while newest.last().is_some_and(|a| a.id > after + 1) && newest.len() < 20_000 {
        let before = newest.last().map(|a| a.id);
        let page = s.store.anomalies(AnomalyFilter { limit: 200, before, ..Default::default() }).await?;
        if page.is_empty() {
            break;
        }
        newest.extend(page);
    }
    if top > after {
        if !rules.is_empty() {
            let mut notices = Vec::new();
            for a in newest.iter().rev().filter(|a| a.id > after) {
                let task = s.store.get(a.task_id).await.ok();
                let (schedule, agent) = task.as_ref().map(facts).unwrap_or_default();
                notices.push(Notice {
                    event: EventName::Anomaly,
                    key: format!("anomaly:{}", a.id),
                    at: a.at,
                    title: format!("anomaly in task {}: {}", a.task_id.0, short(&a.summary, 120)),
                    text: format!(
                        "{}\nScope: {} {}, metric {}, value {:.2} against a median of {:.2} over {} runs.",
                        a.summary,
                        a.finding.scope.as_str(),
                        a.finding.subject,
                        a.finding.metric.as_str(),
                        a.finding.value,
                        a.finding.median,
                        a.finding.samples
                    ),
                    command: Some(format!("owl anomalies --task {}", a.task_id.0)),
                    link: link(s, a.task_id.0),
                    task_id: Some(a.task_id.0),
                    labels: task.as_ref().map(|t| t.spec.labels.clone()).unwrap_or_default(),
                    group: task.as_ref().map(|t| t.spec.group.clone()),
                    schedule,
                    agent,
                    attachment: None,
                });
            }
            route(s, notices, rules).await?;
        }
        s.store.kv_set(ANOMALY_CURSOR, &top.to_string()).await?;
    }
    Ok(())
}

/// Waiting approvals and missed schedule slots since notifications started: both have stable
/// keys, so reading them again adds nothing.
async fn collect_slow(s: &Shared, rules: &[owl_core::notify::Rule]) -> Result<(), StoreError> {
    let now = s.clock.now();
    let since = match cursor(s, SINCE_KEY).await? {
        Some(t) => Timestamp(t),
        None => {
            s.store.kv_set(SINCE_KEY, &now.0.to_string()).await?;
            now
        }
    };
    let wants = |e: EventName| rules.iter().any(|r| r.spec.on.contains(&e));
    let mut notices = Vec::new();
    if wants(EventName::ApprovalWaiting) {
        for a in s.store.list_approvals(true, now).await? {
            if a.created_at < since {
                continue;
            }
            let task = match a.owner {
                owl_core::agent::Owner::Task(id) => s.store.get(id).await.ok(),
                owl_core::agent::Owner::Chat(_) => None,
            };
            let (schedule, agent) = task.as_ref().map(facts).unwrap_or((None, Some(a.agent.clone())));
            notices.push(Notice {
                event: EventName::ApprovalWaiting,
                key: format!("approval:{}", a.id),
                at: a.created_at,
                title: format!("approval {} waits: {} wants to run {}", a.id, a.agent, a.tool),
                text: format!(
                    "Why it asks: {}\nArguments: {}\nIt expires at {}.",
                    a.reason,
                    short(&a.arguments.to_string(), 400),
                    a.expires_at.to_rfc3339()
                ),
                command: Some(format!("owl approve {}   (or: owl deny {})", a.id, a.id)),
                link: task.as_ref().and_then(|t| link(s, t.id.0)),
                task_id: task.as_ref().map(|t| t.id.0),
                labels: task.as_ref().map(|t| t.spec.labels.clone()).unwrap_or_default(),
                group: task.as_ref().map(|t| t.spec.group.clone()),
                schedule,
                agent,
                attachment: None,
            });
        }
    }
    if wants(EventName::ScheduleMissed) || wants(EventName::ScheduleLate) {
        for sch in s.store.list_schedules().await? {
            let late_after = Duration::from_millis(sch.spec.max_lateness_ms);
            let rows = 50 + sch.spec.misfire_cap.max(s.config().schedules.misfire_cap);
            for f in s.store.schedule_history(&sch.spec.name, rows).await? {
                if f.fired_at < since {
                    continue;
                }
                let name = &sch.spec.name;
                let late = f.fired_at.since(f.scheduled_for);
                let (event, title, why) = match f.outcome.as_str() {
                    "missed" if wants(EventName::ScheduleMissed) => (
                        EventName::ScheduleMissed,
                        format!("schedule {name} missed its {} run", f.scheduled_for.to_rfc3339()),
                        f.reason.clone().unwrap_or_else(|| "the slot passed while owl could not run it".into()),
                    ),
                    "fired" if wants(EventName::ScheduleLate) && late > late_after => (
                        EventName::ScheduleLate,
                        format!("schedule {name} ran {} late", owl_core::duration::format(Duration::from_secs(late.as_secs()))),
                        format!(
                            "The {} slot started at {}, later than the schedule's max lateness ({}): the daemon was stopped or busy, and the misfire policy ran it late.",
                            f.scheduled_for.to_rfc3339(),
                            f.fired_at.to_rfc3339(),
                            owl_core::duration::format(late_after)
                        ),
                    ),
                    _ => continue,
                };
                notices.push(Notice {
                    event,
                    key: format!("{}:{name}:{}", event.as_str(), f.scheduled_for.0),
                    at: f.fired_at,
                    title,
                    text: format!("Why: {why}"),
                    command: Some(format!("owl schedule history {name}")),
                    link: None,
                    task_id: None,
                    labels: sch.spec.template.labels.clone(),
                    group: Some(sch.spec.template.group.clone()),
                    schedule: Some(name.clone()),
                    agent: None,
                    attachment: None,
                });
            }
        }
    }
    route(s, notices, rules).await
}

/// Called when the daily report for `day` is on disk: the morning notice, the PDF attached
/// when one was written.
pub(crate) async fn daily_report(s: &Shared, day: chrono::NaiveDate, files: &[std::path::PathBuf]) {
    if !s.config().notify.enabled {
        return;
    }
    let rules = match s.store.list_rules().await {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "cannot read notification rules for the daily report"),
    };
    if !rules.iter().any(|r| r.spec.on.contains(&EventName::DailyReport)) {
        return;
    }
    let md = files.iter().find(|p| p.extension().is_some_and(|e| e == "md"));
    let summary = md.and_then(|p| std::fs::read_to_string(p).ok()).map(|t| short_lines(&t, 40)).unwrap_or_default();
    let pdf = files.iter().find(|p| p.extension().is_some_and(|e| e == "pdf"));
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let notice = Notice {
        event: EventName::DailyReport,
        key: format!("daily_report:{day}"),
        at: s.clock.now(),
        title: format!("owl daily report for {day}"),
        text: format!("{summary}\n\nFiles: {}", names.join(", ")),
        command: Some(format!("owl report daily --date {day}")),
        link: None,
        task_id: None,
        labels: vec![],
        group: None,
        schedule: None,
        agent: None,
        attachment: pdf.map(|p| p.display().to_string()),
    };
    if let Err(e) = route(s, vec![notice], &rules).await {
        tracing::warn!(error = %e, "cannot queue the daily report notification");
    }
    s.notify_changed.notify_one();
}

fn short_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n")
}

/// Sends one claimed delivery (or digest) and records how it went.
async fn deliver(s: Arc<Shared>, group: Vec<Delivery>) {
    let Some(first) = group.first() else { return };
    let cfg = s.config();
    let attempt = first.attempts;
    let ids: Vec<i64> = group.iter().map(|d| d.id).collect();
    let notices: Vec<Notice> = group.iter().map(|d| d.notice.clone()).collect();
    let notice = owl_core::notify::digest(&notices);
    let channel = match s.store.get_channel(&first.channel).await {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, channel = %first.channel, "a delivery's channel cannot be read"),
    };
    let started = std::time::Instant::now();
    let outcome = send(&s, &channel, &notice, &first.message_id()).await;
    let now = s.clock.now();
    let kind = channel.spec.target.kind();
    s.metrics.notify_sent(kind, &outcome, started.elapsed());
    let test = notice.event == EventName::Test;
    let retry_at = match &outcome {
        // A test says how the channel answers now; it is not retried.
        Outcome::Retry(_) if test => None,
        Outcome::Retry(_) => owl_core::notify::retry_after(&cfg.notify.retry, attempt, fastrand::f64()).map(|d| now.plus(d)),
        // The channel pauses; the delivery waits for `owl notify resume`, not a dead letter.
        Outcome::Gone(_) => Some(now),
        _ => None,
    };
    let done = DeliveryDone { ids, attempt, ok: outcome.ok(), answer: outcome.answer().to_string(), retry_at, now };
    if let Err(e) = s.store.finish_delivery(done).await {
        tracing::warn!(error = %e, "cannot record a delivery's outcome; it will be sent again when its claim runs out");
    }
    let pause = match &outcome {
        Outcome::Gone(a) => {
            Some(format!("the endpoint answered {a}: it is gone; fix the URL, then `owl notify resume {}`", channel.spec.name))
        }
        Outcome::Sent(_) => None,
        _ if channel.failures + 1 >= cfg.notify.pause_after => Some(format!(
            "the last {} attempts failed (last: {}); `owl notify resume {}` once it is fixed",
            cfg.notify.pause_after,
            short(outcome.answer(), 200),
            channel.spec.name
        )),
        _ => None,
    };
    if pause.is_some() {
        tracing::warn!(channel = %channel.spec.name, reason = pause.as_deref().unwrap_or_default(), "notification channel paused");
    }
    match &outcome {
        Outcome::Sent(_) => tracing::debug!(channel = %channel.spec.name, attempt, "notification delivered"),
        o => {
            tracing::info!(channel = %channel.spec.name, attempt, answer = %o.answer(), retry = retry_at.is_some(), "notification not delivered")
        }
    }
    let error = (!outcome.ok()).then(|| outcome.answer().to_string());
    if test && !outcome.ok() && !matches!(outcome, Outcome::Gone(_)) {
        return;
    }
    if let Err(e) = s.store.channel_result(&channel.spec.name, outcome.ok(), error, pause, now).await {
        tracing::warn!(error = %e, "cannot record a channel's state");
    }
}

async fn send(s: &Shared, channel: &Channel, notice: &Notice, message_id: &str) -> Outcome {
    let cfg = s.config();
    let secrets = cfg.notify_secrets.clone();
    match &channel.spec.target {
        Target::Webhook { url, secret_env, secret, allow_private } => {
            let key = match secrets.lookup(secret_env.as_deref(), secret.as_deref()) {
                Ok(k) => k,
                Err(e) => return Outcome::Retry(format!("the signing secret: {e}")),
            };
            let body = owl_notify::message::payload(notice, message_id);
            let ts = s.clock.now().0.div_euclid(1000);
            owl_notify::webhook::send(url, &key, *allow_private, message_id, ts, &body, cfg.notify.timeout).await
        }
        Target::Slack { channel } => {
            let bot = match crate::slack::bot(s) {
                Ok(b) => b,
                Err(e) => return Outcome::Retry(e),
            };
            let key = notice.task_id.map(|t| crate::slack::thread_key(channel, t));
            let thread = match &key {
                Some(k) => s.store.kv_get(k).await.ok().flatten(),
                None => None,
            };
            let mut buttons: Vec<(String, String, String, Option<&str>)> = Vec::new();
            match notice.event {
                EventName::ApprovalWaiting => {
                    if let Some(id) = notice.key.strip_prefix("approval:") {
                        buttons.push(("Approve".into(), "owl_approve".into(), id.to_string(), Some("primary")));
                        buttons.push(("Deny".into(), "owl_deny".into(), id.to_string(), Some("danger")));
                    }
                }
                EventName::TaskFailed | EventName::TaskTimedOut => {
                    if let Some(t) = notice.task_id {
                        buttons.push(("Retry".into(), "owl_retry".into(), t.to_string(), None));
                    }
                }
                _ => {}
            }
            if let Some(l) = &notice.link {
                buttons.push(("Open".into(), "owl_open".into(), l.clone(), None));
            }
            let blocks = owl_notify::slack::blocks(&notice.title, &notice.text, notice.command.as_deref(), &buttons);
            match bot.post(channel, &notice.title, &blocks, thread.as_deref()).await {
                Ok(ts) => {
                    if let (Some(k), None) = (&key, &thread) {
                        let _ = s.store.kv_set(k, &ts).await;
                    }
                    Outcome::Sent(format!("posted {ts}{}", thread.map(|t| format!(" in thread {t}")).unwrap_or_default()))
                }
                Err(o) => o,
            }
        }
        Target::Email { to } => {
            let e = &cfg.email;
            let password = if e.username.is_empty() {
                None
            } else {
                match secrets.lookup(Some(&e.password_env), Some(&e.password_secret)) {
                    Ok(p) => Some(p),
                    Err(m) => return Outcome::Retry(format!("the SMTP password: {m}")),
                }
            };
            match owl_notify::email::Mailer::new(e, password, cfg.notify.timeout) {
                Ok(m) => m.send(to, notice, message_id).await,
                Err(m) => Outcome::Retry(m),
            }
        }
    }
}

/// One pass of sending: claims what is due, sends it in parallel, until nothing is due.
async fn deliver_due(s: &Arc<Shared>) -> Result<(), StoreError> {
    loop {
        let now = s.clock.now();
        let lease = s.config().notify.timeout * 2 + Duration::from_secs(10);
        let groups = s.store.claim_deliveries(now, now.plus(lease), PARALLEL).await?;
        let full = groups.len() as u32 >= PARALLEL;
        if groups.is_empty() {
            return Ok(());
        }
        let mut set = tokio::task::JoinSet::new();
        for g in groups {
            set.spawn(deliver(s.clone(), g));
        }
        while set.join_next().await.is_some() {}
        if !full {
            return Ok(());
        }
    }
}

/// Makes the channels `[notify.channels]` declares, or brings them up to date.
async fn sync_config_channels(s: &Shared) {
    for (name, target) in s.config().notify.channels {
        let spec = owl_core::notify::ChannelSpec { name: name.clone(), target };
        let done = match s.store.get_channel(&name).await {
            Ok(c) if c.spec == spec => continue,
            Ok(_) => s.store.update_channel(spec).await.map(|_| "updated"),
            Err(StoreError::Missing(_)) => s.store.create_channel(spec, s.clock.now()).await.map(|_| "made"),
            Err(e) => Err(e),
        };
        match done {
            Ok(what) => tracing::info!(channel = %name, "notification channel from the config {what}"),
            Err(e) => tracing::warn!(channel = %name, error = %e, "cannot apply a notification channel from the config"),
        }
    }
    s.refresh_withheld_env().await;
}

pub(crate) async fn notify_loop(s: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut events = s.events.subscribe();
    sync_config_channels(&s).await;
    let mut last_slow: Option<std::time::Instant> = None;
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        if s.config().notify.enabled {
            s.loops.busy("notify");
            let pass = async {
                let rules = s.store.list_rules().await?;
                collect_fast(&s, &rules).await?;
                if last_slow.is_none_or(|t| t.elapsed() >= SLOW_EVERY) {
                    collect_slow(&s, &rules).await?;
                    last_slow = Some(std::time::Instant::now());
                }
                deliver_due(&s).await?;
                // Finished deliveries are history: kept as long as the schedule history.
                if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    let before = s.clock.now().minus(s.config().schedules.history_retention);
                    let n = s.store.prune_deliveries(before).await?;
                    if n > 0 {
                        tracing::info!(deliveries = n, "pruned finished deliveries past [scheduler] history_retention");
                    }
                    last_prune = Some(std::time::Instant::now());
                }
                Ok::<(), StoreError>(())
            };
            if let Err(e) = pass.await {
                tracing::warn!(error = %e, "notification pass failed; trying again shortly");
            }
            s.loops.idle("notify");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = s.notify_changed.notified() => {}
            ev = events.recv() => {
                if let Ok(ev) = ev {
                    match ev.kind {
                        owl_core::EventKind::ApprovalRequested { .. } => last_slow = None,
                        owl_core::EventKind::ConfigReloaded => sync_config_channels(&s).await,
                        _ => {}
                    }
                }
            }
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

impl Engine {
    /// Sends a test notice to one channel, whatever the rules say; returns its delivery.
    pub async fn notify_test(&self, channel: &str) -> Result<Delivery, StoreError> {
        let s = &self.shared;
        let ch = s.store.get_channel(channel).await?;
        let now = s.clock.now();
        let key = format!("test:{}:{}", now.0, fastrand::u32(..));
        let notice = Notice {
            event: EventName::Test,
            key: key.clone(),
            at: now,
            title: format!("owl test notification for channel {}", ch.spec.name),
            text: format!("If you read this, the channel `{}` ({}) works.", ch.spec.name, ch.spec.target.describe()),
            command: Some(format!("owl notify log --channel {}", ch.spec.name)),
            link: None,
            task_id: None,
            labels: vec![],
            group: None,
            schedule: None,
            agent: None,
            attachment: None,
        };
        s.store
            .enqueue(vec![NewDelivery { channel: ch.spec.name.clone(), rule_id: None, notice, batch: None, not_before: now }], now)
            .await?;
        s.notify_changed.notify_one();
        let list = s.store.deliveries(owl_store::DeliveryFilter { channel: Some(ch.spec.name), limit: 20, ..Default::default() }).await?;
        list.into_iter()
            .find(|d| d.notice.key == key)
            .ok_or_else(|| StoreError::Backend("the test delivery just written is missing".into()))
    }

    /// Wakes the notification loop (a channel resumed, a rule added).
    pub fn notify_wake(&self) {
        self.shared.notify_changed.notify_one();
    }
}

impl Engine {
    pub async fn create_channel(&self, spec: owl_core::notify::ChannelSpec) -> Result<Channel, StoreError> {
        let c = self.shared.store.create_channel(spec, self.now()).await?;
        // A webhook's secret variable is withheld from tasks from now on.
        self.shared.refresh_withheld_env().await;
        Ok(c)
    }

    pub async fn delete_channel(&self, name: &str) -> Result<(), StoreError> {
        self.shared.store.delete_channel(name).await?;
        self.shared.refresh_withheld_env().await;
        Ok(())
    }

    pub async fn resume_channel(&self, name: &str) -> Result<Channel, StoreError> {
        let c = self.shared.store.resume_channel(name, self.now()).await?;
        self.notify_wake();
        Ok(c)
    }
}
