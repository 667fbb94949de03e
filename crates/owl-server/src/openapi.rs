//! The OpenAPI 3.1 document served at `/v1/openapi.json`, built from [`ROUTES`], which the
//! tests check against the router so the document cannot drift from what is served.

use axum::Json;
use serde_json::{json, Value};

/// (method, path, summary, request schema, response schema) for every authenticated route.
pub const ROUTES: &[(&str, &str, &str, Option<&str>, &str)] = &[
    ("get", "/v1/status", "Daemon status and task counts", None, "Status"),
    ("get", "/v1/tasks", "List tasks, newest first (query: status=a,b group label limit before)", None, "TaskList"),
    ("post", "/v1/tasks", "Submit one task (201 created, 200 when the idempotency key matched)", Some("SubmitTask"), "Submitted"),
    (
        "post",
        "/v1/tasks/batch",
        "Submit many tasks atomically; items may depend on each other via after_items",
        Some("SubmitBatch"),
        "BatchSubmitted",
    ),
    ("get", "/v1/tasks/{id}", "One task with its runs", None, "Task"),
    ("post", "/v1/tasks/{id}/cancel", "Cancel a task (a running one is stopped)", Some("CancelRequest"), "Task"),
    ("post", "/v1/tasks/{id}/retry", "Queue a failed, timed out or cancelled task again", None, "Task"),
    ("get", "/v1/tasks/{id}/logs", "An attempt's output as text (query: attempt, follow=true streams until it ends)", None, "Text"),
    ("get", "/v1/wait", "Long-poll until the tasks finish (query: ids=1,2 timeout=30s)", None, "WaitReply"),
    ("get", "/v1/groups", "Groups with limits and counts", None, "GroupList"),
    ("put", "/v1/groups/{name}", "Set a group's parallel limit (null removes it)", Some("SetGroup"), "Group"),
    ("get", "/v1/events", "Server-sent events of task lifecycle changes (query: task)", None, "EventStream"),
    ("get", "/v1/schedules", "List schedules with their health (last and next fire, missed, skipped, late)", None, "ScheduleList"),
    (
        "post",
        "/v1/schedules",
        "Create a schedule: cron (with tz), every, or at; with misfire and overlap policies",
        Some("CreateSchedule"),
        "Schedule",
    ),
    ("get", "/v1/schedules/{name}", "One schedule with its next slots", None, "Schedule"),
    ("delete", "/v1/schedules/{name}", "Remove a schedule and its history (its tasks stay)", None, "Any"),
    ("post", "/v1/schedules/{name}/pause", "Pause a schedule", None, "Schedule"),
    ("post", "/v1/schedules/{name}/resume", "Resume a schedule from now (slots passed while paused are not run)", None, "Schedule"),
    ("post", "/v1/schedules/{name}/run", "Run the schedule's task now, outside its slots", None, "RunNow"),
    (
        "get",
        "/v1/schedules/{name}/history",
        "Fires, newest first: slot, fired at, lateness, outcome, reason, task (query: limit)",
        None,
        "History",
    ),
    ("get", "/v1/triggers", "List triggers", None, "TriggerList"),
    (
        "post",
        "/v1/triggers",
        "Create a trigger: webhook (with secret_env) or on_task (succeeded, failed, finished) with filters",
        Some("CreateTrigger"),
        "Trigger",
    ),
    ("get", "/v1/triggers/{name}", "One trigger", None, "Trigger"),
    ("delete", "/v1/triggers/{name}", "Remove a trigger and its history", None, "Any"),
    ("post", "/v1/triggers/{name}/enable", "Enable a trigger", None, "Trigger"),
    ("post", "/v1/triggers/{name}/disable", "Disable a trigger", None, "Trigger"),
    ("get", "/v1/triggers/{name}/history", "Events offered to the trigger: fired, rate_limited, refused (query: limit)", None, "Any"),
    ("get", "/v1/agents", "The configured agents with model, tools and limits", None, "Any"),
    ("get", "/v1/tasks/{id}/transcript", "An agent task's transcript: messages, tool calls and results, with tokens and cost", None, "Any"),
    ("get", "/v1/usage", "Tokens and cost (query: by=agent|provider|model|day, since=7d)", None, "Any"),
    ("get", "/v1/approvals", "Tool calls waiting for a human (query: all=true for decided ones too)", None, "Any"),
    ("post", "/v1/approvals/{id}/approve", "Approve a pending tool call (used once, for that exact call)", Some("Decide"), "Any"),
    ("post", "/v1/approvals/{id}/deny", "Deny a pending tool call with a reason", Some("Decide"), "Any"),
    ("get", "/v1/chats", "Chats, most recent first", None, "Any"),
    ("post", "/v1/chats", "Start a chat with an agent", Some("CreateChat"), "Any"),
    ("get", "/v1/chats/{id}", "A chat's transcript", None, "Any"),
    (
        "post",
        "/v1/chats/{id}/messages",
        "Send a message; the reply streams as SSE: delta, tool, then done or error",
        Some("ChatMessage"),
        "EventStream",
    ),
    ("post", "/v1/chats/{id}/cancel", "Cancel the chat's running turn (409 when none runs)", None, "Any"),
    ("get", "/v1/memory", "Memories, newest first (query: kind=a,b tag since=7d limit before)", None, "Any"),
    ("post", "/v1/memory", "Remember one item (201 created, 200 merged into a near-duplicate)", Some("Any"), "Any"),
    ("post", "/v1/memory/batch", "Remember up to 1000 items at once (an import), embedded in batches", Some("Any"), "Any"),
    ("post", "/v1/memory/search", "Hybrid search: vectors and full text fused; each hit says its ranks", Some("Any"), "Any"),
    ("get", "/v1/memory/stats", "Item counts by kind, vectors, the embedding model", None, "Any"),
    ("post", "/v1/memory/reindex", "Rebuild the vector index from the database", None, "Any"),
    ("get", "/v1/memory/{id}", "One memory", None, "Any"),
    ("delete", "/v1/memory/{id}", "Forget one memory", None, "Any"),
    ("get", "/v1/openapi.json", "This document", None, "Any"),
];

