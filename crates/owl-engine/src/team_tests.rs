//! A team of agents on the engine: routing across three agents, a planner delegating to two
//! coders in parallel with a reviewer that sends the work back once, a daemon crash in the
//! middle of a team run, and messages between agents. Each agent talks to a real
//! OpenAI-compatible server on loopback whose replies are scripted per agent (by model name)
//! from what the request holds, so parallel agents get the right replies in any order.

use super::*;
use crate::agent_tests::{final_turn, tool_turn};
use owl_core::agent::{AgentDefaults, AgentSettings, Price};
use owl_core::routing::Routing;
use owl_core::task::Status;
use owl_core::{Command as Cmd, TaskSpec};
use owl_store::prelude::*;
use owl_store::Owner;
use owl_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Script = Arc<dyn Fn(&str, &[Value]) -> Value + Send + Sync>;

/// Every request, as (model, messages).
type Seen = Arc<Mutex<Vec<(String, Vec<Value>)>>>;

/// A Chat Completions server whose reply is `script(model, messages)`; a reply to a prompt
/// holding "slow" comes after a second.
async fn model_server(script: Script) -> (String, Seen) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: String| {
            let (script, seen) = (script.clone(), s2.clone());
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let model = v["model"].as_str().unwrap_or_default().to_string();
                let messages = v["messages"].as_array().cloned().unwrap_or_default();
                seen.lock().unwrap().push((model.clone(), messages.clone()));
                if messages.iter().any(|m| m["role"] == "user" && m["content"].as_str().is_some_and(|c| c.contains("slow"))) {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                }
                axum::Json(script(&model, &messages))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

fn agent(model: &str, caps: &[&str], range: [u8; 2], max: Option<u32>) -> AgentSettings {
    let mut a = AgentSettings::new("fake");
    a.model = Some(model.into());
    a.capabilities = caps.iter().map(|c| c.to_string()).collect();
    a.complexity = range;
    a.max_concurrent = max;
    a.max_steps = 8;
    a.sandbox = false;
    a.tools = vec!["write_file".into(), "read_file".into(), "list_dir".into(), "send_message".into(), "read_messages".into()];
    a
}

/// planner (plan, review; 1-10; one at a time), coder (rust, python, code; 1-7; two at a
/// time; cheapest), reviewer (security-review, code; 1-10).
fn team() -> BTreeMap<String, AgentSettings> {
    let mut m = BTreeMap::new();
    m.insert("planner".to_string(), agent("planner-m", &["plan", "review"], [1, 10], Some(1)));
    m.insert("coder".to_string(), agent("coder-m", &["rust", "python", "code"], [1, 7], Some(2)));
    m.insert("reviewer".to_string(), agent("reviewer-m", &["security-review", "code"], [1, 10], None));
    m
}

fn runtime(url: &str, agents: BTreeMap<String, AgentSettings>) -> owl_agent::Runtime {
    let mut providers = BTreeMap::new();
    providers.insert("fake".to_string(), crate::budget_tests::provider(url));
    let mut prices = BTreeMap::new();
    prices.insert("planner-m".to_string(), Price { input: 3.0, output: 15.0, cached: None });
    prices.insert("coder-m".to_string(), Price { input: 0.5, output: 1.5, cached: None });
    prices.insert("reviewer-m".to_string(), Price { input: 2.0, output: 8.0, cached: None });
    owl_agent::Runtime::new(providers, agents, prices, AgentDefaults::default(), &BTreeMap::new(), &BTreeMap::new(), None)
}

struct Harness {
    engine: Engine,
    dir: tempfile::TempDir,
    stop: tokio::task::JoinHandle<()>,
}

fn start_at(dir: tempfile::TempDir, url: &str, workers: usize) -> Harness {
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let mut cfg = crate::tests_config();
    cfg.workers = workers;
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), cfg, Arc::new(SystemClock));
    engine.set_agents(Arc::new(runtime(url, team())));
    let stop = tokio::spawn(dispatch.run(true));
    Harness { engine, dir, stop }
}

