//! The real coding CLIs (Claude Code, Codex and Gemini CLI, fetched by `scripts/fetch-clis`,
//! pinned) run by the daemon as coding tasks: sandboxed, each in its own worktree, its network
//! limited to one allowed host where a local server speaks the model API the CLI uses
//! (Anthropic Messages, OpenAI Responses, Gemini generateContent; streamed) and plays a
//! scripted session. This checks what a fake CLI
//! cannot: that the built-in profile's flags are ones the CLI accepts, that it starts and works
//! inside the sandbox, and that owl reads the stream it really writes.

use crate::coding::git;
use crate::harness::*;
use crate::sandbox::unavailable;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where `scripts/fetch-clis` puts the CLIs.
fn cli_bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OWL_CLI_DIR") {
        return PathBuf::from(d).join("node_modules/.bin");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("owl/clis/node_modules/.bin")
}

/// One request the fake API saw: its `x-api-key` and its body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// The reply to one Messages request, streamed as server-sent events when asked to be.
fn reply(body: &Value, content: Vec<Value>, stop: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let model = body["model"].as_str().unwrap_or("claude-test").to_string();
    let usage_in = json!({"input_tokens": 100, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0});
    if body["stream"] != true {
        return axum::Json(json!({"id": "msg_test", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": 100, "output_tokens": 20}}))
        .into_response();
    }
    let mut sse = String::new();
    let mut event = |name: &str, data: Value| sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_test", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage_in}}),
    );
    for (i, block) in content.iter().enumerate() {
        if block["type"] == "tool_use" {
            let start = json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}});
            event("content_block_start", json!({"type": "content_block_start", "index": i, "content_block": start}));
            let delta = json!({"type": "input_json_delta", "partial_json": block["input"].to_string()});
            event("content_block_delta", json!({"type": "content_block_delta", "index": i, "delta": delta}));
        } else {
            event("content_block_start", json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}));
            let delta = json!({"type": "text_delta", "text": block["text"]});
            event("content_block_delta", json!({"type": "content_block_delta", "index": i, "delta": delta}));
        }
        event("content_block_stop", json!({"type": "content_block_stop", "index": i}));
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    ([("content-type", "text/event-stream")], sse).into_response()
}

/// How many tool results the conversation so far carries: which step of the script is next.
fn tool_results(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .count()
}

/// A Messages API on loopback. The session it plays: write NOTES.md with the Write tool, run a
/// shell command with the Bash tool (which also tries to write outside the worktree), answer.
/// Requests without tools (the CLI's side calls) get a short text answer.
fn fake_anthropic(worktrees: PathBuf) -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (s, worktrees) = (s.clone(), worktrees.clone());
            async move {
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                s.lock().unwrap().push((key, body.clone()));
                if body["tools"].as_array().is_none_or(|t| t.is_empty()) {
                    return reply(&body, vec![json!({"type": "text", "text": "ok"})], "end_turn");
                }
                // The worktree, as the CLI's system prompt names its working directory.
                let text = body.to_string();
                let prefix = format!("{}/", worktrees.display());
                let wt = text.find(&prefix).map(|i| {
                    let id: String = text[i + prefix.len()..].chars().take_while(char::is_ascii_digit).collect();
                    format!("{prefix}{id}")
                });
                match (tool_results(&body), wt) {
                    (0, Some(wt)) => reply(
                        &body,
                        vec![
                            json!({"type": "text", "text": "I will add the notes."}),
                            json!({"type": "tool_use", "id": "toolu_01", "name": "Write",
                                        "input": {"file_path": format!("{wt}/NOTES.md"), "content": "written by claude\n"}}),
                        ],
                        "tool_use",
                    ),
                    (1, _) => reply(
                        &body,
                        vec![json!({"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {
                                    "command": SHELL_STEP,
                                    "description": "Record that the shell ran"}})],
                        "tool_use",
                    ),
                    (0, None) => reply(&body, vec![json!({"type": "text", "text": "no worktree in the prompt"})], "end_turn"),
                    _ => reply(&body, vec![json!({"type": "text", "text": "Added NOTES.md and bash.txt."})], "end_turn"),
                }
            }
        }),
    );
    (serve(app), seen)
}

