//! Budgets end to end on the engine: the real store and ledger, a real OpenAI-compatible
//! server on loopback that reports usage, real agent tasks; time is driven by a clock the
//! test sets.

use super::*;
use owl_core::agent::{AgentDefaults, AgentSettings, Price, ProviderKind, ProviderSettings};
use owl_core::budget::{BudgetSettings, Dollars, LimitOverride, Period, NO_RESET};
use owl_core::task::Status;
use owl_core::{Command as Cmd, TaskSpec, TaskState, WaitReason};
use owl_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicI64;

/// A clock the test moves.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

fn at(rfc: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc).unwrap()
}

/// A Chat Completions server with one script per marker: a request goes to the first marker
/// its first user message contains. Every reply reports `usage` (prompt 10, completion 1000
/// tokens: $0.01002 at the test price) after `delay`.
async fn scripted(scripts: Vec<(&str, Vec<Value>)>, delay: Duration) -> (String, Arc<Mutex<u32>>) {
    let scripts: Arc<Mutex<Vec<(String, VecDeque<Value>)>>> =
        Arc::new(Mutex::new(scripts.into_iter().map(|(m, t)| (m.to_string(), VecDeque::from(t))).collect()));
    let calls = Arc::new(Mutex::new(0u32));
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: String| {
            let (scripts, c) = (scripts.clone(), c.clone());
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let first_user = v["messages"]
                    .as_array()
                    .and_then(|m| m.iter().find(|m| m["role"] == "user"))
                    .map(|m| m["content"].to_string())
                    .unwrap_or_default();
                *c.lock().unwrap() += 1;
                tokio::time::sleep(delay).await;
                let next =
                    scripts.lock().unwrap().iter_mut().find(|(m, _)| first_user.contains(m.as_str())).and_then(|(_, q)| q.pop_front());
                let message = next.unwrap_or_else(|| json!({"role": "assistant", "content": "done"}));
                let finish = if message.get("tool_calls").is_some() { "tool_calls" } else { "stop" };
                axum::Json(json!({"model": "m", "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1000}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), calls)
}

fn call(id: &str, name: &str, args: Value) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]})
}

/// What one call costs at the test price: 10 input tokens at $2/M and 1000 output at $10/M.
const CALL_USD: f64 = 0.01002;

/// The loopback model server as an OpenAI-compatible provider.
pub(crate) fn provider(url: &str) -> ProviderSettings {
    ProviderSettings {
        kind: ProviderKind::Openai,
        base_url: Some(url.to_string()),
        api_key_env: None,
        api_key_secret: None,
        model: None,
        timeout: Duration::from_secs(10),
        max_retries: 0,
        model_path: None,
        threads: 0,
        context: 0,
        keep_alive: Duration::from_secs(300),
    }
}

struct Harness {
    engine: Engine,
    clock: Option<Arc<ManualClock>>,
    _dir: tempfile::TempDir,
}

fn start(url: &str, tools: &[&str], budgets: owl_core::budget::Budgets, workers: usize, clock: Option<Timestamp>) -> Harness {
    start_with(url, tools, budgets, workers, clock, Default::default())
}

