//! The real Claude Code CLI (fetched by `scripts/fetch-clis`, pinned) run by the daemon as a
//! coding task: sandboxed, in its own worktree, its network limited to one allowed host, where
//! a local server speaks the Anthropic Messages API (streamed) and plays a scripted session.
//! This checks what a fake CLI cannot: that the profile's flags are ones the CLI accepts, that
//! it starts and works inside the sandbox, and that owl reads the stream-json it really writes.

use crate::harness::*;
use crate::sandbox::unavailable;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
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
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
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
                                    "command": "echo ran > bash.txt; echo x > ../../escape.txt; echo x > \"$HOME/escape.txt\"; exit 0",
                                    "description": "Record that the shell ran"}})],
                                "tool_use",
                            ),
                            (0, None) => reply(&body, vec![json!({"type": "text", "text": "no worktree in the prompt"})], "end_turn"),
                            _ => reply(&body, vec![json!({"type": "text", "text": "Added NOTES.md and bash.txt."})], "end_turn"),
                        }
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), seen)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn real_claude_code_edits_its_sandboxed_worktree_and_owl_reads_its_stream() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED: this kernel lacks a sandbox protection: {why}");
        return;
    }
    let bin = cli_bin_dir();
    if !bin.join("claude").exists() {
        eprintln!("SKIPPED: Claude Code is not installed at {}; run scripts/fetch-clis (needs npm)", bin.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let repo = root.join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "app\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "--quiet", "-m", "first"]);
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let (port, seen) = fake_anthropic(dir.join("worktrees"));
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let base_url = format!("http://127.0.0.1:{port}");
    let d = Daemon::start(
        &dir,
        &[
            ("PATH", path.as_str()),
            ("HOME", home.to_str().unwrap()),
            ("ANTHROPIC_BASE_URL", base_url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-test-granted"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_TELEMETRY", "1"),
        ],
    );
    let id =
        add(&d, &["--cli", "claude", "--repo", repo.to_str().unwrap(), "--allow-host", &format!("127.0.0.1:{port}"), "Add a NOTES.md"]);
    let t = wait_for(&format!("task {id} to finish"), Duration::from_secs(120), || {
        let t = d.task(id);
        matches!(t["status"].as_str(), Some("succeeded" | "failed" | "timed_out" | "cancelled")).then_some(t)
    });
    let log = d.ok(&["logs", &id.to_string()]);
    assert_eq!(t["status"], "succeeded", "{t}\n{log}");
    assert_eq!(t["result"], "Added NOTES.md and bash.txt.", "the final answer from the result line: {t}");
    // The CLI's edits, committed by owl on the task's branch.
    let branch = format!("owl/task-{id}");
    assert_eq!(git(&repo, &["show", &format!("{branch}:NOTES.md")]), "written by claude");
    assert_eq!(git(&repo, &["show", &format!("{branch}:bash.txt")]), "ran");
    // The shell it ran was confined: nothing written beside the worktree or in its home.
    assert!(!dir.join("escape.txt").exists() && !home.join("escape.txt").exists());
    assert!(!dir.join("worktrees").join(id.to_string()).join("escape.txt").exists());
    // Every model call carried the granted key, through the allowlist proxy.
    let reqs = seen.lock().unwrap().clone();
    assert!(reqs.iter().filter(|(_, b)| b["tools"].as_array().is_some_and(|t| !t.is_empty())).count() >= 3, "{}", reqs.len());
    assert!(reqs.iter().all(|(k, _)| k == "sk-ant-test-granted"));
    // The stream-json the CLI wrote became the transcript and the usage.
    let tr = d.json(&["transcript", &id.to_string()]);
    let entries = tr["entries"].as_array().expect("entries");
    let called: Vec<&str> = entries
        .iter()
        .filter(|e| e["type"] == "assistant")
        .flat_map(|e| e["tool_calls"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(called.contains(&"Write") && called.contains(&"Bash"), "{tr}");
    assert!(entries.iter().any(|e| e["type"] == "tool" && e["name"] == "Bash"), "{tr}");
    assert!(t["usage"]["input_tokens"].as_u64().unwrap_or(0) >= 300, "{}", t["usage"]);
    assert!(t["usage"]["output_tokens"].as_u64().unwrap_or(0) >= 60, "{}", t["usage"]);
}
