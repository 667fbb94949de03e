//! Running one claimed task: workspace, process, completion, events.

use crate::{EngineConfig, Shared};
use owl_core::{EventKind, RunOutcome, TaskId};
use owl_exec::{Ended, ProcessSpec, Stop};
use owl_store::{ClaimedTask, Completion, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub(crate) struct RunnerDone {
    pub id: TaskId,
}

pub(crate) async fn run_task(
    s: Arc<Shared>,
    task: ClaimedTask,
    cfg: EngineConfig,
    stop: watch::Receiver<Option<Stop>>,
    done: mpsc::UnboundedSender<RunnerDone>,
) {
    let id = task.id;
    let attempt = task.attempt;
    // Register the live log before announcing the start, so a follower woken by the start
    // event always finds it.
    let (progress_tx, progress_rx) = watch::channel(0u64);
    s.logs.lock().expect("logs lock poisoned").insert((id, attempt), progress_rx);
    s.publish(EventKind::TaskStarted { task_id: id, attempt, node: cfg.node.clone() });
    let workspace = s.layout.workspace(id);
    let cwd = task.spec.cwd.clone().map(std::path::PathBuf::from).unwrap_or_else(|| workspace.clone());
    // A local mkdir takes microseconds; a blocking-pool hop would cost more.
    if matches!(task.spec.command, owl_core::Command::Agent { .. }) {
        let _ = std::fs::create_dir_all(&workspace);
        let run_outcome = crate::agents::run_agent_task(&s, &task, stop, progress_tx).await;
        s.logs.lock().expect("logs lock poisoned").remove(&(id, attempt));
        finish(&s, id, attempt, run_outcome, None, None, &cfg).await;
        let _ = done.send(RunnerDone { id });
        return;
    }
    let outcome = match std::fs::create_dir_all(&workspace) {
        Err(e) => owl_exec::ProcessOutcome {
            ended: Ended::SpawnFailed(format!("cannot create the workspace {}: {e}", workspace.display())),
            exit_code: None,
            signal: None,
            pid: None,
        },
        Ok(()) => {
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
            env.push(("OWL_WORKSPACE".into(), workspace.display().to_string()));
            // Marks the process as this data dir's (crash recovery finds orphans by it) and
            // lets a task call `owl` against its own daemon.
            env.push(("OWL_DATA_DIR".into(), s.layout.root().display().to_string()));
            let mut argv = task.spec.command.to_argv().unwrap_or_default();
            let mut env_remove = s.withheld_env.read().expect("withheld env lock poisoned").clone();
            let mut refused = None;
            let mut cgroup = None;
            if crate::sandboxing::wanted(&task.spec, &cfg.sandbox) {
                let req = task.spec.sandbox.clone().unwrap_or_default();
                env_remove.extend(crate::sandboxing::secret_vars(&req.grant_env));
                let tmp = workspace.join(".tmp");
                let _ = std::fs::create_dir_all(&tmp);
                env.push(("TMPDIR".into(), tmp.display().to_string()));
                let mut extra: Vec<std::path::PathBuf> = req.writable.iter().map(std::path::PathBuf::from).collect();
                if cwd != workspace {
                    extra.push(cwd.clone());
                }
                let name = format!("task-{id}-{attempt}-{}", std::process::id());
                let sb = cfg.sandbox.spec_for(&workspace, &extra, req.allow_net, req.allow_hosts.clone(), name.clone());
                cgroup = Some(name);
                match cfg.sandbox.wrap(argv, &sb, &mut env) {
                    Ok(a) => argv = a,
                    Err(e) => {
                        refused = Some(e);
                        argv = vec![];
                    }
                }
            }
            let spec = ProcessSpec {
                argv,
                env,
                cwd,
                log_path: s.layout.log_file(id, attempt),
                log_max_bytes: cfg.log_max_bytes,
                timeout: task.spec.timeout_ms.map(Duration::from_millis),
                kill_grace: cfg.kill_grace,
                env_remove,
            };
            match refused {
                Some(msg) => owl_exec::ProcessOutcome { ended: Ended::SpawnFailed(msg), exit_code: None, signal: None, pid: None },
                None => {
                    tracing::debug!(task = %id, attempt, "spawning");
                    let out = owl_exec::run(spec, stop, progress_tx).await;
                    tracing::debug!(task = %id, attempt, "process ended");
                    if let Some(c) = &cgroup {
                        owl_sandbox::remove_cgroup(c);
                    }
                    out
                }
            }
        }
    };
    s.logs.lock().expect("logs lock poisoned").remove(&(id, attempt));
    let run_outcome = match &outcome.ended {
        Ended::Exited if outcome.exit_code == Some(0) => RunOutcome::Succeeded,
        Ended::Exited => RunOutcome::Failed { exit_code: outcome.exit_code, signal: outcome.signal, error: None },
        Ended::TimedOut => RunOutcome::TimedOut,
        Ended::Stopped(Stop::Cancel(reason)) => RunOutcome::Cancelled { reason: reason.clone() },
        Ended::Stopped(Stop::Interrupt(reason)) => RunOutcome::Interrupted { reason: reason.clone() },
        Ended::SpawnFailed(msg) => RunOutcome::Failed { exit_code: None, signal: None, error: Some(msg.clone()) },
    };
    finish(&s, id, attempt, run_outcome, outcome.exit_code, outcome.signal, &cfg).await;
    let _ = done.send(RunnerDone { id });
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
