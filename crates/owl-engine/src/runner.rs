//! Running one claimed task: workspace, process, completion, events.

use crate::{EngineConfig, Shared};
use owl_core::{EventKind, RunOutcome, TaskId};
use owl_exec::{Ended, ProcessSpec, Stop};
use owl_store::{ClaimedTask, Completion, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Runs one claimed attempt to its recorded end. The dispatch loop owns the returned future
/// in a `JoinSet`; if it panics, [`after_panic`] records the end instead.
pub(crate) async fn run_task(s: Arc<Shared>, task: ClaimedTask, cfg: EngineConfig, stop: watch::Receiver<Option<Stop>>) {
    let id = task.id;
    let attempt = task.attempt;
    // Register the live log before announcing the start, so a follower woken by the start
    // event always finds it.
    let (progress_tx, progress_rx) = watch::channel(0u64);
    s.logs.lock().unwrap_or_else(|p| p.into_inner()).insert((id, attempt), progress_rx);
    s.publish(EventKind::TaskStarted { task_id: id, attempt, node: cfg.node.clone() });
    let used_before = crate::anomalies::used(&s, &task).await;
    // Reservations an earlier attempt left open (the daemon died mid-call) count at their
    // estimate: whether those calls were billed is not known.
    settle_open(&s, id).await;
    let started = std::time::Instant::now();
    s.metrics.started(&task.spec, s.clock.now().since(task.queued_since));
    // The engine's own tests inject a runner panic through a label.
    #[cfg(test)]
    if task.spec.labels.iter().any(|l| l == "owl-test:panic") {
        panic!("injected runner panic");
    }
    #[cfg(test)]
    if task.spec.labels.iter().any(|l| l == "owl-test:panic-twice") {
        panic!("injected runner panic, and one in its cleanup");
    }
    let workspace = s.layout.workspace(id);
    // A local mkdir takes microseconds; a blocking-pool hop would cost more.
    let made = std::fs::create_dir_all(&workspace);
    // A repository task works in its own worktree, made (or repaired) first.
    let mut git_rec = None;
    let prepared = match (&made, &task.spec.repo) {
        (Err(e), _) => Err(format!("cannot create the workspace {}: {e}", workspace.display())),
        (Ok(()), Some(repo)) => match prepare_worktree(&s, &task, repo).await {
            Ok(rec) => {
                git_rec = Some(rec);
                Ok(())
            }
            Err(e) => Err(e),
        },
        (Ok(()), None) => Ok(()),
    };
    let workdir = match (&git_rec, &task.spec.cwd) {
        (Some(rec), _) => std::path::PathBuf::from(&rec.worktree),
        (None, Some(c)) => std::path::PathBuf::from(c),
        (None, None) => workspace.clone(),
    };
    // A coding-CLI agent's task runs as that CLI.
    let command = crate::team::effective_command(&s, &task.spec.command);
    if let owl_core::Command::Agent { agent, .. } = &task.spec.command {
        crate::team::mark_active(&s, agent).await;
    }
    // The workspace is set up from the task's template before any model call.
    let prepared = match (prepared, command.template()) {
        (Ok(()), Some(name)) => match crate::templates::apply(&s, &task, &cfg, name, &workspace, &workdir, &stop).await {
            Ok(notes) => {
                notes.iter().for_each(|n| append_log_note(&s, id, attempt, n));
                Ok(())
            }
            Err(e) => Err(e),
        },
        (p, _) => p,
    };
    let stopped = stop.borrow().clone();
    let (mut run_outcome, exit_code, signal) = match prepared {
        Err(msg) if stopped.is_some() => {
            append_log_note(&s, id, attempt, &msg);
            match stopped {
                Some(Stop::Cancel(reason)) => (RunOutcome::Cancelled { reason }, None, None),
                _ => (RunOutcome::Interrupted { reason: msg }, None, None),
            }
        }
        Err(msg) => {
            append_log_note(&s, id, attempt, &msg);
            (RunOutcome::Failed { exit_code: None, signal: None, error: Some(msg) }, None, None)
        }
        Ok(()) if matches!(command, owl_core::Command::Agent { .. }) => {
            (crate::agents::run_agent_task(&s, &task, stop, progress_tx, workdir.clone()).await, None, None)
        }
        Ok(()) => run_process(&s, &task, &command, &cfg, &workspace, &workdir, stop, progress_tx).await,
    };
    if let Some(rec) = git_rec {
        run_outcome = finish_worktree(&s, &task, &cfg, rec, run_outcome).await;
    }
    s.logs.lock().unwrap_or_else(|p| p.into_inner()).remove(&(id, attempt));
    let ran = started.elapsed();
    s.metrics.run_ended(&task.spec, &run_outcome, ran);
    let outcome = run_outcome.clone();
    settle_open(&s, id).await;
    finish(&s, id, attempt, run_outcome, exit_code, signal, &cfg).await;
    crate::anomalies::after_run(&s, &task, &outcome, ran, used_before).await;
}

/// Ends an attempt whose runner panicked: stops whatever it had started (found by the same
/// environment markers crash recovery uses), says so in its log and records it as failed, so
/// the task is never left `running` and its retries apply as after any failure.
pub(crate) async fn after_panic(s: Arc<Shared>, id: TaskId, attempt: u32, why: String, cfg: EngineConfig) {
    tracing::error!(task = %id, attempt, panic = %why, "the runner of this attempt panicked; recording it as failed (this is a bug in owl)");
    #[cfg(test)]
    if why.contains("and one in its cleanup") {
        panic!("injected cleanup panic");
    }
    s.logs.lock().unwrap_or_else(|p| p.into_inner()).remove(&(id, attempt));
    let markers = [
        format!("OWL_DATA_DIR={}", s.layout.root().display()).into_bytes(),
        format!("OWL_TASK_ID={id}").into_bytes(),
        format!("OWL_ATTEMPT={attempt}").into_bytes(),
    ];
    let killed = tokio::task::spawn_blocking(move || owl_exec::kill_orphans(|vars| markers.iter().all(|m| vars.contains(&m.as_slice()))))
        .await
        .unwrap_or(0);
    if killed > 0 {
        tracing::warn!(task = %id, attempt, groups = killed, "stopped the processes of the panicked attempt");
    }
    let reason = format!("owl's runner for this attempt panicked ({why}); this is a bug in owl, and the daemon's log has the backtrace");
    append_log_note(&s, id, attempt, &reason);
    let outcome = RunOutcome::Failed { exit_code: None, signal: None, error: Some(reason) };
    settle_open(&s, id).await;
    finish(&s, id, attempt, outcome, None, None, &cfg).await;
}

/// Settles the budget reservations `id` still holds at their estimates.
async fn settle_open(s: &Shared, id: TaskId) {
    match s.store.settle_open(id, s.clock.now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(task = %id, entries = n, "settled budget reservations left open at their estimate"),
        Err(e) => tracing::warn!(task = %id, error = %e, "cannot settle the task's open budget reservations"),
    }
}

/// Adds owl's own line to an attempt's log.
fn append_log_note(s: &Shared, id: TaskId, attempt: u32, note: &str) {
    use std::io::Write;
    let path = s.layout.log_file(id, attempt);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(f, "[owl] {note}");
    }
}

