//! Delegation: a `delegate` call becomes child tasks on the queue (with dependencies between
//! them), made once per call id however often the call is replayed after a crash. The parent
//! gives up its worker slot while it waits, is woken by the children's finish events, and gets
//! their results. A reviewer that answers `CHANGES …` sends the work it reviewed back with its
//! comments, in a new round of tasks, up to the agent's `max_review_rounds`.

use crate::{Engine, Shared};
use owl_agent::{DelegateRequest, HostError, HostResult};
use owl_core::agent::Owner;
use owl_core::routing::Routing;
use owl_core::task::Origin;
use owl_core::{Command, EventKind, Task, TaskId, TaskSpec};
use owl_store::{NewTask, TaskFilter};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How much of each child's result goes back to the parent.
const RESULT_MAX: usize = 4000;

fn err(e: impl std::fmt::Display) -> HostError {
    HostError::Unavailable(e.to_string())
}

/// The task and the agent of each link from `id` up to the work a person submitted.
pub(crate) async fn chain(s: &Shared, id: TaskId) -> HostResult<Vec<(TaskId, String)>> {
    let mut out = Vec::new();
    let mut at = Some(id);
    while let Some(t) = at {
        let task = s.store.get(t).await.map_err(err)?;
        let agent = match &task.spec.command {
            Command::Agent { agent, .. } => agent.clone(),
            _ => String::new(),
        };
        out.push((t, agent));
        at = match task.spec.origin {
            Some(Origin::Agent { parent: Owner::Task(p), .. }) if out.len() < 64 => Some(p),
            _ => None,
        };
    }
    Ok(out)
}

/// The root of a team run: the first task of the chain.
pub(crate) async fn thread_of(s: &Shared, id: TaskId) -> String {
    match chain(s, id).await {
        Ok(c) => format!("task:{}", c.last().map_or(id, |l| l.0)),
        Err(_) => format!("task:{id}"),
    }
}

/// The tasks `parent` made with `delegate` or `task_create`.
async fn children_of(s: &Shared, parent: &Task) -> HostResult<Vec<Task>> {
    let all = s
        .store
        .list(TaskFilter { kind: Some("agent".into()), created_since: Some(parent.created_at), limit: Some(10_000), ..Default::default() })
        .await
        .map_err(err)?;
    Ok(all.into_iter().filter(|t| matches!(t.spec.origin, Some(Origin::Agent { parent: Owner::Task(p), .. }) if p == parent.id)).collect())
}

impl Engine {
    /// The tasks `id` made with `delegate` or `task_create`, oldest first.
    pub async fn children(&self, id: TaskId) -> Result<Vec<Task>, owl_store::StoreError> {
        let parent = self.shared.store.get(id).await?;
        if !matches!(parent.spec.command, Command::Agent { .. }) {
            return Ok(vec![]);
        }
        let mut out = children_of(&self.shared, &parent).await.map_err(|e| owl_store::StoreError::Backend(e.to_string()))?;
        out.sort_by_key(|t| t.id);
        Ok(out)
    }
}

fn key(parent: TaskId, call: &str, pos: usize, round: u32) -> String {
    format!("delegate:{parent}:{call}:{pos}:{round}")
}

