//! The tool loop: ask the model, run the tools it calls, repeat until a final answer or a
//! limit. Every step is persisted before the next begins, so a restart resumes from the
//! transcript; a tool call whose result was never recorded is not run again blindly.

use crate::confine::Workspace;
use crate::host::{Admission, ApprovalDecision, ApprovalRequest, Host, HostError, Owner, SpendRequest, UsageRecord};
use crate::job::{AgentEnd, Halt, Job};
use crate::msg::{ChatRequest, Message, Sink, ToolCall, ToolSpec, Usage};
use crate::policy::Policy;
use crate::provider::call_with_fallback;
use crate::runtime::Runtime;
use crate::tools::{self, HttpLimits, ToolCtx, ToolOutcome};
use owl_core::transcript::{Entry, Reply, TranscriptEntry};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct State {
    messages: Vec<Message>,
    steps: u32,
    usage: Usage,
    cost: f64,
    used_tool: bool,
    /// Told once to use a tool before answering (with `must_use_tool`).
    tool_nudged: bool,
    started_ms: Option<i64>,
}

fn entry_to_message(e: &Entry) -> Option<Message> {
    Some(match e {
        Entry::System { content } => Message::System { content: content.clone() },
        Entry::User { content, .. } => Message::User { content: content.clone() },
        Entry::Assistant(r) => Message::Assistant { content: r.content.clone(), tool_calls: r.tool_calls.clone() },
        Entry::Tool { call_id, name, content, is_error, .. } => {
            Message::Tool { call_id: call_id.clone(), name: name.clone(), content: content.clone(), is_error: *is_error }
        }
        Entry::Note { .. } => return None,
    })
}

pub(crate) const SYSTEM_BASE: &str = "You are an agent run by owl, working unattended on a task in your own workspace directory. \
Use the tools to inspect and change files and run commands; paths are relative to the workspace. \
When the task is done, reply with your final answer as plain text and no tool call.";

