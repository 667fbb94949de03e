//! The tools an agent may call. Arguments are checked against each tool's JSON schema (by
//! typed deserialisation with unknown fields refused); a bad call comes back to the model as
//! an error it can correct, never as the end of the loop.

mod files;
mod http;
pub mod search;
mod shell;

use crate::confine::Workspace;
use crate::host::{Host, NewAgentSchedule, Owner};
use crate::msg::ToolSpec;
use crate::policy::Policy;
use owl_core::agent::AgentSettings;
use owl_core::TaskId;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub use http::{is_public, HttpLimits};

/// Everything a tool call may use.
pub struct ToolCtx {
    pub ws: Workspace,
    pub policy: Policy,
    pub owner: Owner,
    pub agent_name: String,
    pub agent: AgentSettings,
    /// How deep this task is in a chain of subtasks (0 = submitted by a person).
    pub depth: u32,
    pub host: Arc<dyn Host>,
    /// The environment of shell calls, already scrubbed of secrets.
    pub env: Vec<(String, String)>,
    pub shell_timeout: Duration,
    /// The sandbox for shell calls (with the agent's `sandbox = true`).
    pub sandbox: Option<SandboxBase>,
    pub output_max: usize,
    pub http: HttpLimits,
    /// The agent's `web_search` backend, if it has one.
    pub search: Option<Arc<search::Searcher>>,
    /// Tools of the MCP servers the agent lists in `mcp`, and the hub that calls them.
    pub mcp: Vec<crate::mcp::McpTool>,
    pub mcp_hub: Option<Arc<dyn crate::mcp::McpTools>>,
    /// A team run: the team tools are allowed whatever the agent's `tools` say.
    pub team: bool,
}

/// What the daemon knows about sandboxing: the trampoline binary, what stays hidden, limits.
#[derive(Clone, Debug, Default)]
pub struct SandboxBase {
    pub exe: std::path::PathBuf,
    pub hidden: Vec<std::path::PathBuf>,
    pub writable: Vec<std::path::PathBuf>,
    pub limits: owl_sandbox::Limits,
    /// Deny internet sockets with seccomp instead of a network namespace.
    pub seccomp_net: bool,
}

#[derive(Debug, PartialEq)]
pub enum ToolOutcome {
    Ok(String),
    Err(String),
    /// Policy wants a human to decide this call first.
    NeedsApproval(String),
}

/// Schemas of the named tools, for the model.
pub fn specs(names: &[String]) -> Vec<ToolSpec> {
    names.iter().filter_map(|n| spec(n)).collect()
}

