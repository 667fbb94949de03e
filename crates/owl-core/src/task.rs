//! Tasks: what to run (`TaskSpec`), where a task is in its life (`TaskState`), and its attempts (`Run`).

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A task's id: a positive integer assigned by the store, shown to users as-is (`owl show 12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

/// On the wire a task id is a positive integer.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TaskId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))).minimum(Some(1)).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TaskId {}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for TaskId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().trim_start_matches('#').parse::<i64>() {
            Ok(n) if n > 0 => Ok(TaskId(n)),
            _ => Err(format!("`{s}` is not a task id; ids are positive integers like 12")),
        }
    }
}

/// What a task executes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// A program and its arguments, executed directly with no shell in between.
    Argv(Vec<String>),
    /// A string handed to `/bin/sh -c`.
    Shell(String),
    /// A prompt worked through by a configured agent (the built-in tool loop).
    Agent {
        agent: String,
        prompt: String,
        /// What the task (and the subtasks it makes) may spend in all (`owl add --max-cost`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_cost_usd: Option<crate::budget::Dollars>,
        /// How the agent was chosen, for a task that asked for capabilities instead of naming
        /// one (`agent` is empty until owl routes it at submission).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<crate::routing::Routing>,
        /// A team run: the agent may delegate to the other agents (`delegate`) and message
        /// them, and is told who they are (`owl add --team`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        team: bool,
        /// The workspace template (`[templates.NAME]`) set up before the agent starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
    },
    /// A prompt given to a coding CLI: a profile name (`claude`, `codex`, …, or one from the
    /// config) or `custom:TEMPLATE`.
    Cli {
        cli: String,
        prompt: String,
        /// Give the CLI owl's own MCP server, scoped to this task (Claude Code and Codex).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        owl_mcp: bool,
        /// What the run may spend (passed to a CLI that takes a cap, such as Claude Code).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_cost_usd: Option<crate::budget::Dollars>,
        /// The workspace template (`[templates.NAME]`) set up before the CLI starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
    },
}

impl Command {
    /// An agent task with every option at its default: no cost cap, no routing, not a team
    /// run, no template.
    pub fn agent(agent: impl Into<String>, prompt: impl Into<String>) -> Command {
        Command::Agent { agent: agent.into(), prompt: prompt.into(), max_cost_usd: None, route: None, team: false, template: None }
    }

    /// The workspace template the task names, if any.
    pub fn template(&self) -> Option<&str> {
        match self {
            Command::Agent { template, .. } | Command::Cli { template, .. } => template.as_deref(),
            _ => None,
        }
    }

    /// The task's own spending cap, if it has one.
    pub fn max_cost(&self) -> Option<crate::budget::Dollars> {
        match self {
            Command::Agent { max_cost_usd, .. } | Command::Cli { max_cost_usd, .. } => *max_cost_usd,
            _ => None,
        }
    }
}

impl Command {
    /// The argv that is actually executed; `None` for work that runs in the daemon (agents).
    pub fn to_argv(&self) -> Option<Vec<String>> {
        match self {
            Command::Argv(v) => Some(v.clone()),
            Command::Shell(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
            Command::Agent { .. } | Command::Cli { .. } => None,
        }
    }

    /// A one-line rendering for listings.
    pub fn display(&self) -> String {
        match self {
            Command::Argv(v) => v
                .iter()
                .map(|a| {
                    if a.is_empty() || a.chars().any(|c| c.is_whitespace() || "'\"$`\\|&;<>()*?".contains(c)) {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
            Command::Shell(s) => s.clone(),
            Command::Agent { agent, prompt, .. } => format!("agent:{agent} {}", first_line(prompt)),
            Command::Cli { cli, prompt, .. } => {
                let name = if cli.starts_with("custom:") { "custom" } else { cli };
                format!("cli:{name} {}", first_line(prompt))
            }
        }
    }
}

/// A prompt's first line, shortened for listings.
pub fn first_line(prompt: &str) -> String {
    let line = prompt.lines().next().unwrap_or_default();
    let short: String = line.chars().take(80).collect();
    let more = if short.len() < prompt.trim_end().len() { "…" } else { "" };
    format!("{short}{more}")
}

/// A task that works on a git repository: in its own worktree on branch `owl/task-<id>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoRequest {
    /// The repository (absolute path).
    pub path: String,
    /// Where the branch starts; `None` is the repository's HEAD when the task first runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Push the branch to this remote after the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<String>,
    /// After the push, open a pull request for the branch (or update the open one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pr: bool,
    /// The GitHub repository as `owner/name`; default: the last two parts of the push
    /// remote's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<String>,
    /// The GitHub issue the task works on: its text is the prompt, the pull request links it,
    /// and a comment on it says how the task ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<u64>,
}

/// Everything a submitter says about a task. Defaults are filled in before it reaches the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub command: Command,
    /// Added to the daemon's environment for this task.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Higher runs first among ready tasks.
    #[serde(default)]
    pub priority: i32,
    pub group: String,
    /// Do not start before this instant.
    #[serde(default)]
    pub run_at: Option<Timestamp>,
    /// Wall-clock limit for one attempt, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Total attempts allowed (1 = no retries).
    pub max_attempts: u32,
    #[serde(default)]
    pub depends_on: Vec<TaskId>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Working directory; `None` means the task's own workspace under the data dir.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Files written into the workspace before the task starts (a webhook's payload, say),
    /// each with its absolute path in an environment variable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputFile>,
    /// What the submitter said about the sandbox; `None` follows the configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxRequest>,
    /// Work in a git worktree of this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoRequest>,
    /// What made the task; `None` is a person or a client of the API. Set by owl, never
    /// taken from a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// What made a task (other than a person or a client).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A schedule's fire for the slot `slot`.
    Schedule { name: String, slot: crate::Timestamp },
    /// A trigger's fire; `depth` counts the trigger-made tasks in the chain that led here.
    Trigger { name: String, depth: u32 },
    /// An agent's `task_create`: a subtask of `parent` (an agent task or a chat), `depth`
    /// levels below the work a person submitted.
    Agent { parent: crate::agent::Owner, depth: u32 },
}

impl Origin {
    /// How deep below a person's work an agent-made task sits (0 for anything else).
    pub fn agent_depth(origin: Option<&Origin>) -> u32 {
        match origin {
            Some(Origin::Agent { depth, .. }) => *depth,
            _ => 0,
        }
    }