/// Makes one round of children: the tasks at `positions`, with their prompts.
async fn submit_round(
    s: &Arc<Shared>,
    req: &DelegateRequest,
    parent: TaskId,
    chain: &[(TaskId, String)],
    round: u32,
    positions: &[(usize, String)],
    current: &[Option<TaskId>],
) -> HostResult<Vec<(usize, TaskId, String)>> {
    let mut batch = Vec::new();
    for (pos, prompt) in positions {
        let item = &req.items[*pos];
        let route = (!item.needs.is_empty() || item.complexity.is_some()).then(|| Routing {
            needs: item.needs.clone(),
            complexity: item.complexity,
            ..Default::default()
        });
        let agent = item.agent.clone().unwrap_or_default();
        if agent.is_empty() && route.is_none() {
            return Err(HostError::Refused(format!("tasks[{pos}]: give `agent` (one of the team) or the capabilities it `needs`")));
        }
        let header = format!(
            "(Delegated by agent {} in task {parent}; your workspace is shared with the rest of the team. Answer with what you did and found.)\n\n",
            req.agent
        );
        let mut spec = TaskSpec::new(Command::Agent {
            agent,
            prompt: format!("{header}{prompt}"),
            max_cost_usd: None,
            route,
            team: false,
            template: None,
        });
        spec.origin = Some(Origin::Agent { parent: Owner::Task(parent), depth: req.depth + 1 });
        spec.cwd = Some(req.workspace.display().to_string());
        spec.idempotency_key = Some(key(parent, &req.call_id, *pos, round));
        let mut batch_deps = Vec::new();
        let deps = item.after.iter().chain(&item.review_of);
        for d in deps {
            match positions.iter().position(|(p, _)| p == d) {
                Some(i) => batch_deps.push(i),
                None => spec.depends_on.extend(current[*d]),
            }
        }
        spec.depends_on.sort();
        spec.depends_on.dedup();
        batch_deps.sort();
        batch_deps.dedup();
        owl_core::validate::check_spec(&spec).map_err(|e| HostError::Refused(e.to_string()))?;
        batch.push(NewTask { spec, batch_deps });
    }
    // Routing passes over the agents already on the chain that led here; one named outright
    // is refused.
    let on_chain: Vec<String> = chain.iter().map(|(_, a)| a.clone()).collect();
    crate::team::prepare_excluding(s, &mut batch, &on_chain).await.map_err(|e| HostError::Refused(e.to_string()))?;
    for (i, t) in batch.iter().enumerate() {
        if let Command::Agent { agent, .. } = &t.spec.command {
            if let Some((task, _)) = chain.iter().find(|(_, a)| a == agent) {
                let path: Vec<&str> = chain.iter().rev().map(|(_, a)| a.as_str()).collect();
                return Err(HostError::Refused(format!(
                    "tasks[{}] would go to agent {agent}, which is already working on this (task {task}, chain {} -> {agent}): a delegation cycle; do that part yourself or give it to another agent",
                    positions[i].0,
                    path.join(" -> ")
                )));
            }
        }
    }
    let out = Engine { shared: s.clone() }.submit(batch).await.map_err(|e| HostError::Refused(e.to_string()))?;
    // A replayed call gets the children made the first time: their agents are those stored.
    let mut made = Vec::new();
    for ((pos, _), sub) in positions.iter().zip(out) {
        let agent = match s.store.get(sub.id).await.map_err(err)?.spec.command {
            Command::Agent { agent, .. } => agent,
            _ => String::new(),
        };
        made.push((*pos, sub.id, agent));
    }
    Ok(made)
}

/// Runs a `delegate` call to its end: the children, their review rounds, their results.
pub(crate) async fn delegate(s: &Arc<Shared>, req: DelegateRequest) -> HostResult<Value> {
    let Owner::Task(parent) = req.owner else {
        return Err(HostError::refused("only a task can delegate; a chat cannot wait for child tasks (use task_create)"));
    };
    let parent_task = s.store.get(parent).await.map_err(err)?;
    let chain = chain(s, parent).await?;
    let prefix = format!("delegate:{parent}:{}:", req.call_id);
    let others = children_of(s, &parent_task)
        .await?
        .iter()
        .filter(|t| !t.spec.idempotency_key.as_deref().is_some_and(|k| k.starts_with(&prefix)))
        .count();
    if others + req.items.len() > req.max_children as usize {
        return Err(HostError::Refused(format!(
            "this task has delegated {others} tasks already; {} more would pass agents.{}.max_children = {}",
            req.items.len(),
            req.agent,
            req.max_children
        )));
    }
    let mut events = s.events.subscribe();
    let n = req.items.len();
    let mut current: Vec<Option<TaskId>> = vec![None; n];
    let mut agents: Vec<String> = vec![String::new(); n];
    let mut history: Vec<Value> = Vec::new();
    let first: Vec<(usize, String)> = req.items.iter().enumerate().map(|(i, it)| (i, it.prompt.clone())).collect();
    for (pos, id, agent) in submit_round(s, &req, parent, &chain, 0, &first, &current).await? {
        current[pos] = Some(id);
        agents[pos] = agent;
    }
    if !req.wait {
        let children: Vec<Value> =
            (0..n).map(|p| json!({"position": p, "task_id": current[p], "agent": agents[p], "status": "queued"})).collect();
        return Ok(json!({"children": children, "note": "not waiting: read each outcome with task_result"}));
    }
    let mut round = 0u32;
    let mut rounds_used = vec![0u32; n];
    loop {
        let ids: Vec<TaskId> = current.iter().flatten().copied().collect();
        let done = wait_all(s, parent, &ids, &mut events).await?;
        // Reviewers asking for changes, while rounds remain.
        let mut again: Vec<(usize, String)> = Vec::new();
        for (pos, item) in req.items.iter().enumerate().filter(|(_, it)| !it.review_of.is_empty()) {
            let Some(id) = current[pos] else { continue };
            let (status, result) = &done[&id];
            let Some(comments) = changes_asked(result).filter(|_| *status == owl_core::task::Status::Succeeded) else { continue };
            if rounds_used[pos] >= req.max_rounds {
                continue;
            }
            rounds_used[pos] += 1;
            for r in &item.review_of {
                if !again.iter().any(|(p, _)| p == r) {
                    let p = format!(
                        "{}\n\nA reviewer (task {id}) asked for changes to this work; make them:\n{comments}",
                        req.items[*r].prompt
                    );
                    again.push((*r, p));
                }
            }
            again.push((
                pos,
                format!(
                    "{}\n\nReview round {}: the work was redone after your comments; review it again.",
                    item.prompt,
                    rounds_used[pos] + 1
                ),
            ));
        }
        if again.is_empty() {
            let children: Vec<Value> = (0..n)
                .map(|p| {
                    let id = current[p].expect("made");
                    let (status, result) = &done[&id];
                    json!({"position": p, "task_id": id, "agent": agents[p], "status": status, "result": short(result)})
                })
                .collect();
            let failed = children.iter().filter(|c| c["status"] != "succeeded").count();
            let mut out = json!({"children": children, "rounds": round + 1});
            if !history.is_empty() {
                out["earlier_rounds"] = Value::Array(history);
            }
            if failed > 0 {
                out["note"] = json!(format!("{failed} of {n} children did not succeed; see their results"));
            }
            return Ok(out);
        }
        round += 1;
        for (pos, _) in &again {
            if let Some(id) = current[*pos] {
                let (status, result) = &done[&id];
                history.push(json!({"round": round - 1, "position": pos, "task_id": id, "status": status, "result": short(result)}));
            }
        }
        for (pos, id, agent) in submit_round(s, &req, parent, &chain, round, &again, &current).await? {
            current[pos] = Some(id);
            agents[pos] = agent;
        }
    }
}