pub fn spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "shell" => (
            "Run a shell command (sh -c) in the workspace. Returns the exit code, stdout and stderr. Some commands are refused or need a human's approval.",
            json!({"type": "object", "properties": {"command": {"type": "string", "description": "the command line"}}, "required": ["command"], "additionalProperties": false}),
        ),
        "read_file" => (
            "Read a text file of the workspace. Optionally a range of lines (1-based).",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "offset": {"type": "integer", "minimum": 1}, "limit": {"type": "integer", "minimum": 1}}, "required": ["path"], "additionalProperties": false}),
        ),
        "write_file" => (
            "Create or overwrite a file of the workspace with the given content.",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"], "additionalProperties": false}),
        ),
        "edit_file" => (
            "Replace an exact piece of text in a workspace file. `old` must occur exactly once unless replace_all is true.",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}, "replace_all": {"type": "boolean"}}, "required": ["path", "old", "new"], "additionalProperties": false}),
        ),
        "list_dir" => (
            "List a directory of the workspace (default: its root).",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": false}),
        ),
        "grep" => (
            "Search workspace files for a fixed string (not a regex). Returns path:line: text for each match.",
            json!({"type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}, "ignore_case": {"type": "boolean"}}, "required": ["pattern"], "additionalProperties": false}),
        ),
        "http_fetch" => (
            "HTTP GET a URL and return its status and body (size-capped). A web page comes back as its readable text unless raw is true. Private and loopback addresses are refused.",
            json!({"type": "object", "properties": {"url": {"type": "string"}, "raw": {"type": "boolean"}}, "required": ["url"], "additionalProperties": false}),
        ),
        "web_search" => (
            "Search the web. Returns titles, URLs and snippets; read a result with http_fetch.",
            json!({"type": "object", "properties": {"query": {"type": "string"}, "count": {"type": "integer", "minimum": 1, "maximum": 20}}, "required": ["query"], "additionalProperties": false}),
        ),
        "task_create" => (
            "Hand a subtask to an agent. Returns the new task's id; read its outcome later with task_result.",
            json!({"type": "object", "properties": {"agent": {"type": "string"}, "prompt": {"type": "string"}}, "required": ["prompt"], "additionalProperties": false}),
        ),
        "delegate" => (
            "Hand work to other agents as child tasks and wait for their results (you give up your worker slot meanwhile). Each task names an `agent`, or the capabilities it `needs` with a `complexity` from 1 to 10. `after` lists positions (from 0) of tasks in this call that must succeed first. A task with `review_of` reviews those tasks: if its answer starts with CHANGES, they are redone with its comments, a bounded number of rounds.",
            json!({"type": "object", "properties": {"tasks": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {"prompt": {"type": "string"}, "agent": {"type": "string"}, "needs": {"type": "array", "items": {"type": "string"}}, "complexity": {"type": "integer", "minimum": 1, "maximum": 10}, "after": {"type": "array", "items": {"type": "integer", "minimum": 0}}, "review_of": {"type": "array", "items": {"type": "integer", "minimum": 0}}}, "required": ["prompt"], "additionalProperties": false}}, "wait": {"type": "boolean", "description": "wait for the results (default true)"}}, "required": ["tasks"], "additionalProperties": false}),
        ),
        "send_message" => (
            "Send a message to another agent (`agent:NAME`), a task (`task:ID`) or every agent (`all`). Attach workspace files by path; they are copied.",
            json!({"type": "object", "properties": {"to": {"type": "string"}, "content": {"type": "string"}, "type": {"type": "string", "description": "e.g. note, question, answer, handoff"}, "reply_to": {"type": "integer", "minimum": 1}, "attachments": {"type": "array", "items": {"type": "string"}}}, "required": ["to", "content"], "additionalProperties": false}),
        ),
        "read_messages" => (
            "Read the messages sent to you (and to your task) that you have not read yet.",
            json!({"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 50}}, "additionalProperties": false}),
        ),
        "state_get" => (
            "Read your persistent state (notes that outlive this task): one key with its version, or every key.",
            json!({"type": "object", "properties": {"key": {"type": "string"}}, "additionalProperties": false}),
        ),
        "state_set" => (
            "Write one key of your persistent state. Give the version you read (0 for a new key) and the write is refused if it changed since.",
            json!({"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}, "version": {"type": "integer", "minimum": 0}}, "required": ["key", "value"], "additionalProperties": false}),
        ),
        "task_result" => (
            "The status and result of a task by id.",
            json!({"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"], "additionalProperties": false}),
        ),
        "schedule_create" => (
            "Schedule a follow-up prompt for an agent: give exactly one of cron (e.g. \"0 9 * * *\"), every (e.g. \"1h\") or at (RFC 3339).",
            json!({"type": "object", "properties": {"name": {"type": "string"}, "prompt": {"type": "string"}, "agent": {"type": "string"}, "cron": {"type": "string"}, "every": {"type": "string"}, "at": {"type": "string"}, "max_runs": {"type": "integer", "minimum": 1}}, "required": ["name", "prompt"], "additionalProperties": false}),
        ),
        "memory_search" => (
            "Search long-term memory (facts, preferences, past tasks and conversations) by meaning and words. Returns the best matches with their ids.",
            json!({"type": "object", "properties": {"query": {"type": "string"}, "k": {"type": "integer", "minimum": 1, "maximum": 20}}, "required": ["query"], "additionalProperties": false}),
        ),
        "memory_add" => (
            "Remember something for later tasks: a fact, a preference or a lesson learned. Near-duplicates are merged.",
            json!({"type": "object", "properties": {"text": {"type": "string"}, "kind": {"type": "string", "enum": ["knowledge", "preference", "task", "conversation"]}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["text"], "additionalProperties": false}),
        ),
        "schedule_manage" => (
            "Pause, resume or cancel a schedule that an agent created.",
            json!({"type": "object", "properties": {"name": {"type": "string"}, "action": {"type": "string", "enum": ["pause", "resume", "cancel"]}}, "required": ["name", "action"], "additionalProperties": false}),
        ),
        "github_issue_create" => (
            "Open an issue on a GitHub repository (owner/name). Each call waits for a person's approval.",
            json!({"type": "object", "properties": {"repo": {"type": "string", "description": "owner/name"}, "title": {"type": "string"}, "body": {"type": "string"}}, "required": ["repo", "title", "body"], "additionalProperties": false}),
        ),
        "github_comment" => (
            "Comment on a GitHub issue or pull request. Each call waits for a person's approval.",
            json!({"type": "object", "properties": {"repo": {"type": "string", "description": "owner/name"}, "number": {"type": "integer", "minimum": 1}, "body": {"type": "string"}}, "required": ["repo", "number", "body"], "additionalProperties": false}),
        ),
        _ => return None,
    };
    Some(ToolSpec { name: name.into(), description: description.into(), parameters })
}

/// Parses arguments into the tool's typed form; the error says what to fix.
fn args<T: DeserializeOwned>(tool: &str, v: &Value) -> Result<T, String> {
    let v = match v {
        Value::String(s) => {
            return Err(format!("the arguments of {tool} are not a JSON object: {}", s.chars().take(200).collect::<String>()))
        }
        Value::Null => json!({}),
        v => v.clone(),
    };
    serde_json::from_value(v).map_err(|e| format!("invalid arguments for {tool}: {e}; see the tool's schema"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskCreateArgs {
    #[serde(default)]
    agent: Option<String>,
    prompt: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateArgs {
    tasks: Vec<crate::host::Delegation>,
    #[serde(default)]
    wait: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    to: String,
    content: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    reply_to: Option<i64>,
    #[serde(default)]
    attachments: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateGetArgs {
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateSetArgs {
    key: String,
    value: String,
    #[serde(default)]
    version: Option<u64>,
}

/// Tools whose interrupted call is run again on resume instead of being reported as maybe
/// done: each is idempotent per call id (children and messages are made once, a read gives
/// the same messages back).
pub const REPLAYABLE: &[&str] = &["delegate", "send_message", "read_messages"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskResultArgs {
    id: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleCreateArgs {
    name: String,
    prompt: String,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    max_runs: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemorySearchArgs {
    query: String,
    #[serde(default)]
    k: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryAddArgs {
    text: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Tools that act outside owl in someone else's name: every call is asked, like a risky shell
/// command, whatever the agent's `ask` list says.
pub const ALWAYS_ASK: &[&str] = &["github_issue_create", "github_comment"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueArgs {
    repo: String,
    title: String,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentArgs {
    repo: String,
    number: u64,
    body: String,
}

fn check_repo(repo: &str) -> Result<(), String> {
    owl_core::coding::parse_issue_ref(&format!("{repo}#1"))
        .map(|_| ())
        .map_err(|_| format!("`{repo}` is not a GitHub repository; write it as owner/name"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleManageArgs {
    name: String,
    action: String,
}

/// Runs one call. `approved` is true when a human approved this exact call.
pub async fn call(ctx: &ToolCtx, name: &str, arguments: &Value, approved: bool) -> ToolOutcome {
    call_with_id(ctx, name, arguments, approved, "").await
}

/// [`call`] for a call with the provider's id (what makes delegation and messages idempotent).
pub async fn call_with_id(ctx: &ToolCtx, name: &str, arguments: &Value, approved: bool, call_id: &str) -> ToolOutcome {
    if let Some(t) = ctx.mcp.iter().find(|t| t.name == name) {
        return mcp_call(ctx, t, arguments, approved).await;
    }
    let allowed = (ctx.team && owl_core::agent::TEAM_TOOLS.contains(&name))
        || if ctx.agent.tools.is_empty() {
            owl_core::agent::DEFAULT_TOOLS.contains(&name)
        } else {
            ctx.agent.tools.iter().any(|t| t == name)
        };
    if !allowed {
        return ToolOutcome::Err(format!("there is no tool `{name}` for this agent"));
    }
    let r = match name {
        "shell" => return shell::run(ctx, arguments, approved).await,
        "read_file" | "write_file" | "edit_file" | "list_dir" | "grep" => files::call(ctx, name, arguments).await,
        "http_fetch" => http::fetch(ctx, arguments).await,
        "web_search" => search::call(ctx, arguments).await,
        "task_create" => task_create(ctx, arguments).await,
        "delegate" => delegate(ctx, arguments, call_id).await,
        "send_message" => match args::<SendArgs>(name, arguments) {
            Ok(a) => {
                let m = crate::host::OutgoingMessage {
                    owner: ctx.owner,
                    sender: ctx.agent_name.clone(),
                    to: a.to,
                    kind: a.kind.unwrap_or_else(|| "note".into()),
                    content: a.content,
                    reply_to: a.reply_to,
                    attachments: a.attachments,
                    workspace: ctx.ws.root().to_path_buf(),
                    key: format!("{}:{call_id}", ctx.owner.key()),
                };
                ctx.host.send_message(m).await.map(|v| v.to_string()).map_err(String::from)
            }
            Err(e) => Err(e),
        },
        "read_messages" => match args::<ReadArgs>(name, arguments) {
            Ok(a) => ctx
                .host
                .read_messages(ctx.owner, &ctx.agent_name, call_id, a.limit.unwrap_or(20).clamp(1, 50), ctx.ws.root())
                .await
                .map(|v| v.to_string())
                .map_err(String::from),
            Err(e) => Err(e),
        },
        "state_get" => match args::<StateGetArgs>(name, arguments) {
            Ok(a) => ctx.host.state_get(&ctx.agent_name, a.key.as_deref()).await.map(|v| v.to_string()).map_err(String::from),
            Err(e) => Err(e),
        },
        "state_set" => match args::<StateSetArgs>(name, arguments) {
            Ok(a) => ctx.host.state_set(&ctx.agent_name, &a.key, &a.value, a.version).await.map(|v| v.to_string()).map_err(String::from),
            Err(e) => Err(e),
        },
        "task_result" => match args::<TaskResultArgs>(name, arguments) {
            Ok(a) => ctx.host.task_result(TaskId(a.id)).await.map(|v| v.to_string()).map_err(String::from),
            Err(e) => Err(e),
        },
        "schedule_create" => schedule_create(ctx, arguments).await,
        "memory_search" => match args::<MemorySearchArgs>(name, arguments) {
            Ok(a) => ctx.host.memory_search(&ctx.agent_name, &a.query, a.k.unwrap_or(5).clamp(1, 20)).await.map_err(String::from),
            Err(e) => Err(e),
        },
        "memory_add" => match args::<MemoryAddArgs>(name, arguments) {
            Ok(a) => {
                let kind = a.kind.unwrap_or_else(|| "knowledge".into());
                ctx.host.memory_add(ctx.owner, &ctx.agent_name, &a.text, &kind, a.tags).await.map_err(String::from)
            }
            Err(e) => Err(e),
        },
        "schedule_manage" => match args::<ScheduleManageArgs>(name, arguments) {
            Ok(a) if matches!(a.action.as_str(), "pause" | "resume" | "cancel") => {
                ctx.host.manage_schedule(&a.name, &a.action).await.map(|v| v.to_string()).map_err(String::from)
            }
            Ok(a) => Err(format!("action `{}` is not one of pause, resume, cancel", a.action)),
            Err(e) => Err(e),
        },
        "github_issue_create" if approved => match args::<IssueArgs>(name, arguments) {
            Ok(a) => match check_repo(&a.repo) {
                Ok(()) => ctx.host.github_issue(ctx.owner, &a.repo, &a.title, &a.body).await.map(|v| v.to_string()).map_err(String::from),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        "github_comment" if approved => match args::<CommentArgs>(name, arguments) {
            Ok(a) => match check_repo(&a.repo) {
                Ok(()) => ctx.host.github_comment(ctx.owner, &a.repo, a.number, &a.body).await.map(|v| v.to_string()).map_err(String::from),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        "github_issue_create" | "github_comment" => return ToolOutcome::NeedsApproval(format!("{name} acts on GitHub in your name")),
        _ => Err(format!("there is no tool `{name}`")),
    };
    match r {
        Ok(s) => ToolOutcome::Ok(cap(s, ctx.output_max)),
        Err(e) => ToolOutcome::Err(e),
    }
}

async fn mcp_call(ctx: &ToolCtx, t: &crate::mcp::McpTool, arguments: &Value, approved: bool) -> ToolOutcome {
    if t.ask && !approved {
        return ToolOutcome::NeedsApproval(format!(
            "{} of MCP server `{}` is set to ask (mcp.servers.{}.policy or .tools)",
            t.tool, t.server, t.server
        ));
    }
    if !arguments.is_object() {
        return ToolOutcome::Err(format!("the arguments of {} must be a JSON object", t.name));
    }
    let Some(hub) = &ctx.mcp_hub else {
        return ToolOutcome::Err("MCP servers are not available in this daemon".into());
    };
    match hub.call(t, arguments.clone()).await {
        Ok(s) => ToolOutcome::Ok(cap(s, ctx.output_max)),
        Err(e) => ToolOutcome::Err(e),
    }
}

async fn task_create(ctx: &ToolCtx, arguments: &Value) -> Result<String, String> {
    let a: TaskCreateArgs = args("task_create", arguments)?;
    let depth = ctx.depth + 1;
    if depth > ctx.agent.max_subtask_depth {
        return Err(format!(
            "subtasks may nest at most {} deep (agents.{}.max_subtask_depth); do this step yourself",
            ctx.agent.max_subtask_depth, ctx.agent_name
        ));
    }
    let agent = a.agent.unwrap_or_else(|| ctx.agent_name.clone());
    let id = ctx.host.create_task(ctx.owner, &agent, &a.prompt, depth).await?;
    Ok(json!({"task_id": id, "agent": agent, "status": "queued"}).to_string())
}

async fn delegate(ctx: &ToolCtx, arguments: &Value, call_id: &str) -> Result<String, String> {
    let a: DelegateArgs = args("delegate", arguments)?;
    if a.tasks.is_empty() {
        return Err("give at least one task".into());
    }
    let depth = ctx.depth + 1;
    if depth > ctx.agent.max_subtask_depth {
        return Err(format!(
            "delegation may nest at most {} deep (agents.{}.max_subtask_depth); do this work yourself",
            ctx.agent.max_subtask_depth, ctx.agent_name
        ));
    }
    if a.tasks.len() as u32 > ctx.agent.max_children {
        return Err(format!(
            "{} tasks in one call; this agent may delegate at most {} in all (agents.{}.max_children)",
            a.tasks.len(),
            ctx.agent.max_children,
            ctx.agent_name
        ));
    }
    let n = a.tasks.len();
    for (i, t) in a.tasks.iter().enumerate() {
        if let Some(bad) = t.after.iter().chain(&t.review_of).find(|p| **p >= n || **p == i) {
            return Err(format!("tasks[{i}] refers to position {bad}, which is not another task of this call (0 to {})", n - 1));
        }
        if t.agent.is_some() && (!t.needs.is_empty() || t.complexity.is_some()) {
            return Err(format!("tasks[{i}]: give either `agent` or `needs`/`complexity`, not both"));
        }
    }
    let req = crate::host::DelegateRequest {
        owner: ctx.owner,
        agent: ctx.agent_name.clone(),
        depth: ctx.depth,
        call_id: call_id.to_string(),
        workspace: ctx.ws.root().to_path_buf(),
        items: a.tasks,
        max_children: ctx.agent.max_children,
        max_rounds: ctx.agent.max_review_rounds,
        wait: a.wait.unwrap_or(true),
    };
    ctx.host.delegate(req).await.map(|v| v.to_string()).map_err(String::from)
}

async fn schedule_create(ctx: &ToolCtx, arguments: &Value) -> Result<String, String> {
    let a: ScheduleCreateArgs = args("schedule_create", arguments)?;
    if [a.cron.is_some(), a.every.is_some(), a.at.is_some()].iter().filter(|b| **b).count() != 1 {
        return Err("give exactly one of cron, every or at".into());
    }
    let made = ctx.host.schedules_created_by(ctx.owner).await?;
    if made >= ctx.agent.max_schedules {
        return Err(format!("this task already made {made} schedules, the most it may (agents.{}.max_schedules)", ctx.agent_name));
    }
    let agent = a.agent.unwrap_or_else(|| ctx.agent_name.clone());
    let v = ctx
        .host
        .create_schedule(
            ctx.owner,
            NewAgentSchedule { name: a.name, cron: a.cron, every: a.every, at: a.at, agent, prompt: a.prompt, max_runs: a.max_runs },
        )
        .await?;
    Ok(v.to_string())
}

/// Cuts text to `max` bytes on a character boundary, saying how much was left out.
pub fn cap(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("\n[... {} more bytes not shown]", total - cut));
    s
}
