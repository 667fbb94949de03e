//! owl as an MCP server: its queue, schedules, memory and approvals as tools, task logs and
//! transcripts as resources.
//!
//! Every tool is one operation of owl's HTTP API, called through a [`Backend`]: in the daemon
//! the router itself, in process; for `owl mcp serve` the daemon over HTTP. A tool's input
//! schema is built from that operation in the OpenAPI document (its path and query parameters
//! and its JSON body), so the API and the tools cannot drift apart, and an error is the one
//! the CLI shows for the same call.

use async_trait::async_trait;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One reply of owl's API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Where the tools' API calls go.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `path` includes the query string; `body` is sent as JSON.
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply, String>;
}

/// What a connected client may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// List and decide approvals. Off by default: an agent that can approve its own requests
    /// (or another's) makes the approval pointless.
    pub approvals: bool,
    /// A coding CLI task's own server: it may queue tasks (labelled as its own), reach only
    /// itself and those, and search and add memories; no schedules, no approvals.
    pub task: Option<i64>,
}

/// The tools a task-scoped client gets.
const TASK_TOOLS: &[&str] =
    &["task_add", "task_list", "task_show", "task_logs", "task_cancel", "task_retry", "task_wait", "memory_search", "memory_add"];

/// The label on tasks queued through a task's own MCP server.
pub fn child_label(task: i64) -> String {
    format!("mcp-task={task}")
}

/// How a tool changes things, for the client's annotations.
#[derive(Clone, Copy, PartialEq)]
enum Effect {
    Read,
    Write,
    Destructive,
}

/// A tool: one API operation.
struct Op {
    tool: &'static str,
    title: &'static str,
    description: &'static str,
    method: &'static str,
    path: &'static str,
    effect: Effect,
    /// Needs [`Scope::approvals`].
    approvals: bool,
}