    /// One line for people: `schedule nightly (slot 2026-12-01T02:00:00Z)`, `trigger on-push`,
    /// `agent subtask of task:12 (depth 1)`.
    pub fn describe(&self) -> String {
        match self {
            Origin::Schedule { name, slot } => format!("schedule {name} (slot {})", slot.to_rfc3339()),
            Origin::Trigger { name, depth } if *depth > 1 => format!("trigger {name} (chain depth {depth})"),
            Origin::Trigger { name, .. } => format!("trigger {name}"),
            Origin::Agent { parent, depth } => format!("agent subtask of {} (depth {depth})", parent.key()),
        }
    }
}

/// A task's sandbox choice, recorded as given (an explicit `--no-sandbox` stays visible).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SandboxRequest {
    /// `Some(false)` is an explicit opt-out; `None` follows the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Keep the network (otherwise a sandboxed task has none).
    #[serde(default)]
    pub allow_net: bool,
    /// Without `allow_net`: hosts the task may still reach through the sandbox's allowlist
    /// proxy (`host`, `host:port`, `*.domain`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// Secret-looking variables passed anyway, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_env: Vec<String>,
    /// More absolute paths the task may write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<String>,
}

/// A file handed to a task: written to `<workspace>/<file>`, its path in `$<env>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    pub env: String,
    pub file: String,
    pub content: String,
}

pub const DEFAULT_GROUP: &str = "default";

impl TaskSpec {
    /// A spec with every option at its default: default group, priority 0, one attempt,
    /// no timeout, no dependencies, the task's own workspace.
    pub fn new(command: Command) -> Self {
        TaskSpec {
            command,
            env: BTreeMap::new(),
            priority: 0,
            group: DEFAULT_GROUP.to_string(),
            run_at: None,
            timeout_ms: None,
            max_attempts: 1,
            depends_on: vec![],
            idempotency_key: None,
            labels: vec![],
            cwd: None,
            inputs: vec![],
            sandbox: None,
            repo: None,
            origin: None,
        }
    }
}

/// Why a task is waiting.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum WaitReason {
    /// Delayed start (`--in`, `--at`).
    Time { until: Timestamp },
    /// Backing off before the next attempt.
    Retry { until: Timestamp, failed_attempts: u32 },
    /// Some dependencies have not succeeded yet.
    Dependencies { pending: Vec<TaskId> },
    /// A budget has no room: the task resumes by itself at `until` (when the scope's period
    /// resets; [`crate::budget::NO_RESET`] for a cap that never does) or when the limit is raised.
    Budget { until: Timestamp, scope: String, reason: String },
}

impl WaitReason {
    /// The budget wait as the store keeps it in the task's `reason` column.
    pub fn budget_note(scope: &str, reason: &str) -> String {
        serde_json::json!({"budget": {"scope": scope, "reason": reason}}).to_string()
    }

