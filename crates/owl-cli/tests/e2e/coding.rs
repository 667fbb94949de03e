//! Coding CLIs on the real daemon, against a real git repository with a bare remote: a fake
//! `claude` (a script the test writes, speaking Claude Code's stream-json) works in its own
//! worktree, sandboxed; owl commits and pushes its branch, records the transcript and usage,
//! times out and cancels a CLI that hangs, survives a crash mid-task, and removes the worktree
//! after the retention time. Also: custom templates, and the network allowlist proxy.

use crate::harness::*;
use crate::sandbox::unavailable;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

macro_rules! require_sandbox {
    () => {
        if let Some(why) = unavailable() {
            crate::harness::skip(format!("this kernel lacks a sandbox protection: {why}"));
            return;
        }
    };
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `app` (one commit on main, origin = `remote.git`) under `root`.
fn make_repo(root: &Path) -> (PathBuf, PathBuf) {
    let remote = root.join("remote.git");
    let repo = root.join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(root, &["init", "--quiet", "--bare", remote.to_str().unwrap()]);
    git(&repo, &["init", "--quiet", "-b", "main"]);
    git(&repo, &["config", "user.email", "dev@example.com"]);
    git(&repo, &["config", "user.name", "Dev"]);
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(repo.join("tests/api.rs"), "fn flaky() { sleep(rand()) }\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "first"]);
    git(&repo, &["remote", "add", "origin", remote.to_str().unwrap()]);
    (repo, remote)
}

/// A stand-in for Claude Code. It checks its arguments, edits the checkout, reports what it
/// saw in the environment, and streams the real event shapes. With FAKE_HANG it prints one
/// event and hangs; with OWL_ATTEMPT=1 and FAKE_CRASH_ONCE it writes half its work and hangs.
const FAKE_CLAUDE: &str = r#"#!/usr/bin/python3
import json, os, sys, time
args = sys.argv[1:]
assert args[0] == "-p", args
prompt = args[1]
assert "--output-format" in args and "stream-json" in args, args
def say(obj):
    print(json.dumps(obj), flush=True)
say({"type": "system", "subtype": "init", "session_id": "fake-1", "model": "claude-fake-4", "tools": ["Bash", "Edit"]})
if os.environ.get("FAKE_HANG"):
    say({"type": "assistant", "message": {"id": "m0", "model": "claude-fake-4", "content": [{"type": "text", "text": "thinking hard"}]}})
    open(os.path.join(os.environ["OWL_WORKSPACE"], "hang.pid"), "w").write(str(os.getpid()))
    time.sleep(300)
if os.environ.get("FAKE_CRASH_ONCE") and os.environ.get("OWL_ATTEMPT") == "1":
    open("half-done.txt", "w").write("first attempt\n")
    say({"type": "assistant", "message": {"id": "m0", "model": "claude-fake-4", "content": [{"type": "text", "text": "halfway"}]}})
    time.sleep(300)
say({"type": "assistant", "message": {"id": "m1", "model": "claude-fake-4", "content": [
    {"type": "text", "text": "I will fix the test."},
    {"type": "tool_use", "id": "tu1", "name": "Edit", "input": {"file_path": "tests/api.rs"}}]}})
with open("tests/api.rs", "w") as f:
    f.write("fn flaky() { /* deterministic now */ }\n")
open("NOTES.md", "w").write("fixed\n")
say({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "edited", "is_error": False}]}})
seen = {
    "prompt": prompt,
    "granted_key": os.environ.get("ANTHROPIC_API_KEY"),
    "canary": os.environ.get("CANARY_SECRET_TOKEN"),
    "proxy": os.environ.get("HTTPS_PROXY", ""),
}
say({"type": "result", "subtype": "success", "is_error": False, "result": json.dumps(seen), "num_turns": 2,
     "total_cost_usd": 0.0421, "usage": {"input_tokens": 1200, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 0, "output_tokens": 345}})
"#;

