//! Agent figures: the tool loop's own overhead per step with model time excluded (an
//! in-process provider that answers at once), in memory and durably on the engine; and the
//! local provider's speed on gemma-3-270m (with `--features local`).

use async_trait::async_trait;
use owl_agent::msg::{ChatRequest, ChatResponse, Message, Sink, ToolCall, Usage};
use owl_agent::provider::{Provider, ProviderError};
use owl_agent::{ApprovalDecision, ApprovalRequest, Entry, Host, NewAgentSchedule, Owner, TranscriptEntry, UsageRecord};
use owl_core::agent::{AgentDefaults, AgentSettings, PolicyDefault, ProviderKind, ProviderSettings};
use owl_core::TaskId;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls list_dir `steps` times (alternating arguments, so no call repeats), then answers.
struct Instant_ {
    steps: usize,
}

#[async_trait]
impl Provider for Instant_ {
    fn name(&self) -> &str {
        "instant"
    }
    async fn chat(&self, req: &ChatRequest, _sink: Sink<'_>) -> Result<ChatResponse, ProviderError> {
        let done = req.messages.iter().filter(|m| matches!(m, Message::Assistant { .. })).count();
        let usage = Usage { input: 100, output: 10, cached: 0 };
        if done >= self.steps {
            return Ok(ChatResponse {
                content: "done".into(),
                usage,
                model: "instant".into(),
                stop_reason: "stop".into(),
                ..Default::default()
            });
        }
        let args = if done % 2 == 0 { json!({}) } else { json!({"path": "."}) };
        Ok(ChatResponse {
            tool_calls: vec![ToolCall { id: format!("c{done}"), name: "list_dir".into(), arguments: args }],
            usage,
            model: "instant".into(),
            stop_reason: "tool_calls".into(),
            ..Default::default()
        })
    }
}

/// A host that keeps the transcript in memory: the loop's CPU cost alone.
#[derive(Default)]
struct MemHost {
    entries: Mutex<Vec<TranscriptEntry>>,
}

#[async_trait]
impl Host for MemHost {
    async fn append(&self, _o: Owner, a: u32, entries: Vec<Entry>) -> owl_agent::HostResult<Vec<u64>> {
        let mut e = self.entries.lock().unwrap();
        let start = e.len() as u64;
        let n = entries.len() as u64;
        let at = owl_core::Timestamp::from_millis(0);
        e.extend(entries.into_iter().enumerate().map(|(i, body)| TranscriptEntry { seq: start + 1 + i as u64, attempt: a, at, body }));
        Ok((start + 1..=start + n).collect())
    }
    async fn transcript(&self, _o: Owner) -> owl_agent::HostResult<Vec<TranscriptEntry>> {
        Ok(self.entries.lock().unwrap().clone())
    }
    async fn record_usage(&self, _u: UsageRecord) -> owl_agent::HostResult<()> {
        Ok(())
    }
    async fn approve(&self, _r: ApprovalRequest) -> owl_agent::HostResult<ApprovalDecision> {
        Ok(ApprovalDecision::Approved)
    }
    async fn create_task(&self, _p: Owner, _a: &str, _pr: &str, _d: u32) -> owl_agent::HostResult<TaskId> {
        Err(owl_agent::HostError::refused("not in the benchmark"))
    }
    async fn task_result(&self, _id: TaskId) -> owl_agent::HostResult<Value> {
        Err(owl_agent::HostError::refused("not in the benchmark"))
    }
    async fn schedules_created_by(&self, _o: Owner) -> owl_agent::HostResult<u32> {
        Ok(0)
    }
    async fn create_schedule(&self, _o: Owner, _s: NewAgentSchedule) -> owl_agent::HostResult<Value> {
        Err(owl_agent::HostError::refused("not in the benchmark"))
    }
    async fn manage_schedule(&self, _n: &str, _a: &str) -> owl_agent::HostResult<Value> {
        Err(owl_agent::HostError::refused("not in the benchmark"))
    }
}

fn runtime(steps: usize) -> owl_agent::Runtime {
    let mut providers = BTreeMap::new();
    providers.insert(
        "instant".to_string(),
        ProviderSettings {
            kind: ProviderKind::Openai,
            base_url: None,
            api_key_env: None,
            api_key_secret: None,
            model: Some("instant".into()),
            timeout: Duration::from_secs(5),
            max_retries: 0,
            model_path: None,
            threads: 0,
            context: 0,
            keep_alive: Duration::from_secs(300),
        },
    );
    let mut a = AgentSettings::new("instant");
    a.max_steps = steps as u32 + 2;
    a.tools = vec!["list_dir".into()];
    a.shell_default = PolicyDefault::Deny;
    a.sandbox = false;
    let mut agents = BTreeMap::new();
    agents.insert("bench".to_string(), a);
    owl_agent::Runtime::new(providers, agents, BTreeMap::new(), AgentDefaults::default(), &BTreeMap::new(), &BTreeMap::new(), None)
        .with_provider("instant", Arc::new(Instant_ { steps }))
}