/// A repository, a daemon whose PATH finds the fetched CLIs, and the daemon's data and home
/// directories; `None` (after saying why) when the sandbox or the CLI is missing here.
struct Setup {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    dir: PathBuf,
    home: PathBuf,
}

fn setup(cli: &str) -> Option<Setup> {
    if let Some(why) = unavailable() {
        crate::harness::skip(format!("this kernel lacks a sandbox protection: {why}"));
        return None;
    }
    let bin = cli_bin_dir();
    if !bin.join(cli).exists() {
        crate::harness::skip(format!("{cli} is not installed at {}; run scripts/fetch-clis (needs npm)", bin.display()));
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "app\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "--quiet", "-m", "first"]);
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    Some(Setup { repo, dir, home, _tmp: tmp })
}

impl Setup {
    fn daemon(&self, env: &[(&str, &str)]) -> Daemon {
        let path = format!("{}:{}", cli_bin_dir().display(), std::env::var("PATH").unwrap_or_default());
        let mut all = vec![("PATH", path.as_str()), ("HOME", self.home.to_str().unwrap())];
        all.extend_from_slice(env);
        Daemon::start(&self.dir, &all)
    }

    /// A daemon whose Claude Code talks to the fake Messages API on `port` with a granted key.
    fn claude_daemon(&self, port: u16) -> Daemon {
        let base_url = format!("http://127.0.0.1:{port}");
        self.daemon(&[
            ("ANTHROPIC_BASE_URL", base_url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-test-granted"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_TELEMETRY", "1"),
        ])
    }

    /// Runs one coding task on the repository, allowed to reach `port` only; returns the
    /// finished task, which must have succeeded.
    fn run(&self, d: &Daemon, cli: &str, port: u16, prompt: &str) -> (i64, Value) {
        let id = add(d, &["--cli", cli, "--repo", self.repo.to_str().unwrap(), "--allow-host", &format!("127.0.0.1:{port}"), prompt]);
        let t = wait_for(&format!("task {id} to finish"), Duration::from_secs(120), || {
            let t = d.task(id);
            matches!(t["status"].as_str(), Some("succeeded" | "failed" | "timed_out" | "cancelled")).then_some(t)
        });
        assert_eq!(t["status"], "succeeded", "{t}\n{}", d.ok(&["logs", &id.to_string()]));
        (id, t)
    }

    /// Points Codex at the fake model API on `port`, in its own config file under the home the
    /// daemon gives it.
    fn codex_model(&self, port: u16) {
        let codex_home = self.home.join(".codex");
        std::fs::create_dir_all(&codex_home).unwrap();
        std::fs::write(
            codex_home.join("config.toml"),
            format!(
                "model = \"gpt-test\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\nname = \"fake\"\n\
                 base_url = \"http://127.0.0.1:{port}/v1\"\nenv_key = \"OPENAI_API_KEY\"\nwire_api = \"responses\"\n\
                 supports_websockets = false\n"
            ),
        )
        .unwrap();
    }

    /// The shell the CLI ran was confined: nothing written beside the worktree or in its home.
    fn assert_no_escape(&self, id: i64) {
        assert!(!self.dir.join("escape.txt").exists() && !self.home.join("escape.txt").exists());
        assert!(!self.dir.join("worktrees").join(id.to_string()).join("escape.txt").exists());
    }
}

/// What the scripted sessions run in the shell: one file in the worktree, two escapes.
const SHELL_STEP: &str = "echo ran > bash.txt; echo x > ../../escape.txt; echo x > \"$HOME/escape.txt\"; exit 0";

/// The names of the tools the transcript shows the CLI calling.
fn tools_called(d: &Daemon, id: i64) -> (Vec<String>, Value) {
    let tr = d.json(&["transcript", &id.to_string()]);
    let called = tr["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["type"] == "assistant")
        .flat_map(|e| e["tool_calls"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    (called, tr)
}

#[test]
fn real_claude_code_edits_its_sandboxed_worktree_and_owl_reads_its_stream() {
    let Some(x) = setup("claude") else { return };
    let (port, seen) = fake_anthropic(x.dir.join("worktrees"));
    let d = x.claude_daemon(port);
    let (id, t) = x.run(&d, "claude", port, "Add a NOTES.md");
    assert_eq!(t["result"], "Added NOTES.md and bash.txt.", "the final answer from the result line: {t}");
    // The CLI's edits, committed by owl on the task's branch.
    let branch = format!("owl/task-{id}");
    assert_eq!(git(&x.repo, &["show", &format!("{branch}:NOTES.md")]), "written by claude");
    assert_eq!(git(&x.repo, &["show", &format!("{branch}:bash.txt")]), "ran");
    x.assert_no_escape(id);
    // Every model call carried the granted key, through the allowlist proxy.
    let reqs = seen.lock().unwrap().clone();
    assert!(reqs.iter().filter(|(_, b)| b["tools"].as_array().is_some_and(|t| !t.is_empty())).count() >= 3, "{}", reqs.len());
    assert!(reqs.iter().all(|(k, _)| k == "sk-ant-test-granted"));
    // The stream-json the CLI wrote became the transcript and the usage.
    let (called, tr) = tools_called(&d, id);
    assert!(called.iter().any(|c| c == "Write") && called.iter().any(|c| c == "Bash"), "{tr}");
    assert!(tr["entries"].as_array().unwrap().iter().any(|e| e["type"] == "tool" && e["name"] == "Bash"), "{tr}");
    assert!(t["usage"]["input_tokens"].as_u64().unwrap_or(0) >= 300, "{}", t["usage"]);
    assert!(t["usage"]["output_tokens"].as_u64().unwrap_or(0) >= 60, "{}", t["usage"]);
}

#[test]
fn real_claude_code_is_capped_by_the_room_its_budgets_leave_and_settles_to_what_it_reports() {
    let Some(x) = setup("claude") else { return };
    let (port, _seen) = fake_anthropic(x.dir.join("worktrees"));
    std::fs::write(config_path(&x.dir), "[budgets.global]\nusd = 2.5\nperiod = \"day\"\n").unwrap();
    let d = x.claude_daemon(port);
    // The real CLI accepts the cap owl passes (it would refuse an unknown flag).
    let (id, t) = x.run(&d, "claude", port, "Add a NOTES.md");
    let log = d.ok(&["logs", &id.to_string()]);
    assert!(log.contains("budget: this run may spend up to $2.5000"), "{log}");
    // What Claude Code reported it cost is what the ledger holds, and where the price came from.
    let budgets = d.json(&["budget"]);
    let global = &budgets["budgets"][0];
    assert_eq!(global["scope"], "global");
    let reported = t["usage"]["cost_usd"].as_f64().unwrap();
    assert!(reported > 0.0, "{t}");
    assert!((global["spent_usd"].as_f64().unwrap() - reported).abs() < 1e-9, "{global} vs {reported}");
    assert_eq!(global["reserved_usd"].as_f64().unwrap(), 0.0);
    let by_model = d.json(&["usage", "--by", "model"]);
    assert_eq!(by_model["rows"][0]["price"], "reported by the CLI", "{by_model}");
}

/// An OpenAI Responses API on loopback, for Codex. The session: run the shell step with the
/// command tool Codex offers, then answer.
/// One Responses API turn that outputs `item`, streamed as server-sent events.
fn responses_sse(item: Value, cached_tokens: u64) -> axum::response::Response {
    use axum::response::IntoResponse;
    let usage = json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": cached_tokens}, "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 120});
    let mut sse = String::new();
    for data in [
        json!({"type": "response.created", "response": {"id": "resp_1"}}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": {"id": "resp_1", "usage": usage}}),
    ] {
        sse.push_str(&format!("event: {}\ndata: {data}\n\n", data["type"].as_str().unwrap()));
    }
    ([("content-type", "text/event-stream")], sse).into_response()
}

fn fake_responses() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
                "/v1/responses",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                    let s = s.clone();
                    async move {
                        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        let key = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        s.lock().unwrap().push((key, body.clone()));
                        let answered = body["input"].as_array().into_iter().flatten().any(|i| i["type"] == "function_call_output");
                        let tools: Vec<&str> = body["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
                        let item = if answered {
                            json!({"type": "message", "role": "assistant", "id": "msg_2", "content": [{"type": "output_text", "text": "Ran the step."}]})
                        } else if tools.contains(&"exec_command") {
                            json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command",
                                "arguments": json!({"cmd": SHELL_STEP}).to_string()})
                        } else if tools.contains(&"shell") {
                            json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell",
                                "arguments": json!({"command": ["bash", "-lc", SHELL_STEP]}).to_string()})
                        } else {
                            json!({"type": "message", "role": "assistant", "id": "msg_1", "content": [{"type": "output_text",
                                "text": format!("no command tool among {tools:?}")}]})
                        };
                        responses_sse(item, 40)
                    }
                }),
            );
    (serve(app), seen)
}