fn write_exe(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A daemon whose PATH finds the fake CLIs in `<root>/bin`.
fn start(root: &Path, extra: &[(&str, &str)], config: &str) -> Daemon {
    write_exe(&root.join("bin/claude"), FAKE_CLAUDE);
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(config_path(&dir), config).unwrap();
    let path = format!("{}:{}", root.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut env = vec![("PATH", path.as_str()), ("HOME", home.to_str().unwrap())];
    env.extend_from_slice(extra);
    Daemon::start(&dir, &env)
}

fn finished(d: &Daemon, id: i64) -> serde_json::Value {
    wait_for(&format!("task {id} to finish"), Duration::from_secs(60), || {
        let t = d.task(id);
        matches!(t["status"].as_str(), Some("succeeded" | "failed" | "timed_out" | "cancelled")).then_some(t)
    })
}

#[test]
fn claude_in_its_own_worktree_is_committed_pushed_recorded_and_cleaned_up() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, remote) = make_repo(tmp.path());
    let d = start(
        tmp.path(),
        &[("ANTHROPIC_API_KEY", "sk-ant-granted"), ("CANARY_SECRET_TOKEN", "canary-must-not-leak")],
        "[git]\nworktree_retention = \"3s\"\n",
    );
    let prompt = "Fix the flaky test in tests/api.rs; don't run $(touch /tmp/owl-pwned) or `id` ; exit 1";
    let id = add(&d, &["--cli", "claude", "--repo", repo.to_str().unwrap(), "--push", prompt]);
    let t = finished(&d, id);
    let log = d.ok(&["logs", &id.to_string()]);
    assert_eq!(t["status"], "succeeded", "{t}\n{log}");
    let branch = format!("owl/task-{id}");
    // The commit is on the task's branch, pushed; the user's checkout is untouched.
    let g = &t["git"];
    assert_eq!(g["branch"], branch.as_str());
    let sha = g["commit"].as_str().expect("a commit").to_string();
    assert_eq!(git(&repo, &["rev-parse", &branch]), sha);
    assert_eq!(git(&remote, &["rev-parse", &branch]), sha, "pushed to the bare remote");
    assert_eq!(g["pushed"], "origin");
    assert_eq!(g["base"], git(&repo, &["rev-parse", "main"]).as_str());
    let mut files: Vec<String> = g["files_changed"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
    files.sort();
    assert_eq!(files, vec!["NOTES.md", "tests/api.rs"]);
    assert!(git(&repo, &["log", "-1", "--format=%s", &branch]).starts_with(&format!("owl: task {id}: Fix the flaky test")));
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    assert!(std::fs::read_to_string(repo.join("tests/api.rs")).unwrap().contains("rand()"));
    // The prompt arrived as one argument, untouched; the profile's key was granted and the
    // canary was not; the network went through the allowlist proxy.
    let seen: serde_json::Value = serde_json::from_str(t["result"].as_str().unwrap()).unwrap();
    assert_eq!(seen["prompt"], prompt);
    assert!(!Path::new("/tmp/owl-pwned").exists());
    assert_eq!(seen["granted_key"], "sk-ant-granted");
    assert_eq!(seen["canary"], serde_json::Value::Null);
    assert!(seen["proxy"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{seen}");
    // Tokens and cost as the CLI reported them.
    let u = &t["usage"];
    assert_eq!(u["input_tokens"], 1500);
    assert_eq!(u["cached_tokens"], 300);
    assert_eq!(u["output_tokens"], 345);
    assert!((u["cost_usd"].as_f64().unwrap() - 0.0421).abs() < 1e-9);
    // The stream became a transcript like an agent's.
    let tr = d.json(&["transcript", &id.to_string()]);
    let entries = tr["entries"].as_array().expect("entries");
    assert!(entries.iter().any(|b| b["type"] == "assistant" && b["tool_calls"][0]["name"] == "Edit"), "{tr}");
    assert!(entries.iter().any(|b| b["type"] == "tool" && b["name"] == "Edit" && b["content"] == "edited"), "{tr}");
    // What a person reads.
    let show = d.ok(&["show", &id.to_string()]);
    for want in [
        format!("branch     {branch}"),
        format!("commit     {sha}"),
        "changed    2 files".into(),
        "pushed     to origin".into(),
        "tokens     1500 in".into(),
        "$0.0421".into(),
    ] {
        assert!(show.contains(&want), "`{want}` missing from:\n{show}");
    }
    // After the retention time the worktree goes; the branch stays.
    let wt = PathBuf::from(g["worktree"].as_str().unwrap());
    wait_for("the worktree to be removed", Duration::from_secs(30), || (!wt.exists()).then_some(()));
    wait_for("the removal to be recorded", Duration::from_secs(10), || (d.task(id)["git"]["removed"] == true).then_some(()));
    assert_eq!(git(&repo, &["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
    assert_eq!(git(&repo, &["rev-parse", &branch]), sha);
}

#[test]
fn a_hanging_cli_is_timed_out_and_another_cancelled_with_its_stream_recorded_live() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    let d = start(tmp.path(), &[("FAKE_HANG", "1")], "");
    let timed = add(&d, &["--cli", "claude", "--timeout", "2s", "wait forever"]);
    let cancelled = add(&d, &["--cli", "claude", "wait forever too"]);
    // The stream is recorded while the CLI runs, not after.
    wait_for("the live transcript", Duration::from_secs(30), || {
        let tr = d.json(&["transcript", &cancelled.to_string()]);
        tr["entries"].as_array().is_some_and(|e| e.iter().any(|x| x["content"] == "thinking hard")).then_some(())
    });
    let pid_file = d.dir.join("workspaces").join(cancelled.to_string()).join("hang.pid");
    let pid: i32 = wait_for("the CLI's pid", Duration::from_secs(10), || std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok());
    d.ok(&["cancel", &cancelled.to_string()]);
    assert_eq!(finished(&d, cancelled)["status"], "cancelled");
    wait_for("the cancelled CLI to be gone", Duration::from_secs(10), || {
        (!Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
    assert_eq!(finished(&d, timed)["status"], "timed_out");
}

#[test]
fn a_crash_mid_task_leaves_no_lock_or_half_worktree_and_the_rerun_keeps_the_work() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = make_repo(tmp.path());
    let mut d = start(tmp.path(), &[("FAKE_CRASH_ONCE", "1")], "");
    let id = add(&d, &["--cli", "claude", "--repo", repo.to_str().unwrap(), "fix it"]);
    let wt = d.dir.join("worktrees").join(id.to_string());
    wait_for("the first attempt's half work", Duration::from_secs(30), || wt.join("half-done.txt").exists().then_some(()));
    // A crash while git holds the worktree's index lock.
    let admin = PathBuf::from(std::fs::read_to_string(wt.join(".git")).unwrap().trim().strip_prefix("gitdir:").unwrap().trim());
    std::fs::write(admin.join("index.lock"), "").unwrap();
    d.kill9();
    d.restart();
    let t = finished(&d, id);
    assert_eq!(t["status"], "succeeded", "{t}\n{}", d.ok(&["logs", &id.to_string()]));
    assert_eq!(t["attempts"], 2);
    let files = t["git"]["files_changed"].to_string();
    assert!(files.contains("half-done.txt") && files.contains("tests/api.rs"), "{files}");
    assert!(!admin.join("index.lock").exists());
    let list = git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(!list.contains("locked") && !list.contains("prunable"), "{list}");
}

#[test]
fn a_custom_template_gets_the_prompt_as_one_argument_and_a_bad_profile_is_named() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    write_exe(&tmp.path().join("bin/show-args"), "#!/bin/sh\nfor a in \"$@\"; do printf '<%s>\\n' \"$a\"; done\n");
    let d = start(tmp.path(), &[], "");
    let prompt = "two words; $(echo injected) 'quoted'";
    let id = add(&d, &["--cli", "custom:show-args --message {prompt} --in '{workspace}'", prompt]);
    assert_eq!(finished(&d, id)["status"], "succeeded");
    let log = d.ok(&["logs", &id.to_string()]);
    let ws = d.dir.join("workspaces").join(id.to_string());
    assert!(log.contains(&format!("<--message>\n<{prompt}>\n<--in>\n<{}>", ws.display())), "{log}");
    let bad = d.owl(&["add", "--cli", "cursor", "do things"]);
    assert!(!bad.status.success(), "an unknown profile is refused at submission");
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains("no coding CLI profile named `cursor`") && why.contains("[cli.cursor]"), "{why}");
    let out = d.owl(&["add", "--cli", "custom:tool --yes", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("{prompt}"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Serves `body` over HTTP on a loopback port, forever.
fn http_server(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}

#[test]
fn the_network_allowlist_lets_through_only_the_hosts_named() {
    require_sandbox!();
    if Command::new("curl").arg("--version").output().is_err() {
        crate::harness::skip("curl is not installed; the allowlist test drives it as a proxy-aware client");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let allowed = http_server("allowed-body");
    let other = http_server("other-body");
    let d = start(tmp.path(), &[], "");
    let script = format!(
        "curl -sS http://127.0.0.1:{allowed}/ ; echo; \
         curl -sS -p http://127.0.0.1:{allowed}/tunnel ; echo; \
         curl -sS http://127.0.0.1:{other}/ ; echo; \
         curl -sS --noproxy '*' --max-time 3 http://127.0.0.1:{other}/ && echo DIRECT-GOT-THROUGH; echo end"
    );
    let id = add(&d, &["--sandbox", "--allow-host", &format!("127.0.0.1:{allowed}"), "--shell", "--", &script]);
    assert_eq!(finished(&d, id)["status"], "succeeded");
    let log = d.ok(&["logs", &id.to_string()]);
    assert_eq!(log.matches("allowed-body").count(), 2, "plain and CONNECT requests to the allowed host: {log}");
    assert!(!log.contains("other-body"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{other} is not in this task's network allowlist")), "{log}");
    assert!(!log.contains("DIRECT-GOT-THROUGH"), "{log}");
    assert!(log.contains("end"));
}

/// What the GitHub stand-in saw: method, path with query, the Authorization header, the body.
type Calls = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String, serde_json::Value)>>>;

/// A server that speaks the GitHub REST calls owl makes (issues, repository, pulls, comments)
/// with GitHub's status codes and field names. `open` holds the branches with an open pull
/// request (an open one for `owl/task-2` exists from the start).
fn github(calls: Calls) -> u16 {
    use axum::extract::State;
    use axum::http::Uri;
    use axum::http::{HeaderMap, Method, StatusCode};
    use axum::Json;
    let open = std::sync::Arc::new(std::sync::Mutex::new(vec![("owl/task-2".to_string(), 5u64)]));
    let app = axum::Router::new().fallback(
        move |State(calls): State<Calls>, method: Method, uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let open = open.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                calls.lock().unwrap().push((method.to_string(), path.clone(), auth.clone(), body.clone()));
                if auth != "Bearer gh-test-token" || headers.get("x-github-api-version").is_none() {
                    return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"message": "Bad credentials"})));
                }
                let url = |p: &str| format!("https://github.example/acme/app/{p}");
                match (method.as_str(), uri.path()) {
                    ("GET", "/repos/acme/app/issues/42") => (
                        StatusCode::OK,
                        Json(serde_json::json!({"number": 42, "title": "The API test is flaky", "body": "tests/api.rs sleeps a random time.", "html_url": url("issues/42"), "state": "open"})),
                    ),
                    ("GET", "/repos/acme/app") => (StatusCode::OK, Json(serde_json::json!({"full_name": "acme/app", "default_branch": "main"}))),
                    ("GET", "/repos/acme/app/pulls") => {
                        let head = uri.query().unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix("head=acme:")).unwrap_or_default().to_string();
                        let list: Vec<serde_json::Value> = open
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|(b, _)| *b == head.replace("%2F", "/"))
                            .map(|(b, n)| serde_json::json!({"number": n, "html_url": url(&format!("pull/{n}")), "head": {"ref": b}}))
                            .collect();
                        (StatusCode::OK, Json(serde_json::Value::Array(list)))
                    }
                    ("POST", "/repos/acme/app/pulls") => {
                        if body["title"].as_str().unwrap_or_default().is_empty() || body["head"].is_null() || body["base"].is_null() {
                            return (StatusCode::UNPROCESSABLE_ENTITY, Json(serde_json::json!({"message": "Validation Failed"})));
                        }
                        open.lock().unwrap().push((body["head"].as_str().unwrap().to_string(), 7));
                        (StatusCode::CREATED, Json(serde_json::json!({"number": 7, "html_url": url("pull/7"), "state": "open"})))
                    }
                    ("PATCH", p) if p.starts_with("/repos/acme/app/pulls/") => {
                        let n: u64 = p.rsplit('/').next().unwrap().parse().unwrap();
                        (StatusCode::OK, Json(serde_json::json!({"number": n, "html_url": url(&format!("pull/{n}"))})))
                    }
                    ("POST", "/repos/acme/app/issues") => {
                        (StatusCode::CREATED, Json(serde_json::json!({"number": 43, "html_url": url("issues/43"), "state": "open"})))
                    }
                    ("POST", "/repos/acme/app/issues/42/comments") => {
                        (StatusCode::CREATED, Json(serde_json::json!({"id": 1, "html_url": url("issues/42#issuecomment-1")})))
                    }
                    _ => (StatusCode::NOT_FOUND, Json(serde_json::json!({"message": "Not Found"}))),
                }
            }
        },
    );
    serve(app.with_state(calls))
}

#[test]
fn an_issue_becomes_the_prompt_and_the_branch_a_pull_request_that_closes_it() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, remote) = make_repo(tmp.path());
    let calls: Calls = Default::default();
    let port = github(calls.clone());
    let d = start(tmp.path(), &[("GITHUB_TOKEN", "gh-test-token")], &format!("[github]\napi_url = \"http://127.0.0.1:{port}\"\n"));

    // --from-issue: the issue is the prompt; --pr pushes and opens a pull request.
    let id = add(&d, &["--cli", "claude", "--repo", repo.to_str().unwrap(), "--from-issue", "acme/app#42", "--pr"]);
    let t = finished(&d, id);
    let log = d.ok(&["logs", &id.to_string()]);
    assert_eq!(t["status"], "succeeded", "{t}\n{log}");
    let seen: serde_json::Value = serde_json::from_str(t["result"].as_str().unwrap()).unwrap();
    let prompt = seen["prompt"].as_str().unwrap();
    assert!(prompt.contains("The API test is flaky") && prompt.contains("tests/api.rs sleeps a random time."), "{prompt}");
    let branch = format!("owl/task-{id}");
    assert_eq!(git(&remote, &["rev-parse", &branch]), t["git"]["commit"].as_str().unwrap(), "pushed to the remote");
    assert_eq!(t["git"]["pr_number"], 7, "{t}");
    assert!(log.contains("opened pull request #7"), "{log}");
    let c = calls.lock().unwrap().clone();
    let post = c.iter().find(|(m, p, ..)| m == "POST" && p == "/repos/acme/app/pulls").expect("a pull request was opened");
    assert_eq!((post.3["head"].as_str(), post.3["base"].as_str()), (Some(branch.as_str()), Some("main")), "{:?}", post.3);
    assert!(post.3["body"].as_str().unwrap().starts_with("Closes #42"), "the pull request links the issue: {:?}", post.3);
    assert!(post.3["body"].as_str().unwrap().contains("tests/api.rs"), "it lists the files changed: {:?}", post.3);
    let comment = c.iter().find(|(m, p, ..)| m == "POST" && p == "/repos/acme/app/issues/42/comments").expect("the issue got a comment");
    assert!(comment.3["body"].as_str().unwrap().contains("pull request #7"), "{:?}", comment.3);
    assert!(c.iter().all(|(_, _, auth, _)| auth == "Bearer gh-test-token"), "every call carries the token");

    // A branch that has an open pull request already gets it updated, not a second one.
    let again =
        add(&d, &["--cli", "claude", "--repo", repo.to_str().unwrap(), "--pr", "--github", "acme/app", "--base", "main", "Tidy the test"]);
    assert_eq!(again, 2, "the stand-in has an open pull request for owl/task-2");
    let t = finished(&d, again);
    assert_eq!(t["status"], "succeeded", "{t}\n{}", d.ok(&["logs", &again.to_string()]));
    assert_eq!(t["git"]["pr_number"], 5);
    let c = calls.lock().unwrap().clone();
    assert!(c.iter().any(|(m, p, ..)| m == "PATCH" && p == "/repos/acme/app/pulls/5"), "{c:?}");
    assert_eq!(c.iter().filter(|(m, p, ..)| m == "POST" && p == "/repos/acme/app/pulls").count(), 1, "no second pull request");

    // A wrong token fails the task with GitHub's answer and what to check.
    let bad = start(
        tmp.path().join("other").as_path(),
        &[("GITHUB_TOKEN", "wrong")],
        &format!("[github]\napi_url = \"http://127.0.0.1:{port}\"\n"),
    );
    let out = bad.owl(&["add", "--cli", "claude", "--repo", repo.to_str().unwrap(), "--from-issue", "acme/app#42"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("401") && err.contains("token"), "{out:?}");
}

/// A Chat Completions server that asks for one call of `tool` with `arguments`, then answers.
fn model_calling(tool: &str, arguments: serde_json::Value) -> String {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tool = tool.to_string();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |_body: String| {
            let (n, tool, arguments) = (n.clone(), tool.clone(), arguments.clone());
            async move {
                let reply = if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    serde_json::json!({"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": tool, "arguments": arguments.to_string()}}]}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                } else {
                    serde_json::json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "filed"}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                };
                axum::Json(reply)
            }
        }),
    );
    format!("http://127.0.0.1:{}/v1", serve(app))
}