fn agent_spec(agent: &str, prompt: &str) -> TaskSpec {
    TaskSpec::new(Cmd::agent(agent, prompt))
}

fn routed(needs: &[&str], complexity: Option<u8>, prompt: &str) -> TaskSpec {
    let route = Routing { needs: needs.iter().map(|s| s.to_string()).collect(), complexity, ..Default::default() };
    TaskSpec::new(Cmd::Agent {
        agent: String::new(),
        prompt: prompt.into(),
        max_cost_usd: None,
        route: Some(route),
        team: false,
        template: None,
    })
}

async fn submit(h: &Harness, spec: TaskSpec) -> TaskId {
    h.engine.submit(vec![NewTask::new(spec)]).await.unwrap()[0].id
}

async fn wait_status(h: &Harness, id: TaskId, want: &[Status]) -> owl_core::Task {
    for _ in 0..2000 {
        let t = h.engine.store().get(id).await.unwrap();
        if want.contains(&t.state.status()) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} never reached {want:?}: {:?}", h.engine.store().get(id).await.unwrap().state);
}

fn agent_of(t: &owl_core::Task) -> (String, Option<Routing>) {
    match &t.spec.command {
        Cmd::Agent { agent, route, .. } => (agent.clone(), route.clone()),
        other => panic!("not an agent task: {other:?}"),
    }
}

fn last_user(messages: &[Value]) -> String {
    messages.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or_default().to_string()
}

