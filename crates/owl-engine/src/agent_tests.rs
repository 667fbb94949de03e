//! Agent tasks end to end on the engine: the real store, a real OpenAI-compatible server on
//! loopback speaking the wire format, real tools in a real workspace.

use super::*;
use crate::chats::{ChatEnd, ChatError, ChatUpdate};
use owl_core::agent::{AgentDefaults, AgentSettings, PolicyDefault, Price, ProviderSettings};
use owl_core::task::Status;
use owl_core::{Command as Cmd, TaskSpec};
use owl_store::prelude::*;
use owl_store::{ApprovalStatus, Owner, UsageBy};
use owl_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};

const CANARY: &str = "sk-canary-7f3a9c2e41";

/// A Chat Completions server that plays scripted assistant turns and records requests.
struct ModelServer {
    url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

pub(crate) fn tool_turn(id: &str, name: &str, args: Value) -> Value {
    json!({"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100}})
}

pub(crate) fn final_turn(text: &str) -> Value {
    json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100}})
}

async fn model_server(turns: Vec<Value>) -> ModelServer {
    let queue = Arc::new(Mutex::new(VecDeque::from(turns)));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (q, r) = (queue.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (q, r) = (q.clone(), r.clone());
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                r.lock().unwrap().push((auth, serde_json::from_str(&body).unwrap_or(Value::Null)));
                let next = q.lock().unwrap().pop_front().unwrap_or_else(|| final_turn("out of script"));
                axum::Json(next)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    ModelServer { url: format!("http://{addr}/v1"), requests }
}

struct Harness {
    engine: Engine,
    dir: tempfile::TempDir,
}

fn agent_settings(shell_default: PolicyDefault) -> AgentSettings {
    let mut a = AgentSettings::new("fake");
    a.model = Some("m".into());
    a.shell_default = shell_default;
    a.shell_allow = vec!["env".into(), "cat".into()];
    a.max_steps = 6;
    a.max_cost_usd = Some(5.0);
    // These tests run in the test binary, which has no sandbox trampoline; the owl binary's
    // e2e tests cover sandboxed shell calls.
    a.sandbox = false;
    a
}

fn start(server: &ModelServer, agent: AgentSettings) -> Harness {
    start_with_workers(server, agent, 2)
}

fn start_with_workers(server: &ModelServer, agent: AgentSettings, workers: usize) -> Harness {
    start_full(server, agent, workers, &BTreeMap::new())
}

fn start_full(server: &ModelServer, agent: AgentSettings, workers: usize, secrets: &BTreeMap<String, String>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let mut cfg = crate::tests_config();
    cfg.workers = workers;
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), cfg, Arc::new(SystemClock));
    tokio::spawn(dispatch.run(true));
    let mut providers = BTreeMap::new();
    providers.insert(
        "fake".to_string(),
        ProviderSettings { api_key_env: Some("OWL_TEST_CANARY_KEY".into()), ..crate::budget_tests::provider(&server.url) },
    );
    let mut agents = BTreeMap::new();
    agents.insert("worker".to_string(), agent);
    let mut prices = BTreeMap::new();
    prices.insert("m".to_string(), Price { input: 2.0, output: 10.0, cached: None });
    let mut env = BTreeMap::new();
    env.insert("OWL_TEST_CANARY_KEY".to_string(), CANARY.to_string());
    let defaults = AgentDefaults { approval_timeout: Duration::from_secs(30), ..AgentDefaults::default() };
    let rt = owl_agent::Runtime::new(providers, agents, prices, defaults, &env, secrets, None);
    engine.set_agents(Arc::new(rt));
    Harness { engine, dir }
}

async fn submit_agent(h: &Harness, prompt: &str) -> TaskId {
    submit_agent_to(h, "worker", prompt).await
}

async fn submit_agent_to(h: &Harness, agent: &str, prompt: &str) -> TaskId {
    let spec = TaskSpec::new(Cmd::agent(agent, prompt));
    h.engine.submit(vec![NewTask::new(spec)]).await.unwrap()[0].id
}