#[test]
fn real_codex_runs_commands_in_its_sandboxed_worktree_and_owl_reads_its_events() {
    let Some(x) = setup("codex") else { return };
    let (port, seen) = fake_responses();
    // Codex finds its model API in its own config file, under the home the daemon gives it.
    x.codex_model(port);
    let d = x.daemon(&[("OPENAI_API_KEY", "sk-openai-test-granted")]);
    let (id, t) = x.run(&d, "codex", port, "Record that the shell runs");
    assert_eq!(t["result"], "Ran the step.", "the last agent message: {t}");
    let branch = format!("owl/task-{id}");
    assert_eq!(git(&x.repo, &["show", &format!("{branch}:bash.txt")]), "ran");
    x.assert_no_escape(id);
    let reqs = seen.lock().unwrap().clone();
    assert!(reqs.len() >= 2, "{}", reqs.len());
    assert!(reqs.iter().all(|(k, _)| k == "Bearer sk-openai-test-granted"));
    let (called, tr) = tools_called(&d, id);
    assert!(called.iter().any(|c| c == "shell"), "the command execution, as a shell call: {tr}");
    assert!(
        tr["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "tool" && e["content"].as_str().is_some_and(|c| c.starts_with("exit 0"))),
        "{tr}"
    );
    assert!(t["usage"]["input_tokens"].as_u64().unwrap_or(0) >= 200, "{}", t["usage"]);
    assert!(t["usage"]["cached_tokens"].as_u64().unwrap_or(0) >= 80, "{}", t["usage"]);
}

/// The Gemini API (`generateContent`, streamed as SSE) on loopback, for Gemini CLI. The session:
/// run the shell step with `run_shell_command`, then answer. Calls without tools get a text.
fn fake_gemini() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
                "/v1beta/models/{call}",
                axum::routing::post(move |axum::extract::Path(call): axum::extract::Path<String>, headers: axum::http::HeaderMap, body: String| {
                    let s = s.clone();
                    async move {
                        use axum::response::IntoResponse;
                        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        let key = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        s.lock().unwrap().push((key, body.clone()));
                        if call.ends_with(":countTokens") {
                            return axum::Json(json!({"totalTokens": 10})).into_response();
                        }
                        let tools: Vec<&str> = body["tools"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t["functionDeclarations"].as_array())
                            .flatten()
                            .filter_map(|f| f["name"].as_str())
                            .collect();
                        let answered = body["contents"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c["parts"].as_array())
                            .flatten()
                            .any(|p| p.get("functionResponse").is_some());
                        let parts = if tools.is_empty() {
                            json!([{"text": "ok"}])
                        } else if answered {
                            json!([{"text": "Ran the step."}])
                        } else if tools.contains(&"run_shell_command") {
                            json!([{"functionCall": {"name": "run_shell_command", "args": {"command": SHELL_STEP, "description": "Record that the shell ran"}}}])
                        } else {
                            json!([{"text": format!("no shell tool among {tools:?}")}])
                        };
                        let chunk = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120, "cachedContentTokenCount": 40},
                            "modelVersion": "gemini-test"});
                        if call.ends_with(":streamGenerateContent") {
                            ([("content-type", "text/event-stream")], format!("data: {chunk}\r\n\r\n")).into_response()
                        } else {
                            axum::Json(chunk).into_response()
                        }
                    }
                }),
            );
    (serve(app), seen)
}