fn tool_results(messages: &[Value]) -> Vec<String> {
    messages.iter().filter(|m| m["role"] == "tool").map(|m| m["content"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn tasks_are_routed_by_capability_complexity_and_availability() {
    let (url, _seen) = model_server(Arc::new(|_, _| final_turn("done"))).await;
    let h = start_at(tempfile::tempdir().unwrap(), &url, 4);

    // Rust at complexity 4: the coder and the reviewer can (the planner lacks rust); the coder
    // is cheaper.
    let a = submit(&h, routed(&["rust"], Some(4), "Add retries to the HTTP client")).await;
    let t = h.engine.store().get(a).await.unwrap();
    let (chosen, route) = agent_of(&t);
    assert_eq!(chosen, "coder");
    let route = route.unwrap();
    assert_eq!(route.candidates.iter().map(|c| c.agent.as_str()).collect::<Vec<_>>(), ["coder", "reviewer", "planner"]);
    assert_eq!(route.candidates[2].verdict, "lacks rust");
    assert!(route.decision.contains("coder is available"), "{}", route.decision);
    assert_eq!(t.spec.group, "agent.coder", "an agent with max_concurrent queues in its own group");

    // Too hard for the coder: the reviewer takes it.
    let b = submit(&h, routed(&["code"], Some(9), "Redesign the scheduler")).await;
    let (chosen, route) = agent_of(&h.engine.store().get(b).await.unwrap());
    assert_eq!(chosen, "reviewer");
    assert!(route.unwrap().candidates.iter().any(|c| c.agent == "coder" && c.verdict == "complexity 9 is outside [1, 7]"));

    // Nobody can: refused at submit, with each agent's reason.
    let err = h.engine.submit(vec![NewTask::new(routed(&["haskell"], None, "x"))]).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no agent can take a task that needs haskell") && msg.contains("coder lacks haskell"), "{msg}");

    // Availability: two slow python tasks fill the coder (max_concurrent 2); a third waits for
    // it (only the coder knows python), and the store never runs three at once.
    for id in [a, b] {
        wait_status(&h, id, &[Status::Succeeded]).await;
    }
    let slow1 = submit(&h, routed(&["python"], Some(2), "slow job one")).await;
    let slow2 = submit(&h, routed(&["python"], Some(2), "slow job two")).await;
    wait_status(&h, slow1, &[Status::Running]).await;
    wait_status(&h, slow2, &[Status::Running]).await;
    let third = submit(&h, routed(&["python"], Some(2), "third python job")).await;
    let (chosen, route) = agent_of(&h.engine.store().get(third).await.unwrap());
    assert_eq!(chosen, "coder");
    let route = route.unwrap();
    assert_eq!(route.candidates[0].verdict, "busy");
    assert!(route.decision.contains("waits for coder"), "{}", route.decision);
    assert_eq!(h.engine.store().get(third).await.unwrap().state.status(), Status::Queued, "it waits while the coder is full");
    // Code at complexity 3 now goes to the available reviewer instead of the busy coder.
    let d = submit(&h, routed(&["code"], Some(3), "small code job")).await;
    assert_eq!(agent_of(&h.engine.store().get(d).await.unwrap()).0, "reviewer");
    let status = h.engine.agent_status().await.unwrap();
    let coder = status.iter().find(|s| s.name == "coder").unwrap();
    assert_eq!((coder.running, coder.available), (2, false));
    for id in [slow1, slow2, third, d] {
        wait_status(&h, id, &[Status::Succeeded]).await;
    }
    let status = h.engine.agent_status().await.unwrap();
    assert!(status.iter().all(|s| s.available), "{status:?}");
    assert!(status.iter().find(|s| s.name == "coder").unwrap().last_active.is_some());
    assert!(status.iter().find(|s| s.name == "planner").unwrap().last_active.is_none());
    h.stop.abort();
}

/// The planner delegates backend and frontend to the coder (two tasks in parallel) and a
/// review of both to the reviewer, who asks for changes once and then approves.
fn team_script(delegate_calls: Arc<Mutex<u32>>) -> Script {
    Arc::new(move |model, messages| {
        let prompt = last_user(messages);
        let results = tool_results(messages);
        match model {
            "planner-m" if results.is_empty() => {
                *delegate_calls.lock().unwrap() += 1;
                tool_turn(
                    "call_plan",
                    "delegate",
                    json!({"tasks": [
                        {"agent": "coder", "prompt": "slow: write backend.txt"},
                        {"needs": ["python"], "complexity": 3, "prompt": "slow: write frontend.txt"},
                        {"agent": "reviewer", "prompt": "Review backend.txt and frontend.txt", "review_of": [0, 1]}
                    ]}),
                )
            }
            "planner-m" => final_turn(&format!("team done: {}", results[0].len())),
            "coder-m" if results.is_empty() => {
                let file = if prompt.contains("backend") { "backend.txt" } else { "frontend.txt" };
                let content = if prompt.contains("asked for changes") { "v2" } else { "v1" };
                tool_turn("call_w", "write_file", json!({"path": file, "content": content}))
            }
            "coder-m" => final_turn("wrote it"),
            "reviewer-m" if prompt.contains("Review round 2") => final_turn("APPROVE"),
            "reviewer-m" => final_turn("CHANGES: bump both files to v2"),
            _ => final_turn("?"),
        }
    })
}

#[tokio::test]
async fn a_planner_delegates_in_parallel_and_a_reviewer_sends_the_work_back_once() {
    let calls = Arc::new(Mutex::new(0));
    let (url, seen) = model_server(team_script(calls.clone())).await;
    // Two workers: the planner gives its slot up while it waits, so both coders run at once.
    let h = start_at(tempfile::tempdir().unwrap(), &url, 2);
    let mut spec = agent_spec("planner", "Build the CSV export described in SPEC.md");
    if let Cmd::Agent { team, .. } = &mut spec.command {
        *team = true;
    }
    let lead = submit(&h, spec).await;
    let done = wait_status(&h, lead, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(done.state.status(), Status::Succeeded, "{:?}", h.engine.store().task_result(lead).await);

    let children = h.engine.children(lead).await.unwrap();
    // Round 1: backend, frontend, review; round 2: both redone and reviewed again.
    assert_eq!(children.len(), 6, "{children:#?}");
    assert!(children.iter().all(|c| c.state.status() == Status::Succeeded));
    let agents: Vec<String> = children.iter().map(|c| agent_of(c).0).collect();
    assert_eq!(agents, ["coder", "coder", "reviewer", "coder", "coder", "reviewer"]);
    // The reviewer waited for both pieces of its round.
    assert_eq!(children[2].spec.depends_on, vec![children[0].id, children[1].id]);
    assert_eq!(children[5].spec.depends_on, vec![children[3].id, children[4].id]);
    // The two coders of the first round ran at the same time.
    let runs = |id| {
        let s = h.engine.store().clone();
        async move { s.runs(id).await.unwrap().remove(0) }
    };
    let (r0, r1) = (runs(children[0].id).await, runs(children[1].id).await);
    assert!(r0.started_at < r1.ended_at.unwrap() && r1.started_at < r0.ended_at.unwrap(), "the coders ran one after the other");
    // The work is in the planner's workspace, which the team shares, as the review asked.
    let ws = h.dir.path().join("workspaces").join(lead.to_string());
    assert_eq!(std::fs::read_to_string(ws.join("backend.txt")).unwrap(), "v2");
    assert_eq!(std::fs::read_to_string(ws.join("frontend.txt")).unwrap(), "v2");
    // The planner asked once, and got the final round's results with the first round's history.
    assert_eq!(*calls.lock().unwrap(), 1);
    let tr = h.engine.store().transcript(Owner::Task(lead), 0).await.unwrap();
    let results: Vec<&str> = tr
        .iter()
        .filter_map(|e| match &e.body {
            owl_core::transcript::Entry::Tool { name, content, .. } if name == "delegate" => Some(content.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 1, "one delegate result reached the planner");
    let v: Value = serde_json::from_str(results[0]).unwrap();
    assert_eq!(v["rounds"], 2);
    assert_eq!(v["children"][2]["result"], "APPROVE");
    assert_eq!(v["earlier_rounds"].as_array().unwrap().len(), 3);
    // The team prompt told the planner who is on the team.
    let first = seen.lock().unwrap().iter().find(|(m, _)| m == "planner-m").unwrap().1.clone();
    let system = first[0]["content"].as_str().unwrap();
    assert!(system.contains("- coder (capabilities rust, python, code; complexity 1-7)"), "{system}");
    h.stop.abort();
}

#[tokio::test]
async fn delegation_refuses_cycles_depth_and_too_many_children() {
    let script: Script = Arc::new(|model, messages| {
        let results = tool_results(messages);
        match model {
            // The coder tries to hand work back to the planner that delegated to it.
            "coder-m" if results.is_empty() => tool_turn("c1", "delegate", json!({"tasks": [{"agent": "planner", "prompt": "you do it"}]})),
            "coder-m" => final_turn(&format!("coder saw: {}", results[0])),
            "planner-m" if results.is_empty() => {
                let many: Vec<Value> = (0..6).map(|i| json!({"agent": "reviewer", "prompt": format!("part {i}")})).collect();
                tool_turn("p1", "delegate", json!({"tasks": many}))
            }
            "planner-m" if results.len() == 1 => {
                tool_turn("p2", "delegate", json!({"tasks": [{"agent": "planner", "prompt": "me again"}]}))
            }
            "planner-m" if results.len() == 2 => tool_turn("p3", "delegate", json!({"tasks": [{"agent": "coder", "prompt": "code it"}]})),
            "planner-m" => final_turn(&format!("planner saw: {}", results.join(" | "))),
            _ => final_turn("ok"),
        }
    });
    let (url, _seen) = model_server(script).await;
    let h = start_at(tempfile::tempdir().unwrap(), &url, 2);
    let mut spec = agent_spec("planner", "Plan it");
    if let Cmd::Agent { team, .. } = &mut spec.command {
        *team = true;
    }
    let lead = submit(&h, spec).await;
    wait_status(&h, lead, &[Status::Succeeded]).await;
    let answer = h.engine.store().task_result(lead).await.unwrap().unwrap();
    assert!(answer.contains("6 tasks in one call; this agent may delegate at most 5"), "{answer}");
    assert!(answer.contains("would go to agent planner, which is already working on this"), "{answer}");
    let child = h.engine.children(lead).await.unwrap();
    assert_eq!(child.len(), 1);
    let coder_said = h.engine.store().task_result(child[0].id).await.unwrap().unwrap();
    // The coder is not a team lead: delegate is not its tool.
    assert!(coder_said.contains("there is no tool `delegate`"), "{coder_said}");
    h.stop.abort();
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_team_run_loses_nothing_and_repeats_nothing() {
    let calls = Arc::new(Mutex::new(0));
    let (url, _seen) = model_server(team_script(calls.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let h = start_at(dir, &url, 2);
    let mut spec = agent_spec("planner", "Build the CSV export described in SPEC.md");
    if let Cmd::Agent { team, .. } = &mut spec.command {
        *team = true;
    }
    let lead = submit(&h, spec).await;
    // Crash while the first round's coders are running: the dispatch loop and every runner
    // it owns are dropped on the spot, nothing is recorded as finished.
    for _ in 0..500 {
        if h.engine.children(lead).await.unwrap().iter().any(|c| c.state.status() == Status::Running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.stop.abort();
    let _ = h.stop.await;
    let Harness { engine, dir, .. } = h;
    drop(engine);
    let before = {
        let store = SqliteStore::open(&path.join("owl.db"), Durability::Full).unwrap();
        store.list(owl_store::TaskFilter::default()).await.unwrap().len()
    };
    assert_eq!(before, 4, "the planner and its three children were stored before the crash");

    // A new daemon on the same data dir: the planner resumes, its delegate call is run again
    // and finds its children instead of making new ones.
    let h = start_at(dir, &url, 2);
    let done = wait_status(&h, lead, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(done.state.status(), Status::Succeeded, "{:?}", h.engine.store().task_result(lead).await);
    let children = h.engine.children(lead).await.unwrap();
    assert_eq!(children.len(), 6, "no child was made twice: {children:#?}");
    assert_eq!(*calls.lock().unwrap(), 1, "the planner's model was asked to delegate once");
    let tr = h.engine.store().transcript(Owner::Task(lead), 0).await.unwrap();
    let results = tr.iter().filter(|e| matches!(&e.body, owl_core::transcript::Entry::Tool { name, .. } if name == "delegate")).count();
    assert_eq!(results, 1, "the delegate result reached the planner once");
    h.stop.abort();
}

#[tokio::test]
async fn messages_are_broadcast_read_once_and_acknowledged() {
    let script: Script = Arc::new(|model, messages| {
        let results = tool_results(messages);
        match model {
            "coder-m" if results.is_empty() => tool_turn("w1", "write_file", json!({"path": "notes.md", "content": "# v2\n"})),
            "coder-m" if results.len() == 1 => tool_turn(
                "s1",
                "send_message",
                json!({"to": "all", "content": "the API moved to /v2", "type": "note", "attachments": ["notes.md"]}),
            ),
            "coder-m" => final_turn("sent"),
            "reviewer-m" if results.is_empty() => tool_turn("r1", "read_messages", json!({})),
            "reviewer-m" if results.len() == 1 => tool_turn("r2", "read_messages", json!({})),
            "reviewer-m" => final_turn(&format!("read: {}", results.join(" | "))),
            _ => final_turn("ok"),
        }
    });
    let (url, _seen) = model_server(script).await;
    let h = start_at(tempfile::tempdir().unwrap(), &url, 2);
    let sender = submit(&h, agent_spec("coder", "Tell the team")).await;
    wait_status(&h, sender, &[Status::Succeeded]).await;
    let all = h.engine.store().messages(owl_store::MessageFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!((m.sender.as_str(), m.recipient.as_str(), m.thread.clone()), ("agent:coder", "all", format!("task:{sender}")));
    let mut to: Vec<&str> = m.deliveries.iter().map(|d| d.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["agent:planner", "agent:reviewer"], "a broadcast goes to every agent but the sender");
    assert_eq!(m.attachments[0].name, "notes.md");

    let reader = submit(&h, agent_spec("reviewer", "Catch up")).await;
    wait_status(&h, reader, &[Status::Succeeded]).await;
    let said = h.engine.store().task_result(reader).await.unwrap().unwrap();
    assert!(said.contains("the API moved to /v2"), "{said}");
    assert!(said.contains("no new messages"), "the second read found nothing new: {said}");
    // The attachment was copied into the reader's workspace.
    let copy = h.dir.path().join("workspaces").join(reader.to_string()).join("inbox").join(m.id.to_string()).join("notes.md");
    assert_eq!(std::fs::read_to_string(copy).unwrap(), "# v2\n");
    let m = h.engine.store().messages(owl_store::MessageFilter::default()).await.unwrap().remove(0);
    let rev = m.deliveries.iter().find(|d| d.to == "agent:reviewer").unwrap();
    assert!(rev.acked_at.is_some(), "acknowledged once the reader's task recorded it");
    let plan = m.deliveries.iter().find(|d| d.to == "agent:planner").unwrap();
    assert!(plan.delivered_at.is_none(), "the planner has not read it");
    assert_eq!(h.engine.store().unread_count("agent:planner").await.unwrap(), 1);
    h.stop.abort();
}

#[tokio::test]
async fn a_message_to_an_idle_agent_that_wants_it_starts_a_task_that_reads_it() {
    let script: Script = Arc::new(|model, messages| {
        let results = tool_results(messages);
        match model {
            "reviewer-m" if results.is_empty() => tool_turn("r1", "read_messages", json!({})),
            "reviewer-m" => final_turn(&format!("read: {}", results[0])),
            _ => final_turn("ok"),
        }
    });
    let (url, _seen) = model_server(script).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), crate::tests_config(), Arc::new(SystemClock));
    let mut agents = team();
    agents.get_mut("reviewer").unwrap().wake_on_message = true;
    engine.set_agents(Arc::new(runtime(&url, agents)));
    let stop = tokio::spawn(dispatch.run(true));
    let m = engine.send_message_from_person("reviewer", "person", "question", "please look at PR 7", None).await.unwrap();
    // The planner does not want waking; the reviewer gets a task that reads the message.
    let woken = wait_for_tasks(&engine, 1).await;
    let t = &woken[0];
    assert_eq!(agent_of(t).0, "reviewer");
    assert_eq!(t.spec.idempotency_key.as_deref(), Some(format!("wake:{}:reviewer", m.id).as_str()));
    for _ in 0..500 {
        if engine.store().get(t.id).await.unwrap().state.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let said = engine.store().task_result(t.id).await.unwrap().unwrap();
    assert!(said.contains("please look at PR 7"), "{said}");
    // A message to an agent that is busy or does not want waking starts nothing.
    engine.send_message_from_person("planner", "person", "note", "fyi", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(engine.store().list(owl_store::TaskFilter::default()).await.unwrap().len(), 1);
    stop.abort();
}

async fn wait_for_tasks(engine: &Engine, n: usize) -> Vec<owl_core::Task> {
    for _ in 0..500 {
        let all = engine.store().list(owl_store::TaskFilter::default()).await.unwrap();
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} tasks were made");
}

#[tokio::test]
async fn an_agents_max_wall_stops_it_during_a_slow_model_call() {
    let (url, _seen) = model_server(Arc::new(|_, _| final_turn("late"))).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), crate::tests_config(), Arc::new(SystemClock));
    let mut agents = team();
    agents.get_mut("coder").unwrap().max_wall = Some(Duration::from_millis(200));
    engine.set_agents(Arc::new(runtime(&url, agents)));
    let stop = tokio::spawn(dispatch.run(true));
    let h = Harness { engine, dir, stop };
    let started = std::time::Instant::now();
    let id = submit(&h, agent_spec("coder", "a slow answer")).await;
    let t = wait_status(&h, id, &[Status::Failed, Status::Succeeded]).await;
    assert_eq!(t.state.status(), Status::Failed);
    let why = h.engine.store().task_result(id).await.unwrap().unwrap();
    assert!(why.contains("agents.coder.max_wall") && why.contains("during a model call"), "{why}");
    assert!(started.elapsed() < Duration::from_millis(900), "stopped before the 1 s reply came");
    h.stop.abort();
}
