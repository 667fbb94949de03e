//! A team of agents through the real daemon and CLI: roles in the config (one of them a coding
//! CLI), `owl add --needs` routing, a `--team` run that delegates to a model agent and a CLI
//! agent in the shared workspace, `owl show`'s routing and tree, `owl agents --status`,
//! `owl messages`, `owl agents state` with a stale write refused, and workspace templates: a
//! Python venv built once and reused, and a failing set-up that fails the task before any model
//! call. The model is a loopback Chat Completions server scripted per agent (by model name).

use crate::harness::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn tool_turn(id: &str, name: &str, args: Value) -> Value {
    json!({"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
}

fn final_turn(text: &str) -> Value {
    json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
}

/// The prompts (first user message) of every request.
pub(crate) type Prompts = Arc<Mutex<Vec<String>>>;

pub(crate) fn model() -> (String, Prompts) {
    let prompts: Prompts = Arc::default();
    let p2 = prompts.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let prompts = p2.clone();
            async move {
                let messages = v["messages"].as_array().cloned().unwrap_or_default();
                let prompt =
                    messages.iter().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or_default().to_string();
                prompts.lock().unwrap().push(prompt.clone());
                let results = messages.iter().filter(|m| m["role"] == "tool").count();
                let reply = match (v["model"].as_str().unwrap_or_default(), results) {
                    ("planner-m", 0) => tool_turn(
                        "plan",
                        "delegate",
                        json!({"tasks": [
                            {"needs": ["python"], "complexity": 3, "prompt": "write the code into code.txt"},
                            {"agent": "scribe", "prompt": "notes for the CSV export"}
                        ]}),
                    ),
                    ("planner-m", _) => final_turn("the team finished"),
                    ("coder-m", 0) if prompt.contains("report") => {
                        tool_turn("w", "write_file", json!({"path": "output/report.txt", "content": "ok"}))
                    }
                    ("coder-m", 0) => tool_turn("w", "write_file", json!({"path": "code.txt", "content": "fn main() {}"})),
                    _ => final_turn("done"),
                };
                axum::Json(reply)
            }
        }),
    );
    (format!("http://127.0.0.1:{}/v1", serve(app)), prompts)
}

pub(crate) fn config(url: &str) -> String {
    format!(
        r##"
[providers.fake]
kind = "openai"
base_url = "{url}"
model = "m"

[agents.planner]
provider = "fake"
model = "planner-m"
capabilities = ["plan", "review"]
max_concurrent = 1
tools = ["read_file", "list_dir"]

[agents.coder]
provider = "fake"
model = "coder-m"
capabilities = ["python", "code"]
complexity = [1, 7]
max_concurrent = 2
tools = ["write_file", "read_file"]

[agents.scribe]
cli = "scribe"
capabilities = ["docs"]
grant_env = ["SCRIBE_TOKEN"]

[cli.scribe]
command = ["sh", "-c", "printf '%s' \"$1\" > notes.txt; printf '%s' \"$SCRIBE_TOKEN\" > token.txt", "sh", "{{prompt}}"]


[templates.py]
dirs = ["src", "output"]
files = {{ "README.md" = "# {{title}}\n\ntask {{task_id}} for {{agent}}\n- [ ] done\n" }}
venv = []
setup = ["python -c \"import sys; open('output/prefix.txt', 'w').write(sys.prefix)\""]
setup_net = false

[templates.broken]
setup = ["echo the set-up broke >&2; exit 3"]
"##
    )
}

