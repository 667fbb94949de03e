//! `owl ls`, `owl show`, `owl cancel`, `owl retry`, `owl status`.

use crate::cli::LsArgs;
use crate::client::Client;
use crate::output::{now, print_json, relative, table, truncate};
use anyhow::Result;
use owl_api::{CancelRequest, StatusView, TaskList, TaskView};
use owl_core::{TaskId, TaskState, WaitReason};

pub fn parse_ids(ids: &[String]) -> Result<Vec<TaskId>> {
    ids.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()).map(|s| s.parse().map_err(|m: String| anyhow::anyhow!(m))).collect()
}

/// One short phrase about where the task is.
pub fn detail(t: &TaskView) -> String {
    let n = now();
    match &t.state {
        TaskState::Queued => "ready".into(),
        TaskState::Waiting { reason: WaitReason::Time { until } } => format!("starts {}", relative(*until, n)),
        TaskState::Waiting { reason: WaitReason::Retry { until, failed_attempts } } => {
            format!("retry {} after {failed_attempts} failure(s)", relative(*until, n))
        }
        TaskState::Waiting { reason: WaitReason::Dependencies { pending } } => {
            format!("after {}", pending.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))
        }
        TaskState::Waiting { reason: WaitReason::Budget { until, scope, .. } } if scope == "ledger" => {
            format!("the budget ledger could not be written; asks again {}", relative(*until, n))
        }
        TaskState::Waiting { reason: WaitReason::Budget { until, scope, .. } } if *until >= owl_core::budget::NO_RESET => {
            format!("over budget {scope}; waits until the limit is raised")
        }
        TaskState::Waiting { reason: WaitReason::Budget { until, scope, .. } } => {
            format!("over budget {scope}; resumes {}", relative(*until, n))
        }
        TaskState::Running { attempt, started_at, cancel_requested, .. } => {
            format!("attempt {attempt}, started {}{}", relative(*started_at, n), if *cancel_requested { ", cancelling" } else { "" })
        }
        TaskState::Succeeded { finished_at, .. } => relative(*finished_at, n),
        TaskState::Failed { reason, .. } => reason.clone(),
        TaskState::TimedOut { attempt, .. } => format!("attempt {attempt} timed out"),
        TaskState::Cancelled { reason, .. } => reason.clone().unwrap_or_default(),
    }
}

pub async fn ls(client: &Client, args: LsArgs, json: bool) -> Result<()> {
    let mut q = vec![format!("limit={}", args.limit)];
    if let Some(s) = args.status {
        // The API takes the exact names; a person may write `Failed` or `timed-out`.
        let names = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.parse::<owl_core::task::Status>().map(|st| st.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| anyhow::anyhow!("--status: {m}"))?;
        q.push(format!("status={}", names.join(",")));
    }
    if let Some(g) = args.group {
        q.push(format!("group={}", enc(&g)));
    }
    if let Some(l) = args.label {
        q.push(format!("label={}", enc(&l)));
    }
    let list: TaskList = client.get(&format!("/v1/tasks?{}", q.join("&"))).await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    if list.tasks.is_empty() {
        println!("no tasks");
        return Ok(());
    }
    let rows = list
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.status.to_string(),
                t.group.clone(),
                t.priority.to_string(),
                truncate(&t.display, 48),
                truncate(&detail(t), 60),
            ]
        })
        .collect();
    table(&["ID", "STATUS", "GROUP", "PRI", "COMMAND", "DETAIL"], rows);
    Ok(())
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.,~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A team run's tasks as a tree, each with what it waited for.
fn print_children(children: &[owl_api::ChildView], indent: &str) {
    for (i, c) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let after = if c.depends_on.is_empty() {
            String::new()
        } else {
            format!("  after {}", c.depends_on.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
        };
        println!("{indent}{} {} {}  {}{after}", if last { "└─" } else { "├─" }, c.id, c.status, truncate(&c.display, 70));
        print_children(&c.children, &format!("{indent}{}", if last { "   " } else { "│  " }));
    }
}