/// The first approval waiting for a decision, once there is one.
async fn first_pending(h: &Harness) -> owl_store::Approval {
    for _ in 0..1000 {
        if let Some(a) = h.engine.store().list_approvals(true, h.engine.now()).await.unwrap().into_iter().next() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no approval was requested");
}

async fn wait_status(h: &Harness, id: TaskId, want: &[Status]) -> owl_core::Task {
    for _ in 0..1000 {
        let t = h.engine.store().get(id).await.unwrap();
        if want.contains(&t.state.status()) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} never reached {want:?}: {:?}", h.engine.store().get(id).await.unwrap().state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_task_uses_tools_and_leaves_a_complete_record_without_its_key() {
    let server = model_server(vec![
        tool_turn("c1", "write_file", json!({"path": "todo.md", "content": "- water the plants\n"})),
        tool_turn("c2", "read_file", json!({"path": "../../etc/passwd"})),
        tool_turn("c3", "shell", json!({"command": "env"})),
        tool_turn("c4", "read_file", json!({"pathh": "todo.md"})),
        final_turn(&format!("Wrote todo.md. (my key is {CANARY})")),
    ])
    .await;
    // The daemon's own environment holds the key, as it would in production.
    std::env::set_var("OWL_TEST_CANARY_KEY", CANARY);
    let h = start(&server, agent_settings(PolicyDefault::Deny));
    let mut events = h.engine.subscribe();
    let id = submit_agent(&h, "Write the TODOs into todo.md").await;
    let t = wait_status(&h, id, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(t.state.status(), Status::Succeeded, "{:?}", t.state);
    let ws = h.dir.path().join("workspaces").join(id.to_string());
    assert_eq!(std::fs::read_to_string(ws.join("todo.md")).unwrap(), "- water the plants\n");
    let result = h.engine.store().task_result(id).await.unwrap().unwrap();
    assert!(result.starts_with("Wrote todo.md.") && !result.contains(CANARY), "{result}");

    let entries = rows(h.engine.store().transcript(Owner::Task(id), 0).await.unwrap());
    let kinds: Vec<&str> = entries.iter().map(|e| e.body["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["system", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant"]);
    let tool = |i: usize| &entries[i].body;
    assert_eq!(tool(3)["is_error"], false);
    assert_eq!(tool(5)["is_error"], true, "escaping read refused: {}", tool(5));
    assert!(tool(5)["content"].as_str().unwrap().contains("leaves the workspace"));
    assert_eq!(tool(7)["is_error"], false, "env is allowed: {}", tool(7));
    let env_out = tool(7)["content"].as_str().unwrap();
    assert!(env_out.contains("OWL_WORKSPACE="), "{env_out}");
    assert!(!env_out.contains("OWL_TEST_CANARY_KEY"), "the key's variable reached the tool: {env_out}");
    assert!(tool(9)["content"].as_str().unwrap().contains("unknown field `pathh`"), "a bad call is an error the model sees: {}", tool(9));
    assert_eq!(entries[2].body["usage"]["input"], 1000);
    assert!((entries[2].body["cost_usd"].as_f64().unwrap() - 0.003).abs() < 1e-9, "1000 in at $2/M + 100 out at $10/M");

    // The key went to the provider, and nowhere else.
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 5);
    assert!(reqs.iter().all(|(auth, _)| auth == &format!("Bearer {CANARY}")));
    let transcript_text = serde_json::to_string(&entries.iter().map(|e| &e.body).collect::<Vec<_>>()).unwrap();
    assert!(!transcript_text.contains(CANARY), "the canary is in the transcript");
    let log = std::fs::read_to_string(h.dir.path().join(format!("logs/{id}.1.log"))).unwrap();
    assert!(log.contains("write_file ok") && !log.contains(CANARY), "{log}");
    let mut step_events = 0;
    while let Ok(e) = events.try_recv() {
        assert!(!format!("{e:?}").contains(CANARY), "the canary is in an event");
        if matches!(e.kind, EventKind::AgentStep { task_id, .. } if task_id == id) {
            step_events += 1;
        }
    }
    assert_eq!(step_events, entries.len(), "every transcript entry is announced");
    let usage = h.engine.store().usage_summary(Timestamp(0), Timestamp(i64::MAX), UsageBy::Agent).await.unwrap();
    assert_eq!((usage[0].key.as_str(), usage[0].calls, usage[0].input), ("worker", 5, 5000));
    // The model saw the tool results (the second request carries the first call's result).
    assert_eq!(reqs[1].1["messages"][3]["role"], "tool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_that_are_numbers_or_carry_quotes_and_backslashes_are_never_stored() {
    // Serialized, the second secret reads `pa\"ss\\word-99`, so replacing it in the JSON text
    // finds nothing; and replacing the first inside a number would break the document.
    const NUMERIC: &str = "73194628";
    const QUOTED: &str = r#"pa"ss\word-99"#;
    let server = model_server(vec![
        tool_turn("c1", "write_file", json!({"path": "s.txt", "content": format!("{NUMERIC} {QUOTED}\n")})),
        tool_turn("c2", "shell", json!({"command": "cat s.txt"})),
        tool_turn("c3", "read_file", json!({"path": "s.txt", "limit": 73194628})),
        final_turn(&format!("the pin is {NUMERIC} and the password {QUOTED}")),
    ])
    .await;
    std::env::set_var("OWL_TEST_CANARY_KEY", CANARY);
    let secrets = BTreeMap::from([("pin".to_string(), NUMERIC.to_string()), ("password".to_string(), QUOTED.to_string())]);
    let h = start_full(&server, agent_settings(PolicyDefault::Deny), 2, &secrets);
    let mut events = h.engine.subscribe();
    let id = submit_agent(&h, "Store the credentials").await;
    let t = wait_status(&h, id, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(t.state.status(), Status::Succeeded, "{:?}", t.state);
    let leaks = |text: &str| {
        let escaped = serde_json::to_string(QUOTED).unwrap();
        text.contains(NUMERIC) || text.contains(QUOTED) || text.contains(escaped.trim_matches('"'))
    };
    let entries = rows(h.engine.store().transcript(Owner::Task(id), 0).await.unwrap());
    let transcript = serde_json::to_string(&entries.iter().map(|e| &e.body).collect::<Vec<_>>()).unwrap();
    assert!(!leaks(&transcript), "a secret is in the transcript: {transcript}");
    assert!(transcript.contains("<redacted>"), "{transcript}");
    // The tool output really carried both (the file holds them), so redaction did the work.
    let file = std::fs::read_to_string(h.dir.path().join("workspaces").join(id.to_string()).join("s.txt")).unwrap();
    assert!(leaks(&file));
    let result = h.engine.store().task_result(id).await.unwrap().unwrap();
    assert!(!leaks(&result) && result.contains("<redacted>"), "{result}");
    let log = std::fs::read_to_string(h.dir.path().join(format!("logs/{id}.1.log"))).unwrap();
    assert!(!leaks(&log), "{log}");
    while let Ok(e) = events.try_recv() {
        assert!(!leaks(&format!("{e:?}")), "a secret is in an event: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_end_a_task_with_a_reason() {
    let turns = (0..10).map(|i| tool_turn(&format!("c{i}"), "list_dir", json!({}))).collect();
    let server = model_server(turns).await;
    let mut a = agent_settings(PolicyDefault::Deny);
    a.max_steps = 3;
    let h = start(&server, a);
    let id = submit_agent(&h, "loop forever").await;
    let t = wait_status(&h, id, &[Status::Failed, Status::Succeeded]).await;
    match t.state {
        owl_core::TaskState::Failed { reason, .. } => assert!(reason.contains("max_steps"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests.lock().unwrap().len(), 3);
    assert!(h.engine.store().task_result(id).await.unwrap().unwrap().contains("step limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_call_waits_for_a_human_and_runs_once_approved_and_not_when_denied() {
    let server = model_server(vec![
        tool_turn("c1", "shell", json!({"command": "echo deployed > deploy.txt"})),
        final_turn("deployed"),
        tool_turn("d1", "shell", json!({"command": "echo no > nope.txt"})),
        final_turn("gave up"),
    ])
    .await;
    let h = start(&server, agent_settings(PolicyDefault::Ask));
    let id = submit_agent(&h, "deploy").await;
    let pending = first_pending(&h).await;
    assert_eq!((pending.owner, pending.tool.as_str(), pending.call_id.as_str()), (Owner::Task(id), "shell", "c1"));
    assert_eq!(pending.arguments["command"], "echo deployed > deploy.txt");
    let ws = h.dir.path().join("workspaces").join(id.to_string());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!ws.join("deploy.txt").exists(), "nothing runs before the decision");
    assert_eq!(h.engine.store().get(id).await.unwrap().state.status(), Status::Running);
    h.engine.decide_approval(pending.id, true, None).await.unwrap();
    wait_status(&h, id, &[Status::Succeeded]).await;
    assert_eq!(std::fs::read_to_string(ws.join("deploy.txt")).unwrap(), "deployed\n");
    assert_eq!(h.engine.store().get_approval(pending.id).await.unwrap().status, ApprovalStatus::Used);
    assert!(h.engine.decide_approval(pending.id, true, None).await.is_err(), "decided once");

    let id2 = submit_agent(&h, "try again").await;
    let pending = first_pending(&h).await;
    h.engine.decide_approval(pending.id, false, Some("not on prod".into())).await.unwrap();
    wait_status(&h, id2, &[Status::Succeeded]).await;
    assert!(!h.dir.path().join("workspaces").join(id2.to_string()).join("nope.txt").exists());
    let entries = rows(h.engine.store().transcript(Owner::Task(id2), 0).await.unwrap());
    let denied = entries.iter().find(|e| e.body["type"] == "tool").unwrap();
    assert!(denied.body["content"].as_str().unwrap().contains("not on prod"), "{}", denied.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_approval_frees_its_worker_and_takes_one_back_before_the_call_runs() {
    let server = model_server(vec![tool_turn("c1", "shell", json!({"command": "echo yes > approved.txt"})), final_turn("done")]).await;
    let h = start_with_workers(&server, agent_settings(PolicyDefault::Ask), 1);
    let agent = submit_agent(&h, "deploy").await;
    let pending = first_pending(&h).await;
    // The only worker is free while the agent waits: plain tasks run meanwhile.
    let quick = h.engine.submit(vec![NewTask::new(TaskSpec::new(Cmd::Shell("echo quick".into())))]).await.unwrap()[0].id;
    wait_status(&h, quick, &[Status::Succeeded]).await;
    let gate = h.dir.path().join("gate");
    let script = format!("while [ ! -e '{}' ]; do sleep 0.02; done", gate.display());
    let blocker = h.engine.submit(vec![NewTask::new(TaskSpec::new(Cmd::Shell(script)))]).await.unwrap()[0].id;
    wait_status(&h, blocker, &[Status::Running]).await;
    assert_eq!(h.engine.store().get(agent).await.unwrap().state.status(), Status::Running, "the waiting task keeps its lease");
    // Approved while the worker is busy: the call waits for the worker, then runs once.
    h.engine.decide_approval(pending.id, true, None).await.unwrap();
    let ws = h.dir.path().join("workspaces").join(agent.to_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ws.join("approved.txt").exists(), "the approved call waits for a free worker");
    std::fs::write(&gate, "").unwrap();
    wait_status(&h, blocker, &[Status::Succeeded]).await;
    wait_status(&h, agent, &[Status::Succeeded]).await;
    assert_eq!(std::fs::read_to_string(ws.join("approved.txt")).unwrap(), "yes\n");
    assert_eq!(h.engine.store().get_approval(pending.id).await.unwrap().status, ApprovalStatus::Used);
}

/// A server whose replies may be held back: `Hold` answers only after the test is over.
async fn model_server_with_hold(turns: Vec<Option<Value>>) -> ModelServer {
    let queue = Arc::new(Mutex::new(VecDeque::from(turns)));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (q, r) = (queue.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: String| {
            let (q, r) = (q.clone(), r.clone());
            async move {
                r.lock().unwrap().push((String::new(), serde_json::from_str(&body).unwrap_or(Value::Null)));
                let next = q.lock().unwrap().pop_front().flatten();
                match next {
                    Some(v) => axum::Json(v),
                    None => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        axum::Json(final_turn("too late"))
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    ModelServer { url: format!("http://{addr}/v1"), requests }
}

fn restart_on(dir: &std::path::Path, server: &ModelServer, agent: AgentSettings) -> (Engine, tokio::task::JoinHandle<()>) {
    let store = SqliteStore::open(&dir.join("owl.db"), Durability::Full).unwrap();
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir), crate::tests_config(), Arc::new(SystemClock));
    let h = start(server, agent); // only for its runtime
                                  // As the daemon does: agents are installed before the dispatch loop can claim anything.
    engine.set_agents(h.engine.agents().unwrap());
    let handle = tokio::spawn(dispatch.run(true));
    (engine, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_task_resumes_from_its_transcript_without_redoing_recorded_steps() {
    let server = model_server_with_hold(vec![
        Some(tool_turn("c1", "write_file", json!({"path": "a.txt", "content": "once\n"}))),
        None, // the daemon stops while this call is in flight
        Some(final_turn("finished after the restart")),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (a, a_loop) = restart_on(dir.path(), &server, agent_settings(PolicyDefault::Deny));
    let spec = TaskSpec::new(Cmd::agent("worker", "write a.txt"));
    let id = a.submit(vec![NewTask::new(spec)]).await.unwrap()[0].id;
    for _ in 0..500 {
        if server.requests.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.requests.lock().unwrap().len(), 2);
    a.shutdown();
    a_loop.await.unwrap();
    let t = a.store().get(id).await.unwrap();
    assert_eq!(t.state.status(), Status::Queued, "an interrupted agent task is put back: {:?}", t.state);
    drop(a);

    let (b, _b_loop) = restart_on(dir.path(), &server, agent_settings(PolicyDefault::Deny));
    let mut done = None;
    for _ in 0..500 {
        let t = b.store().get(id).await.unwrap();
        if t.state.is_terminal() {
            done = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = done.expect("the task finished after the restart");
    assert_eq!(t.state.status(), Status::Succeeded, "{:?}", t.state);
    assert_eq!(b.store().task_result(id).await.unwrap().as_deref(), Some("finished after the restart"));
    let ws = dir.path().join("workspaces").join(id.to_string());
    assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "once\n");
    let entries = rows(b.store().transcript(Owner::Task(id), 0).await.unwrap());
    assert!(entries.iter().any(|e| e.body["type"] == "note" && e.body["text"] == "resumed in attempt 2"), "{entries:?}");
    assert_eq!(entries.iter().filter(|e| e.body["type"] == "tool").count(), 1, "the recorded step is not redone");
    // The resumed call carried the whole conversation, with the recorded tool result.
    let reqs = server.requests.lock().unwrap().clone();
    let last = &reqs[2].1["messages"];
    assert!(
        last.as_array().unwrap().iter().any(|m| m["role"] == "tool" && m["content"].as_str().unwrap().contains("wrote 5 bytes")),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_result_was_never_recorded_is_reported_not_rerun() {
    let server = model_server(vec![final_turn("ok, I will check first")]).await;
    let dir = tempfile::tempdir().unwrap();
    // What a crash between recording a call and recording its result leaves behind.
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let spec = TaskSpec::new(Cmd::agent("worker", "write b.txt"));
    let now = Timestamp::from_system(std::time::SystemTime::now());
    let id = store.submit(vec![NewTask::new(spec)], now).await.unwrap()[0].id;
    store
        .append_transcript(
            Owner::Task(id),
            1,
            vec![
                owl_core::transcript::Entry::system("s"),
                owl_core::transcript::Entry::user("write b.txt"),
                serde_json::from_value(json!({"type": "assistant", "content": "", "tool_calls": [{"id": "c9", "name": "write_file", "arguments": {"path": "b.txt", "content": "x"}}]})).unwrap(),
            ],
            now,
        )
        .await
        .unwrap();
    drop(store);
    let (b, _loop) = restart_on(dir.path(), &server, agent_settings(PolicyDefault::Deny));
    for _ in 0..500 {
        if b.store().get(id).await.unwrap().state.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.store().get(id).await.unwrap().state.status(), Status::Succeeded);
    assert!(!dir.path().join("workspaces").join(id.to_string()).join("b.txt").exists(), "the unrecorded call was not run again");
    let entries = rows(b.store().transcript(Owner::Task(id), 0).await.unwrap());
    let tool = entries.iter().find(|e| e.body["type"] == "tool").unwrap();
    assert_eq!(tool.body["call_id"], "c9");
    assert!(tool.body["content"].as_str().unwrap().contains("may or may not have taken effect"), "{}", tool.body);
}

/// Sends one chat message and collects the turn's deltas and end.
async fn chat_turn(h: &Harness, chat: i64, message: &str) -> (Vec<owl_agent::msg::Delta>, ChatEnd) {
    let mut rx = h.engine.chat_message(chat, message.into()).await.unwrap();
    let mut deltas = Vec::new();
    while let Some(u) = rx.recv().await {
        match u {
            ChatUpdate::Delta(d) => deltas.push(d),
            ChatUpdate::End(end) => return (deltas, end),
        }
    }
    panic!("the turn ended without an end");
}

async fn next_end(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ChatUpdate>) -> ChatEnd {
    let wait = async {
        while let Some(u) = rx.recv().await {
            if let ChatUpdate::End(e) = u {
                return e;
            }
        }
        panic!("no end")
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the turn ended")
}

/// A model server that answers every request after `delay`.
async fn slow_model_server(delay: Duration) -> ModelServer {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let r = requests.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: String| {
            let r = r.clone();
            async move {
                r.lock().unwrap().push((String::new(), serde_json::from_str(&body).unwrap_or(Value::Null)));
                tokio::time::sleep(delay).await;
                axum::Json(final_turn("late"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    ModelServer { url: format!("http://{addr}/v1"), requests }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_turns_are_engine_jobs_one_per_chat_with_a_slot_a_timeout_a_cancel_and_a_clean_stop() {
    let server = slow_model_server(Duration::from_secs(30)).await;
    let h = start_with_workers(&server, agent_settings(PolicyDefault::Deny), 1);
    let chat = h.engine.store().create_chat("worker", h.engine.now()).await.unwrap().id;
    let asked = |n: usize| {
        let reqs = server.requests.clone();
        async move {
            for _ in 0..500 {
                if reqs.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the model was never asked");
        }
    };
    let mut first = h.engine.chat_message(chat, "one".into()).await.unwrap();
    asked(1).await;
    // One turn per chat at a time.
    assert!(matches!(h.engine.chat_message(chat, "two".into()).await, Err(ChatError::Busy(c)) if c == chat));
    // The turn holds the only worker slot: a task waits for it.
    let task = h.engine.submit(vec![NewTask::new(TaskSpec::new(Cmd::Shell("true".into())))]).await.unwrap()[0].id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.engine.store().get(task).await.unwrap().state.status(), Status::Queued);
    // Cancelled, it ends with a reason, frees the slot and the chat.
    h.engine.cancel_chat_turn(chat).await.unwrap();
    match next_end(&mut first).await {
        ChatEnd::Failed(why) => assert!(why.contains("cancelled"), "{why}"),
        other => panic!("{other:?}"),
    }
    wait_status(&h, task, &[Status::Succeeded]).await;
    assert!(matches!(h.engine.cancel_chat_turn(chat).await, Err(ChatError::NotRunning(_))));
    // A turn past [agent] chat_timeout is stopped.
    let mut cfg = crate::tests_config();
    cfg.workers = 1;
    cfg.chat_timeout = Duration::from_millis(300);
    h.engine.reload(cfg);
    let mut second = h.engine.chat_message(chat, "three".into()).await.unwrap();
    match next_end(&mut second).await {
        ChatEnd::Failed(why) => assert!(why.contains("chat_timeout"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A turn that panics ends with an error its client sees, and frees the chat.
    let mut panicked = h.engine.chat_message(chat, "owl-test:panic".into()).await.unwrap();
    match next_end(&mut panicked).await {
        ChatEnd::Failed(why) => assert!(why.contains("panicked (injected chat turn panic)"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Shutdown interrupts a running turn once the grace is over, and refuses new ones.
    let mut cfg = crate::tests_config();
    cfg.workers = 1;
    h.engine.reload(cfg);
    let mut third = h.engine.chat_message(chat, "four".into()).await.unwrap();
    asked(3).await;
    h.engine.shutdown();
    match next_end(&mut third).await {
        ChatEnd::Failed(why) => assert!(why.contains("interrupted"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.engine.chat_message(chat, "five".into()).await, Err(ChatError::ShuttingDown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_turns_stream_and_a_resumed_chat_remembers_earlier_turns() {
    let chunk = |delta: Value, finish: Value| json!({"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let sse = |parts: Vec<Value>| {
        let mut body = String::new();
        for p in parts {
            body.push_str(&format!("data: {p}\n\n"));
        }
        body.push_str("data: [DONE]\n\n");
        body
    };
    let bodies = Arc::new(Mutex::new(VecDeque::from(vec![
        sse(vec![chunk(json!({"content": "Hel"}), Value::Null), chunk(json!({"content": "lo!"}), json!("stop"))]),
        sse(vec![chunk(json!({"content": "You said hi."}), json!("stop"))]),
    ])));
    let requests: Arc<Mutex<Vec<(String, Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let (q, r) = (bodies.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: String| {
            let (q, r) = (q.clone(), r.clone());
            async move {
                r.lock().unwrap().push((String::new(), serde_json::from_str(&body).unwrap()));
                let b = q.lock().unwrap().pop_front().unwrap_or_default();
                ([("content-type", "text/event-stream")], b)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let server = ModelServer { url: format!("http://{addr}/v1"), requests };
    let h = start(&server, agent_settings(PolicyDefault::Deny));
    let (memory, _) = memory_in(&h.dir.path().join("memory"));
    h.engine.set_memory(Some(memory.clone()));
    let chat = h.engine.store().create_chat("worker", h.engine.now()).await.unwrap();
    let (deltas, end) = chat_turn(&h, chat.id, "hi").await;
    assert_eq!(end, ChatEnd::Answered("Hello!".into()));
    assert_eq!(deltas, vec![owl_agent::msg::Delta::Text("Hel".into()), owl_agent::msg::Delta::Text("lo!".into())]);
    let (_, end) = chat_turn(&h, chat.id, "what did I say?").await;
    assert_eq!(end, ChatEnd::Answered("You said hi.".into()));
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs[0].1["stream"], true);
    let msgs = reqs[1].1["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "the second turn carries the first");
    assert_eq!(msgs[2]["content"], "Hello!");
    let info = h.engine.store().get_chat(chat.id).await.unwrap();
    assert_eq!(info.title, "hi");
    assert_eq!(h.engine.store().transcript(Owner::Chat(chat.id), 0).await.unwrap().len(), 5);
    // Each turn is remembered as conversation, and the chat's own turns are not recalled into it.
    let convo = memory.db().list(&owl_memory::Filter { kinds: vec!["conversation".into()], ..Default::default() }, 10, None).unwrap();
    assert_eq!(convo.len(), 2, "{convo:#?}");
    assert!(convo.iter().any(|m| m.text.contains("the user said: hi") && m.text.contains("Hello!")));
    assert_eq!(convo[0].source.as_deref(), Some(format!("chat:{}", chat.id).as_str()));
    assert_eq!(msgs[3]["content"], "what did I say?", "nothing of this chat is recalled into it");
}

/// Memory with the real embedding model when it has been fetched, else full-text alone.
fn memory_in(dir: &std::path::Path) -> (Arc<owl_memory::Memory>, bool) {
    let model = std::env::var("HOME").ok().map(|h| owl_memory::embed::default_model_dir(&std::path::Path::new(&h).join(".cache")));
    let have = model.as_ref().is_some_and(|m| m.join("model.safetensors").exists());
    let loader: owl_memory::Loader = match model.filter(|_| have) {
        Some(m) => owl_memory::bert_loader(m, owl_memory::embed::Precision::F32),
        None => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true fetches the embedding model; it is missing");
            eprintln!("note: no embedding model fetched; this test runs on full-text memory alone");
            Box::new(|| Err("no model".to_string()))
        }
    };
    (Arc::new(owl_memory::Memory::open(dir, owl_memory::MemoryConfig::default(), loader).unwrap()), have)
}

/// The local model's prompt finds recalled memories by the marker the engine writes.
#[test]
fn the_local_prompt_knows_the_recall_marker() {
    assert_eq!(owl_agent::local_prompt::RECALL_MARKER, owl_memory::RECALL_MARKER);
}

/// The snowball case: an agent that is handed a memory and repeats it in its answers, task
/// after task, leaves task memories behind but never a copy of what it recalled, so memory
/// does not grow with its own echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalled_memories_reach_the_prompt_and_are_never_stored_back() {
    const FACT: &str = "The deploy window is Tuesday morning, between nine and eleven.";
    let rounds = 6;
    let turns = (0..rounds).map(|_| final_turn(&format!("From memory: {FACT} So deploy on Tuesday."))).collect();
    let server = model_server(turns).await;
    let h = start(&server, agent_settings(PolicyDefault::Allow));
    let (memory, semantic) = memory_in(&h.dir.path().join("memory"));
    h.engine.set_memory(Some(memory.clone()));
    let fact = memory.add(owl_memory::NewMemory { text: FACT.into(), kind: "knowledge".into(), ..Default::default() }).unwrap().id();
    for round in 0..rounds {
        let id = submit_agent(&h, "When may we deploy to production? Check what you know about the deploy window.").await;
        let t = wait_status(&h, id, &[Status::Succeeded, Status::Failed]).await;
        assert_eq!(t.state.status(), Status::Succeeded, "round {round}");
    }
    // The model saw the memory, cited by id.
    let requests = server.requests.lock().unwrap().clone();
    let first_user = requests[0].1["messages"].as_array().unwrap().iter().find(|m| m["role"] == "user").unwrap()["content"].clone();
    assert!(first_user.as_str().unwrap().contains(&format!("{}{fact}]", owl_memory::RECALL_MARKER)), "{first_user}");
    // Exactly one item holds the fact; task memories exist and carry none of it.
    let all = memory.db().list(&owl_memory::Filter::default(), 1000, None).unwrap();
    let copies = all.iter().filter(|m| m.text.contains("Tuesday morning")).count();
    assert_eq!(copies, 1, "{all:#?}");
    let tasks: Vec<_> = all.iter().filter(|m| m.kind == "task").collect();
    assert!(!tasks.is_empty(), "finished tasks are remembered");
    assert!(tasks.iter().all(|m| m.text.contains("asked: When may we deploy") && m.agent.as_deref() == Some("worker")), "{tasks:#?}");
    if semantic {
        // The same task finished the same way merges instead of piling up.
        assert!(tasks.len() <= 2, "{} task memories for {rounds} identical tasks: {tasks:#?}", tasks.len());
    }
    // The agent's own memory_add refuses recalled text.
    let e = memory.add(owl_memory::NewMemory {
        text: format!("{}{fact}] {FACT}", owl_memory::RECALL_MARKER),
        kind: "knowledge".into(),
        ..Default::default()
    });
    assert!(matches!(e.unwrap_err(), owl_memory::MemoryError::Invalid { field: "text", ref message } if message.contains("recalled")));
}

/// `[memory.retention]`: conversation memories older than their retention are deleted by the
/// engine's loop; other kinds stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_past_their_kind_retention_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let mut cfg = crate::tests_config();
    cfg.memory.retention = BTreeMap::from([("conversation".to_string(), Duration::from_secs(2))]);
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), cfg, Arc::new(SystemClock));
    let memory =
        Arc::new(owl_memory::Memory::open(&dir.path().join("m"), Default::default(), Box::new(|| Err("no model".to_string()))).unwrap());
    let old = engine.now().millis() - 60_000;
    let item = |text: &str, kind: &str| owl_memory::NewMemory { text: text.into(), kind: kind.into(), ..Default::default() };
    let gone = memory.db().insert(&item("an old chat turn", "conversation"), None, old).unwrap();
    let kept_kind = memory.db().insert(&item("an old fact", "knowledge"), None, old).unwrap();
    let fresh = memory.db().insert(&item("a new chat turn", "conversation"), None, engine.now().millis()).unwrap();
    engine.set_memory(Some(memory.clone()));
    tokio::spawn(dispatch.run(true));
    for _ in 0..500 {
        if memory.db().get(gone).unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(memory.db().get(gone).unwrap().is_none(), "the old conversation item is deleted");
    assert!(memory.db().get(kept_kind).unwrap().is_some(), "kinds without a retention stay");
    assert!(memory.db().get(fresh).unwrap().is_some(), "recent items stay");
}

/// Transcript rows as JSON, the form every reader of the stored transcript sees.
#[derive(Debug)]
struct Row {
    body: serde_json::Value,
}

fn rows(entries: Vec<owl_store::TranscriptEntry>) -> Vec<Row> {
    entries.into_iter().map(|e| Row { body: serde_json::to_value(&e.body).unwrap() }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_must_use_a_tool_and_never_does_fails_instead_of_succeeding() {
    let server = model_server(vec![final_turn("hello world"), final_turn("hello world, again")]).await;
    let mut a = agent_settings(PolicyDefault::Deny);
    a.must_use_tool = true;
    let h = start(&server, a);
    let id = submit_agent(&h, "Create a file named hello.txt containing the word owl").await;
    let t = wait_status(&h, id, &[Status::Succeeded, Status::Failed]).await;
    let owl_core::TaskState::Failed { reason, .. } = &t.state else { panic!("{:?}", t.state) };
    let reason = reason.clone();
    assert!(reason.contains("without calling any tool, so it did nothing"), "{reason}");
    assert!(reason.contains("hello world, again"), "the answer is shown: {reason}");
    assert_eq!(server.requests.lock().unwrap().len(), 2, "told once, then stopped");
    let entries = rows(h.engine.store().transcript(Owner::Task(id), 0).await.unwrap());
    assert!(entries.iter().any(|e| e.body["nudge"] == true), "the reminder is marked as owl's: {entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_setting_points_the_default_agent_at_a_hosted_model() {
    let server =
        model_server(vec![tool_turn("c1", "write_file", json!({"path": "hello.txt", "content": "owl"})), final_turn("Created hello.txt.")])
            .await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), crate::tests_config(), Arc::new(SystemClock));
    tokio::spawn(dispatch.run(true));
    let env: BTreeMap<String, String> =
        [("OPENAI_API_KEY".to_string(), CANARY.to_string()), ("OPENAI_BASE_URL".to_string(), server.url.clone())].into();
    let defaults = AgentDefaults { default_model: "openai:m".into(), ..AgentDefaults::default() };
    let rt = owl_agent::Runtime::new(BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), defaults, &env, &BTreeMap::new(), None);
    assert_eq!(rt.agents().iter().map(|a| a.name.clone()).collect::<Vec<_>>(), vec!["default".to_string()]);
    engine.set_agents(Arc::new(rt));
    let h = Harness { engine, dir };
    let id = submit_agent_to(&h, "default", "Create a file named hello.txt containing the word owl").await;
    let t = wait_status(&h, id, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(t.state.status(), Status::Succeeded, "{:?}", t.state);
    let ws = h.dir.path().join("workspaces").join(id.to_string());
    assert_eq!(std::fs::read_to_string(ws.join("hello.txt")).unwrap(), "owl");
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs[0].1["model"], "m", "the request names the model from the setting");
    assert!(reqs[0].0.contains(CANARY), "the key came from OPENAI_API_KEY");
}