fn schemas() -> Value {
    let str_ = json!({"type": "string"});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": str_, "message": str_, "field": str_}}}},
        "SubmitTask": {"type": "object", "additionalProperties": false, "properties": {
            "command": {"type": "array", "items": str_, "description": "argv; or use shell"},
            "shell": {"type": "string", "description": "run with /bin/sh -c"},
            "env": {"type": "object", "additionalProperties": str_},
            "priority": {"type": "integer"},
            "group": str_,
            "run_at": {"type": "string", "format": "date-time"},
            "delay": {"type": "string", "description": "e.g. 2h"},
            "timeout": {"type": "string", "description": "e.g. 30m"},
            "retries": {"type": "integer", "minimum": 0},
            "after": {"type": "array", "items": {"type": "integer"}},
            "after_items": {"type": "array", "items": {"type": "integer"}, "description": "batch positions"},
            "idempotency_key": str_,
            "labels": {"type": "array", "items": str_},
            "cwd": str_,
            "agent": {"type": "string", "description": "run this agent on prompt instead of a command"},
            "prompt": str_}},
        "SubmitBatch": {"type": "object", "required": ["tasks"], "additionalProperties": false, "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/SubmitTask"}}}},
        "Submitted": {"type": "object", "properties": {"id": {"type": "integer"}, "created": {"type": "boolean"}, "status": {"$ref": "#/components/schemas/Status"}}},
        "BatchSubmitted": {"type": "object", "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Submitted"}}}},
        "Status": {"type": "string", "enum": ["queued", "waiting", "running", "succeeded", "failed", "timed_out", "cancelled"]},
        "Task": {"type": "object", "description": "A task: id, status, state (status-specific data), command, group, priority, labels, env (secret-looking values redacted), attempts, failures, depends_on, runs"},
        "TaskList": {"type": "object", "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}}},
        "WaitReply": {"type": "object", "properties": {"done": {"type": "boolean"}, "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}}},
        "CancelRequest": {"type": "object", "additionalProperties": false, "properties": {"reason": str_}},
        "SetGroup": {"type": "object", "required": ["parallel"], "additionalProperties": false, "properties": {"parallel": {"type": ["integer", "null"], "minimum": 1}}},
        "Group": {"type": "object", "properties": {"name": str_, "parallel": {"type": ["integer", "null"]}, "running": {"type": "integer"}, "queued": {"type": "integer"}}},
        "GroupList": {"type": "object", "properties": {"groups": {"type": "array", "items": {"$ref": "#/components/schemas/Group"}}}},
        "CreateSchedule": {"type": "object", "required": ["name", "task"], "additionalProperties": false, "properties": {
            "name": str_, "cron": str_, "tz": str_, "every": str_, "anchor": str_, "at": {"type": "string", "format": "date-time"},
            "misfire": {"type": "string", "enum": ["skip", "once", "all"]}, "misfire_cap": {"type": "integer"},
            "overlap": {"type": "string", "enum": ["allow", "skip", "queue", "replace"]},
            "max_lateness": str_, "jitter": str_, "until": {"type": "string", "format": "date-time"}, "max_runs": {"type": "integer"},
            "task": {"$ref": "#/components/schemas/SubmitTask"}}},
        "Schedule": {"type": "object", "description": "A schedule: name, state, when, describe, policies, command, next_fire_at, next_fire_local, last_fire_at, fired, missed, skipped, late, upcoming"},
        "ScheduleList": {"type": "object", "properties": {"schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}}},
        "History": {"type": "object", "properties": {"history": {"type": "array", "items": {"type": "object", "properties": {
            "scheduled_for": str_, "fired_at": str_, "lateness_ms": {"type": "integer"}, "outcome": str_, "reason": str_, "task_id": {"type": "integer"}, "task_status": str_}}}}},
        "RunNow": {"type": "object", "properties": {"task_id": {"type": "integer"}}},
        "CreateTrigger": {"type": "object", "required": ["name", "task"], "additionalProperties": false, "properties": {
            "name": str_, "webhook": {"type": "boolean"}, "secret_env": str_, "on_task": {"type": "string", "enum": ["succeeded", "failed", "finished"]},
            "label": str_, "group": str_, "schedule": str_, "rate_limit": {"type": "string", "description": "e.g. 10/1m"}, "max_chain_depth": {"type": "integer"},
            "task": {"$ref": "#/components/schemas/SubmitTask"}}},
        "Trigger": {"type": "object", "description": "A trigger: name, enabled, on, describe, hook_path, rate_limit, max_chain_depth, fired, refused, last_fired_at"},
        "TriggerList": {"type": "object", "properties": {"triggers": {"type": "array", "items": {"$ref": "#/components/schemas/Trigger"}}}},
        "Decide": {"type": "object", "additionalProperties": false, "properties": {"reason": str_}},
        "CreateChat": {"type": "object", "additionalProperties": false, "properties": {"agent": str_}},
        "ChatMessage": {"type": "object", "required": ["message"], "additionalProperties": false, "properties": {"message": str_}},
        "Any": {},
    })
}

pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, req, resp) in ROUTES {
        let content = match *resp {
            "Text" => json!({"text/plain": {"schema": {"type": "string"}}}),
            "EventStream" => json!({"text/event-stream": {"schema": {"type": "string"}}}),
            "Status" => json!({"application/json": {"schema": {"type": "object"}}}),
            other => json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{other}")}}}),
        };
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": content},
                "400": {"description": "Invalid input; `field` names it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "Missing or wrong bearer token"},
                "404": {"description": "No such task or route"},
            }
        });
        if let Some(r) = req {
            op["requestBody"] = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}}});
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Liveness; no token needed", "security": [], "responses": {"200": {"description": "OK"}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "owl API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "http://127.0.0.1:7717"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas()},
        "paths": paths,
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