/// Runs (or resumes) one agent job to its end.
pub async fn run(
    rt: &Runtime,
    job: Job,
    host: Arc<dyn Host>,
    mut halt: watch::Receiver<Option<Halt>>,
    mut sink: Option<Sink<'_>>,
) -> AgentEnd {
    let Some(agent) = rt.agent(&job.agent).cloned() else {
        let known = rt.agents.keys().cloned().collect::<Vec<_>>().join(", ");
        return AgentEnd::Failed {
            reason: format!(
                "there is no agent `{}`; configured agents: {}",
                job.agent,
                if known.is_empty() { "(none; see `owl config init`)".into() } else { known }
            ),
        };
    };
    let routes = match rt.routes(&agent) {
        Ok(r) => r,
        Err(e) => return AgentEnd::Failed { reason: format!("agent `{}` cannot reach a model: {e}", job.agent) },
    };
    if agent.max_cost_usd.is_some() {
        if let Some(r) = routes.iter().find(|r| rt.price(&r.model).is_none()) {
            return AgentEnd::Failed {
                reason: format!(
                    "agents.{}.max_cost_usd is set but there is no price for model `{}`; add [prices.\"{}\"]",
                    job.agent, r.model, r.model
                ),
            };
        }
    }
    let sandboxed = (agent.sandbox && rt.sandbox.is_some()).then_some(agent.allow_net || !agent.allow_hosts.is_empty());
    let policy = match Policy::new(&agent.shell_allow, &agent.shell_deny, agent.shell_default) {
        Ok(p) => p.for_calls(sandboxed),
        Err(e) => return AgentEnd::Failed { reason: format!("agents.{}: {e}", job.agent) },
    };
    if let Err(e) = std::fs::create_dir_all(&job.workspace) {
        return AgentEnd::Failed { reason: format!("cannot create the workspace {}: {e}", job.workspace.display()) };
    }
    let ws = match Workspace::new(&job.workspace) {
        Ok(w) => w,
        Err(e) => return AgentEnd::Failed { reason: format!("cannot open the workspace: {e}") },
    };
    let mut tool_names: Vec<String> =
        if agent.tools.is_empty() { owl_core::agent::DEFAULT_TOOLS.iter().map(|s| s.to_string()).collect() } else { agent.tools.clone() };
    if job.team {
        for t in owl_core::agent::TEAM_TOOLS {
            if !tool_names.iter().any(|n| n == t) {
                tool_names.push(t.to_string());
            }
        }
    }
    let ctx = ToolCtx {
        ws,
        policy,
        owner: job.owner,
        agent_name: job.agent.clone(),
        agent: agent.clone(),
        depth: job.depth,
        host: host.clone(),
        env: scrub_env(rt, &agent, &job),
        shell_timeout: rt.defaults.shell_timeout,
        sandbox: rt.sandbox.clone(),
        output_max: rt.defaults.tool_output_max_bytes,
        http: HttpLimits { allow_private: agent.http_allow_private, ..HttpLimits::default() },
        search: rt.searchers.get(&job.agent).cloned(),
        mcp: vec![],
        mcp_hub: rt.mcp.clone(),
        team: job.team,
    };
    let mut ctx = ctx;
    let mut mcp_problems = Vec::new();
    if let (Some(hub), false) = (&rt.mcp, agent.mcp.is_empty()) {
        let (tools, problems) = hub.tools(&agent.mcp).await;
        ctx.mcp = tools;
        mcp_problems = problems;
    }
    let journal = Journal { rt, host: host.clone(), owner: job.owner, attempt: job.attempt };

    // Rebuild from the transcript, or start one.
    let entries = match host.transcript(job.owner).await {
        Ok(e) => e,
        Err(e) => return AgentEnd::Failed { reason: format!("cannot read the transcript: {e}") },
    };
    let mut st =
        State { messages: vec![], steps: 0, usage: Usage::default(), cost: 0.0, used_tool: false, tool_nudged: false, started_ms: None };
    for TranscriptEntry { at, body, .. } in &entries {
        st.started_ms.get_or_insert(at.millis());
        match body {
            Entry::Assistant(r) if !r.chat_turn => st.steps += 1,
            Entry::Tool { .. } => st.used_tool = true,
            _ => {}
        }
        let (usage, cost) = body.spend();
        st.usage.add(usage);
        st.cost += cost;
        if let Some(m) = entry_to_message(body) {
            st.messages.push(m);
        }
    }
    if job.chat_turn {
        // A chat's limits apply per turn.
        st.steps = 0;
        st.used_tool = false;
    }
    let mut fresh = Vec::new();
    if st.messages.is_empty() {
        let mut system = match &agent.system_prompt {
            Some(p) => format!("{SYSTEM_BASE}\n\n{p}"),
            None => SYSTEM_BASE.to_string(),
        };
        if job.team {
            system.push_str(&team_prompt(rt, &job.agent));
        }
        fresh.push(Entry::system(system));
        fresh.push(Entry::user(job.prompt.clone()));
    } else if job.chat_turn {
        fresh.push(Entry::user(job.prompt.clone()));
    } else {
        // Resuming: a call whose result never made it to the transcript may or may not
        // have run. Say so to the model instead of running it again blindly.
        if let Some(Message::Assistant { tool_calls, .. }) = st.messages.iter().rev().find(|m| !matches!(m, Message::Tool { .. })) {
            let answered: Vec<&str> = st
                .messages
                .iter()
                .filter_map(|m| if let Message::Tool { call_id, .. } = m { Some(call_id.as_str()) } else { None })
                .collect();
            let pending: Vec<ToolCall> = tool_calls.iter().filter(|c| !answered.contains(&c.id.as_str())).cloned().collect();
            fresh.push(Entry::Note {
                text: format!("resumed in attempt {}", job.attempt),
                pending_calls: pending.clone(),
                failures: vec![],
            });
            for c in pending {
                if needs_asking(&ctx, &c) || tools::REPLAYABLE.contains(&c.name.as_str()) {
                    // Asked again, or (idempotent per call id) run again below.
                    // Waiting for a human when the daemon stopped: ask again (same request).
                    continue;
                }
                fresh.push(Entry::tool(c.id, c.name, "interrupted: the daemon stopped before this call's result was recorded; it may or may not have taken effect. Check before repeating it.", true));
            }
        } else {
            fresh.push(Entry::note(format!("resumed in attempt {}", job.attempt)));
        }
    }
    for e in &fresh {
        if let Some(m) = entry_to_message(e) {
            st.messages.push(m);
        }
    }
    for p in &mcp_problems {
        fresh.push(Entry::note(format!("MCP: {p}")));
    }
    if let Err(e) = journal.append(fresh).await {
        return AgentEnd::Failed { reason: e };
    }
    let started_ms = st.started_ms.unwrap_or_else(now_ms);
    let mut tool_specs = tools::specs(&tool_names);
    tool_specs.extend(ctx.mcp.iter().map(|t| ToolSpec {
        name: t.name.clone(),
        description: t.description.clone(),
        parameters: t.parameters.clone(),
    }));
    let begun = Instant::now();

    // Pending approvals left by a previous attempt are asked again before the next model call.
    if let Some(end) = finish_pending_calls(&ctx, &journal, &mut st, &mut halt).await {
        return end;
    }

    loop {
        if let Some(h) = halt.borrow().clone() {
            return halted(h);
        }
        if st.steps >= agent.max_steps {
            return journal
                .fail(format!("reached the step limit (agents.{}.max_steps = {}) without a final answer", job.agent, agent.max_steps))
                .await;
        }
        if let Some(max) = agent.max_tokens {
            if st.usage.total() >= max {
                return journal
                    .fail(format!("used {} tokens, the limit is {max} (agents.{}.max_tokens)", st.usage.total(), job.agent))
                    .await;
            }
        }
        if let Some(max) = agent.max_cost_usd {
            if st.cost >= max {
                return journal.fail(format!("spent ${:.4}, the limit is ${max} (agents.{}.max_cost_usd)", st.cost, job.agent)).await;
            }
        }
        let elapsed_ms = (now_ms() - started_ms).max(0) as u64;
        if let Some(max) = agent.max_wall {
            if !job.chat_turn && Duration::from_millis(elapsed_ms) >= max {
                return journal
                    .fail(format!("ran for {}s, the limit is {}s (agents.{}.max_wall)", elapsed_ms / 1000, max.as_secs(), job.agent))
                    .await;
            }
        }
        if job.timeout.is_some_and(|t| begun.elapsed() >= t) {
            let _ = journal.append(vec![Entry::note("the task's timeout was reached")]).await;
            return AgentEnd::TimedOut;
        }
        let require_tool = agent.must_use_tool && !st.used_tool && !job.chat_turn;
        // A model that repeats the very same call, or is at its last step, is asked to answer
        // with what it has instead of looping until the limit.
        let last_step = st.steps + 1 == agent.max_steps;
        let repeating = repeated_call(&st.messages);
        let forbid_tools = !require_tool && (last_step || repeating.is_some());
        if forbid_tools {
            let nudge = match &repeating {
                Some(name) => format!("You called {name} twice with the same arguments; its result is above. Give your final answer now."),
                None => "This is your last step: give your final answer now with what you have.".to_string(),
            };
            st.messages.push(Message::User { content: nudge.clone() });
            if let Err(e) = journal.append(vec![Entry::User { content: nudge, nudge: true }]).await {
                return AgentEnd::Failed { reason: e };
            }
        }
        // The conversation moves into the request and back after the call: no copy per step.
        let mut req = ChatRequest {
            model: String::new(),
            messages: std::mem::take(&mut st.messages),
            tools: tool_specs.clone(),
            max_output_tokens: agent.max_output_tokens,
            temperature: agent.temperature,
            require_tool,
            forbid_tools,
            stream: sink.is_some(),
        };
        // The budgets first: the call's estimate is reserved before it is made, and a budget
        // without room pauses the task here (its transcript is complete; it resumes later).
        let spend = match admit(rt, &routes, &req, &job, &host).await {
            Ok(s) => s,
            Err(end) => {
                st.messages = std::mem::take(&mut req.messages);
                if let AgentEnd::Paused { reason, .. } | AgentEnd::Failed { reason } = &end {
                    let _ = journal.append(vec![Entry::note(reason.clone())]).await;
                }
                return end;
            }
        };
        let t0 = Instant::now();
        let mut noop = |_d| {};
        let call = async {
            match sink.as_mut() {
                Some(s) => call_with_fallback(&routes, &mut req, &mut **s).await,
                None => call_with_fallback(&routes, &mut req, &mut noop).await,
            }
        };
        let deadline = job.timeout.map(|t| t.saturating_sub(begun.elapsed())).unwrap_or(Duration::MAX);
        // The agent's max_wall also holds during a call, not only between steps.
        let wall_left = match agent.max_wall.filter(|_| !job.chat_turn) {
            Some(max) => max.saturating_sub(Duration::from_millis((now_ms() - started_ms).max(0) as u64)),
            None => Duration::MAX,
        };
        let result = tokio::select! {
            r = call => r,
            h = wait_halt(&mut halt) => {
                // A call cut off in flight was sent: it is charged its input.
                spend.settle_input(&host).await;
                return halted(h);
            }
            _ = sleep_max(deadline) => {
                spend.settle_input(&host).await;
                let _ = journal.append(vec![Entry::note("the task's timeout was reached during a model call")]).await;
                return AgentEnd::TimedOut;
            }
            _ = sleep_max(wall_left) => {
                spend.settle_input(&host).await;
                let max = agent.max_wall.unwrap_or_default();
                return journal
                    .fail(format!("ran for {}s, the limit is {}s (agents.{}.max_wall); stopped during a model call", max.as_secs(), max.as_secs(), job.agent))
                    .await;
            }
        };
        st.messages = std::mem::take(&mut req.messages);
        let ms = t0.elapsed().as_millis() as u64;
        let (mut resp, route_idx, failures) = match result {
            Ok(r) => r,
            Err((e, failures)) => {
                spend.settle(&host, routes[0].provider.name(), 0.0, 0).await;
                let _ = journal
                    .append(vec![Entry::Note { text: "every provider failed".into(), pending_calls: vec![], failures: failures.clone() }])
                    .await;
                return journal.fail(format!("the model call failed: {e}")).await;
            }
        };
        st.steps += 1;
        unique_call_ids(&mut resp.tool_calls, &st.messages, st.steps);
        let route = &routes[route_idx];
        let model = if resp.model.is_empty() { route.model.clone() } else { resp.model.clone() };
        let (price, source) = match rt.call_price(route.provider.name(), &route.model) {
            (None, _) => rt.call_price(route.provider.name(), &model),
            known => known,
        };
        let cost = price.map(|p| p.cost(resp.usage.input, resp.usage.output, resp.usage.cached)).unwrap_or(0.0);
        spend.settle(&host, route.provider.name(), cost, resp.usage.total()).await;
        st.usage.add(resp.usage);
        st.cost += cost;
        let entry = Entry::Assistant(Reply {
            content: resp.content.clone(),
            tool_calls: resp.tool_calls.clone(),
            usage: Some(resp.usage),
            cost_usd: cost,
            provider: Some(route.provider.name().into()),
            model: Some(model.clone()),
            ms: Some(ms),
            stop_reason: Some(resp.stop_reason.clone()),
            chat_turn: job.chat_turn,
            failed_before: failures.clone(),
        });
        if let Err(e) = journal.append(vec![entry]).await {
            return AgentEnd::Failed { reason: e };
        }
        let _ = host
            .record_usage(UsageRecord {
                owner: job.owner,
                agent: job.agent.clone(),
                provider: route.provider.name().into(),
                model: model.clone(),
                usage: resp.usage,
                cost_usd: cost,
                price: owl_core::budget::price_label(&source),
            })
            .await;
        st.messages.push(Message::Assistant { content: resp.content.clone(), tool_calls: resp.tool_calls.clone() });
        if resp.tool_calls.is_empty() {
            if require_tool {
                // Asked once; an agent that must use a tool and still answers without one did
                // nothing, and that is not a success.
                if st.tool_nudged {
                    return journal
                        .fail(format!(
                            "the agent answered without calling any tool, so it did nothing (agents.{}.must_use_tool); its answer was: {}",
                            job.agent,
                            owl_core::task::first_line(&rt.redact(&resp.content))
                        ))
                        .await;
                }
                st.tool_nudged = true;
                let nudge = "Use one of the tools before you answer.";
                st.messages.push(Message::User { content: nudge.into() });
                if let Err(e) = journal.append(vec![Entry::User { content: nudge.into(), nudge: true }]).await {
                    return AgentEnd::Failed { reason: e };
                }
                continue;
            }
            let answer = rt.redact(&resp.content);
            return AgentEnd::Succeeded { answer };
        }
        if let Some(end) = finish_pending_calls(&ctx, &journal, &mut st, &mut halt).await {
            return end;
        }
    }
}

