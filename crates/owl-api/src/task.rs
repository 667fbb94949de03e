//! Tasks on the wire: what a client submits, and the views of tasks, runs and waits.

use owl_core::task::{Status, DEFAULT_GROUP};
use owl_core::{Command, Run, RunOutcome, Task, TaskId, TaskSpec, TaskState, Timestamp, ValidationError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One task to submit. Give either `command` (argv) or `shell` (a string for `/bin/sh -c`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// RFC 3339 instant, e.g. `2026-12-01T09:00:00+01:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Start after this long, e.g. `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Per attempt, e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Extra attempts after a failure or timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Ids of existing tasks that must succeed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<TaskId>,
    /// In a batch: positions (from 0) of other items that must succeed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_items: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Absolute working directory; default is the task's own workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Run the built-in agent of this name on `prompt` instead of a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Sandbox choice: `{"enabled": true, "allow_net": false, "grant_env": [], "writable": []}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<owl_core::SandboxRequest>,
    /// Give `prompt` to this coding CLI: a profile (`claude`, `codex`, `gemini`, `aider`, or
    /// one from `[cli.NAME]`) or `custom:TEMPLATE` with `{prompt}` and `{workspace}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
    /// Work in a git worktree of this repository: `{"path": "/abs", "base": "main", "push": "origin"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<owl_core::RepoRequest>,
    /// With `cli` (`claude` or `codex`): give the CLI owl's MCP server, scoped to this task (it
    /// may queue follow-up tasks and see those, and search and add memories).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owl_mcp: bool,
    /// With `agent` or `cli`: what this task (with the subtasks it makes) may spend, in US
    /// dollars. Reaching it pauses the task until the cap is raised (`owl budget set task.ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Instead of `agent`: capabilities the agent must have (`["rust"]`); owl routes the task
    /// to an available agent that has them all and whose complexity range holds `complexity`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// The task's size, 1 (trivial) to 10 (hard), matched against agents' ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10)]
    pub complexity: Option<u8>,
    /// With `agent`: a team run. The agent may hand work to the other agents with `delegate`
    /// (a plan of child tasks with dependencies and review rounds), and message them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub team: bool,
    /// With `agent` or `cli`: set the workspace up from this template (`[templates.NAME]`)
    /// before the work starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9._:=/-]{1,128}$")]
    pub template: Option<String>,
}

/// Defaults applied to submissions that leave a field out.
#[derive(Clone, Debug, Default)]
pub struct SpecDefaults {
    pub timeout: Option<std::time::Duration>,
    pub retries: u32,
}

impl SubmitTask {
    /// Builds the spec. Errors name the field as the client sent it.
    pub fn into_spec(mut self, defaults: &SpecDefaults, now: Timestamp) -> Result<TaskSpec, ValidationError> {
        if self.owl_mcp && self.cli.is_none() {
            return Err(ValidationError::new("owl_mcp", "is for coding CLI tasks: give `cli` (claude or codex) with it"));
        }
        let owl_mcp = self.owl_mcp;
        let team = self.team;
        let template = self.template.clone();
        if template.is_some() && self.agent.is_none() && self.cli.is_none() && self.needs.is_empty() && self.complexity.is_none() {
            return Err(ValidationError::new("template", "sets up an agent's or a coding CLI's workspace: give `agent` or `cli` with it"));
        }
        if let Some(t) = &template {
            owl_core::validate::check_name("template", "template", t)?;
        }
        if team && self.agent.is_none() && self.needs.is_empty() && self.complexity.is_none() {
            return Err(ValidationError::new("team", "is for agent tasks: give `agent` (the planner) with it"));
        }
        let route = if self.needs.is_empty() && self.complexity.is_none() {
            None
        } else {
            if self.agent.is_some() || self.cli.is_some() {
                let f = if self.needs.is_empty() { "complexity" } else { "needs" };
                return Err(ValidationError::new(f, "routes a task to an agent: give it instead of `agent` or `cli`, not with them"));
            }
            if self.prompt.is_none() {
                return Err(ValidationError::new("prompt", "missing: a routed agent task needs a prompt saying what to do"));
            }
            Some(owl_core::routing::Routing { needs: self.needs.clone(), complexity: self.complexity, ..Default::default() })
        };
        if route.is_some() {
            self.agent = Some(String::new());
        }
        let max_cost_usd = match self.max_cost_usd {
            Some(_) if self.agent.is_none() && self.cli.is_none() => {
                return Err(ValidationError::new("max_cost_usd", "caps an agent or coding CLI task: give `agent` or `cli` with it"))
            }
            Some(usd) if usd <= 0.0 => return Err(ValidationError::new("max_cost_usd", "must be more than 0 dollars, e.g. 0.30")),
            Some(usd) => Some(owl_core::budget::Dollars::from_usd(usd).map_err(|m| ValidationError::new("max_cost_usd", &m))?),
            None => None,
        };
        let (agent, prompt) = match (self.cli, self.agent, self.prompt) {
            (Some(_), Some(_), _) => return Err(ValidationError::new("cli", "give either `cli` or `agent`, not both")),
            (Some(_), None, None) => {
                return Err(ValidationError::new("prompt", "missing: a coding CLI task needs a prompt saying what to do"))
            }
            (Some(cli), None, Some(prompt)) => {
                if self.command.is_some() || self.shell.is_some() {
                    return Err(ValidationError::new("cli", "give either a command or a coding CLI with a prompt, not both"));
                }
                (Some(Err(cli)), Some(prompt))
            }
            (None, agent, prompt) => (agent.map(Ok), prompt),
        };
        let command = match (self.command, self.shell, agent, prompt) {
            (None, None, Some(Err(cli)), Some(prompt)) => Command::Cli { cli, prompt, owl_mcp, max_cost_usd, template },
            (_, _, Some(Err(_)), _) => unreachable!("checked above"),
            (None, None, Some(Ok(agent)), Some(prompt)) => {
                Command::Agent { agent, prompt, max_cost_usd, route, team, template: template.clone() }
            }
            (_, _, Some(_), None) => return Err(ValidationError::new("prompt", "missing: an agent task needs a prompt saying what to do")),
            (_, _, None, Some(_)) => return Err(ValidationError::new("agent", "missing: a prompt needs an agent to work on it")),
            (Some(_), _, Some(_), _) | (_, Some(_), Some(_), _) => {
                return Err(ValidationError::new("agent", "give either a command or an agent with a prompt, not both"))
            }
            (command, shell, None, None) => match (command, shell) {
                (Some(_), Some(_)) => {
                    return Err(ValidationError::new("command", "give either `command` (argv) or `shell` (a string), not both"))
                }
                (None, None) => {
                    return Err(ValidationError::new(
                        "command",
                        "missing: give `command` as an argv array, e.g. [\"./backup.sh\", \"--full\"], or `shell` as a string",
                    ))
                }
                (Some(argv), None) => Command::Argv(argv),
                (None, Some(s)) => Command::Shell(s),
            },
        };
        let run_at = match (self.run_at, self.delay) {
            (Some(_), Some(_)) => return Err(ValidationError::new("run_at", "give either `run_at` or `delay`, not both")),
            (Some(at), None) => Some(Timestamp::parse_rfc3339(&at).map_err(|m| ValidationError::new("run_at", m))?),
            (None, Some(d)) => Some(now.plus(owl_core::duration::parse(&d).map_err(|m| ValidationError::new("delay", m))?)),
            (None, None) => None,
        };
        let timeout = match self.timeout {
            Some(t) => Some(owl_core::duration::parse(&t).map_err(|m| ValidationError::new("timeout", m))?),
            None => defaults.timeout,
        };
        let retries = self.retries.unwrap_or(defaults.retries);
        let spec = TaskSpec {
            command,
            env: self.env,
            priority: self.priority,
            group: self.group.unwrap_or_else(|| DEFAULT_GROUP.to_string()),
            run_at,
            timeout_ms: timeout.map(|t| t.as_millis().min(u64::MAX as u128) as u64),
            max_attempts: retries.checked_add(1).ok_or_else(|| ValidationError::new("retries", "too large"))?,
            depends_on: self.after,
            idempotency_key: self.idempotency_key,
            labels: self.labels,
            cwd: self.cwd,
            inputs: vec![],
            sandbox: self.sandbox,
            repo: self.repo,
            origin: None,
        };
        owl_core::validate::check_spec(&spec).map_err(|e| match e.field.as_str() {
            "max_attempts" => ValidationError::new("retries", format!("must be at most {}", owl_core::validate::MAX_ATTEMPTS_LIMIT - 1)),
            _ => e,
        })?;
        Ok(spec)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    #[schema(min_items = 1, max_items = 10000)]
    pub tasks: Vec<SubmitTask>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Submitted {
    pub id: TaskId,
    /// False when the idempotency key matched an existing task, which is returned instead.
    pub created: bool,
    pub status: Status,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchSubmitted {
    pub tasks: Vec<Submitted>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Environment variable names that look like credentials; their values are never echoed back.
pub use owl_core::config::looks_secret;

/// A task another one made (`delegate`, `task_create`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChildView {
    pub id: TaskId,
    pub status: Status,
    /// The command as one line.
    pub display: String,
    pub depends_on: Vec<TaskId>,
    /// Its own children, for a graph of the whole team run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub children: Vec<ChildView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunView {
    pub attempt: u32,
    pub node: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub outcome: Option<RunOutcome>,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            attempt: r.attempt,
            node: r.node,
            started_at: r.started_at,
            ended_at: r.ended_at,
            duration_ms: r.ended_at.map(|e| e.since(r.started_at).as_millis() as u64),
            exit_code: r.exit_code,
            signal: r.signal,
            outcome: r.outcome,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    pub id: TaskId,
    pub status: Status,
    /// The full state, with the data of that status (reason, attempt, lease...).
    pub state: TaskState,
    pub command: Command,
    /// The command as one line.
    pub display: String,
    pub group: String,
    pub priority: i32,
    pub labels: Vec<String>,
    /// Values of variables that look like credentials are shown as `<redacted>`.
    pub env: BTreeMap<String, String>,
    pub run_at: Option<Timestamp>,
    pub timeout_ms: Option<u64>,
    pub max_attempts: u32,
    pub attempts: u32,
    pub failures: u32,
    pub interruptions: u32,
    pub depends_on: Vec<TaskId>,
    pub idempotency_key: Option<String>,
    pub cwd: Option<String>,
    /// What made the task (a schedule, a trigger, an agent); absent for a person's or a client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<owl_core::task::Origin>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunView>>,
    /// The tasks it delegated (a team run's plan), in order, with their dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildView>,
    /// The submitter's sandbox choice, as given (`enabled: false` is an explicit opt-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<owl_core::SandboxRequest>,
    /// An agent task's final answer (or why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The repository the task works on, as requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<owl_core::RepoRequest>,
    /// What owl did in git: worktree, branch, base, commit, files changed, push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<owl_core::coding::GitRecord>,
    /// Model calls, tokens and cost of an agent or coding CLI task (when it reported them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TaskUsage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskUsage {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
}

impl From<Task> for TaskView {
    fn from(t: Task) -> Self {
        let env = t.spec.env.into_iter().map(|(k, v)| if looks_secret(&k) { (k, "<redacted>".into()) } else { (k, v) }).collect();
        TaskView {
            id: t.id,
            status: t.state.status(),
            display: t.spec.command.display(),
            state: t.state,
            command: t.spec.command,
            group: t.spec.group,
            priority: t.spec.priority,
            labels: t.spec.labels,
            env,
            run_at: t.spec.run_at,
            timeout_ms: t.spec.timeout_ms,
            max_attempts: t.spec.max_attempts,
            attempts: t.attempts,
            failures: t.failures,
            interruptions: t.interruptions,
            depends_on: t.spec.depends_on,
            idempotency_key: t.spec.idempotency_key,
            cwd: t.spec.cwd,
            origin: t.spec.origin,
            created_at: t.created_at,
            updated_at: t.updated_at,
            runs: None,
            children: vec![],
            sandbox: t.spec.sandbox.clone(),
            result: None,
            repo: t.spec.repo.clone(),
            git: None,
            usage: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaitReply {
    /// True when every task reached a final status before the timeout.
    pub done: bool,
    pub tasks: Vec<TaskView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_000_000);

    #[test]
    fn submit_builds_a_spec_with_defaults() {
        let s = SubmitTask {
            command: Some(vec!["make".into(), "train".into()]),
            retries: Some(3),
            timeout: Some("30m".into()),
            delay: Some("2h".into()),
            ..Default::default()
        };
        let spec = s.into_spec(&SpecDefaults::default(), NOW).unwrap();
        assert_eq!(spec.max_attempts, 4);
        assert_eq!(spec.timeout_ms, Some(1_800_000));
        assert_eq!(spec.run_at, Some(NOW.plus(std::time::Duration::from_secs(7200))));
        assert_eq!(spec.group, "default");
    }

    #[test]
    fn bad_submissions_name_the_field() {
        let cases = [
            (SubmitTask::default(), "command"),
            (SubmitTask { shell: Some("x".into()), command: Some(vec!["x".into()]), ..Default::default() }, "command"),
            (SubmitTask { shell: Some("x".into()), timeout: Some("30".into()), ..Default::default() }, "timeout"),
            (SubmitTask { shell: Some("x".into()), run_at: Some("tomorrow".into()), ..Default::default() }, "run_at"),
            (SubmitTask { shell: Some("x".into()), retries: Some(5000), ..Default::default() }, "retries"),
            (SubmitTask { shell: Some("x".into()), group: Some("a b".into()), ..Default::default() }, "group"),
        ];
        for (s, field) in cases {
            assert_eq!(s.into_spec(&SpecDefaults::default(), NOW).unwrap_err().field, field);
        }
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let e = serde_json::from_str::<SubmitTask>(r#"{"shell":"x","priorty":3}"#).unwrap_err();
        assert!(e.to_string().contains("priorty"), "{e}");
    }

    #[test]
    fn secret_looking_env_values_are_redacted_in_views() {
        let spec = SubmitTask {
            shell: Some("x".into()),
            env: [("API_KEY".to_string(), "canary-123".to_string()), ("MODE".to_string(), "fast".to_string())].into(),
            ..Default::default()
        }
        .into_spec(&SpecDefaults::default(), NOW)
        .unwrap();
        let task = Task {
            id: TaskId(1),
            spec,
            state: TaskState::Queued,
            created_at: NOW,
            updated_at: NOW,
            attempts: 0,
            failures: 0,
            interruptions: 0,
        };
        let json = serde_json::to_string(&TaskView::from(task)).unwrap();
        assert!(!json.contains("canary-123"), "{json}");
        assert!(json.contains("fast"));
    }
}
