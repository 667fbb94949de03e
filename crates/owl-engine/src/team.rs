//! The team of agents on the engine: routing a task that asks for capabilities to an agent
//! (the rule is `owl_core::routing`), each agent's concurrency limit as a queue group
//! (`agent.NAME`), its load and when it was last active, and a coding-CLI agent's task turned
//! into the CLI run it stands for.

use crate::Shared;
use owl_core::routing::Load;
use owl_core::task::{Status, DEFAULT_GROUP};
use owl_core::{Command, TaskSpec, Timestamp, ValidationError};
use owl_store::{NewTask, StoreError, TaskFilter};
use std::collections::HashMap;

/// The queue group that holds an agent's tasks when it has `max_concurrent`.
pub fn agent_group(agent: &str) -> String {
    format!("agent.{agent}")
}

fn last_active_key(agent: &str) -> String {
    format!("agent:last_active:{agent}")
}

/// What each agent has running and waiting now.
pub(crate) async fn loads(s: &Shared) -> Result<HashMap<String, (u32, u32)>, StoreError> {
    let tasks = s
        .store
        .list(TaskFilter {
            statuses: vec![Status::Running, Status::Queued, Status::Waiting],
            kind: Some("agent".into()),
            limit: Some(10_000),
            ..Default::default()
        })
        .await?;
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    for t in tasks {
        if let Command::Agent { agent, .. } = &t.spec.command {
            let e = out.entry(agent.clone()).or_default();
            if t.state.status() == Status::Running {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    Ok(out)
}

/// When a task of `agent` last started.
pub(crate) async fn last_active(s: &Shared, agent: &str) -> Option<Timestamp> {
    let v = s.store.kv_get(&last_active_key(agent)).await.ok()??;
    v.parse::<i64>().ok().map(Timestamp::from_millis)
}

pub(crate) async fn mark_active(s: &Shared, agent: &str) {
    let now = s.clock.now().millis().to_string();
    if let Err(e) = s.store.kv_set(&last_active_key(agent), &now).await {
        tracing::warn!(agent, error = %e, "cannot record when the agent was last active");
    }
}

/// Before a batch reaches the store: routes each task that asks for capabilities, and puts
/// each agent task of an agent with `max_concurrent` (in the default group) in its group,
/// whose limit is set first.
pub(crate) async fn prepare(s: &Shared, batch: &mut [NewTask]) -> Result<(), StoreError> {
    let Some(rt) = s.agents() else { return Ok(()) };
    let needs_routing = batch.iter().any(|t| matches!(&t.spec.command, Command::Agent { agent, route: Some(_), .. } if agent.is_empty()));
    let mut load = if needs_routing { loads(s).await? } else { HashMap::new() };
    let mut limits: Vec<(String, u32)> = Vec::new();
    let many = batch.len() > 1;
    for (i, t) in batch.iter_mut().enumerate() {
        if let Command::Agent { agent, route: Some(req), .. } = &mut t.spec.command {
            if agent.is_empty() {
                let mut actives = HashMap::new();
                for name in rt.settings().keys() {
                    actives.insert(name.clone(), last_active(s, name).await);
                }
                let decided = owl_core::routing::route(rt.settings(), req, |name| {
                    let (running, queued) = load.get(name).copied().unwrap_or_default();
                    Load { running, queued, last_active: actives.get(name).copied().flatten(), price: rt.agent_price(name) }
                })
                .map_err(|m| ValidationError::new(if many { format!("tasks[{i}].needs") } else { "needs".into() }, m))?;
                *agent = decided.chosen.clone();
                *req = decided;
                // A later task of the same batch sees this one waiting for the agent.
                load.entry(agent.clone()).or_default().1 += 1;
            }
        }
        place(&rt, &mut t.spec, &mut limits);
    }
    for (group, max) in limits {
        let known = s.store.groups().await?.into_iter().find(|g| g.name == group).and_then(|g| g.parallel);
        if known != Some(max) {
            s.store.set_group(&group, Some(max)).await?;
        }
    }
    Ok(())
}

/// An agent task in the default group of an agent with `max_concurrent` goes to its group.
fn place(rt: &owl_agent::Runtime, spec: &mut TaskSpec, limits: &mut Vec<(String, u32)>) {
    let Command::Agent { agent, .. } = &spec.command else { return };
    let Some(max) = rt.agent(agent).and_then(|a| a.max_concurrent) else { return };
    if spec.group == DEFAULT_GROUP {
        spec.group = agent_group(agent);
        if !limits.iter().any(|(g, _)| *g == spec.group) {
            limits.push((spec.group.clone(), max));
        }
    }
}

/// Sets every agent group's limit to its agent's `max_concurrent` (at start and on reload).
pub(crate) async fn sync_groups(s: &Shared) {
    let Some(rt) = s.agents() else { return };
    for (name, a) in rt.settings() {
        if let Some(max) = a.max_concurrent {
            if let Err(e) = s.store.set_group(&agent_group(name), Some(max)).await {
                tracing::warn!(agent = %name, error = %e, "cannot set the agent's concurrency limit");
            }
        }
    }
}

/// The command a task runs: an agent task of a coding-CLI agent (`cli = "codex"`) is that
/// CLI given the prompt.
pub(crate) fn effective_command(s: &Shared, command: &Command) -> Command {
    if let Command::Agent { agent, prompt, max_cost_usd, .. } = command {
        if let Some(cli) = s.agents().and_then(|rt| rt.agent(agent).and_then(|a| a.cli.clone())) {
            return Command::Cli { cli, prompt: prompt.clone(), owl_mcp: false, max_cost_usd: *max_cost_usd };
        }
    }
    command.clone()
}

/// One agent's state for `owl agents --status`.
#[derive(Clone, Debug)]
pub struct AgentStatus {
    pub name: String,
    pub running: u32,
    pub queued: u32,
    pub max_concurrent: Option<u32>,
    pub available: bool,
    pub last_active: Option<Timestamp>,
}

impl crate::Engine {
    /// Each configured agent: what it runs, what waits for it, and whether it can take more.
    pub async fn agent_status(&self) -> Result<Vec<AgentStatus>, StoreError> {
        let s = &self.shared;
        let Some(rt) = s.agents() else { return Ok(vec![]) };
        let load = loads(s).await?;
        let mut out = Vec::new();
        for (name, a) in rt.settings() {
            let (running, queued) = load.get(name).copied().unwrap_or_default();
            out.push(AgentStatus {
                name: name.clone(),
                running,
                queued,
                max_concurrent: a.max_concurrent,
                available: a.max_concurrent.is_none_or(|m| running < m),
                last_active: last_active(s, name).await,
            });
        }
        Ok(out)
    }
}