/// A model call's reservation, to settle once the call is over.
struct Spend {
    req: SpendRequest,
    key: Option<String>,
    input_usd: f64,
    input_tokens: u64,
    provider: String,
}

impl Spend {
    async fn settle(&self, host: &Arc<dyn Host>, provider: &str, usd: f64, tokens: u64) {
        if let Some(key) = &self.key {
            // Left open, the reservation is settled at its estimate when the task ends.
            if let Err(e) = host.settle(&self.req, key, provider, usd, tokens).await {
                tracing::warn!(error = %e, key, "cannot settle a budget reservation; it counts at its estimate");
            }
        }
    }

    async fn settle_input(&self, host: &Arc<dyn Host>) {
        self.settle(host, &self.provider, self.input_usd, self.input_tokens).await;
    }
}

/// Asks the budgets for room for the call `req` is about to make on `routes`.
async fn admit(
    rt: &Runtime,
    routes: &[crate::provider::Route],
    req: &ChatRequest,
    job: &Job,
    host: &Arc<dyn Host>,
) -> Result<Spend, AgentEnd> {
    let chars = serde_json::to_string(&req.messages).map(|s| s.len()).unwrap_or(0)
        + serde_json::to_string(&req.tools).map(|s| s.len()).unwrap_or(0);
    // The dearest route is reserved for: a fallback may answer. One with no price makes the
    // whole call unpriced (a dollar budget then refuses it, naming that model).
    let prices: Vec<(Option<owl_core::agent::Price>, &str)> =
        routes.iter().map(|r| (rt.call_price(r.provider.name(), &r.model).0, r.model.as_str())).collect();
    let unpriced = prices.iter().find(|(p, _)| p.is_none()).map(|(_, m)| m.to_string());
    let price = prices.iter().filter_map(|(p, _)| *p).max_by(|a, b| (a.input + a.output).total_cmp(&(b.input + b.output)));
    let (usd, tokens) = owl_core::budget::estimate(price.as_ref(), chars, req.max_output_tokens);
    let (input_usd, input_tokens) = owl_core::budget::estimate(price.as_ref(), chars, 0);
    let mut fallbacks: Vec<String> = vec![];
    for r in &routes[1..] {
        let name = r.provider.name().to_string();
        if name != routes[0].provider.name() && !fallbacks.contains(&name) {
            fallbacks.push(name);
        }
    }
    let ask = SpendRequest {
        owner: job.owner,
        agent: job.agent.clone(),
        provider: routes[0].provider.name().to_string(),
        fallbacks,
        model: unpriced.clone().unwrap_or_else(|| routes[0].model.clone()),
        price: if unpriced.is_some() { None } else { price },
        usd,
        tokens,
    };
    // The ledger must be written before the call: if it cannot be, the call does not start.
    let mut delay = Duration::from_millis(50);
    let mut last = String::new();
    for _ in 0..6 {
        match host.admit(ask.clone()).await {
            Ok(Admission::Go { key }) => return Ok(Spend { key, input_usd, input_tokens, provider: ask.provider.clone(), req: ask }),
            Ok(Admission::Wait { until, scope, reason }) => return Err(AgentEnd::Paused { until, scope, reason }),
            Ok(Admission::Refuse { reason }) => return Err(AgentEnd::Failed { reason }),
            Err(HostError::Refused(e)) => return Err(AgentEnd::Failed { reason: e }),
            Err(HostError::Unavailable(e)) => {
                last = e;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    let until = owl_core::Timestamp(now_ms()).plus(Duration::from_secs(60));
    Err(AgentEnd::Paused {
        until,
        scope: "ledger".into(),
        reason: format!("the budget ledger cannot be written ({last}); no model call starts without it, so the task waits a minute"),
    })
}

/// The name of the tool when the last two model turns made the same single call.
fn repeated_call(messages: &[Message]) -> Option<String> {
    let mut calls = messages.iter().rev().filter_map(|m| match m {
        Message::Assistant { tool_calls, .. } => Some(tool_calls),
        _ => None,
    });
    let (a, b) = (calls.next()?, calls.next()?);
    match (a.as_slice(), b.as_slice()) {
        ([x], [y]) if x.name == y.name && x.arguments == y.arguments => Some(x.name.clone()),
        _ => None,
    }
}

/// Runs every call of the last assistant message that has no result yet.
async fn finish_pending_calls(
    ctx: &ToolCtx,
    journal: &Journal<'_>,
    st: &mut State,
    halt: &mut watch::Receiver<Option<Halt>>,
) -> Option<AgentEnd> {
    let Some(Message::Assistant { tool_calls, .. }) = st.messages.iter().rev().find(|m| !matches!(m, Message::Tool { .. })).cloned() else {
        return None;
    };
    for call in tool_calls {
        let answered = st.messages.iter().any(|m| matches!(m, Message::Tool { call_id, .. } if *call_id == call.id));
        if answered {
            continue;
        }
        let t0 = Instant::now();
        let mut outcome = tokio::select! {
            o = run_call(ctx, &call, false) => o,
            h = wait_halt(halt) => return Some(halted(h)),
        };
        if let ToolOutcome::NeedsApproval(_) = &outcome {
            // What acts outside owl must be approved as it will run: a call whose arguments
            // carry a secret (shown to the approver redacted) is refused instead.
            if crate::tools::ALWAYS_ASK.contains(&call.name.as_str()) && journal.rt.redact_value(call.arguments.clone()) != call.arguments {
                let refusal = format!("{} would publish a secret; write the text without it", call.name);
                let _ = journal.append(vec![Entry::note(format!("refused {} call {}: it carries a secret", call.name, call.id))]).await;
                outcome = ToolOutcome::Err(refusal);
            }
        }
        if let ToolOutcome::NeedsApproval(why) = &outcome {
            let why = why.clone();
            let _ = journal.append(vec![Entry::note(format!("waiting for approval of {} call {}: {why}", call.name, call.id))]).await;
            let req = ApprovalRequest {
                owner: ctx.owner,
                agent: ctx.agent_name.clone(),
                call_id: call.id.clone(),
                tool: call.name.clone(),
                arguments: journal.rt.redact_value(call.arguments.clone()),
                reason: why,
            };
            let decision = tokio::select! {
                d = ctx.host.approve(req) => d,
                h = wait_halt(halt) => return Some(halted(h)),
            };
            outcome = match decision {
                Ok(ApprovalDecision::Approved) => tokio::select! {
                    o = run_call(ctx, &call, true) => o,
                    h = wait_halt(halt) => return Some(halted(h)),
                },
                Ok(ApprovalDecision::Denied { reason }) => {
                    ToolOutcome::Err(format!("a human denied this call: {reason}. Do not try it another way."))
                }
                Err(e) => ToolOutcome::Err(format!("the approval could not be obtained: {e}")),
            };
        }
        let (content, is_error) = match outcome {
            ToolOutcome::Ok(s) => (s, false),
            ToolOutcome::Err(s) => (s, true),
            ToolOutcome::NeedsApproval(s) => (format!("still needs approval: {s}"), true),
        };
        st.used_tool = true;
        let content = journal.rt.redact(&content);
        st.messages.push(Message::Tool { call_id: call.id.clone(), name: call.name.clone(), content: content.clone(), is_error });
        let e =
            Entry::Tool { call_id: call.id.clone(), name: call.name.clone(), content, is_error, ms: Some(t0.elapsed().as_millis() as u64) };
        if let Err(e) = journal.append(vec![e]).await {
            return Some(AgentEnd::Failed { reason: e });
        }
    }
    None
}

/// Makes each call's id unique within the task: some servers send none (the client then
/// numbers them `call_0`, ...) or repeat them, and delegation, messages and approvals are
/// bound to a call by its id.
fn unique_call_ids(calls: &mut [ToolCall], earlier: &[Message], step: u32) {
    let mut seen: std::collections::HashSet<String> = earlier
        .iter()
        .flat_map(|m| match m {
            Message::Assistant { tool_calls, .. } => tool_calls.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            Message::Tool { call_id, .. } => vec![call_id.clone()],
            _ => vec![],
        })
        .collect();
    for c in calls.iter_mut() {
        if c.id.is_empty() || seen.contains(&c.id) {
            let base = if c.id.is_empty() { "call".to_string() } else { c.id.clone() };
            let mut n = 0;
            c.id = loop {
                let id = if n == 0 { format!("{base}.s{step}") } else { format!("{base}.s{step}.{n}") };
                if !seen.contains(&id) {
                    break id;
                }
                n += 1;
            };
        }
        seen.insert(c.id.clone());
    }
}

/// What a team run's planner is told: how to delegate, and who is on the team.
fn team_prompt(rt: &Runtime, me: &str) -> String {
    let mut out = String::from(
        "\n\nYou lead a team run. Break the work into steps and hand them to the agents below with the `delegate` tool \
(steps that depend on others list them in `after`; a review step lists what it reviews in `review_of` and answers \
APPROVE or CHANGES followed by its comments). You wait while they work and get their results back; then check \
the result in the workspace, which you all share, and give the final answer. Team:",
    );
    for (name, a) in rt.settings() {
        if name == me {
            continue;
        }
        let caps = if a.capabilities.is_empty() { "-".to_string() } else { a.capabilities.join(", ") };
        let desc = if a.description.is_empty() { String::new() } else { format!(": {}", a.description) };
        out.push_str(&format!("\n- {name} (capabilities {caps}; complexity {}-{}){desc}", a.complexity[0], a.complexity[1]));
    }
    out
}

fn needs_asking(ctx: &ToolCtx, call: &ToolCall) -> bool {
    if ctx.agent.ask.contains(&call.name) || tools::ALWAYS_ASK.contains(&call.name.as_str()) {
        return true;
    }
    if ctx.mcp.iter().any(|t| t.name == call.name && t.ask) {
        return true;
    }
    call.name == "shell"
        && call.arguments["command"].as_str().is_some_and(|c| matches!(ctx.policy.check(c), crate::policy::Verdict::Ask(_)))
}

async fn run_call(ctx: &ToolCtx, call: &ToolCall, approved: bool) -> ToolOutcome {
    if !approved && ctx.agent.ask.contains(&call.name) {
        return ToolOutcome::NeedsApproval(format!("every {} call needs approval (agents.{}.ask)", call.name, ctx.agent_name));
    }
    tools::call_with_id(ctx, &call.name, &call.arguments, approved, &call.id).await
}

fn halted(h: Halt) -> AgentEnd {
    match h {
        Halt::Cancel(reason) => AgentEnd::Cancelled { reason },
        Halt::Interrupt(reason) => AgentEnd::Interrupted { reason },
    }
}

async fn wait_halt(halt: &mut watch::Receiver<Option<Halt>>) -> Halt {
    loop {
        if let Some(h) = halt.borrow_and_update().clone() {
            return h;
        }
        if halt.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn sleep_max(d: Duration) {
    if d == Duration::MAX {
        std::future::pending::<()>().await
    } else {
        tokio::time::sleep(d).await
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The shell tool's environment: the daemon's, minus anything that looks like a credential,
/// the provider keys and the withheld variables, unless the agent grants a name.
fn scrub_env(rt: &Runtime, agent: &owl_core::agent::AgentSettings, job: &Job) -> Vec<(String, String)> {
    let granted = |k: &str| agent.grant_env.iter().any(|g| g == k);
    let mut env: Vec<(String, String)> = job
        .env
        .iter()
        .filter(|(k, _)| !job.withheld_env.contains(k))
        .filter(|(k, _)| granted(k) || (!owl_core::config::looks_secret(k) && !rt.key_vars.contains(k)))
        .filter(|(_, v)| !rt.secrets.iter().any(|s| v.contains(s.as_str())))
        .cloned()
        .collect();
    // A granted name keeps its value even if it holds a secret.
    for g in &agent.grant_env {
        if let Some(kv) = job.env.iter().find(|(k, _)| k == g) {
            if !env.contains(kv) {
                env.push(kv.clone());
            }
        }
    }
    env.push(("OWL_WORKSPACE".into(), job.workspace.display().to_string()));
    if let Owner::Task(id) = job.owner {
        env.push(("OWL_TASK_ID".into(), id.to_string()));
    }
    env
}

/// Writes transcript entries through the host, redacted.
struct Journal<'a> {
    rt: &'a Runtime,
    host: Arc<dyn Host>,
    owner: Owner,
    attempt: u32,
}

impl Journal<'_> {
    async fn append(&self, entries: Vec<Entry>) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let redacted: Vec<Entry> = entries.into_iter().map(|e| self.rt.redact_entry(e)).collect();
        // A transient storage error is retried; losing the transcript is not an option.
        let mut delay = Duration::from_millis(50);
        for _ in 0..8 {
            match self.host.append(self.owner, self.attempt, Vec::clone(&redacted)).await {
                Ok(_) => return Ok(()),
                Err(HostError::Refused(e)) => return Err(format!("the transcript refused an entry: {e}")),
                Err(HostError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "cannot record a transcript entry; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        Err("cannot record the transcript; the task stops rather than run unrecorded".into())
    }

    async fn fail(&self, reason: String) -> AgentEnd {
        let _ = self.append(vec![Entry::note(reason.clone())]).await;
        AgentEnd::Failed { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall { id: id.into(), name: "delegate".into(), arguments: serde_json::json!({}) }
    }

    #[test]
    fn a_repeated_or_missing_call_id_is_made_unique_within_the_task() {
        let earlier = vec![
            Message::Assistant { content: String::new(), tool_calls: vec![call("call_0")] },
            Message::Tool { call_id: "call_0".into(), name: "delegate".into(), content: "{}".into(), is_error: false },
        ];
        let mut calls = vec![call("call_0"), call(""), call("fresh"), call("fresh")];
        unique_call_ids(&mut calls, &earlier, 3);
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["call_0.s3", "call.s3", "fresh", "fresh.s3"]);
    }
}