    /// Reads a budget wait back from the `reason` column.
    pub fn from_budget_note(note: &str, until: Timestamp) -> Option<WaitReason> {
        let v: serde_json::Value = serde_json::from_str(note).ok()?;
        let b = v.get("budget")?;
        Some(WaitReason::Budget { until, scope: b["scope"].as_str()?.to_string(), reason: b["reason"].as_str()?.to_string() })
    }
}

/// Where a task is in its life. Each state carries exactly the data that exists in it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TaskState {
    /// Ready: will start as soon as a worker and its group allow.
    Queued,
    Waiting {
        reason: WaitReason,
    },
    Running {
        attempt: u32,
        node: String,
        started_at: Timestamp,
        lease_until: Timestamp,
        cancel_requested: bool,
    },
    Succeeded {
        attempt: u32,
        finished_at: Timestamp,
    },
    Failed {
        finished_at: Timestamp,
        reason: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    TimedOut {
        attempt: u32,
        finished_at: Timestamp,
    },
    Cancelled {
        finished_at: Timestamp,
        reason: Option<String>,
    },
}

/// The status names used in filters, the database and the CLI.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Waiting,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] =
        [Status::Queued, Status::Waiting, Status::Running, Status::Succeeded, Status::Failed, Status::TimedOut, Status::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::TimedOut | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Status::ALL.into_iter().find(|st| st.as_str() == norm).ok_or_else(|| {
            format!("`{s}` is not a task status; use one of: {}", Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
        })
    }
}

impl TaskState {
    pub fn status(&self) -> Status {
        match self {
            TaskState::Queued => Status::Queued,
            TaskState::Waiting { .. } => Status::Waiting,
            TaskState::Running { .. } => Status::Running,
            TaskState::Succeeded { .. } => Status::Succeeded,
            TaskState::Failed { .. } => Status::Failed,
            TaskState::TimedOut { .. } => Status::TimedOut,
            TaskState::Cancelled { .. } => Status::Cancelled,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status().is_terminal()
    }
}

/// A task as stored: its spec, its state and its bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub state: TaskState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Attempts started so far (the fencing token of the latest claim).
    pub attempts: u32,
    /// Attempts that ended in failure or timeout (counted against `max_attempts`).
    pub failures: u32,
    /// Attempts cut short by a daemon shutdown or crash (not counted against `max_attempts`).
    pub interruptions: u32,
}

/// How one attempt ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
        error: Option<String>,
    },
    TimedOut,
    Cancelled {
        reason: Option<String>,
    },
    /// The daemon stopped or crashed mid-run; the task was put back without using an attempt.
    Interrupted {
        reason: String,
    },
    /// A budget had no room for the next step: the task waits (without using an attempt)
    /// until `until` or until the limit is raised, then resumes where it stopped.
    Paused {
        until: Timestamp,
        scope: String,
        reason: String,
    },
}

impl RunOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Cancelled { .. } => "cancelled",
            RunOutcome::Interrupted { .. } => "interrupted",
            RunOutcome::Paused { .. } => "paused",
        }
    }
}

/// One attempt of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub task_id: TaskId,
    pub attempt: u32,
    pub node: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// `None` while the attempt is still running.
    pub outcome: Option<RunOutcome>,
}

/// A group's limit and what it is doing now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    /// At most this many of the group's tasks run at once; `None` means only the global limit applies.
    pub parallel: Option<u32>,
    pub running: u64,
    pub queued: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_commands_run_through_sh() {
        assert_eq!(Command::Shell("echo hi".into()).to_argv().unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn argv_display_quotes_what_a_shell_would_split() {
        let c = Command::Argv(vec!["echo".into(), "a b".into(), "it's".into()]);
        assert_eq!(c.display(), "echo 'a b' 'it'\\''s'");
    }

    #[test]
    fn status_parses_loosely_and_names_choices_on_error() {
        assert_eq!("timed-out".parse::<Status>().unwrap(), Status::TimedOut);
        assert!("done".parse::<Status>().unwrap_err().contains("succeeded"));
    }

    #[test]
    fn state_serializes_with_a_status_tag() {
        let s = TaskState::Waiting { reason: WaitReason::Dependencies { pending: vec![TaskId(3)] } };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["status"], "waiting");
        assert_eq!(v["reason"]["on"], "dependencies");
        assert_eq!(s.status(), Status::Waiting);
        assert!(!s.is_terminal());
    }

    #[test]
    fn task_ids_parse_with_or_without_hash() {
        assert_eq!("#12".parse::<TaskId>().unwrap(), TaskId(12));
        assert!("0".parse::<TaskId>().is_err());
        assert!("x".parse::<TaskId>().is_err());
    }
}