#[test]
fn a_team_is_routed_delegates_to_a_model_and_a_cli_agent_and_keeps_its_messages_and_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let (url, prompts) = model();
    std::fs::write(config_path(&dir), config(&url)).unwrap();
    let d = Daemon::start(&dir, &[("XDG_CACHE_HOME", cache.to_str().unwrap()), ("SCRIBE_TOKEN", "tok-granted-to-the-scribe")]);

    // Roles are shown, and the load of each agent.
    let agents = d.json(&["agents"]);
    let coder = agents["agents"].as_array().unwrap().iter().find(|a| a["name"] == "coder").unwrap().clone();
    assert_eq!((coder["complexity"].clone(), coder["max_concurrent"].clone()), (json!([1, 7]), json!(2)));
    let scribe = agents["agents"].as_array().unwrap().iter().find(|a| a["name"] == "scribe").unwrap().clone();
    assert_eq!(scribe["cli"], "scribe");
    let status = d.ok(&["agents", "--status"]);
    assert!(status.contains("coder") && status.contains("available") && status.contains("0/2"), "{status}");

    // Routing by capability and size, explained by `owl show`.
    let id = add(&d, &["--needs", "python", "--complexity", "3", "write the code into code.txt"]);
    let t = d.wait_status(id, "succeeded");
    assert_eq!(t["command"]["agent"]["agent"], "coder", "{t}");
    assert_eq!(t["group"], "agent.coder");
    let shown = d.ok(&["show", &id.to_string()]);
    assert!(shown.contains("routed     needs python at complexity 3: coder is available"), "{shown}");
    assert!(shown.contains("planner") && shown.contains("lacks python"), "{shown}");
    let out = d.owl(&["add", "--needs", "haskell", "--", "write a parser"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no agent can take a task that needs haskell"), "{err}");
    let out = d.owl(&["add", "--needs", "python", "--complexity", "11", "--", "x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("complexity"), "{out:?}");

    // A team run: the planner hands one step to the routed coder and one to the CLI agent.
    let lead = add(&d, &["--agent", "planner", "--team", "Build the CSV export"]);
    d.wait_status(lead, "succeeded");
    let t = d.task(lead);
    let children = t["children"].as_array().unwrap();
    assert_eq!(children.len(), 2, "{t}");
    assert!(children.iter().all(|c| c["status"] == "succeeded"), "{t}");
    let shown = d.ok(&["show", &lead.to_string()]);
    assert!(shown.contains("team run   yes") && shown.contains("delegated") && shown.contains("└─"), "{shown}");
    // Both worked in the planner's workspace.
    let ws = dir.join("workspaces").join(lead.to_string());
    assert_eq!(std::fs::read_to_string(ws.join("code.txt")).unwrap(), "fn main() {}");
    assert!(std::fs::read_to_string(ws.join("notes.txt")).unwrap().contains("notes for the CSV export"));
    // The CLI agent got the secret-looking variable its role grants (the sandbox removes such
    // variables from every run that is not granted them).
    assert_eq!(std::fs::read_to_string(ws.join("token.txt")).unwrap(), "tok-granted-to-the-scribe");

    // Messages from a person, kept with each delivery's state.
    let sent = d.ok(&["messages", "send", "coder", "use", "the", "v2", "API"]);
    assert!(sent.contains("sent to agent:coder"), "{sent}");
    let all = d.ok(&["messages", "send", "all", "--type", "question", "who owns the CSV code?"]);
    assert!(all.contains("agent:planner") && all.contains("agent:scribe") && all.contains("agent:coder"), "{all}");
    let list = d.json(&["messages", "--agent", "coder"]);
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["content"], "use the v2 API");
    assert_eq!(msgs[0]["deliveries"][0]["state"], "pending");
    let text = d.ok(&["messages", "--thread", "person"]);
    assert!(text.contains("who owns the CSV code?") && text.contains("[question]"), "{text}");
    let unread = d.json(&["agents"]);
    let coder = unread["agents"].as_array().unwrap().iter().find(|a| a["name"] == "coder").unwrap().clone();
    assert_eq!(coder["unread"], 2);

    // Agent state: versioned; a stale write is refused and says why.
    assert!(d.ok(&["agents", "state", "coder", "set", "style", "tabs", "--if-version", "0"]).contains("version 1"));
    let out = d.owl(&["agents", "state", "coder", "set", "style", "spaces", "--if-version", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is at version 1"), "{err}");
    d.ok(&["agents", "state", "coder", "set", "style", "spaces", "--if-version", "1"]);
    assert_eq!(d.ok(&["agents", "state", "coder", "get", "style"]).trim(), "spaces");
    let st = d.json(&["agents", "state", "coder"]);
    assert_eq!(st["state"][0]["version"], 2);
    assert!(!d.owl(&["agents", "state", "nobody"]).status.success());

    // A template: directories, a filled-in README, a venv built once and reused, set-up in it.
    let first = add(&d, &["--template", "py", "--agent", "coder", "Write the report"]);
    d.wait_status(first, "succeeded");
    let ws = dir.join("workspaces").join(first.to_string());
    assert!(ws.join("src").is_dir());
    let readme = std::fs::read_to_string(ws.join("README.md")).unwrap();
    assert!(readme.starts_with("# Write the report\n") && readme.contains(&format!("task {first} for coder")), "{readme}");
    let venv = std::fs::read_link(ws.join(".venv")).unwrap();
    assert!(venv.starts_with(cache.join("owl").join("venvs")), "{venv:?}");
    assert_eq!(std::fs::read_to_string(ws.join("output/prefix.txt")).unwrap(), venv.display().to_string(), "set-up ran in the venv");
    assert_eq!(std::fs::read_to_string(ws.join("output/report.txt")).unwrap(), "ok");
    let log = d.ok(&["logs", &first.to_string()]);
    assert!(log.contains("built the Python venv"), "{log}");
    let started = Instant::now();
    let second = add(&d, &["--template", "py", "--agent", "coder", "Write the report again"]);
    d.wait_status(second, "succeeded");
    let log = d.ok(&["logs", &second.to_string()]);
    assert!(log.contains("reused the Python venv"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // A failing set-up fails the task with its output, before any model call.
    let before = prompts.lock().unwrap().len();
    let broken = add(&d, &["--template", "broken", "--agent", "coder", "never asked"]);
    let t = d.wait_status(broken, "failed");
    let reason = t["state"]["reason"].as_str().unwrap();
    assert!(reason.contains("exited with 3") && reason.contains("the set-up broke"), "{reason}");
    assert_eq!(prompts.lock().unwrap().len(), before, "no model call for a task whose set-up failed");
    let out = d.owl(&["add", "--template", "nope", "--agent", "coder", "--", "x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("`nope` is not a template"), "{out:?}");
}

#[test]
fn a_daemon_killed_mid_team_run_resumes_it_without_making_any_child_twice() {
    // The coder takes its time, so the daemon dies while the planner waits for it.
    let delegated = Arc::new(Mutex::new(0u32));
    let d2 = delegated.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let delegated = d2.clone();
            async move {
                let messages = v["messages"].as_array().cloned().unwrap_or_default();
                let results = messages.iter().filter(|m| m["role"] == "tool").count();
                let reply = match (v["model"].as_str().unwrap_or_default(), results) {
                    ("planner-m", 0) => {
                        *delegated.lock().unwrap() += 1;
                        tool_turn(
                            "plan",
                            "delegate",
                            json!({"tasks": [{"agent": "coder", "prompt": "write a.txt"}, {"agent": "coder", "prompt": "write b.txt"}]}),
                        )
                    }
                    ("planner-m", _) => final_turn("the team finished"),
                    ("coder-m", 0) => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let file = if messages.iter().any(|m| m["content"].as_str().is_some_and(|c| c.contains("a.txt"))) {
                            "a.txt"
                        } else {
                            "b.txt"
                        };
                        tool_turn("w", "write_file", json!({"path": file, "content": "x"}))
                    }
                    _ => final_turn("done"),
                };
                axum::Json(reply)
            }
        }),
    );
    let url = format!("http://127.0.0.1:{}/v1", serve(app));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(config_path(&dir), config(&url)).unwrap();
    let mut d = Daemon::start(&dir, &[("XDG_CACHE_HOME", tmp.path().join("cache").to_str().unwrap())]);
    let lead = add(&d, &["--agent", "planner", "--team", "Build it"]);
    wait_for("a child to run", Duration::from_secs(30), || {
        let t = d.task(lead);
        t["children"].as_array().is_some_and(|c| c.iter().any(|c| c["status"] == "running")).then_some(())
    });
    d.kill9();
    d.restart();
    d.wait_status(lead, "succeeded");
    let t = d.task(lead);
    let children = t["children"].as_array().unwrap();
    assert_eq!(children.len(), 2, "no child was made twice: {t}");
    assert!(children.iter().all(|c| c["status"] == "succeeded"), "{t}");
    assert_eq!(*delegated.lock().unwrap(), 1, "the planner's model was asked to delegate once");
    let tr = d.json(&["transcript", &lead.to_string()]);
    let results: Vec<&Value> =
        tr["entries"].as_array().unwrap().iter().filter(|e| e["type"] == "tool" && e["name"] == "delegate").collect();
    assert_eq!(results.len(), 1, "the delegate result reached the planner once: {tr}");
    let ws = dir.join("workspaces").join(lead.to_string());
    assert!(ws.join("a.txt").exists() && ws.join("b.txt").exists());
}