/// `CHANGES: …` (any case, after whitespace) asks for changes; the rest is the comments.
fn changes_asked(result: &str) -> Option<String> {
    let t = result.trim_start();
    let head: String = t.chars().take(7).collect();
    let boundary = t[head.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric());
    if head.eq_ignore_ascii_case("changes") && boundary && !t[head.len()..].trim_start().to_ascii_lowercase().starts_with("look") {
        let rest = t[head.len()..].trim_start_matches([':', '-', ' ', '\n']).trim();
        Some(if rest.is_empty() { "(no comments given)".to_string() } else { rest.to_string() })
    } else {
        None
    }
}

fn short(s: &str) -> String {
    owl_agent::tools::cap(s.to_string(), RESULT_MAX)
}

/// Waits (holding no worker slot) until every task of `ids` has finished; each one's status
/// and result.
async fn wait_all(
    s: &Arc<Shared>,
    parent: TaskId,
    ids: &[TaskId],
    events: &mut broadcast::Receiver<owl_core::Event>,
) -> HostResult<std::collections::HashMap<TaskId, (owl_core::task::Status, String)>> {
    let mut parked = false;
    let out = loop {
        let mut done = std::collections::HashMap::new();
        for id in ids {
            let t = s.store.get(*id).await.map_err(err)?;
            if t.state.is_terminal() {
                let result = match s.store.task_result(*id).await.map_err(err)? {
                    Some(r) => r,
                    None => match &t.state {
                        owl_core::TaskState::Failed { reason, .. } => reason.clone(),
                        other => format!("{}", other.status()),
                    },
                };
                done.insert(*id, (t.state.status(), result));
            }
        }
        if done.len() == ids.len() {
            break done;
        }
        if !parked {
            // The worker slot goes to other work (the children, first of all) meanwhile.
            parked = s.commands.send(crate::Command::Park(parent)).is_ok();
        }
        // Woken by a child's change; the periodic look covers children on other nodes.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.recv().await {
                    Ok(e) if matches!(e.kind, EventKind::TaskChanged { task_id, .. } if ids.contains(&task_id)) => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
    };
    if parked {
        let (ready, slot) = tokio::sync::oneshot::channel();
        if s.commands.send(crate::Command::Resume(parent, ready)).is_ok() {
            let _ = slot.await;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::changes_asked;

    #[test]
    fn a_review_asks_for_changes_only_when_it_says_so_first() {
        assert_eq!(changes_asked("CHANGES: add a test for empty input").as_deref(), Some("add a test for empty input"));
        assert_eq!(changes_asked("  changes - rename x\n and y").as_deref(), Some("rename x\n and y"));
        assert_eq!(changes_asked("Changes").as_deref(), Some("(no comments given)"));
        assert_eq!(changes_asked("APPROVE. No changes needed."), None);
        assert_eq!(changes_asked("Changeset looks fine"), None);
        assert_eq!(changes_asked("Changes look good to me"), None);
    }
}