fn start_with(
    url: &str,
    tools: &[&str],
    budgets: owl_core::budget::Budgets,
    workers: usize,
    clock: Option<Timestamp>,
    cli: owl_core::coding::CliProfiles,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let mut cfg = crate::tests_config();
    cfg.workers = workers;
    cfg.budgets = budgets;
    cfg.cli = cli;
    let manual = clock.map(|t| Arc::new(ManualClock(AtomicI64::new(t.0))));
    let c: Arc<dyn Clock> = match &manual {
        Some(m) => m.clone(),
        None => Arc::new(SystemClock),
    };
    let (engine, dispatch) = Engine::new(Arc::new(store), DataLayout::new(dir.path()), cfg, c);
    tokio::spawn(dispatch.run(true));
    let provider = provider(url);
    let mut agent = AgentSettings::new("fake");
    agent.model = Some("m".into());
    agent.tools = tools.iter().map(|t| t.to_string()).collect();
    agent.max_output_tokens = 1000;
    agent.sandbox = false;
    let prices = BTreeMap::from([("m".to_string(), Price { input: 2.0, output: 10.0, cached: None })]);
    let rt = owl_agent::Runtime::new(
        BTreeMap::from([("fake".to_string(), provider)]),
        BTreeMap::from([("worker".to_string(), agent)]),
        prices,
        AgentDefaults::default(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        None,
    );
    engine.set_agents(Arc::new(rt));
    Harness { engine, clock: manual, _dir: dir }
}

impl Harness {
    async fn submit(&self, prompt: &str, cap: Option<f64>) -> TaskId {
        let cmd = Cmd::Agent {
            agent: "worker".into(),
            prompt: prompt.into(),
            max_cost_usd: cap.map(|c| Dollars::from_usd(c).unwrap()),
            route: None,
            team: false,
            template: None,
        };
        self.engine.submit(vec![NewTask::new(TaskSpec::new(cmd))]).await.unwrap()[0].id
    }

    async fn wait(&self, id: TaskId, want: &[Status]) -> owl_core::Task {
        for _ in 0..1500 {
            let t = self.engine.store().get(id).await.unwrap();
            if want.contains(&t.state.status()) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {id} never reached {want:?}: {:?}", self.engine.store().get(id).await.unwrap().state);
    }

    /// Moves the clock, then lets the dispatch loop's timer fire as it would have.
    async fn set_time(&self, t: Timestamp) {
        self.clock.as_ref().unwrap().0.store(t.0, Ordering::SeqCst);
        self.engine.store().promote_due(t).await.unwrap();
        self.engine.wake();
    }

    async fn spent(&self, scope: &str) -> owl_store::ScopeSpend {
        self.engine.store().spend(vec![scope.into()], vec![Timestamp(0)]).await.unwrap().remove(0)
    }
}

fn daily(usd: f64) -> BudgetSettings {
    BudgetSettings { warn_at: 0.5, ..BudgetSettings::limits(Some(usd), None, Period::Day) }
}

fn budget_wait(t: &owl_core::Task) -> (Timestamp, String, String) {
    match &t.state {
        TaskState::Waiting { reason: WaitReason::Budget { until, scope, reason } } => (*until, scope.clone(), reason.clone()),
        other => panic!("task {} is not waiting on a budget: {other:?}", t.id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_tasks_hits_the_daily_limit_waits_and_resumes_after_the_reset() {
    let (url, calls) = scripted(vec![], Duration::ZERO).await;
    // $0.035 a day: three calls of $0.01002 fit, the fourth's estimate does not.
    let budgets = BTreeMap::from([("global".to_string(), daily(0.035))]);
    let h = start(&url, &["read_file"], budgets, 2, Some(at("2026-12-03T09:00:00Z")));
    let mut events = h.engine.subscribe();
    let mut hour = 9;
    let mut done = vec![];
    let paused = loop {
        let id = h.submit(&format!("task at {hour}:00"), None).await;
        let t = h.wait(id, &[Status::Succeeded, Status::Failed, Status::Waiting]).await;
        if t.state.status() != Status::Succeeded {
            break t;
        }
        done.push(id);
        hour += 2;
        h.set_time(at(&format!("2026-12-03T{hour:02}:00:00Z"))).await;
    };
    assert_eq!(done.len(), 3, "three tasks fit in the day");
    let (until, scope, reason) = budget_wait(&paused);
    assert_eq!((until, scope.as_str()), (at("2026-12-04T00:00:00Z"), "global"));
    assert!(reason.starts_with("global: spent $0.0301 of $0.035 this day; the next step needs about $0.01"), "{reason}");
    assert!(reason.contains("resumes at 2026-12-04T00:00:00"), "{reason}");
    assert_eq!(paused.failures, 0, "a pause is not a failure");
    assert_eq!(*calls.lock().unwrap(), 3, "the paused task made no model call");
    let spent = h.spent("global").await;
    assert!(spent.usd <= 0.035 && spent.reserved_usd == 0.0, "{spent:?}");
    // The warning at half the limit came once.
    let mut warnings = 0;
    while let Ok(e) = events.try_recv() {
        if let EventKind::BudgetWarning { scope, .. } = e.kind {
            assert_eq!(scope, "global");
            warnings += 1;
        }
    }
    assert_eq!(warnings, 1);
    // Later that day it still waits; just after midnight it runs by itself.
    h.set_time(at("2026-12-03T23:59:00Z")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.engine.store().get(paused.id).await.unwrap().state.status(), Status::Waiting);
    h.set_time(at("2026-12-04T00:00:01Z")).await;
    let t = h.wait(paused.id, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(t.state.status(), Status::Succeeded, "{:?}", t.state);
    let transcript = h.engine.store().transcript(owl_core::agent::Owner::Task(paused.id), 0).await.unwrap();
    assert!(transcript.iter().any(|e| serde_json::to_string(&e.body).unwrap().contains("resumes at")), "the pause is in the transcript");
    let usage = h.engine.store().owner_usage(owl_core::agent::Owner::Task(paused.id)).await.unwrap();
    assert_eq!(usage.price, "[prices.\"m\"]", "the price used is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_limit_wakes_the_waiting_task_at_once() {
    let (url, _) = scripted(vec![], Duration::ZERO).await;
    let budgets = BTreeMap::from([("agent.worker".to_string(), daily(0.015))]);
    let h = start(&url, &["read_file"], budgets, 2, Some(at("2026-12-03T09:00:00Z")));
    let first = h.submit("one", None).await;
    h.wait(first, &[Status::Succeeded]).await;
    let second = h.submit("two", None).await;
    let t = h.wait(second, &[Status::Waiting]).await;
    assert_eq!(budget_wait(&t).1, "agent.worker");
    let listed = h.engine.budgets().await.unwrap();
    let line = listed.iter().find(|b| b.scope == "agent.worker").unwrap();
    assert_eq!((line.waiting.clone(), line.source.as_str()), (vec![second.0], "config"));
    assert!((line.spent_usd - CALL_USD).abs() < 1e-9);
    h.engine.set_budget("agent.worker", Some(LimitOverride { usd: Some(1.0), tokens: None })).await.unwrap();
    let t = h.wait(second, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(t.state.status(), Status::Succeeded);
    let line = h.engine.budgets().await.unwrap().into_iter().find(|b| b.scope == "agent.worker").unwrap();
    assert_eq!((line.usd, line.source.as_str()), (Some(1.0), "config, set"));
    assert!(h.engine.set_budget("team.x", None).await.is_err(), "a scope is checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_together_never_pass_the_limit() {
    // Six tasks at once, each a call of $0.01002 that takes a while, against $0.025: two
    // reservations fit side by side, and after they settle the third no longer fits.
    let (url, calls) = scripted(vec![], Duration::from_millis(400)).await;
    let budgets = BTreeMap::from([("global".to_string(), daily(0.025))]);
    let h = start(&url, &["read_file"], budgets, 6, None);
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(h.submit(&format!("job {i}"), None).await);
    }
    let mut succeeded = 0;
    for id in &ids {
        for _ in 0..600 {
            let t = h.engine.store().get(*id).await.unwrap();
            let settled = match &t.state {
                TaskState::Succeeded { .. } => {
                    succeeded += 1;
                    true
                }
                // Waiting on the day's reset, not on work in flight.
                TaskState::Waiting { reason: WaitReason::Budget { until, .. } } => until.since(h.engine.now()) > Duration::from_secs(60),
                _ => false,
            };
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(succeeded, 2, "two calls fit the limit");
    assert_eq!(*calls.lock().unwrap(), 2, "no other call was made");
    let spent = h.spent("global").await;
    assert!(spent.usd <= 0.025 + 1e-9, "{spent:?}");
    assert!((spent.usd - 2.0 * CALL_USD).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtasks_spend_their_parents_cap_and_wake_when_it_is_raised() {
    let (url, calls) = scripted(
        vec![
            (
                "PARENT",
                vec![
                    call("c1", "task_create", json!({"agent": "worker", "prompt": "CHILD: read the notes"})),
                    json!({"role": "assistant", "content": "parent done"}),
                ],
            ),
            ("CHILD", vec![json!({"role": "assistant", "content": "child done"})]),
        ],
        Duration::ZERO,
    )
    .await;
    let h = start(&url, &["task_create", "read_file"], BTreeMap::new(), 2, Some(at("2026-12-03T09:00:00Z")));
    // $0.015 in all: the parent's first call fits, then neither it nor its child has room.
    let parent = h.submit("PARENT: plan the work", Some(0.015)).await;
    let p = h.wait(parent, &[Status::Waiting, Status::Failed, Status::Succeeded]).await;
    let (until, scope, reason) = budget_wait(&p);
    assert_eq!((until, scope.clone()), (NO_RESET, format!("task.{parent}")));
    assert!(reason.contains("never resets") && reason.contains(&format!("owl budget set task.{parent}")), "{reason}");
    let child = loop {
        let kids = h.engine.store().list(owl_store::TaskFilter::default()).await.unwrap();
        if let Some(c) = kids.iter().find(|t| t.id != parent) {
            break c.id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let c = h.wait(child, &[Status::Waiting, Status::Failed, Status::Succeeded]).await;
    assert_eq!(budget_wait(&c).1, format!("task.{parent}"), "the child is held by its parent's cap");
    assert_eq!(*calls.lock().unwrap(), 1);
    // Raising the parent's cap lets both finish; the child's spend counts against it.
    h.engine.set_budget(&format!("task.{parent}"), Some(LimitOverride { usd: Some(0.05), tokens: None })).await.unwrap();
    assert_eq!(h.wait(parent, &[Status::Succeeded, Status::Failed]).await.state.status(), Status::Succeeded);
    assert_eq!(h.wait(child, &[Status::Succeeded, Status::Failed]).await.state.status(), Status::Succeeded);
    let spent = h.spent(&format!("task.{parent}")).await;
    assert!((spent.usd - 3.0 * CALL_USD).abs() < 1e-9, "the parent's two calls and the child's one: {spent:?}");
    assert!((h.spent(&format!("task.{child}")).await.usd - CALL_USD).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dollar_limit_refuses_a_model_with_no_price() {
    let (url, _) = scripted(vec![], Duration::ZERO).await;
    let budgets = BTreeMap::from([("global".to_string(), daily(1.0))]);
    let h = start(&url, &["read_file"], budgets, 2, None);
    // A runtime with no price for `m` (nor the shipped table).
    let mut agent = AgentSettings::new("fake");
    agent.model = Some("m".into());
    agent.sandbox = false;
    let rt = owl_agent::Runtime::new(
        BTreeMap::from([("fake".to_string(), provider(&url))]),
        BTreeMap::from([("worker".to_string(), agent)]),
        BTreeMap::new(),
        AgentDefaults::default(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        None,
    );
    h.engine.set_agents(Arc::new(rt));
    let id = h.submit("anything", None).await;
    let t = h.wait(id, &[Status::Failed, Status::Succeeded]).await;
    match t.state {
        TaskState::Failed { reason, .. } => {
            assert!(reason.contains("no price for model `m`") && reason.contains("[prices.\"m\"]"), "{reason}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A coding CLI profile speaking Claude Code's stream-json: a real process that reports a
/// subscription window at 30 % (resetting at `resets`), what its run cost, and the arguments
/// it was given.
fn stream_json_cli(resets: Timestamp) -> owl_core::coding::CliProfile {
    let window = json!({"type": "rate_limit_event", "rate_limit_info": {"status": "allowed", "resetsAt": resets.0 / 1000,
        "rateLimitType": "five_hour", "utilization": 0.3}});
    let script = format!(
        "printf '%s\\n' '{window}'; printf '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"total_cost_usd\":0.02,\"usage\":{{\"input_tokens\":100,\"output_tokens\":10}},\"result\":\"args: %s\"}}\\n' \"$*\""
    );
    owl_core::coding::CliProfile {
        command: vec!["sh".into(), "-c".into(), script, "sh".into(), "{prompt}".into()],
        unsandboxed_command: None,
        format: owl_core::coding::CliFormat::ClaudeStreamJson,
        writable: vec![],
        grant_env: vec![],
        allow_hosts: vec![],
        env: Default::default(),
        memory_mb: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_window_past_its_day_share_waits_for_the_night() {
    let (url, _) = scripted(vec![], Duration::ZERO).await;
    let noon = at("2026-12-03T12:00:00Z");
    let window = BudgetSettings {
        window_percent: Some(owl_core::budget::WindowShare { day: 20.0, night: 80.0 }),
        night: "01:00-09:00".into(),
        ..BudgetSettings::limits(None, None, Period::Day)
    };
    let budgets = BTreeMap::from([("provider.fakeclaude".to_string(), window), ("global".to_string(), daily(1.0))]);
    let cli = BTreeMap::from([("fakeclaude".to_string(), stream_json_cli(at("2026-12-04T05:00:00Z")))]);
    let h = start_with(&url, &["read_file"], budgets, 2, Some(noon), cli);
    let submit = |prompt: &str| {
        let mut spec =
            TaskSpec::new(Cmd::Cli { cli: "fakeclaude".into(), prompt: prompt.into(), owl_mcp: false, max_cost_usd: None, template: None });
        spec.sandbox = Some(owl_core::SandboxRequest { enabled: Some(false), ..Default::default() });
        spec
    };
    // Nothing is known of the window yet: the first run goes, capped at the global room.
    let first = h.engine.submit(vec![NewTask::new(submit("first"))]).await.unwrap()[0].id;
    let t = h.wait(first, &[Status::Succeeded, Status::Failed]).await;
    assert_eq!(t.state.status(), Status::Succeeded, "{:?}", t.state);
    let result = h.engine.store().task_result(first).await.unwrap().unwrap();
    assert!(result.contains("--max-budget-usd 1.0000"), "Claude Code is given the room left as its cap: {result}");
    assert!((h.spent("global").await.usd - 0.02).abs() < 1e-9, "settled to the cost the CLI reported");
    assert_eq!(h.engine.store().owner_usage(owl_core::agent::Owner::Task(first)).await.unwrap().price, "reported by the CLI");
    let listed = h.engine.budgets().await.unwrap();
    let line = listed.iter().find(|b| b.scope == "provider.fakeclaude").unwrap();
    assert_eq!(line.windows.as_ref().unwrap().windows[0].used_percent, Some(30.0), "{line:?}");
    assert_eq!(line.share_now, Some(20.0));
    // It reported 30 % used: more than the day's 20 %, so the next run waits for the night.
    let second = h.engine.submit(vec![NewTask::new(submit("second"))]).await.unwrap()[0].id;
    let t = h.wait(second, &[Status::Waiting, Status::Succeeded, Status::Failed]).await;
    let (until, scope, reason) = budget_wait(&t);
    assert_eq!((until, scope.as_str()), (at("2026-12-04T01:00:00Z"), "provider.fakeclaude"));
    assert!(reason.contains("five_hour window is 30% used") && reason.contains("by day"), "{reason}");
    h.set_time(at("2026-12-04T00:30:00Z")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.engine.store().get(second).await.unwrap().state.status(), Status::Waiting);
    h.set_time(at("2026-12-04T01:00:01Z")).await;
    assert_eq!(h.wait(second, &[Status::Succeeded, Status::Failed]).await.state.status(), Status::Succeeded, "the night's 80 % has room");
}

fn codex_json_cli(command: &str) -> owl_core::coding::CliProfile {
    owl_core::coding::CliProfile {
        command: vec!["sh".into(), "-c".into(), command.into(), "sh".into(), "{prompt}".into()],
        format: owl_core::coding::CliFormat::CodexJson,
        ..stream_json_cli(at("2026-12-04T05:00:00Z"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_run_with_unpriced_tokens_is_charged_its_reservation_and_one_that_never_started_nothing() {
    let (url, _) = scripted(vec![], Duration::ZERO).await;
    let budgets = BTreeMap::from([("global".to_string(), daily(1.0))]);
    let report = r#"printf '%s\n' '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"done"}}' '{"type":"turn.completed","usage":{"input_tokens":100,"output_tokens":10}}'"#;
    let cli = BTreeMap::from([
        ("fakecodex".to_string(), codex_json_cli(report)),
        (
            "missing".to_string(),
            owl_core::coding::CliProfile { command: vec!["/nonexistent/cli".into(), "{prompt}".into()], ..codex_json_cli("") },
        ),
    ]);
    let h = start_with(&url, &["read_file"], budgets, 2, Some(at("2026-12-03T12:00:00Z")), cli);
    let submit = |cli: &str| {
        let mut spec = TaskSpec::new(Cmd::Cli { cli: cli.into(), prompt: "go".into(), owl_mcp: false, max_cost_usd: None, template: None });
        spec.sandbox = Some(owl_core::SandboxRequest { enabled: Some(false), ..Default::default() });
        NewTask::new(spec)
    };
    // A run that cannot start costs nothing.
    let gone = h.engine.submit(vec![submit("missing")]).await.unwrap()[0].id;
    assert_eq!(h.wait(gone, &[Status::Failed, Status::Succeeded]).await.state.status(), Status::Failed);
    assert_eq!(h.spent("global").await.usd, 0.0);
    // A run under a dollar limit is not refused for want of a price; its tokens have none, so
    // it is charged the most it could have spent: the room it held.
    let first = h.engine.submit(vec![submit("fakecodex")]).await.unwrap()[0].id;
    let t = h.wait(first, &[Status::Failed, Status::Succeeded]).await;
    assert_eq!(t.state.status(), Status::Succeeded, "{:?}", t.state);
    let spent = h.spent("global").await;
    assert!((spent.usd - 1.0).abs() < 1e-9 && spent.reserved_usd == 0.0, "{spent:?}");
    let usage = h.engine.store().owner_usage(owl_core::agent::Owner::Task(first)).await.unwrap();
    assert!((usage.cost_usd - 1.0).abs() < 1e-9 && usage.price.starts_with("owl's estimate"), "{usage:?}");
    // Nothing is left today.
    let second = h.engine.submit(vec![submit("fakecodex")]).await.unwrap()[0].id;
    let (until, scope, _) = budget_wait(&h.wait(second, &[Status::Waiting, Status::Succeeded, Status::Failed]).await);
    assert_eq!((until, scope.as_str()), (at("2026-12-04T00:00:00Z"), "global"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_providers_budget_is_checked_before_the_call() {
    let (url, calls) = scripted(vec![], Duration::ZERO).await;
    // The agent's fallback provider has a spent budget: the call must not start.
    let budgets = BTreeMap::from([("provider.spare".to_string(), daily(0.001))]);
    let h = start(&url, &["read_file"], budgets, 2, Some(at("2026-12-03T12:00:00Z")));
    let mut agent = AgentSettings::new("fake");
    agent.model = Some("m".into());
    agent.fallback = vec!["spare:m".into()];
    agent.tools = vec!["read_file".into()];
    agent.max_output_tokens = 1000;
    agent.sandbox = false;
    let rt = owl_agent::Runtime::new(
        BTreeMap::from([("fake".to_string(), provider(&url)), ("spare".to_string(), provider(&url))]),
        BTreeMap::from([("worker".to_string(), agent)]),
        BTreeMap::from([("m".to_string(), Price { input: 2.0, output: 10.0, cached: None })]),
        AgentDefaults::default(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        None,
    );
    h.engine.set_agents(Arc::new(rt));
    let id = h.submit("anything", None).await;
    let t = h.wait(id, &[Status::Failed, Status::Succeeded, Status::Waiting]).await;
    match t.state {
        TaskState::Failed { reason, .. } => assert!(reason.contains("more than all of provider.spare"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(*calls.lock().unwrap(), 0);
}