const OPS: &[Op] = &[
    Op {
        tool: "task_add",
        title: "Queue a task",
        description: "Queue work for owl: a command (`command` as argv, or `shell`), a built-in agent (`agent` and `prompt`) \
                      or a coding CLI (`cli` and `prompt`). Returns the task with its id.",
        method: "POST",
        path: "/v1/tasks",
        effect: Effect::Write,
        approvals: false,
    },
    Op {
        tool: "task_list",
        title: "List tasks",
        description: "List tasks, newest first, filtered by status, group, label, kind or schedule.",
        method: "GET",
        path: "/v1/tasks",
        effect: Effect::Read,
        approvals: false,
    },
    Op {
        tool: "task_show",
        title: "Show a task",
        description: "One task: its status, attempts, exit code, result and error.",
        method: "GET",
        path: "/v1/tasks/{id}",
        effect: Effect::Read,
        approvals: false,
    },
    Op {
        tool: "task_logs",
        title: "Read a task's output",
        description: "The output of a task's attempt (the latest unless `attempt` is given), its last `tail` lines (default 200).",
        method: "GET",
        path: "/v1/tasks/{id}/logs",
        effect: Effect::Read,
        approvals: false,
    },
    Op {
        tool: "task_cancel",
        title: "Cancel a task",
        description: "Cancel a queued or running task; a running one is stopped.",
        method: "POST",
        path: "/v1/tasks/{id}/cancel",
        effect: Effect::Destructive,
        approvals: false,
    },
    Op {
        tool: "task_retry",
        title: "Retry a task",
        description: "Queue a failed, cancelled or timed-out task again.",
        method: "POST",
        path: "/v1/tasks/{id}/retry",
        effect: Effect::Write,
        approvals: false,
    },
    Op {
        tool: "task_wait",
        title: "Wait for tasks",
        description: "Wait until the given tasks have finished or `timeout` passes (default 30s, at most 5m); returns their states.",
        method: "GET",
        path: "/v1/wait",
        effect: Effect::Read,
        approvals: false,
    },
    Op {
        tool: "schedule_add",
        title: "Add a schedule",
        description: "Add a schedule that queues a task on a cron expression or at an interval.",
        method: "POST",
        path: "/v1/schedules",
        effect: Effect::Write,
        approvals: false,
    },
    Op {
        tool: "schedule_list",
        title: "List schedules",
        description: "Every schedule with its next run.",
        method: "GET",
        path: "/v1/schedules",
        effect: Effect::Read,
        approvals: false,
    },
    Op {
        tool: "schedule_pause",
        title: "Pause a schedule",
        description: "Stop a schedule from queueing tasks until it is resumed.",
        method: "POST",
        path: "/v1/schedules/{name}/pause",
        effect: Effect::Write,
        approvals: false,
    },
    Op {
        tool: "schedule_resume",
        title: "Resume a schedule",
        description: "Let a paused schedule queue tasks again.",
        method: "POST",
        path: "/v1/schedules/{name}/resume",
        effect: Effect::Write,
        approvals: false,
    },
    Op {
        tool: "schedule_run",
        title: "Run a schedule now",
        description: "Queue a schedule's task now, outside its timetable.",
        method: "POST",
        path: "/v1/schedules/{name}/run",
        effect: Effect::Write,
        approvals: false,
    },
    Op {
        tool: "memory_search",
        title: "Search memory",
        description: "Search what owl's agents remember, by meaning and by words.",
        method: "POST",
        path: "/v1/memory/search",
        effect: Effect::Read,
        approvals: false,
    },
    Op {
        tool: "memory_add",
        title: "Remember something",
        description: "Add a memory (a fact, a preference, a lesson) for owl's agents.",
        method: "POST",
        path: "/v1/memory",
        effect: Effect::Write,
        approvals: false,
    },
    Op {
        tool: "approval_list",
        title: "List approvals",
        description: "Agent tool calls waiting for a person's decision.",
        method: "GET",
        path: "/v1/approvals",
        effect: Effect::Read,
        approvals: true,
    },
    Op {
        tool: "approval_approve",
        title: "Approve a tool call",
        description: "Let a waiting agent tool call run.",
        method: "POST",
        path: "/v1/approvals/{id}/approve",
        effect: Effect::Write,
        approvals: true,
    },
    Op {
        tool: "approval_deny",
        title: "Deny a tool call",
        description: "Refuse a waiting agent tool call; the agent is told why.",
        method: "POST",
        path: "/v1/approvals/{id}/deny",
        effect: Effect::Write,
        approvals: true,
    },
];

/// Parameters of an operation that a tool leaves out: following a log keeps the call open
/// until the task ends, which a tool call must not do.
const HIDDEN: &[(&str, &str)] = &[("task_logs", "follow")];

/// Lines of output `task_logs` returns unless told otherwise.
const DEFAULT_TAIL: usize = 200;

/// The tool names this server can offer, approvals included.
pub fn tool_names() -> Vec<&'static str> {
    OPS.iter().map(|o| o.tool).collect()
}

/// A built tool: its definition and how to call it.
struct Built {
    op: &'static Op,
    tool: Tool,
    /// Parameters that go into the path, in the order they appear.
    path_params: Vec<String>,
    query_params: Vec<String>,
    /// Whether the operation takes a JSON body, and whether it must.
    body: Option<bool>,
}

/// The MCP server: cheap to clone, one per connection.
#[derive(Clone)]
pub struct OwlServer {
    backend: Arc<dyn Backend>,
    scope: Scope,
    tools: Arc<Vec<Built>>,
}