pub async fn run(quick: bool) -> Vec<(String, Value)> {
    // A long task: the conversation grows to 2 x steps messages.
    let steps = if quick { 100 } else { 500 };
    let mut out = Vec::new();

    // In memory: building requests, dispatching and running the tool, recording.
    let rt = runtime(steps);
    let ws = crate::temp_dir();
    let host = Arc::new(MemHost::default());
    let (_tx, halt) = tokio::sync::watch::channel(None);
    let job = owl_agent::Job {
        owner: Owner::Task(TaskId(1)),
        agent: "bench".into(),
        prompt: "list".into(),
        workspace: ws,
        attempt: 1,
        depth: 0,
        timeout: None,
        env: vec![],
        withheld_env: vec![],
        chat_turn: false,
        team: false,
    };
    let t0 = Instant::now();
    let end = owl_agent::run_job(&rt, job, host.clone(), halt, None).await;
    let el = t0.elapsed();
    assert!(matches!(end, owl_agent::AgentEnd::Succeeded { .. }), "{end:?}");
    out.push((
        "agent_step_overhead_in_memory_us".into(),
        json!({"steps": steps, "per_step_us": crate::round2(el.as_secs_f64() * 1e6 / steps as f64), "includes": "request building, tool dispatch, list_dir on a real directory, transcript entries (in memory)"}),
    ));

    // Durable: a real agent task on the engine with SQLite at synchronous=FULL.
    let dir = crate::temp_dir();
    let store = owl_store_sqlite::SqliteStore::open(&dir.join("owl.db"), owl_store_sqlite::Durability::Full).expect("store");
    let mut cfg = owl_engine::EngineConfig::from_settings(&owl_core::config::Settings::default(), "bench".into());
    cfg.workers = 2;
    let (engine, dispatch) =
        owl_engine::Engine::new(Arc::new(store), owl_core::layout::DataLayout::new(&dir), cfg, Arc::new(owl_engine::SystemClock));
    tokio::spawn(dispatch.run(true));
    engine.set_agents(Arc::new(runtime(steps)));
    let spec = owl_core::TaskSpec::new(owl_core::Command::agent("bench", "list"));
    let t0 = Instant::now();
    let id = engine.submit(vec![owl_store::NewTask::new(spec)]).await.expect("submit")[0].id;
    loop {
        let t = engine.store().get(id).await.expect("get");
        if t.state.is_terminal() {
            assert_eq!(t.state.status(), owl_core::task::Status::Succeeded, "{:?}", t.state);
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let el = t0.elapsed();
    out.push((
        "agent_step_overhead_durable_us".into(),
        json!({"steps": steps, "per_step_us": crate::round2(el.as_secs_f64() * 1e6 / steps as f64),
            "includes": "as above, plus each transcript entry and usage row committed at synchronous=FULL, events and the task log"}),
    ));
    engine.shutdown();
    #[cfg(feature = "local")]
    out.extend(local_figures());
    out
}

#[cfg(feature = "local")]
fn local_figures() -> Vec<(String, Value)> {
    let dir = std::env::var_os("OWL_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/owl/models"));
    let path = dir.join("gemma-3-270m-q4_k_m.gguf");
    if !path.is_file() {
        return vec![("local_provider".into(), json!({"skipped": format!("{} missing; run scripts/fetch-models", path.display())}))];
    }
    let t0 = Instant::now();
    let mut m = owl_llama::LocalModel::load(&path, 2, 4096).expect("load");
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let prompt = m
        .chat_prompt(&[("user".into(), "Write a short story about an owl who works at night, in about 150 words.".into())])
        .expect("prompt");
    let mut runs = Vec::new();
    for _ in 0..3 {
        let g = m.generate(&prompt, None, 128, 0.0, &mut |_| {}).expect("generate");
        runs.push(g);
    }
    let best = runs.iter().min_by(|a, b| a.elapsed.cmp(&b.elapsed)).unwrap();
    let decode_s = (best.elapsed - best.time_to_first_token).as_secs_f64();
    let tools = owl_agent::tools::specs(&["read_file".into(), "list_dir".into()]);
    let grammar = owl_agent::local::grammar(&tools, false);
    let cp = m.chat_prompt(&[("user".into(), "Read notes.txt. Reply with JSON.".into())]).expect("prompt");
    // Best of 3 each way: masking every candidate, and sampling first (the default).
    let mut constrained = |mode| {
        m.set_constrain(mode);
        (0..3)
            .map(|_| m.generate(&cp, Some(&grammar), 64, 0.0, &mut |_| {}).expect("constrained"))
            .min_by(|a, b| a.elapsed.cmp(&b.elapsed))
            .unwrap()
    };
    let full = constrained(owl_llama::Constrain::Full);
    let g2 = constrained(owl_llama::Constrain::SampleFirst);
    assert_eq!(full.text, g2.text, "sample-first changes the output");
    let tps = |g: &owl_llama::Generation| g.completion_tokens as f64 / g.elapsed.as_secs_f64();
    vec![(
        "local_provider_gemma_3_270m".into(),
        json!({
            "threads": 2,
            "load_ms": crate::round2(load_ms),
            "prompt_tokens": best.prompt_tokens,
            "generated_tokens": best.completion_tokens,
            "time_to_first_token_ms": crate::round2(best.time_to_first_token.as_secs_f64() * 1e3),
            "decode_tokens_per_s": crate::round2((best.completion_tokens.saturating_sub(1)) as f64 / decode_s),
            "constrained_call": {"text": g2.text, "tokens": g2.completion_tokens, "ms": crate::round2(g2.elapsed.as_secs_f64() * 1e3),
                "tokens_per_s": crate::round2(tps(&g2)),
                "full_masking_ms": crate::round2(full.elapsed.as_secs_f64() * 1e3),
                "full_masking_tokens_per_s": crate::round2(tps(&full)),
                "speedup": crate::round2(tps(&g2) / tps(&full))},
        }),
    )]
}