#[test]
fn real_gemini_cli_runs_commands_in_its_sandboxed_worktree_and_owl_reads_its_stream() {
    let Some(x) = setup("gemini") else { return };
    let (port, seen) = fake_gemini();
    // API-key auth, and one fixed model (the default "auto" first asks a router model, which
    // this fake does not play).
    let settings = x.home.join(".gemini");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("settings.json"),
        json!({"security": {"auth": {"selectedType": "gemini-api-key"}}, "model": {"name": "gemini-2.5-pro"}}).to_string(),
    )
    .unwrap();
    let base_url = format!("http://127.0.0.1:{port}");
    let d = x.daemon(&[("GOOGLE_GEMINI_BASE_URL", base_url.as_str()), ("GEMINI_API_KEY", "gk-test-granted")]);
    let (id, t) = x.run(&d, "gemini", port, "Record that the shell runs");
    assert_eq!(t["result"], "Ran the step.", "the assistant's last message: {t}");
    let branch = format!("owl/task-{id}");
    assert_eq!(git(&x.repo, &["show", &format!("{branch}:bash.txt")]), "ran");
    x.assert_no_escape(id);
    let reqs = seen.lock().unwrap().clone();
    assert!(reqs.len() >= 2, "{}", reqs.len());
    assert!(reqs.iter().all(|(k, _)| k == "gk-test-granted"));
    let (called, tr) = tools_called(&d, id);
    assert!(called.iter().any(|c| c == "run_shell_command"), "{tr}");
    assert!(tr["entries"].as_array().unwrap().iter().any(|e| e["type"] == "tool" && e["name"] == "run_shell_command"), "{tr}");
    assert!(t["usage"]["input_tokens"].as_u64().unwrap_or(0) >= 200, "{}", t["usage"]);
    assert!(t["usage"]["cached_tokens"].as_u64().unwrap_or(0) >= 80, "{}", t["usage"]);
}

