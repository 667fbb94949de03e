//! Agent work on the engine: running agent tasks to their outcome, and the agent runtime the
//! engine holds. The host the runtime talks to is in `host.rs`.

use crate::host::EngineHost;
use crate::{Engine, Shared};
use owl_agent::{AgentEnd, Halt, Host, Job};
use owl_core::agent::Owner as CoreOwner;
use owl_core::task::Origin;
use owl_core::{Command, EventKind, RunOutcome};
use owl_store::{ClaimedTask, StoreError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Runs one claimed agent task to its outcome.
pub(crate) async fn run_agent_task(
    s: &Arc<Shared>,
    task: &ClaimedTask,
    mut stop: watch::Receiver<Option<owl_exec::Stop>>,
    progress: watch::Sender<u64>,
    workdir: std::path::PathBuf,
) -> RunOutcome {
    let Command::Agent { agent, prompt, team, .. } = &task.spec.command else { unreachable!("only agent tasks come here") };
    let Some(rt) = s.agents() else {
        return RunOutcome::Failed { exit_code: None, signal: None, error: Some("no agents are configured; see `owl config init`".into()) };
    };
    let log_path = s.layout.log_file(task.id, task.attempt);
    let _ = std::fs::create_dir_all(s.layout.logs());
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).ok().map(|f| Mutex::new((f, 0u64, progress)));
    let host: Arc<dyn Host> = Arc::new(EngineHost { shared: s.clone(), log });
    let (halt_tx, halt_rx) = watch::channel(None);
    let bridge = tokio::spawn(async move {
        loop {
            if let Some(st) = stop.borrow_and_update().clone() {
                let _ = halt_tx.send(Some(match st {
                    owl_exec::Stop::Cancel(r) => Halt::Cancel(r),
                    owl_exec::Stop::Interrupt(r) => Halt::Interrupt(r),
                }));
                return;
            }
            if stop.changed().await.is_err() {
                return;
            }
        }
    });
    let mem = s.config().memory;
    // Recall only on a fresh start: a resumed run continues its recorded conversation.
    let recalled = if task.attempt == 1 || s.store.transcript(CoreOwner::Task(task.id), 0).await.map(|t| t.is_empty()).unwrap_or(true) {
        crate::memory::recall(s, agent, prompt, mem.recall_k, mem.recall_tokens, None).await
    } else {
        crate::memory::Recall::default()
    };
    let job = Job {
        owner: CoreOwner::Task(task.id),
        agent: agent.clone(),
        prompt: format!("{}{prompt}", recalled.block),
        workspace: workdir,
        attempt: task.attempt,
        depth: Origin::agent_depth(task.spec.origin.as_ref()),
        timeout: task.spec.timeout_ms.map(Duration::from_millis),
        env: std::env::vars().chain(task.spec.env.clone()).collect(),
        withheld_env: s.withheld_env.read().unwrap_or_else(|p| p.into_inner()).clone(),
        chat_turn: false,
        team: *team,
    };
    let end = owl_agent::run_job(&rt, job, host, halt_rx, None).await;
    bridge.abort();
    if !matches!(end, AgentEnd::Interrupted { .. }) {
        // Messages this task read are in its transcript now: acknowledged.
        let _ = s.store.ack_messages(&format!("task:{}:", task.id), None, s.clock.now()).await;
    }
    if mem.remember_tasks {
        let (outcome, result) = match &end {
            AgentEnd::Succeeded { answer } => (Some("succeeded"), Some(answer.as_str())),
            AgentEnd::Failed { reason } => (Some("failed"), Some(reason.as_str())),
            _ => (None, None),
        };
        if let Some(outcome) = outcome {
            let tools = tools_used(s, task.id).await;
            let done = crate::memory::FinishedTask { id: task.id, agent, prompt, outcome, result, tools: &tools };
            crate::memory::remember_task(s, done, &recalled.texts).await;
        }
    }
    let record = |text: String| {
        let s = s.clone();
        let id = task.id;
        async move {
            if let Err(e) = s.store.set_task_result(id, &text).await {
                tracing::error!(task = %id, error = %e, "cannot record the agent's result");
            }
        }
    };
    match end {
        AgentEnd::Succeeded { answer } => {
            record(answer).await;
            RunOutcome::Succeeded
        }
        AgentEnd::Failed { reason } => {
            record(reason.clone()).await;
            RunOutcome::Failed { exit_code: None, signal: None, error: Some(reason) }
        }
        AgentEnd::TimedOut => RunOutcome::TimedOut,
        AgentEnd::Cancelled { reason } => RunOutcome::Cancelled { reason },
        AgentEnd::Interrupted { reason } => RunOutcome::Interrupted { reason },
        AgentEnd::Paused { until, scope, reason } => RunOutcome::Paused { until, scope, reason },
    }
}

/// The names of the tools a task's agent called, in first-use order.
async fn tools_used(s: &Shared, id: owl_core::TaskId) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in s.store.transcript(CoreOwner::Task(id), 0).await.unwrap_or_default() {
        for c in e.body.tool_calls() {
            if !out.contains(&c.name) {
                out.push(c.name.clone());
            }
        }
    }
    out
}

impl Shared {
    pub(crate) fn agents(&self) -> Option<Arc<owl_agent::Runtime>> {
        self.agents.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub(crate) fn agent_defaults(&self) -> owl_core::agent::AgentDefaults {
        self.agents().map(|r| r.defaults().clone()).unwrap_or_default()
    }
}

impl Engine {
    /// Installs (or replaces, on reload) the agent runtime.
    pub fn set_agents(&self, rt: Arc<owl_agent::Runtime>) {
        *self.shared.agents.write().unwrap_or_else(|p| p.into_inner()) = Some(rt);
        // Agents' concurrency limits are queue groups; a submission sets its group's too.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let s = self.shared.clone();
            handle.spawn(async move { crate::team::sync_groups(&s).await });
        }
    }

    /// Installs owl's MCP server for coding CLI tasks that ask for it.
    pub fn set_task_mcp(&self, m: Arc<dyn crate::TaskMcp>) {
        *self.shared.task_mcp.write().unwrap_or_else(|p| p.into_inner()) = Some(m);
    }

    pub fn agents(&self) -> Option<Arc<owl_agent::Runtime>> {
        self.shared.agents()
    }

    /// Approves or denies a pending request and wakes the task waiting on it.
    pub async fn decide_approval(&self, id: i64, approve: bool, reason: Option<String>) -> Result<owl_store::Approval, StoreError> {
        let a = self.shared.store.decide_approval(id, approve, reason, self.now()).await?;
        self.shared.publish(EventKind::ApprovalDecided { approval_id: id, task_id: a.owner.task(), approved: approve });
        Ok(a)
    }
}