#[test]
fn an_agent_opens_a_github_issue_only_once_a_person_approves() {
    let tmp = tempfile::tempdir().unwrap();
    let calls: Calls = Default::default();
    let port = github(calls.clone());
    let url = model_calling(
        "github_issue_create",
        serde_json::json!({"repo": "acme/app", "title": "Nightly backup is slow", "body": "It took 3h."}),
    );
    let dir = tmp.path().join("data");
    std::fs::write(
        config_path(&dir),
        format!(
            "[github]\napi_url = \"http://127.0.0.1:{port}\"\n\n[providers.fake]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\n\n[agents.triager]\nprovider = \"fake\"\ntools = [\"github_issue_create\"]\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&dir, &[("GITHUB_TOKEN", "gh-test-token")]);
    let id = add(&d, &["--agent", "triager", "File an issue about the slow backup"]);
    let pending = wait_for("the approval request", Duration::from_secs(30), || {
        let a = d.json(&["approvals"]);
        a["approvals"].as_array().and_then(|l| l.iter().find(|x| x["tool"] == "github_issue_create").cloned())
    });
    assert!(
        !calls.lock().unwrap().iter().any(|(m, p, ..)| m == "POST" && p == "/repos/acme/app/issues"),
        "nothing is posted before the approval"
    );
    d.ok(&["approve", &pending["id"].to_string()]);
    let t = finished(&d, id);
    assert_eq!(t["status"], "succeeded", "{t}");
    let c = calls.lock().unwrap().clone();
    let post = c.iter().find(|(m, p, ..)| m == "POST" && p == "/repos/acme/app/issues").expect("the issue was opened");
    assert_eq!(post.3["title"], "Nightly backup is slow");
    let transcript = d.ok(&["transcript", &id.to_string(), "--full"]);
    assert!(transcript.contains("issues/43"), "the agent saw the new issue's URL: {transcript}");
}

#[test]
fn an_agent_searches_the_web_through_its_configured_backend() {
    let answer = include_str!("../../../owl-agent/src/tools/fixtures/searxng.json");
    let searx = serve(axum::Router::new().route(
        "/search",
        axum::routing::get(move |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
            assert_eq!(q.get("q").map(String::as_str), Some("sqlite group commit"));
            answer
        }),
    ));
    let url = model_calling("web_search", serde_json::json!({"query": "sqlite group commit"}));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(
        config_path(&dir),
        format!(
            "[providers.fake]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\n\n[agents.researcher]\nprovider = \"fake\"\ntools = [\"web_search\"]\nsearch = {{ kind = \"searxng\", base_url = \"http://127.0.0.1:{searx}\" }}\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&dir, &[]);
    let id = add(&d, &["--agent", "researcher", "How does SQLite group commit work?"]);
    let t = finished(&d, id);
    assert_eq!(t["status"], "succeeded", "{t}");
    // The transcript is the task's search history: the query and what came back.
    let transcript = d.ok(&["transcript", &id.to_string(), "--full"]);
    assert!(transcript.contains("sqlite group commit") && transcript.contains("https://www.sqlite.org/wal.html"), "{transcript}");
}