/// Makes the task's worktree and records it before anything runs in it.
async fn prepare_worktree(
    s: &Arc<Shared>,
    task: &ClaimedTask,
    repo: &owl_core::RepoRequest,
) -> Result<owl_core::coding::GitRecord, String> {
    let previous = s.store.task_git(task.id).await.map_err(|e| e.to_string())?;
    let worktree = s.layout.worktree(task.id);
    let (path, base, id) = (std::path::PathBuf::from(&repo.path), repo.base.clone(), task.id);
    let prev = previous.clone();
    let rec = tokio::task::spawn_blocking(move || crate::git::prepare(&path, base.as_deref(), id, &worktree, prev.as_ref()))
        .await
        .map_err(|e| format!("preparing the worktree panicked: {e}"))??;
    s.store.set_task_git(task.id, rec.clone()).await.map_err(|e| e.to_string())?;
    append_log_note(s, task.id, task.attempt, &format!("worktree {} on branch {} from {}", rec.worktree, rec.branch, short(&rec.base)));
    Ok(rec)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// After the task: on success, commit (and push); the record keeps what happened.
async fn finish_worktree(
    s: &Arc<Shared>,
    task: &ClaimedTask,
    cfg: &EngineConfig,
    mut rec: owl_core::coding::GitRecord,
    outcome: RunOutcome,
) -> RunOutcome {
    if !matches!(outcome, RunOutcome::Succeeded) {
        return outcome;
    }
    let what = match &task.spec.command {
        owl_core::Command::Agent { prompt, .. } | owl_core::Command::Cli { prompt, .. } => prompt.clone(),
        other => other.display(),
    };
    let what_git = what.clone();
    let push_to = task.spec.repo.as_ref().and_then(|r| r.push.clone());
    let (id, timeout) = (task.id, cfg.git.push_timeout);
    let mut rec2 = rec.clone();
    // The record comes back with whatever was done, and the error that stopped it, if any.
    let result = tokio::task::spawn_blocking(move || -> (owl_core::coding::GitRecord, Option<String>) {
        match crate::git::commit(&rec2, &crate::git::message(id, &what_git)) {
            Ok(Some((sha, files))) => {
                rec2.commit = Some(sha);
                rec2.files_changed = files;
            }
            Ok(None) => {}
            Err(e) => return (rec2, Some(e)),
        }
        if let Some(remote) = push_to {
            if let Err(e) = crate::git::push(&rec2, &remote, timeout) {
                return (rec2, Some(e));
            }
            rec2.pushed = Some(remote);
        }
        (rec2, None)
    })
    .await;
    let (mut out, note) = match result {
        Ok((r, None)) => {
            let note = match &r.commit {
                Some(c) => format!("committed {} on {} ({} files changed)", short(c), r.branch, r.files_changed.len()),
                None => format!("no changes to commit on {}", r.branch),
            };
            rec = r;
            (RunOutcome::Succeeded, note)
        }
        Ok((r, Some(e))) => {
            rec = r;
            (RunOutcome::Failed { exit_code: None, signal: None, error: Some(e.clone()) }, e)
        }
        Err(e) => (RunOutcome::Failed { exit_code: None, signal: None, error: Some(format!("git panicked: {e}")) }, "git panicked".into()),
    };
    append_log_note(s, task.id, task.attempt, &note);
    if let Some(remote) = &rec.pushed {
        append_log_note(s, task.id, task.attempt, &format!("pushed {} to {remote}", rec.branch));
    }
    // The pull request and the issue comment, once the branch is pushed.
    if let (RunOutcome::Succeeded, Some(repo)) = (&out, task.spec.repo.as_ref()) {
        if (repo.pr && rec.pushed.is_some()) || repo.issue.is_some() {
            match crate::github::after_push(s, task.id, repo, &what, &mut rec).await {
                Ok(notes) => notes.iter().for_each(|n| append_log_note(s, task.id, task.attempt, n)),
                Err(e) => {
                    append_log_note(s, task.id, task.attempt, &e);
                    out = RunOutcome::Failed { exit_code: None, signal: None, error: Some(e) };
                }
            }
        }
    }
    if let Err(e) = s.store.set_task_git(task.id, rec).await {
        tracing::error!(task = %task.id, error = %e, "cannot record the task's git result");
    }
    out
}

/// Serves owl's MCP server to this task on `<workspace>/.owl/mcp.sock` and tells the CLI to
/// start `owl mcp serve --socket` as an MCP server. Inside the sandbox the CLI has no network,
/// but a socket in its own workspace is reachable; the server behind it is scoped to the task.
fn give_owl_mcp(
    s: &Arc<Shared>,
    id: TaskId,
    workspace: &std::path::Path,
    format: owl_core::coding::CliFormat,
    argv: &mut Vec<String>,
) -> Result<Box<dyn std::any::Any + Send>, String> {
    use owl_core::coding::CliFormat;
    let Some(m) = s.task_mcp.read().unwrap_or_else(|p| p.into_inner()).clone() else {
        return Err("owl_mcp: this daemon does not serve MCP to coding CLIs".into());
    };
    let dir = workspace.join(".owl");
    std::fs::create_dir_all(&dir).map_err(|e| format!("owl_mcp: cannot create {}: {e}", dir.display()))?;
    let socket = dir.join("mcp.sock");
    // The kernel caps a socket path at 108 bytes.
    if socket.as_os_str().len() > 100 {
        return Err(format!("owl_mcp: the socket path {} is too long for a Unix socket; use a shorter data dir", socket.display()));
    }
    let _ = std::fs::remove_file(&socket);
    let exe = m.exe().display().to_string();
    let sock = socket.display().to_string();
    match format {
        CliFormat::ClaudeStreamJson => {
            let config =
                serde_json::json!({"mcpServers": {"owl": {"type": "stdio", "command": exe, "args": ["mcp", "serve", "--socket", sock]}}});
            argv.extend(["--mcp-config".to_string(), config.to_string(), "--allowedTools".to_string(), "mcp__owl".to_string()]);
        }
        CliFormat::CodexJson => {
            // `-c` goes right after the subcommand, before the prompt.
            let at = argv.iter().position(|a| a == "exec").map(|i| i + 1).unwrap_or(1).min(argv.len());
            let args = serde_json::json!(["mcp", "serve", "--socket", sock]).to_string();
            let extra = [
                "-c".to_string(),
                format!("mcp_servers.owl.command={}", serde_json::Value::String(exe)),
                "-c".to_string(),
                format!("mcp_servers.owl.args={args}"),
            ];
            argv.splice(at..at, extra);
        }
        _ => return Err("owl_mcp is supported for Claude Code and Codex (their profiles' stream formats)".into()),
    }
    m.open(id, &socket)
}

/// What runs as a process: a plain command, or a coding CLI given the prompt.
#[allow(clippy::too_many_arguments)]
async fn run_process(
    s: &Arc<Shared>,
    task: &ClaimedTask,
    command: &owl_core::Command,
    cfg: &EngineConfig,
    workspace: &std::path::Path,
    workdir: &std::path::Path,
    stop: watch::Receiver<Option<Stop>>,
    progress_tx: watch::Sender<u64>,
) -> (RunOutcome, Option<i32>, Option<i32>) {
    let (id, attempt) = (task.id, task.attempt);
    let mut env: Vec<(String, String)> = task.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // Input files (a webhook payload, say) go into the workspace before the start.
    for input in &task.spec.inputs {
        let path = workspace.join(&input.file);
        if let Err(e) = std::fs::write(&path, &input.content) {
            tracing::error!(task = %id, file = %path.display(), error = %e, "cannot write an input file");
        }
        env.push((input.env.clone(), path.display().to_string()));
    }
    env.push(("OWL_TASK_ID".into(), id.to_string()));
    env.push(("OWL_ATTEMPT".into(), attempt.to_string()));
    env.push(("OWL_WORKSPACE".into(), workdir.display().to_string()));
    // Marks the process as this data dir's (crash recovery finds orphans by it) and lets a
    // task call `owl` against its own daemon.
    env.push(("OWL_DATA_DIR".into(), s.layout.root().display().to_string()));
    let mut req = task.spec.sandbox.clone().unwrap_or_default();
    // A coding-CLI agent's own sandbox grants apply to its runs, like a model agent's to its
    // shell calls; its `sandbox = false` opts out as the task's --no-sandbox would.
    if let owl_core::Command::Agent { agent, .. } = &task.spec.command {
        if let Some(a) = s.agents().and_then(|rt| rt.agent(agent).cloned()).filter(|a| a.cli.is_some()) {
            req.allow_net |= a.allow_net;
            req.allow_hosts.extend(a.allow_hosts.iter().cloned());
            req.grant_env.extend(a.grant_env.iter().cloned());
            if !a.sandbox && req.enabled.is_none() {
                req.enabled = Some(false);
            }
        }
    }
    let mut sandboxed = crate::sandboxing::wanted(&task.spec, &cfg.sandbox);
    let mut extra_writable: Vec<std::path::PathBuf> = req.writable.iter().map(std::path::PathBuf::from).collect();
    let mut allow_hosts = req.allow_hosts.clone();
    let mut grant_env = req.grant_env.clone();
    let mut limits = cfg.sandbox.limits.clone();
    let mut parser = None;
    let mut cli_name = String::new();
    // Held while the process runs: owl's MCP server for this task, when it asked for one.
    let mut _mcp_guard = None;
    let mut argv = match command {
        owl_core::Command::Cli { cli, prompt, owl_mcp, .. } => {
            let profile = match owl_core::coding::resolve(cli, &cfg.cli) {
                Ok(p) => p,
                Err(e) => {
                    append_log_note(s, id, attempt, &e);
                    return (RunOutcome::Failed { exit_code: None, signal: None, error: Some(e) }, None, None);
                }
            };
            // A coding CLI is driven by an AI: sandboxed unless the task opted out by name.
            sandboxed = req.enabled != Some(false);
            let home = std::env::var("HOME").ok();
            extra_writable
                .extend(profile.writable.iter().map(|w| std::path::PathBuf::from(owl_core::coding::expand_home(w, home.as_deref()))));
            allow_hosts.extend(profile.allow_hosts.iter().cloned());
            grant_env.extend(profile.grant_env.iter().cloned());
            if let Some(mb) = profile.memory_mb {
                limits.memory_bytes = (mb > 0).then_some(mb * 1024 * 1024);
            }
            env.extend(profile.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            cli_name = if cli.starts_with("custom:") { "custom".into() } else { cli.clone() };
            parser = Some(owl_agent::cli_stream::CliParser::new(profile.format));
            let mut argv = owl_core::coding::render(profile.command_for(sandboxed), prompt, &workdir.display().to_string());
            if *owl_mcp {
                match give_owl_mcp(s, id, workspace, profile.format, &mut argv) {
                    Ok(guard) => _mcp_guard = Some(guard),
                    Err(e) => {
                        append_log_note(s, id, attempt, &e);
                        return (RunOutcome::Failed { exit_code: None, signal: None, error: Some(e) }, None, None);
                    }
                }
            }
            argv
        }
        other => other.to_argv().unwrap_or_default(),
    };
    // A coding CLI's run is reserved against its budgets before it starts.
    let mut cli_budget = None;
    if matches!(command, owl_core::Command::Cli { .. }) {
        let format = parser.as_ref().map(|p| p.format());
        match crate::budget::admit_cli(s, id, &cli_name, format).await {
            Ok(crate::budget::CliAdmission::Go(b)) => {
                if let (Some(cap), Some(owl_core::coding::CliFormat::ClaudeStreamJson)) = (b.usd_cap, format) {
                    // Claude Code stops itself at this cap.
                    argv.extend(["--max-budget-usd".to_string(), format!("{:.4}", cap.max(0.0001))]);
                }
                if let Some(cap) = b.usd_cap {
                    append_log_note(s, id, attempt, &format!("budget: this run may spend up to ${cap:.4}"));
                }
                cli_budget = Some(b);
            }
            Ok(crate::budget::CliAdmission::Wait { until, scope, reason }) => {
                append_log_note(s, id, attempt, &reason);
                return (RunOutcome::Paused { until, scope, reason }, None, None);
            }
            Ok(crate::budget::CliAdmission::Refuse(e)) => {
                append_log_note(s, id, attempt, &e);
                return (RunOutcome::Failed { exit_code: None, signal: None, error: Some(e) }, None, None);
            }
            Err(e) => {
                // Fail closed: without the ledger the run does not start; it is tried again soon.
                let reason = format!("the budget ledger cannot be written ({e}); the run waits a minute");
                append_log_note(s, id, attempt, &reason);
                return (
                    RunOutcome::Paused { until: s.clock.now().plus(Duration::from_secs(60)), scope: "ledger".into(), reason },
                    None,
                    None,
                );
            }
        }
    }
    let mut env_remove = s.withheld_env.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut refused = None;
    let mut cgroup = None;
    if sandboxed {
        env_remove.extend(crate::sandboxing::secret_vars(&grant_env));
        let tmp = workspace.join(".tmp");
        let _ = std::fs::create_dir_all(&tmp);
        env.push(("TMPDIR".into(), tmp.display().to_string()));
        if workdir != workspace {
            extra_writable.push(workdir.to_path_buf());
        }
        let name = format!("task-{id}-{attempt}-{}", std::process::id());
        let mut sb = cfg.sandbox.spec_for(workspace, &extra_writable, req.allow_net, allow_hosts, name.clone());
        sb.limits = limits;
        cgroup = Some(name);
        match cfg.sandbox.wrap(argv, &sb, &mut env) {
            Ok(a) => argv = a,
            Err(e) => {
                refused = Some(e);
                argv = vec![];
            }
        }
    }
    let (tap_tx, tap_rx) = mpsc::unbounded_channel();
    let reader = parser.map(|p| tokio::spawn(read_cli_stream(s.clone(), id, attempt, cli_name.clone(), p, tap_rx)));
    let spec = ProcessSpec {
        argv,
        env,
        cwd: workdir.to_path_buf(),
        log_path: s.layout.log_file(id, attempt),
        log_max_bytes: cfg.log_max_bytes,
        timeout: task.spec.timeout_ms.map(Duration::from_millis),
        kill_grace: cfg.kill_grace,
        env_remove,
        stdout_tap: reader.is_some().then_some(tap_tx),
    };
    let outcome = match refused {
        Some(msg) => owl_exec::ProcessOutcome { ended: Ended::SpawnFailed(msg), exit_code: None, signal: None, pid: None },
        None => {
            tracing::debug!(task = %id, attempt, "spawning");
            let out = exec(task, spec, stop, progress_tx).await;
            tracing::debug!(task = %id, attempt, "process ended");
            if let Some(c) = &cgroup {
                owl_sandbox::remove_cgroup(c);
            }
            out
        }
    };
    let report = match reader {
        Some(r) => r.await.unwrap_or_default(),
        None => CliReport::default(),
    };
    if let Some(b) = &cli_budget {
        let ran = !matches!(outcome.ended, Ended::SpawnFailed(_));
        let spend =
            crate::budget::CliSpend { usd: report.usd, tokens: report.tokens, reported: report.usage_seen, unpriced: report.unpriced, ran };
        crate::budget::settle_cli(s, id, &cli_name, b, spend).await;
    }
    let reported = report.result;
    let run_outcome = match &outcome.ended {
        Ended::Exited if outcome.exit_code == Some(0) => match reported {
            // Exit 0 but the CLI said its run failed: believe the report.
            Some((text, true)) => {
                RunOutcome::Failed { exit_code: Some(0), signal: None, error: Some(format!("{cli_name} reported an error: {text}")) }
            }
            _ => RunOutcome::Succeeded,
        },
        Ended::Exited => RunOutcome::Failed { exit_code: outcome.exit_code, signal: outcome.signal, error: None },
        Ended::TimedOut => RunOutcome::TimedOut,
        Ended::Stopped(Stop::Cancel(reason)) => RunOutcome::Cancelled { reason: reason.clone() },
        Ended::Stopped(Stop::Interrupt(reason)) => RunOutcome::Interrupted { reason: reason.clone() },
        Ended::SpawnFailed(msg) => RunOutcome::Failed { exit_code: None, signal: None, error: Some(msg.clone()) },
    };
    (run_outcome, outcome.exit_code, outcome.signal)
}

/// Runs the process through owl-exec. In the engine's own tests a label can make the runner
/// panic while the process runs, to prove the panic is supervised.
async fn exec(
    task: &ClaimedTask,
    spec: ProcessSpec,
    stop: watch::Receiver<Option<Stop>>,
    progress: watch::Sender<u64>,
) -> owl_exec::ProcessOutcome {
    #[cfg(test)]
    if let Some(ms) = task.spec.labels.iter().find_map(|l| l.strip_prefix("owl-test:panic-after-ms=")).and_then(|v| v.parse().ok()) {
        tokio::select! {
            o = owl_exec::run(spec, stop, progress) => return o,
            _ = tokio::time::sleep(Duration::from_millis(ms)) => panic!("injected runner panic while the process runs"),
        }
    }
    let _ = task;
    owl_exec::run(spec, stop, progress).await
}

/// What a coding CLI's stream said about its run.
#[derive(Default)]
struct CliReport {
    /// Its final report (text, is_error), when it gave one.
    result: Option<(String, bool)>,
    /// What its calls cost, as it reported or as priced from its tokens.
    usd: f64,
    tokens: u64,
    /// Whether it reported any usage at all.
    usage_seen: bool,
    /// Some usage had no cost and a model with no known price.
    unpriced: bool,
}

/// Turns a coding CLI's stdout into transcript entries, usage rows, subscription windows and
/// the task's result, as it streams.
async fn read_cli_stream(
    s: Arc<Shared>,
    id: TaskId,
    attempt: u32,
    cli: String,
    mut parser: owl_agent::cli_stream::CliParser,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> CliReport {
    let mut spent = CliReport::default();
    use owl_agent::cli_stream::CliEvent;
    let redact = s.agents();
    let mut pending: Vec<u8> = Vec::new();
    let mut report = None;
    let mut done = false;
    while !done {
        let mut events = Vec::new();
        match rx.recv().await {
            Some(chunk) => {
                pending.extend_from_slice(&chunk);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    // A single line past 16 MiB is not an event anyone reads; drop it.
                    events.extend(parser.line(&String::from_utf8_lossy(&line)));
                }
                if pending.len() > 16 << 20 {
                    pending.clear();
                }
            }
            None => {
                if !pending.is_empty() {
                    events.extend(parser.line(&String::from_utf8_lossy(&pending)));
                }
                events.extend(parser.finish());
                done = true;
            }
        }
        let mut entries = Vec::new();
        for ev in events {
            match ev {
                // A coding CLI's output may echo a provider key or a secrets-file value.
                CliEvent::Entry(v) => entries.push(match &redact {
                    Some(rt) => rt.redact_entry(v),
                    None => v,
                }),
                CliEvent::Usage { model, usage, cost_usd } => {
                    use owl_core::budget::{price_label, PriceSource};
                    let (cost, source) = match cost_usd {
                        Some(c) => (c, PriceSource::Reported),
                        None => match crate::budget::price_of(&s, &model) {
                            Some((p, src)) => (p.cost(usage.input, usage.output, usage.cached), src),
                            None => {
                                spent.unpriced = true;
                                (0.0, PriceSource::Unknown)
                            }
                        },
                    };
                    spent.usd += cost;
                    spent.tokens += usage.input + usage.output;
                    spent.usage_seen = true;
                    let record = owl_store::UsageRecord {
                        owner: owl_core::agent::Owner::Task(id),
                        agent: format!("cli:{cli}"),
                        provider: cli.clone(),
                        model,
                        usage,
                        cost_usd: cost,
                        price: price_label(&source),
                    };
                    s.metrics.usage(&record);
                    if let Err(e) = s.store.record_usage(record, s.clock.now()).await {
                        tracing::warn!(task = %id, error = %e, "cannot record a coding CLI's usage");
                    }
                }
                CliEvent::Result { text, is_error } => {
                    let text = match &redact {
                        Some(rt) => rt.redact(&text),
                        None => text,
                    };
                    if let Err(e) = s.store.set_task_result(id, &text).await {
                        tracing::warn!(task = %id, error = %e, "cannot record a coding CLI's result");
                    }
                    report = Some((text, is_error));
                }
                CliEvent::Window(w) => crate::budget::record_window(&s, &cli, w).await,
            }
        }
        if !entries.is_empty() {
            let kinds: Vec<(String, String)> = entries.iter().map(|e| (e.kind().to_string(), e.summary())).collect();
            // A coding CLI's own tools: a fixed set per CLI, and names of a sane shape.
            s.metrics.entries(&entries, |t| t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)));
            match s.store.append_transcript(owl_core::agent::Owner::Task(id), attempt, entries, s.clock.now()).await {
                Ok(seqs) => {
                    for (seq, (entry, summary)) in seqs.into_iter().zip(kinds) {
                        s.publish(EventKind::AgentStep { task_id: id, seq, entry, summary });
                    }
                }
                Err(e) => tracing::warn!(task = %id, error = %e, "cannot record a coding CLI's transcript"),
            }
        }
    }
    spent.result = report;
    spent
}

/// Records an attempt's end, retrying transient storage errors.
async fn finish(
    s: &Arc<Shared>,
    id: TaskId,
    attempt: u32,
    run_outcome: RunOutcome,
    exit_code: Option<i32>,
    signal: Option<i32>,
    cfg: &EngineConfig,
) {
    let completion =
        Completion { id, attempt, outcome: run_outcome, exit_code, signal, now: s.clock.now(), policy: cfg.retry, jitter: fastrand::f64() };
    // A transient storage error must not strand the task: retry for a while. If the daemon
    // dies meanwhile, crash recovery requeues the task instead.
    let mut delay = Duration::from_millis(50);
    loop {
        match s.store.complete(completion.clone()).await {
            Ok(changes) => {
                tracing::debug!(task = %id, attempt, "completion recorded");
                s.publish_changes(&changes);
                break;
            }
            Err(e @ (StoreError::StaleAttempt { .. } | StoreError::NotFound(_))) => {
                tracing::warn!(task = %id, attempt, error = %e, "completion refused");
                break;
            }
            Err(e) => {
                tracing::error!(task = %id, attempt, error = %e, "cannot record the completion; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