impl OwlServer {
    /// Builds the tools from the API's OpenAPI document.
    pub fn new(backend: Arc<dyn Backend>, scope: Scope, openapi: &Value) -> Result<OwlServer, String> {
        let tools = OPS
            .iter()
            .filter(|o| if scope.task.is_some() { TASK_TOOLS.contains(&o.tool) } else { scope.approvals || !o.approvals })
            .map(|o| build(o, openapi))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OwlServer { backend, scope, tools: Arc::new(tools) })
    }

    /// The same server for task `task`: a task-scoped server's tools do not depend on which
    /// task it serves, so one built from the document serves every task without the document.
    pub fn for_task(&self, task: i64) -> Result<OwlServer, String> {
        if self.scope.task.is_none() {
            return Err("only a task-scoped server can be moved to another task".into());
        }
        Ok(OwlServer { backend: self.backend.clone(), scope: Scope { task: Some(task), ..self.scope }, tools: self.tools.clone() })
    }

    /// Builds the server by first reading the OpenAPI document through the backend.
    pub async fn connect(backend: Arc<dyn Backend>, scope: Scope) -> Result<OwlServer, String> {
        let reply = backend.send("GET", "/v1/openapi.json", None).await?;
        if reply.status != 200 {
            return Err(error_message(&reply));
        }
        let doc: Value = serde_json::from_str(&reply.body).map_err(|e| format!("the daemon's OpenAPI document is not JSON: {e}"))?;
        OwlServer::new(backend, scope, &doc)
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The tool definitions, as a client lists them.
    pub fn tools(&self) -> Vec<Tool> {
        self.tools.iter().map(|b| b.tool.clone()).collect()
    }

    /// Whether a task-scoped client may act on task `id`: its own task, or one it queued.
    async fn reach(&self, id: &Value) -> Result<(), String> {
        let Some(owner) = self.scope.task else { return Ok(()) };
        let Some(id) = id.as_i64().or_else(|| id.as_str().and_then(|s| s.trim_start_matches('#').parse().ok())) else {
            return Ok(()); // the API refuses it with its own words
        };
        if id == owner {
            return Ok(());
        }
        let reply = self.backend.send("GET", &format!("/v1/tasks/{id}"), None).await?;
        if reply.status == 404 {
            return Ok(()); // "does not exist", from the API
        }
        let task: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let label = child_label(owner);
        if task["labels"].as_array().is_some_and(|l| l.iter().any(|x| x.as_str() == Some(label.as_str()))) {
            return Ok(());
        }
        Err(format!("task {id} is out of reach: this MCP server belongs to task {owner}, which may reach itself and the tasks it queued"))
    }

    /// A task-scoped client's arguments, confined to its own tasks.
    async fn confine(&self, name: &str, args: &mut Map<String, Value>) -> Result<(), String> {
        let Some(owner) = self.scope.task else { return Ok(()) };
        match name {
            "task_add" => {
                // What a sandboxed CLI queues must not run with more than it has: no agent (its
                // tools reach the network from the daemon), no repository (a push in the
                // daemon's name), and always sandboxed with at most the parent's network.
                for (field, why) in [
                    ("agent", "an agent's tools act from the daemon, outside this task's sandbox"),
                    ("repo", "repository tasks commit and push in the daemon's name"),
                ] {
                    if args.get(field).is_some_and(|v| !v.is_null()) {
                        return Err(format!("`{field}` is not allowed here: {why}; queue a command or a coding CLI task"));
                    }
                }
                let parent = self.backend.send("GET", &format!("/v1/tasks/{owner}"), None).await?;
                let parent: Value = serde_json::from_str(&parent.body).unwrap_or(Value::Null);
                let sandbox = &parent["sandbox"];
                args.insert(
                    "sandbox".into(),
                    json!({
                        "enabled": true,
                        "allow_net": sandbox["allow_net"].as_bool().unwrap_or(false),
                        "allow_hosts": sandbox["allow_hosts"].as_array().cloned().unwrap_or_default(),
                    }),
                );
                let labels = args.entry("labels").or_insert_with(|| Value::Array(vec![]));
                match labels.as_array_mut() {
                    Some(l) => l.push(Value::String(child_label(owner))),
                    None => return Err("`labels` must be a list of strings".into()),
                }
            }
            "task_list" => {
                if args.contains_key("label") {
                    return Err(format!("`label` cannot be chosen here: this server lists only the tasks task {owner} queued"));
                }
                args.insert("label".into(), Value::String(child_label(owner)));
            }
            "task_show" | "task_logs" | "task_cancel" | "task_retry" => {
                if let Some(id) = args.get("id").cloned() {
                    self.reach(&id).await?;
                }
            }
            "task_wait" => {
                let ids = args.get("ids").and_then(Value::as_str).unwrap_or_default().to_string();
                for id in ids.split(',').filter(|s| !s.is_empty()) {
                    self.reach(&Value::String(id.to_string())).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Calls a tool; `Err` is a tool error with the message a person reads.
    pub async fn call(&self, name: &str, mut args: Map<String, Value>) -> Result<String, String> {
        let Some(built) = self.tools.iter().find(|b| b.op.tool == name) else {
            let hint = if self.scope.task.is_some() && OPS.iter().any(|o| o.tool == name) {
                " (a task's own MCP server offers only its task tools and memory)"
            } else if OPS.iter().any(|o| o.tool == name && o.approvals) {
                " (approvals are decided by a person; set `[mcp] allow_approvals = true` in the config to offer them)"
            } else {
                ""
            };
            return Err(format!("unknown tool `{name}`{hint}"));
        };
        self.confine(name, &mut args).await?;
        let (path, body, tail) = request_for(built, args)?;
        let reply = self.backend.send(built.op.method, &path, body).await?;
        if !(200..300).contains(&reply.status) {
            return Err(error_message(&reply));
        }
        Ok(match tail {
            Some(n) => last_lines(&reply.body, n).to_string(),
            None => reply.body,
        })
    }

    async fn read(&self, uri: &str) -> Result<String, McpError> {
        let not_found = || {
            McpError::resource_not_found(format!("no resource `{uri}`: owl offers owl://tasks/ID/logs and owl://tasks/ID/transcript"), None)
        };
        let rest = uri.strip_prefix("owl://tasks/").ok_or_else(not_found)?;
        let (id, what) = rest.split_once('/').ok_or_else(not_found)?;
        let id: u64 = id.parse().ok().filter(|i| *i > 0).ok_or_else(not_found)?;
        self.reach(&json!(id)).await.map_err(|e| McpError::invalid_params(e, None))?;
        let path = match what {
            "logs" => format!("/v1/tasks/{id}/logs"),
            "transcript" => format!("/v1/tasks/{id}/transcript"),
            _ => return Err(not_found()),
        };
        let reply = self.backend.send("GET", &path, None).await.map_err(|e| McpError::internal_error(e, None))?;
        match reply.status {
            200..=299 => Ok(reply.body),
            404 => Err(McpError::resource_not_found(error_message(&reply), None)),
            _ => Err(McpError::internal_error(error_message(&reply), None)),
        }
    }
}

/// The message of an API error reply, as the CLI words it.
pub fn error_message(reply: &Reply) -> String {
    match serde_json::from_str::<owl_api::ErrorBody>(&reply.body) {
        Ok(b) => b.describe(),
        Err(_) => format!("the daemon answered {}: {}", reply.status, reply.body.trim()),
    }
}

fn last_lines(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    match trimmed.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

fn build(op: &'static Op, doc: &Value) -> Result<Built, String> {
    let operation = doc
        .pointer(&format!("/paths/{}/{}", op.path.replace('~', "~0").replace('/', "~1"), op.method.to_ascii_lowercase()))
        .ok_or_else(|| format!("the API has no {} {} for the MCP tool `{}`", op.method, op.path, op.tool))?;
    let mut properties = Map::new();
    let mut required = Vec::<Value>::new();
    let mut path_params = Vec::new();
    let mut query_params = Vec::new();
    for p in operation.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        if HIDDEN.contains(&(op.tool, name.as_str())) {
            continue;
        }
        let mut schema = p.get("schema").cloned().unwrap_or(json!({}));
        if let (Some(d), Some(o)) = (p.get("description"), schema.as_object_mut()) {
            o.insert("description".into(), d.clone());
        }
        if p["required"].as_bool() == Some(true) {
            required.push(Value::String(name.clone()));
        }
        match p["in"].as_str() {
            Some("path") => path_params.push(name.clone()),
            Some("query") => query_params.push(name.clone()),
            _ => continue,
        }
        properties.insert(name, schema);
    }
    if op.tool == "task_logs" {
        properties.insert(
            "tail".into(),
            json!({"type": "integer", "minimum": 0, "description": format!("Return only the last this many lines (default {DEFAULT_TAIL}).")}),
        );
    }
    let mut body = None;
    if let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema") {
        // An optional body is `oneOf: [null, $ref]`.
        let (schema, optional) = match schema.get("oneOf").and_then(Value::as_array) {
            Some(alts) => (alts.iter().find(|a| a.get("type") != Some(&json!("null"))).cloned().unwrap_or(json!({})), true),
            None => (schema.clone(), false),
        };
        let schema = resolve(&schema, doc);
        for (k, v) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            if properties.contains_key(k) {
                return Err(format!("the MCP tool `{}` has `{k}` both as a parameter and in its body", op.tool));
            }
            properties.insert(k.clone(), v.clone());
        }
        if !optional {
            required.extend(schema.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
        }
        body = Some(!optional);
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    schema.insert("additionalProperties".into(), json!(false));
    let defs = definitions(&Value::Object(schema.clone()), doc);
    if !defs.is_empty() {
        schema.insert("$defs".into(), Value::Object(defs));
    }
    let schema = match rewrite_refs(Value::Object(schema)) {
        Value::Object(o) => o,
        _ => unreachable!("an object stays an object"),
    };
    let annotations = ToolAnnotations::new()
        .read_only(op.effect == Effect::Read)
        .destructive(op.effect == Effect::Destructive)
        .idempotent(op.effect == Effect::Read)
        .open_world(false);
    let tool = Tool::new(op.tool, op.description, Arc::new(schema)).with_title(op.title).with_annotations(annotations);
    Ok(Built { op, tool, path_params, query_params, body })
}

/// A schema with a top-level `$ref` replaced by what it points to.
fn resolve(schema: &Value, doc: &Value) -> Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(ptr) => doc.pointer(ptr).cloned().unwrap_or(json!({})),
        None => schema.clone(),
    }
}

/// Every component the schema refers to, directly or through other components.
fn definitions(schema: &Value, doc: &Value) -> Map<String, Value> {
    let mut defs = Map::new();
    let mut todo = vec![schema.clone()];
    while let Some(v) = todo.pop() {
        let mut refs = Vec::new();
        collect_refs(&v, &mut refs);
        for name in refs {
            if defs.contains_key(&name) {
                continue;
            }
            if let Some(c) = doc.pointer(&format!("/components/schemas/{name}")) {
                defs.insert(name, c.clone());
                todo.push(c.clone());
            }
        }
    }
    defs
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(name) = o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/")) {
                out.push(name.to_string());
            }
            o.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn rewrite_refs(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| match (k.as_str(), &x) {
                    ("$ref", Value::String(r)) => (k, Value::String(r.replace("#/components/schemas/", "#/$defs/"))),
                    _ => (k, rewrite_refs(x)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(rewrite_refs).collect()),
        other => other,
    }
}

/// The API path (with its query) and body for a call, and how many lines of output to keep.
fn request_for(built: &Built, mut args: Map<String, Value>) -> Result<(String, Option<Value>, Option<usize>), String> {
    let tool = built.op.tool;
    let mut path = built.op.path.to_string();
    for p in &built.path_params {
        let v = args.remove(p).ok_or_else(|| format!("`{p}` is required: {tool} needs it to name what it acts on"))?;
        let s = scalar(&v).ok_or_else(|| format!("`{p}` must be a number or a string"))?;
        path = path.replace(&format!("{{{p}}}"), &percent_encode(&s));
    }
    let tail = if tool == "task_logs" {
        match args.remove("tail") {
            None | Some(Value::Null) => Some(DEFAULT_TAIL),
            Some(v) => Some(v.as_u64().ok_or("`tail` must be a whole number of lines, e.g. 50")? as usize),
        }
    } else {
        None
    };
    let mut query = Vec::new();
    for p in &built.query_params {
        match args.remove(p) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let s = scalar(&v).ok_or_else(|| format!("`{p}` must be a number, a string or true/false"))?;
                query.push(format!("{}={}", percent_encode(p), percent_encode(&s)));
            }
        }
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let body = match built.body {
        None => {
            if let Some(k) = args.keys().next() {
                return Err(format!("unknown argument `{k}` for {tool}"));
            }
            None
        }
        Some(false) if args.is_empty() => None,
        Some(_) => Some(Value::Object(args)),
    };
    Ok((path, body, tail))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b',') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const INSTRUCTIONS: &str = "owl runs work unattended: a queue of tasks (commands, built-in agents, coding CLIs), schedules, \
and a memory its agents share. Queue work with task_add, follow it with task_show, task_logs and task_wait; \
schedule recurring work with schedule_add; search what owl's agents remember with memory_search.";

impl ServerHandler for OwlServer {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build());
        info.server_info = Implementation::new("owl", env!("CARGO_PKG_VERSION")).with_title("owl");
        info.instructions = Some(match self.scope.task {
            Some(t) => format!(
                "owl runs work unattended. This server belongs to owl task {t}: queue follow-up work with task_add (tasks you queue are \
                 labelled mcp-task={t}), follow it with task_show, task_logs and task_wait, and search or add what owl's agents \
                 remember with memory_search and memory_add."
            ),
            None => INSTRUCTIONS.into(),
        });
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|b| b.op.tool == name).map(|b| b.tool.clone())
    }

    async fn call_tool(&self, request: CallToolRequestParams, _context: RequestContext<RoleServer>) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        Ok(match self.call(&request.name, args).await {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e)]),
        }
        .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        // The most recent tasks' output; any other task's is reached through the templates.
        let path = match self.scope.task {
            Some(owner) => format!("/v1/tasks?limit=20&label={}", percent_encode(&child_label(owner))),
            None => "/v1/tasks?limit=20".to_string(),
        };
        let reply = self.backend.send("GET", &path, None).await.map_err(|e| McpError::internal_error(e, None))?;
        if reply.status != 200 {
            return Err(McpError::internal_error(error_message(&reply), None));
        }
        let tasks: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let list = tasks.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for t in list {
            let Some(id) = t.get("id").and_then(Value::as_u64) else { continue };
            let status = t.get("status").and_then(Value::as_str).unwrap_or("?");
            out.push(
                Resource::new(format!("owl://tasks/{id}/logs"), format!("task {id} logs"))
                    .with_description(format!("Output of task {id} ({status})"))
                    .with_mime_type("text/plain"),
            );
            let command = t.get("command").and_then(Value::as_object);
            if command.is_some_and(|c| c.contains_key("agent") || c.contains_key("cli")) {
                out.push(
                    Resource::new(format!("owl://tasks/{id}/transcript"), format!("task {id} transcript"))
                        .with_description(format!("What the agent of task {id} said and did"))
                        .with_mime_type("application/json"),
                );
            }
        }
        Ok(ListResourcesResult::with_all_items(out))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("owl://tasks/{id}/logs", "task logs")
                .with_description("The output of a task's latest attempt")
                .with_mime_type("text/plain"),
            ResourceTemplate::new("owl://tasks/{id}/transcript", "task transcript")
                .with_description("What an agent task's model said and which tools it called")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let text = self.read(&request.uri).await?;
        let mime = if request.uri.ends_with("/logs") { "text/plain" } else { "application/json" };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, request.uri).with_mime_type(mime)]).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn path_values_are_encoded() {
        assert_eq!(percent_encode("nightly build/x"), "nightly%20build%2Fx");
        assert_eq!(percent_encode("1,2,3"), "1,2,3");
    }
}
