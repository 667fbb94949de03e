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
use std::sync::Arc;

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
    prepare_excluding(s, batch, &[]).await
}

/// [`prepare`], routing to none of the agents in `exclude` (those a delegation came through).
pub(crate) async fn prepare_excluding(s: &Shared, batch: &mut [NewTask], exclude: &[String]) -> Result<(), StoreError> {
    let Some(rt) = s.agents() else { return Ok(()) };
    let needs_routing = batch.iter().any(|t| matches!(&t.spec.command, Command::Agent { agent, route: Some(_), .. } if agent.is_empty()));
    // What routing reads is read once per batch, and only when a task of it is routed.
    let (candidates, mut load, actives) = if needs_routing {
        let candidates: owl_core::agent::Agents =
            rt.settings().iter().filter(|(n, _)| !exclude.contains(n)).map(|(n, a)| (n.clone(), a.clone())).collect();
        let mut actives = HashMap::new();
        for name in candidates.keys() {
            actives.insert(name.clone(), last_active(s, name).await);
        }
        (candidates, loads(s).await?, actives)
    } else {
        Default::default()
    };
    let templates = s.config().templates;
    let mut limits: Vec<(String, u32)> = Vec::new();
    let many = batch.len() > 1;
    for (i, t) in batch.iter_mut().enumerate() {
        if let Command::Agent { agent, route: Some(req), .. } = &mut t.spec.command {
            if agent.is_empty() {
                let decided = owl_core::routing::route(&candidates, req, |name| {
                    let (running, queued) = load.get(name).copied().unwrap_or_default();
                    Load { running, queued, last_active: actives.get(name).copied().flatten(), price: rt.agent_price(name) }
                })
                .map_err(|m| {
                    let f = if req.needs.is_empty() { "complexity" } else { "needs" };
                    ValidationError::new(if many { format!("tasks[{i}].{f}") } else { f.to_string() }, m)
                })?;
                *agent = decided.chosen.clone();
                *req = decided;
                // A later task of the same batch sees this one waiting for the agent.
                load.entry(agent.clone()).or_default().1 += 1;
            }
        }
        // The agent must exist, and a team run is led by a model agent (it calls `delegate`).
        if let Command::Agent { agent, team, .. } = &t.spec.command {
            let field = |f: &str| if many { format!("tasks[{i}].{f}") } else { f.to_string() };
            match rt.agent(agent) {
                None => {
                    let known: Vec<&str> = rt.settings().keys().map(String::as_str).collect();
                    return Err(StoreError::Invalid(ValidationError::new(
                        field("agent"),
                        format!(
                            "there is no agent `{agent}`; configured agents: {}",
                            if known.is_empty() { "(none; see `owl config init`)".to_string() } else { known.join(", ") }
                        ),
                    )));
                }
                Some(a) if *team && a.cli.is_some() => {
                    return Err(StoreError::Invalid(ValidationError::new(
                        field("team"),
                        format!("agent `{agent}` is a coding CLI; a team run is led by a model agent, which can call `delegate`"),
                    )));
                }
                _ => {}
            }
        }
        place(&rt, &mut t.spec, &mut limits);
        // An agent's own template applies unless the task names one; a named one must exist.
        match &mut t.spec.command {
            Command::Agent { agent, template, .. } => {
                // Not for a delegated child working in its parent's workspace: that one is set up.
                if template.is_none() && t.spec.cwd.is_none() {
                    *template = rt.agent(agent).and_then(|a| a.template.clone());
                }
            }
            Command::Cli { .. } => {}
            _ => continue,
        }
        if let Some(name) = t.spec.command.template().filter(|n| !templates.contains_key(*n)) {
            let field = if many { format!("tasks[{i}].template") } else { "template".into() };
            return Err(StoreError::Invalid(ValidationError::new(
                field,
                format!("`{name}` is not a template; add [templates.{name}] to the config"),
            )));
        }
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
    // An agent whose max_concurrent was removed (or that is gone) no longer limits its group.
    for g in s.store.groups().await.unwrap_or_default() {
        let Some(agent) = g.name.strip_prefix("agent.") else { continue };
        if g.parallel.is_some() && rt.agent(agent).is_none_or(|a| a.max_concurrent.is_none()) {
            let _ = s.store.set_group(&g.name, None).await;
        }
    }
}

/// The command a task runs: an agent task of a coding-CLI agent (`cli = "codex"`) is that
/// CLI given the prompt.
pub(crate) fn effective_command(s: &Shared, command: &Command) -> Command {
    if let Command::Agent { agent, prompt, max_cost_usd, template, .. } = command {
        if let Some(cli) = s.agents().and_then(|rt| rt.agent(agent).and_then(|a| a.cli.clone())) {
            return Command::Cli { cli, prompt: prompt.clone(), owl_mcp: false, max_cost_usd: *max_cost_usd, template: template.clone() };
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
    /// A person's message to an agent, a task or all agents.
    pub async fn send_message_from_person(
        &self,
        to: &str,
        thread: &str,
        kind: &str,
        content: &str,
        reply_to: Option<i64>,
    ) -> Result<owl_store::Message, StoreError> {
        let s = &self.shared;
        let (recipient, deliver_to) = recipients(s, to, "").await.map_err(|m| StoreError::Invalid(ValidationError::new("to", m)))?;
        let now = s.clock.now();
        let m = owl_store::NewMessage {
            key: format!("person:{}:{:016x}", now.millis(), fxhash(&format!("{to}\n{thread}\n{kind}\n{content}"))),
            thread: thread.to_string(),
            sender: "person".into(),
            sender_task: None,
            recipient,
            deliver_to,
            kind: kind.to_string(),
            content: content.to_string(),
            reply_to,
            metadata: serde_json::json!({}),
            attachments: vec![],
        };
        Ok(send(s, m).await?.0)
    }

    /// Writes one key of an agent's state, checked like the agent's own `state_set`.
    pub async fn put_agent_state(
        &self,
        agent: &str,
        key: &str,
        value: &str,
        version: Option<u64>,
    ) -> Result<owl_store::StateEntry, StoreError> {
        let s = &self.shared;
        check_state_write(s, agent, key, value).await.map_err(|m| StoreError::Invalid(ValidationError::new("key", m)))?;
        s.store.put_agent_state(agent, key, value, version, s.clock.now()).await
    }

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

// ---- Messages between agents, and agents' state ----

/// Attachments a message may carry in all.
const ATTACH_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// An agent's state: keys, and bytes per value.
const STATE_MAX_KEYS: usize = 200;
const STATE_MAX_VALUE: usize = 64 * 1024;

/// Whom a message addressed to `to` is delivered to: `agent:NAME` (or a bare name), `task:ID`,
/// or `all` (every agent but the sender).
pub(crate) async fn recipients(s: &Shared, to: &str, sender: &str) -> Result<(String, Vec<String>), String> {
    let known: Vec<String> = s.agents().map(|rt| rt.settings().keys().cloned().collect()).unwrap_or_default();
    let to = to.trim();
    if to == "all" || to == "*" {
        let all: Vec<String> = known.iter().filter(|a| a.as_str() != sender).map(|a| format!("agent:{a}")).collect();
        return Ok(("all".into(), all));
    }
    if let Some(id) = to.strip_prefix("task:") {
        let id: owl_core::TaskId = id.parse()?;
        s.store.get(id).await.map_err(|e| e.to_string())?;
        return Ok((format!("task:{id}"), vec![format!("task:{id}")]));
    }
    let name = to.strip_prefix("agent:").unwrap_or(to);
    if !known.iter().any(|a| a == name) {
        return Err(format!("there is no agent `{name}`; send to one of: {}, a task (task:ID) or all", known.join(", ")));
    }
    Ok((format!("agent:{name}"), vec![format!("agent:{name}")]))
}

/// Copies the named workspace files next to the message, so later changes do not alter it.
pub(crate) fn copy_attachments(
    s: &Shared,
    key: &str,
    workspace: &std::path::Path,
    names: &[String],
) -> Result<Vec<owl_store::Attachment>, String> {
    let dir = s.layout.root().join("attachments").join(format!("{:016x}", fxhash(key)));
    let root = workspace.canonicalize().map_err(|e| format!("cannot open the workspace: {e}"))?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for name in names {
        let path = root.join(name).canonicalize().map_err(|e| format!("attachment `{name}`: {e}"))?;
        if !path.starts_with(&root) || !path.is_file() {
            return Err(format!("attachment `{name}` is not a file of your workspace"));
        }
        total += path.metadata().map(|m| m.len()).unwrap_or(0);
        if total > ATTACH_MAX_BYTES {
            return Err(format!("attachments may hold at most {} MB in all", ATTACH_MAX_BYTES / 1024 / 1024));
        }
        let meta = path.metadata().map_err(|e| format!("attachment `{name}`: {e}"))?;
        if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            return Err(format!("attachment `{name}` has other hard links, which may lie outside the workspace; copy it first"));
        }
        let rel = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
        let dest = dir.join(&rel);
        if dest.exists() {
            // A replayed send: the copy made when it was first sent stands.
            out.push(owl_store::Attachment { name: rel.display().to_string(), path: dest.display().to_string(), bytes: meta.len() });
            continue;
        }
        if let Some(d) = dest.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot store attachment `{name}`: {e}"))?;
        }
        let bytes = std::fs::copy(&path, &dest).map_err(|e| format!("cannot store attachment `{name}`: {e}"))?;
        out.push(owl_store::Attachment { name: rel.display().to_string(), path: dest.display().to_string(), bytes });
    }
    Ok(out)
}

/// A stable 64-bit hash (FNV-1a) naming a message's attachment directory.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Sends a message and starts a task for each idle recipient agent with `wake_on_message`.
pub(crate) async fn send(s: &Arc<Shared>, m: owl_store::NewMessage) -> Result<(owl_store::Message, bool), StoreError> {
    let (msg, created) = s.store.send_message(m, s.clock.now()).await?;
    // Also on a replayed send: a crash between the message and its wake-up loses neither (the
    // wake-up's idempotency key makes it once).
    wake(s, &msg).await;
    Ok((msg, created))
}

async fn wake(s: &Arc<Shared>, msg: &owl_store::Message) {
    let Some(rt) = s.agents() else { return };
    if !msg.deliveries.iter().any(|d| d.to.strip_prefix("agent:").and_then(|a| rt.agent(a)).is_some_and(|a| a.wake_on_message)) {
        return;
    }
    let load = loads(s).await.unwrap_or_default();
    // A task woken by a message sits below the task that sent it: it spends that task's
    // budgets, and a chain of agents waking each other ends at the recipient's
    // max_subtask_depth.
    let (origin, depth) = match msg.sender_task {
        Some(t) => match s.store.get(t).await {
            Ok(task) => {
                let depth = owl_core::task::Origin::agent_depth(task.spec.origin.as_ref()) + 1;
                (Some(owl_core::task::Origin::Agent { parent: owl_core::agent::Owner::Task(t), depth }), depth)
            }
            Err(_) => (None, 0),
        },
        None => (None, 0),
    };
    let mut batch = Vec::new();
    for d in &msg.deliveries {
        let Some(agent) = d.to.strip_prefix("agent:") else { continue };
        let Some(settings) = rt.agent(agent).filter(|a| a.wake_on_message) else { continue };
        if load.get(agent).is_some_and(|(r, q)| r + q > 0) {
            continue;
        }
        if depth > settings.max_subtask_depth {
            tracing::info!(
                agent,
                message = msg.id,
                depth,
                "not waking the agent: the chain of agent-made tasks is at its max_subtask_depth"
            );
            continue;
        }
        let mut spec = TaskSpec::new(Command::Agent {
            agent: agent.to_string(),
            prompt: format!(
                "You have a new message (from {}, id {}). Read your messages with read_messages and act on them.",
                msg.sender, msg.id
            ),
            max_cost_usd: None,
            route: None,
            team: true,
            template: None,
        });
        spec.idempotency_key = Some(format!("wake:{}:{agent}", msg.id));
        spec.origin = origin.clone();
        batch.push(NewTask::new(spec));
    }
    if !batch.is_empty() {
        if let Err(e) = (crate::Engine { shared: s.clone() }).submit(batch).await {
            tracing::warn!(message = msg.id, error = %e, "cannot start a task for the message's recipient");
        }
    }
}

/// A message as an agent reads it; attachments are copied into `workspace` when given.
pub(crate) fn for_reader(m: &owl_store::Message, inbox: Option<&std::path::Path>) -> serde_json::Value {
    let attachments: Vec<serde_json::Value> = m
        .attachments
        .iter()
        .map(|a| {
            // Copied into the reader's workspace, where its tools can open it: through the
            // confined writer, so a symlink the agent planted cannot send the copy elsewhere.
            let local = inbox.and_then(|ws| {
                let bytes = std::fs::read(&a.path).ok()?;
                let rel = format!("inbox/{}/{}", m.id, a.name);
                owl_agent::confine::Workspace::new(ws).ok()?.write(&rel, &bytes).ok()?;
                Some(rel)
            });
            serde_json::json!({"name": a.name, "bytes": a.bytes, "path": local.unwrap_or_else(|| a.path.clone())})
        })
        .collect();
    let mut v = serde_json::json!({
        "id": m.id, "from": m.sender, "to": m.recipient, "type": m.kind, "content": m.content,
        "thread": m.thread, "sent_at": m.created_at.to_rfc3339(),
    });
    if let Some(r) = m.reply_to {
        v["reply_to"] = r.into();
    }
    if !attachments.is_empty() {
        v["attachments"] = attachments.into();
    }
    if m.metadata.as_object().is_some_and(|o| !o.is_empty()) {
        v["metadata"] = m.metadata.clone();
    }
    v
}

/// Checks one write to an agent's state.
pub(crate) async fn check_state_write(s: &Shared, agent: &str, key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > 128 || key.chars().any(|c| c.is_ascii_control()) {
        return Err(format!("`{key}` is not a state key; use 1 to 128 characters, none of them a control character"));
    }
    if value.chars().count() > STATE_MAX_VALUE {
        return Err(format!("the value is {} characters; a state value holds at most {STATE_MAX_VALUE}", value.chars().count()));
    }
    let all = s.store.agent_state(agent).await.map_err(|e| e.to_string())?;
    if all.len() >= STATE_MAX_KEYS && !all.iter().any(|e| e.key == key) {
        return Err(format!("agent `{agent}` has {STATE_MAX_KEYS} state keys, the most it may; remove one first"));
    }
    Ok(())
}