pub async fn show(client: &Client, id: &str, json: bool) -> Result<()> {
    let id: TaskId = id.parse().map_err(|m: String| anyhow::anyhow!(m))?;
    let t: TaskView = client.get(&format!("/v1/tasks/{id}")).await?;
    if json {
        print_json(&t);
        return Ok(());
    }
    let n = now();
    println!("task {}  {}  ({})", t.id, t.status, detail(&t));
    if let TaskState::Waiting { reason: WaitReason::Budget { reason, .. } } = &t.state {
        println!("  budget     {reason}");
    }
    println!("  command    {}", t.display);
    println!("  group      {}   priority {}", t.group, t.priority);
    if let Some(o) = &t.origin {
        println!("  made by    {}", o.describe());
    }
    if let owl_core::Command::Agent { route: Some(r), team, .. } = &t.command {
        println!("  routed     {}", r.decision);
        for c in &r.candidates {
            let load = match c.max_concurrent {
                Some(m) => format!("{}/{m} running", c.running),
                None => format!("{} running", c.running),
            };
            let price = c.price_per_mtok.as_deref().map(|p| format!(", ${p}/Mtok")).unwrap_or_default();
            println!("             {:<16} {} ({load}{price})", c.agent, c.verdict);
        }
        if *team {
            println!("  team run   yes");
        }
    } else if let owl_core::Command::Agent { team: true, .. } = &t.command {
        println!("  team run   yes");
    }
    if let Some(name) = t.command.template() {
        println!("  template   {name}");
    }
    if !t.children.is_empty() {
        println!("  delegated");
        print_children(&t.children, "             ");
    }
    if !t.labels.is_empty() {
        println!("  labels     {}", t.labels.join(", "));
    }
    if !t.depends_on.is_empty() {
        println!("  after      {}", t.depends_on.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
    }
    if let Some(at) = t.run_at {
        println!("  run at     {at} ({})", relative(at, n));
    }
    if let Some(ms) = t.timeout_ms {
        println!("  timeout    {}", owl_core::duration::format(std::time::Duration::from_millis(ms)));
    }
    println!(
        "  attempts   {} started, {} failed, {} allowed{}",
        t.attempts,
        t.failures,
        t.max_attempts,
        if t.interruptions > 0 { format!(", {} interrupted by a crash", t.interruptions) } else { String::new() }
    );
    if let Some(k) = &t.idempotency_key {
        println!("  key        {k}");
    }
    if let Some(c) = &t.cwd {
        println!("  cwd        {c}");
    }
    for (k, v) in &t.env {
        println!("  env        {k}={v}");
    }
    if let Some(r) = &t.result {
        println!("  result     {}", r.replace('\n', "\n             "));
    }
    if let Some(r) = &t.repo {
        println!("  repo       {}{}", r.path, r.base.as_ref().map(|b| format!(" (from {b})")).unwrap_or_default());
    }
    if let Some(g) = &t.git {
        println!("  branch     {} (from {})", g.branch, &g.base[..g.base.len().min(12)]);
        match &g.commit {
            Some(c) => println!("  commit     {c}"),
            None if t.status == owl_core::task::Status::Succeeded => println!("  commit     none: nothing changed"),
            None => {}
        }
        if !g.files_changed.is_empty() {
            println!("  changed    {} files: {}", g.files_changed.len(), g.files_changed.join(", "));
        }
        if let Some(p) = &g.pushed {
            println!("  pushed     to {p}");
        }
        if g.removed {
            println!("  worktree   removed (retention); the branch remains");
        } else {
            println!("  worktree   {}", g.worktree);
        }
    }
    if let Some(u) = &t.usage {
        let cost = if u.cost_usd > 0.0 { format!(", ${:.4}", u.cost_usd) } else { String::new() };
        println!("  tokens     {} in ({} cached), {} out over {} calls{cost}", u.input_tokens, u.cached_tokens, u.output_tokens, u.calls);
    }
    println!("  created    {} ({})", t.created_at, relative(t.created_at, n));
    let runs = t.runs.clone().unwrap_or_default();
    if !runs.is_empty() {
        println!("runs:");
        for r in runs {
            let how = match (&r.outcome, r.exit_code, r.signal) {
                (None, ..) => "running".to_string(),
                (Some(o), Some(c), _) => format!("{} (exit {c})", o.name()),
                (Some(o), None, Some(s)) => format!("{} (signal {s})", o.name()),
                (Some(o), None, None) => o.name().to_string(),
            };
            let dur = r
                .duration_ms
                .map(|d| format!(" in {}", owl_core::duration::format(std::time::Duration::from_millis(d))))
                .unwrap_or_default();
            println!("  #{} on {} started {}{dur}: {how}", r.attempt, r.node, r.started_at);
        }
    }
    Ok(())
}

pub async fn cancel(client: &Client, ids: &[String], reason: Option<String>, json: bool) -> Result<()> {
    let mut out = vec![];
    for id in parse_ids(ids)? {
        let t: TaskView = client.post(&format!("/v1/tasks/{id}/cancel"), &CancelRequest { reason: reason.clone() }).await?;
        if !json {
            match &t.state {
                TaskState::Running { .. } => println!("task {id}: stopping (cancel requested)"),
                _ => println!("task {id}: {}", t.status),
            }
        }
        out.push(t);
    }
    if json {
        print_json(&out);
    }
    Ok(())
}

pub async fn retry(client: &Client, ids: &[String], json: bool) -> Result<()> {
    let mut out = vec![];
    for id in parse_ids(ids)? {
        let t: TaskView = client.post(&format!("/v1/tasks/{id}/retry"), &serde_json::json!({})).await?;
        if !json {
            println!("task {id}: {}", t.status);
        }
        out.push(t);
    }
    if json {
        print_json(&out);
    }
    Ok(())
}

pub async fn status(client: &Client, json: bool) -> Result<()> {
    let s: StatusView = client.get("/v1/status").await?;
    if json {
        print_json(&s);
        return Ok(());
    }
    println!("owl {} running (pid {}) on {} as node {}", s.version, s.pid, s.listen, s.node);
    println!("  data dir   {}", s.data_dir);
    println!("  up         {}", owl_core::duration::format(std::time::Duration::from_millis(s.uptime_ms)));
    println!("  workers    {} running of {}{}", s.running, s.workers, if s.shutting_down { " (shutting down)" } else { "" });
    let counts: Vec<String> = s.tasks.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  tasks      {}", if counts.is_empty() { "none".into() } else { counts.join(", ") });
    let facts: Vec<String> = s.store.facts.iter().map(|(k, v)| format!("{} {v}", k.replace('_', " "))).collect();
    println!("  store      {} {} (schema {}): {}", s.store.backend, s.store.location, s.store.schema_version, facts.join(", "));
    Ok(())
}

pub async fn nodes(client: &Client, json: bool) -> Result<()> {
    let list: owl_api::NodeList = client.get("/v1/nodes").await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    let rows = list
        .nodes
        .iter()
        .map(|n| {
            let name = if n.node == list.this { format!("{} (this)", n.node) } else { n.node.clone() };
            vec![
                name,
                n.status.clone(),
                format!("{} ago", owl_core::duration::format(std::time::Duration::from_millis(n.seen_ms_ago / 1000 * 1000))),
                format!("{}/{}", n.running, n.workers),
                n.version.clone(),
                n.pid.to_string(),
            ]
        })
        .collect();
    table(&["NODE", "STATUS", "LAST SEEN", "RUNNING", "VERSION", "PID"], rows);
    Ok(())
}

/// `owl health`: liveness, then readiness; exit code 1 when any check fails.
pub async fn health(client: &Client, json: bool) -> Result<i32> {
    let (_, live): (_, owl_api::HealthView) = client.get_any("/v1/health/live").await?;
    let (_, ready): (_, owl_api::HealthView) = client.get_any("/v1/health/ready").await?;
    let ok = live.status == "ok" && ready.status == "ok";
    if json {
        print_json(&serde_json::json!({"status": if ok { "ok" } else { "fail" }, "live": live, "ready": ready}));
    } else {
        let mut rows = vec![];
        for (probe, view) in [("live", &live), ("ready", &ready)] {
            for c in &view.checks {
                rows.push(vec![probe.to_string(), c.name.clone(), if c.ok { "ok".into() } else { "FAIL".into() }, c.reason.clone()]);
            }
        }
        table(&["PROBE", "CHECK", "STATUS", "REASON"], rows);
        println!("{}", if ok { "healthy" } else { "unhealthy: see the failing checks above" });
    }
    Ok(if ok { 0 } else { 1 })
}