/// A Messages API whose session uses owl's own MCP server: queue a follow-up task, then try to
/// read a task that is not this one's, then answer.
fn fake_anthropic_with_owl(unrelated: i64) -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                s.lock().unwrap().push((key, body.clone()));
                let tools: Vec<String> =
                    body["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str().map(String::from)).collect();
                if !tools.iter().any(|t| t == "mcp__owl__task_add") {
                    return reply(&body, vec![json!({"type": "text", "text": "no owl tools"})], "end_turn");
                }
                match tool_results(&body) {
                    0 => reply(
                        &body,
                        vec![json!({"type": "tool_use", "id": "toolu_01", "name": "mcp__owl__task_add",
                            "input": {"shell": "echo follow-up from claude", "labels": ["followup"]}})],
                        "tool_use",
                    ),
                    1 => reply(
                        &body,
                        vec![json!({"type": "tool_use", "id": "toolu_02", "name": "mcp__owl__task_show", "input": {"id": unrelated}})],
                        "tool_use",
                    ),
                    _ => reply(&body, vec![json!({"type": "text", "text": "Queued the follow-up."})], "end_turn"),
                }
            }
        }),
    );
    (serve(app), seen)
}

#[test]
fn real_claude_code_given_owls_mcp_server_queues_follow_up_work_and_reaches_only_its_own_tasks() {
    let Some(x) = setup("claude") else { return };
    let d_probe = x.daemon(&[]);
    // A task of someone else's, which the CLI's server must not show it.
    let unrelated = add(&d_probe, &["--", "echo", "private"]);
    drop(d_probe);
    let (port, seen) = fake_anthropic_with_owl(unrelated);
    let base_url = format!("http://127.0.0.1:{port}");
    let d = x.daemon(&[
        ("ANTHROPIC_BASE_URL", base_url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-granted"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_TELEMETRY", "1"),
        // All tools in every request: the scripted model does not search for tools first.
        ("ENABLE_TOOL_SEARCH", "false"),
    ]);
    let id = add(&d, &["--cli", "claude", "--owl-mcp", "--allow-host", &format!("127.0.0.1:{port}"), "Queue the follow-up"]);
    let t = wait_for(&format!("task {id} to finish"), Duration::from_secs(120), || {
        let t = d.task(id);
        matches!(t["status"].as_str(), Some("succeeded" | "failed" | "timed_out" | "cancelled")).then_some(t)
    });
    assert_eq!(t["status"], "succeeded", "{t}\n{}", d.ok(&["logs", &id.to_string()]));
    assert_eq!(t["result"], "Queued the follow-up.", "{t}\n{}", d.ok(&["logs", &id.to_string()]));
    // The follow-up is a real task, labelled as this task's, and it ran.
    let label = format!("mcp-task={id}");
    let list = d.json(&["ls", "--label", &label]);
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{list}");
    assert_eq!(tasks[0]["labels"], json!(["followup", label]));
    // It runs sandboxed, with no more network than the task that queued it.
    assert_eq!(tasks[0]["sandbox"], json!({"enabled": true, "allow_net": false, "allow_hosts": [format!("127.0.0.1:{port}")]}));
    let child = tasks[0]["id"].as_i64().unwrap();
    assert_eq!(d.wait_status(child, "succeeded")["command"]["shell"], "echo follow-up from claude");
    // What the CLI's tools answered, as the model saw it.
    let reqs = seen.lock().unwrap().clone();
    let results: Vec<String> = reqs
        .iter()
        .flat_map(|(_, b)| b["messages"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["content"].as_array().cloned())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect();
    assert!(results.iter().any(|r| r.contains(&format!("\\\"id\\\":{child}"))), "task_add answered with the new task: {results:?}");
    assert!(results.iter().any(|r| r.contains("out of reach")), "another task's data stays hidden: {results:?}");
    // No approval tools and no schedules for a CLI.
    let tools: Vec<String> = reqs
        .iter()
        .flat_map(|(_, b)| b["tools"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["name"].as_str().map(String::from))
        .filter(|n| n.starts_with("mcp__owl__"))
        .collect();
    assert!(tools.iter().any(|t| t == "mcp__owl__memory_search"), "{tools:?}");
    assert!(!tools.iter().any(|t| t.contains("approval") || t.contains("schedule")), "{tools:?}");
    // The socket is gone with the task.
    assert!(!x.dir.join("workspaces").join(id.to_string()).join(".owl/mcp.sock").exists());
}

/// A Responses API whose session queues a follow-up task through owl's MCP server.
fn fake_responses_with_owl() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/responses",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let key = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                s.lock().unwrap().push((key, body.clone()));
                let answered = body["input"].as_array().into_iter().flatten().any(|i| i["type"] == "function_call_output");
                // Codex offers an MCP server's tools as a namespace named after the server.
                let namespace = body["tools"].as_array().into_iter().flatten().find(|t| {
                    t["name"] == "mcp__owl" && t["tools"].as_array().is_some_and(|l| l.iter().any(|x| x["name"] == "task_add"))
                });
                let item = match (answered, namespace) {
                    (true, _) => json!({"type": "message", "role": "assistant", "id": "msg_2", "content": [{"type": "output_text", "text": "Queued."}]}),
                    (false, Some(_)) => json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "task_add",
                        "namespace": "mcp__owl", "arguments": json!({"shell": "echo follow-up from codex"}).to_string()}),
                    (false, None) => json!({"type": "message", "role": "assistant", "id": "msg_1", "content": [{"type": "output_text",
                        "text": format!("no owl tools among {}", body["tools"])}]}),
                };
                responses_sse(item, 0)
            }
        }),
    );
    (serve(app), seen)
}

#[test]
fn real_codex_given_owls_mcp_server_queues_follow_up_work() {
    let Some(x) = setup("codex") else { return };
    let (port, _seen) = fake_responses_with_owl();
    x.codex_model(port);
    let d = x.daemon(&[("OPENAI_API_KEY", "sk-openai-test-granted")]);
    let id = add(&d, &["--cli", "codex", "--owl-mcp", "--allow-host", &format!("127.0.0.1:{port}"), "Queue the follow-up"]);
    let t = wait_for(&format!("task {id} to finish"), Duration::from_secs(120), || {
        let t = d.task(id);
        matches!(t["status"].as_str(), Some("succeeded" | "failed" | "timed_out" | "cancelled")).then_some(t)
    });
    assert_eq!(t["status"], "succeeded", "{t}\n{}", d.ok(&["logs", &id.to_string()]));
    assert_eq!(t["result"], "Queued.", "{t}\n{}", d.ok(&["logs", &id.to_string()]));
    let list = d.json(&["ls", "--label", &format!("mcp-task={id}")]);
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{list}");
    assert_eq!(tasks[0]["command"]["shell"], "echo follow-up from codex");
}
