//! Budgets on the engine: which scopes a piece of work is charged to, reserving its estimate
//! in the ledger before it starts, settling it after, warnings, and waking paused tasks when
//! a limit is raised. The rules (periods, windows, estimates) are `owl_core::budget`'s.

use crate::Shared;
use owl_core::agent::{Owner, Price};
use owl_core::budget::{BudgetSettings, Dollars, LimitOverride, Period, Scope, WindowState, NO_RESET};
use owl_core::task::Origin;
use owl_core::{Command, EventKind, TaskId, Timestamp};
use owl_store::{Reserve, Reserved, ScopeLimit, ScopeSpend, Settle, StoreError};
use std::collections::BTreeMap;

/// How long work waits when a budget's room is held by reservations of work in flight.
pub(crate) const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The store key of the limits set at run time (`owl budget set`), by scope.
pub(crate) const OVERRIDES_KEY: &str = "budget:limits";

pub(crate) async fn overrides(s: &Shared) -> Result<BTreeMap<String, LimitOverride>, StoreError> {
    Ok(match s.store.kv_get(OVERRIDES_KEY).await? {
        Some(v) => serde_json::from_str(&v)
            .map_err(|e| StoreError::Backend(format!("the run-time budget limits in the store are corrupt: {e}")))?,
        None => BTreeMap::new(),
    })
}

/// The work being charged: what it is, and the scopes above it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Charge {
    pub task: Option<TaskId>,
    /// Scope names, without the provider (added per call).
    pub scopes: Vec<String>,
    /// The caps of the task and of the tasks above it, by `task.ID` scope.
    pub caps: BTreeMap<String, Dollars>,
}

/// The scopes `owner`'s work is charged to: the task and every task above it (a subtask spends
/// its parents' budgets too), their agents, schedules and groups, and `global`.
pub(crate) async fn charge_for(s: &Shared, owner: Owner, agent: Option<&str>) -> Result<Charge, StoreError> {
    let mut c = Charge::default();
    let push = |c: &mut Charge, scope: Scope| {
        let name = scope.to_string();
        if !c.scopes.contains(&name) {
            c.scopes.push(name);
        }
    };
    if let Some(a) = agent {
        push(&mut c, Scope::Agent(a.to_string()));
    }
    let mut next = owner.task();
    c.task = next;
    let mut hops = 0;
    while let Some(id) = next.take() {
        hops += 1;
        // A task that cannot be read leaves its budgets unknown: no work starts on a guess.
        let t = match s.store.get(id).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => break,
            Err(e) => return Err(e),
        };
        push(&mut c, Scope::Task(id.0));
        if let Some(cap) = t.spec.command.max_cost() {
            c.caps.insert(Scope::Task(id.0).to_string(), cap);
        }
        match &t.spec.command {
            Command::Agent { agent, .. } => push(&mut c, Scope::Agent(agent.clone())),
            Command::Cli { cli, .. } => push(&mut c, Scope::Agent(format!("cli:{cli}"))),
            _ => {}
        }
        push(&mut c, Scope::Group(t.spec.group.clone()));
        match &t.spec.origin {
            Some(Origin::Schedule { name, .. }) => push(&mut c, Scope::Schedule(name.clone())),
            Some(Origin::Agent { parent: Owner::Task(p), .. }) if hops < 16 => next = Some(*p),
            _ => {}
        }
    }
    push(&mut c, Scope::Global);
    Ok(c)
}

/// One scope's limits now: the config's, the task's cap, or what `owl budget set` made them.
pub(crate) fn effective(
    scope: &str,
    configured: &owl_core::budget::Budgets,
    overrides: &BTreeMap<String, LimitOverride>,
    caps: &BTreeMap<String, Dollars>,
) -> Option<BudgetSettings> {
    let mut b = match (configured.get(scope), caps.get(scope)) {
        (Some(b), _) => b.clone(),
        (None, Some(cap)) => BudgetSettings::total_usd(cap.usd()),
        (None, None) if overrides.contains_key(scope) => {
            let period = if scope.starts_with("task.") { Period::Total } else { Period::Day };
            BudgetSettings::limits(None, None, period)
        }
        (None, None) => return None,
    };
    if let Some(o) = overrides.get(scope) {
        b.usd = o.usd.or(b.usd);
        b.tokens = o.tokens.or(b.tokens);
    }
    Some(b)
}

/// The answer to a request for room.
pub(crate) enum Verdict {
    Go(Option<String>),
    Wait { until: Timestamp, scope: String, reason: String },
    Refuse(String),
}

/// Reserves `usd` and `tokens` for work of `charge` on `provider`: in the ledger when any
/// scope has a limit or work should be recorded, with every window rule checked first.
pub(crate) async fn reserve(
    s: &Shared,
    charge: &Charge,
    providers: &[String],
    model: &str,
    price: Option<&Price>,
    usd: f64,
    tokens: u64,
) -> Result<Verdict, StoreError> {
    let now = s.clock.now();
    let cfg = s.config().budgets;
    let over = overrides(s).await?;
    let mut scopes = charge.scopes.clone();
    // Every provider the call may end up on (its fallbacks too) must have room.
    for p in providers {
        let name = Scope::Provider(p.to_string()).to_string();
        if !scopes.contains(&name) {
            scopes.push(name);
        }
    }
    let provider = providers.first().map(String::as_str).unwrap_or("");
    let mut limits = vec![];
    let mut settings = BTreeMap::new();
    for name in &scopes {
        let Some(b) = effective(name, &cfg, &over, &charge.caps) else { continue };
        if b.usd.is_some() && price.is_none() {
            return Ok(Verdict::Refuse(format!(
                "{name} has a limit in dollars, but there is no price for model `{model}` of {provider}; add [prices.\"{model}\"] to the config (local models cost nothing)"
            )));
        }
        if let Some(max) = b.usd.filter(|m| usd > *m) {
            return Ok(Verdict::Refuse(format!(
                "one call of model `{model}` may cost {} (its input and whole output limit), more than all of {name} ({}); raise the limit or lower the agent's max_output_tokens",
                money(usd),
                money(max)
            )));
        }
        if let Some(max) = b.tokens.filter(|m| tokens > *m) {
            return Ok(Verdict::Refuse(format!(
                "one call of model `{model}` may use {tokens} tokens (its input and whole output limit), more than all of {name} ({max}); raise the limit or lower the agent's max_output_tokens"
            )));
        }
        if b.window_percent.is_some() {
            let state = window_state(s, provider).await;
            if let Some((until, reason)) = owl_core::budget::window_verdict(&b, name, state.as_ref(), now) {
                return Ok(Verdict::Wait { until, scope: name.clone(), reason });
            }
        }
        if b.usd.is_some() || b.tokens.is_some() {
            limits.push(ScopeLimit { scope: name.clone(), since: b.period_start(now), usd: b.usd, tokens: b.tokens });
        }
        settings.insert(name.clone(), b);
    }
    let key = format!("{}-{}-{:016x}", charge.task.map(|t| t.0).unwrap_or(0), now.0, fastrand::u64(..));
    let r = Reserve { key: key.clone(), task: charge.task, scopes, limits, usd, tokens, now };
    match s.store.reserve(r).await? {
        Reserved::Granted => Ok(Verdict::Go(Some(key))),
        Reserved::NoRoom(short) => {
            // Every scope must have room: the work resumes when the last of them does.
            let mut worst: Option<(Timestamp, String, String)> = None;
            for sp in short {
                let Some(b) = settings.get(&sp.scope) else { continue };
                // Room held only by work in flight comes back when that work settles: ask
                // again shortly instead of waiting for the period to reset.
                let settled_fits = b.usd.is_none_or(|max| sp.usd + usd <= max + owl_store::usd_slack(max))
                    && b.tokens.is_none_or(|max| sp.tokens + tokens <= max);
                let (until, reason) = if settled_fits {
                    let until = now.plus(IN_FLIGHT_WAIT);
                    (until, format!("{}: the room left is held by work in flight; asks again at {}", sp.scope, until.to_rfc3339()))
                } else {
                    let until = b.resets_at(now, sp.oldest).unwrap_or(NO_RESET);
                    (until, no_room(&sp, b, usd, tokens, until))
                };
                if worst.as_ref().is_none_or(|(t, _, _)| until > *t) {
                    worst = Some((until, sp.scope.clone(), reason));
                }
            }
            let (until, scope, reason) = worst.unwrap_or((now.plus(std::time::Duration::from_secs(60)), "global".into(), "no room".into()));
            Ok(Verdict::Wait { until, scope, reason })
        }
    }
}

/// Dollars as people write them: `$0.035`, `$0.01`, `$1.20`.
pub fn money(usd: f64) -> String {
    if usd.abs() >= 1.0 {
        return format!("${usd:.2}");
    }
    let mut t = format!("{usd:.4}");
    while t.ends_with('0') && t.len() > "0.00".len() {
        t.pop();
    }
    format!("${t}")
}

fn no_room(sp: &ScopeSpend, b: &BudgetSettings, usd: f64, tokens: u64, until: Timestamp) -> String {
    let what = match (b.usd, b.tokens) {
        (Some(max), _) if sp.usd + sp.reserved_usd + usd > max => {
            let held =
                if sp.reserved_usd > 0.0 { format!(" (and {} held by work in flight)", money(sp.reserved_usd)) } else { String::new() };
            format!("spent {}{held} of {} {}; the next step needs about {}", money(sp.usd), money(max), b.period.phrase(), money(usd))
        }
        (_, Some(max)) => {
            let held = if sp.reserved_tokens > 0 { format!(" (and {} held by work in flight)", sp.reserved_tokens) } else { String::new() };
            format!("used {} tokens{held} of {max} {}; the next step needs about {tokens}", sp.tokens, b.period.phrase())
        }
        _ => "has no room".into(),
    };
    let when = if until >= NO_RESET {
        format!("it never resets: raise it with `owl budget set {} --usd N`, or cancel the task", sp.scope)
    } else {
        format!("resumes at {} (or sooner with `owl budget set {} ...`)", until.to_rfc3339(), sp.scope)
    };
    format!("{}: {what}; {when}", sp.scope)
}

/// Settles reservation `key` to what the work cost, charged to `charge` and `provider`, and
/// publishes a warning for each limited scope this spend took past its `warn_at`.
pub(crate) async fn settle(s: &Shared, charge: &Charge, key: &str, provider: &str, usd: f64, tokens: u64) -> Result<(), StoreError> {
    let mut scopes = charge.scopes.clone();
    scopes.push(Scope::Provider(provider.to_string()).to_string());
    let now = s.clock.now();
    s.store.settle(Settle { key: key.to_string(), scopes: scopes.clone(), usd, tokens, now }).await?;
    warn(s, charge, &scopes, now).await;
    Ok(())
}

/// The scopes of `scopes` with a dollar or token limit now, with their settings.
async fn limited(s: &Shared, charge: &Charge, scopes: &[String]) -> Result<Vec<(String, BudgetSettings)>, StoreError> {
    let cfg = s.config().budgets;
    let over = overrides(s).await?;
    Ok(scopes
        .iter()
        .filter_map(|n| Some((n.clone(), effective(n, &cfg, &over, &charge.caps)?)))
        .filter(|(_, b)| b.usd.is_some() || b.tokens.is_some())
        .collect())
}

async fn warn(s: &Shared, charge: &Charge, scopes: &[String], now: Timestamp) {
    let Ok(limited) = limited(s, charge, scopes).await else { return };
    if limited.is_empty() {
        return;
    }
    let since: Vec<Timestamp> = limited.iter().map(|(_, b)| b.period_start(now)).collect();
    let Ok(spend) = s.store.spend(limited.iter().map(|(n, _)| n.clone()).collect(), since.clone()).await else { return };
    for (((name, b), sp), start) in limited.iter().zip(spend).zip(since) {
        let share = |used: f64, max: f64| if max > 0.0 { used / max } else { 1.0 };
        let used = match (b.usd, b.tokens) {
            (Some(max), Some(tmax)) => {
                share(sp.usd + sp.reserved_usd, max).max(share((sp.tokens + sp.reserved_tokens) as f64, tmax as f64))
            }
            (Some(max), None) => share(sp.usd + sp.reserved_usd, max),
            (None, Some(tmax)) => share((sp.tokens + sp.reserved_tokens) as f64, tmax as f64),
            (None, None) => 0.0,
        };
        if used < b.warn_at {
            continue;
        }
        // Once per period and scope, across nodes; a rolling window warns again only once its
        // length has passed since the last warning.
        let key = format!("budget:warned:{name}");
        let mark = match b.period {
            Period::Rolling(d) => {
                let last = s.store.kv_get(&key).await.ok().flatten().and_then(|v| v.parse::<i64>().ok());
                if last.is_some_and(|t| now.0 - t < d.as_millis() as i64) {
                    continue;
                }
                now.0.to_string()
            }
            _ => start.0.to_string(),
        };
        match s.store.kv_swap(&key, &mark).await {
            Ok(prev) if prev.as_deref() != Some(mark.as_str()) => {
                let summary = match b.usd {
                    Some(max) => format!("{name} has used {} of {} {}", money(sp.usd + sp.reserved_usd), money(max), b.period.phrase()),
                    None => format!(
                        "{name} has used {} of {} tokens {}",
                        sp.tokens + sp.reserved_tokens,
                        b.tokens.unwrap_or(0),
                        b.period.phrase()
                    ),
                };
                tracing::warn!(scope = %name, "{summary}");
                let percent = (used * 100.0).round() as u32;
                s.publish(EventKind::BudgetWarning { scope: name.clone(), percent, summary: summary.clone() });
                let notice = owl_core::notify::Notice {
                    event: owl_core::notify::EventName::BudgetWarning,
                    key: format!("budget:{name}:{mark}"),
                    at: now,
                    title: format!("budget {name} at {percent}%"),
                    text: format!("{summary}. Work that would pass the limit waits for the reset; `owl budget set {name} ...` changes it."),
                    command: Some("owl budget".into()),
                    link: None,
                    task_id: charge.task.map(|t| t.0),
                    labels: vec![],
                    group: None,
                    schedule: None,
                    agent: None,
                    attachment: None,
                };
                crate::notify::route_now(s, notice).await;
            }
            _ => {}
        }
    }
}

/// What a coding CLI last reported about its subscription windows.
pub(crate) async fn window_state(s: &Shared, provider: &str) -> Option<WindowState> {
    let v = s.store.kv_get(&format!("budget:window:{provider}")).await.ok()??;
    serde_json::from_str(&v).ok()
}

/// Folds a CLI's report of a window into what owl knows.
pub(crate) async fn record_window(s: &Shared, provider: &str, w: owl_core::budget::WindowReading) {
    let mut state = window_state(s, provider).await.unwrap_or_default();
    state.update(w, s.clock.now());
    if let Err(e) = s.store.kv_set(&format!("budget:window:{provider}"), &serde_json::to_string(&state).unwrap_or_default()).await {
        tracing::warn!(provider, error = %e, "cannot record a subscription window");
    }
}

/// Wakes every task waiting on a budget (a limit was raised or the config reloaded): each
/// asks again and waits again if there is still no room.
pub(crate) async fn wake(s: &Shared) {
    match s.store.wake_budget_waits(s.clock.now()).await {
        Ok(ids) => {
            for id in &ids {
                s.publish(EventKind::TaskChanged { task_id: *id, status: owl_core::task::Status::Queued });
            }
            if !ids.is_empty() {
                let _ = s.commands.send(crate::Command::Wake);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot wake the tasks waiting on budgets"),
    }
}

/// The price of `model` for work not run by the agent runtime (a coding CLI's tokens):
/// `[prices]`, then the shipped table.
pub(crate) fn price_of(s: &Shared, model: &str) -> Option<(Price, owl_core::budget::PriceSource)> {
    match s.agents() {
        Some(rt) => rt.price_of(model),
        None => owl_core::budget::lookup_price(&BTreeMap::new(), &owl_core::budget::price_table(), model),
    }
}

/// A coding CLI run's reservation.
pub(crate) struct CliBudget {
    charge: Charge,
    key: Option<String>,
    /// What the run may spend: the room left in its tightest dollar limit.
    pub usd_cap: Option<f64>,
    reserved_usd: f64,
    reserved_tokens: u64,
}

pub(crate) enum CliAdmission {
    Go(CliBudget),
    Wait { until: Timestamp, scope: String, reason: String },
    Refuse(String),
}

/// The room left in the limited scopes of `charge` on `provider`: dollars and tokens.
async fn room(s: &Shared, charge: &Charge, provider: &str) -> Result<(Option<f64>, Option<u64>), StoreError> {
    let now = s.clock.now();
    let mut scopes = charge.scopes.clone();
    scopes.push(Scope::Provider(provider.to_string()).to_string());
    let limited = limited(s, charge, &scopes).await?;
    if limited.is_empty() {
        return Ok((None, None));
    }
    let since = limited.iter().map(|(_, b)| b.period_start(now)).collect();
    let spend = s.store.spend(limited.iter().map(|(n, _)| n.clone()).collect(), since).await?;
    let (mut usd, mut tokens): (Option<f64>, Option<u64>) = (None, None);
    for ((_, b), sp) in limited.iter().zip(spend) {
        if let Some(max) = b.usd {
            let left = max - sp.usd - sp.reserved_usd;
            usd = Some(usd.map_or(left, |u| u.min(left)));
        }
        if let Some(max) = b.tokens {
            let left = max.saturating_sub(sp.tokens + sp.reserved_tokens);
            tokens = Some(tokens.map_or(left, |t| t.min(left)));
        }
    }
    Ok((usd, tokens))
}

/// Reserves a coding CLI run: all the room its dollar and token limits leave (a run has no
/// estimate; Claude Code is given the dollars as its own cap, and the run settles to what it
/// reported), after its subscription windows are checked.
pub(crate) async fn admit_cli(
    s: &Shared,
    id: TaskId,
    cli: &str,
    format: Option<owl_core::coding::CliFormat>,
) -> Result<CliAdmission, StoreError> {
    let _ = format;
    let charge = charge_for(s, Owner::Task(id), None).await?;
    let (usd_room, tokens_room) = room(s, &charge, cli).await?;
    // A run has no estimate: it holds the room, and is priced when it settles (what Claude
    // Code reports, or the reported tokens at the model's price, or the whole reservation).
    let price = Price::default();
    let usd = usd_room.map(|r| r.max(1e-6)).unwrap_or(0.0);
    let tokens = tokens_room.map(|t| t.max(1)).unwrap_or(0);
    Ok(match reserve(s, &charge, &[cli.to_string()], cli, Some(&price), usd, tokens).await? {
        Verdict::Go(key) => CliAdmission::Go(CliBudget { charge, key, usd_cap: usd_room, reserved_usd: usd, reserved_tokens: tokens }),
        Verdict::Wait { until, scope, reason } => CliAdmission::Wait { until, scope, reason },
        Verdict::Refuse(r) => CliAdmission::Refuse(r),
    })
}

/// What a coding CLI run came to, as its stream told.
pub(crate) struct CliSpend {
    pub usd: f64,
    pub tokens: u64,
    /// It reported usage.
    pub reported: bool,
    /// Some usage came with no cost and a model owl has no price for.
    pub unpriced: bool,
    /// The process started at all.
    pub ran: bool,
}

/// Settles a coding CLI run. A run that never started costs nothing; one that reported its
/// usage is charged it; one that reported nothing (a CLI that never does, or a run cut short
/// before its report), or whose tokens have no price, is charged its whole reservation (the
/// most it may have spent), recorded as owl's own estimate.
pub(crate) async fn settle_cli(s: &Shared, id: TaskId, cli: &str, b: &CliBudget, spend: CliSpend) {
    let Some(key) = &b.key else { return };
    let reported = spend.reported && !spend.unpriced;
    let (usd, tokens) = match (spend.ran, reported) {
        (false, _) => (0.0, 0),
        (true, true) => (spend.usd, spend.tokens),
        (true, false) => (spend.usd.max(b.reserved_usd), spend.tokens.max(b.reserved_tokens)),
    };
    let reported = !spend.ran || reported;
    if !reported && (usd > spend.usd || tokens > spend.tokens) {
        let record = owl_store::UsageRecord {
            owner: Owner::Task(id),
            agent: format!("cli:{cli}"),
            provider: cli.to_string(),
            model: cli.to_string(),
            usage: owl_core::transcript::Usage { input: tokens.saturating_sub(spend.tokens), output: 0, cached: 0 },
            cost_usd: usd - spend.usd,
            price: owl_core::budget::price_label(&owl_core::budget::PriceSource::Estimate),
        };
        let _ = s.store.record_usage(record, s.clock.now()).await;
    }
    if let Err(e) = settle(s, &b.charge, key, cli, usd, tokens).await {
        tracing::warn!(task = %id, error = %e, "cannot settle a coding CLI's budget reservation; it counts at its estimate");
    }
}

impl crate::Engine {
    /// Every scope with a limit (configured, set at run time, or a task's cap that work waits
    /// on): its limits, what it spent and holds, when it resets and what waits on it.
    pub async fn budgets(&self) -> Result<Vec<owl_core::budget::BudgetStatus>, StoreError> {
        use owl_core::budget::BudgetStatus;
        use owl_core::task::{Status, TaskState, WaitReason};
        let s = &self.shared;
        let now = s.clock.now();
        let cfg = s.config().budgets;
        let over = overrides(s).await?;
        let waiting = s.store.list(owl_store::TaskFilter { statuses: vec![Status::Waiting], ..Default::default() }).await?;
        let mut waits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut caps = BTreeMap::new();
        for t in &waiting {
            if let TaskState::Waiting { reason: WaitReason::Budget { scope, .. } } = &t.state {
                waits.entry(scope.clone()).or_default().push(t.id.0);
                // A task's cap is the capped task's own, often a parent of the one waiting.
                if let Some(Ok(capped)) = scope.strip_prefix("task.").map(|i| i.parse::<i64>()) {
                    if let Ok(owner) = s.store.get(TaskId(capped)).await {
                        if let Some(cap) = owner.spec.command.max_cost() {
                            caps.insert(scope.clone(), cap);
                        }
                    }
                }
            }
        }
        let mut names: Vec<String> = cfg.keys().chain(over.keys()).chain(waits.keys()).cloned().collect();
        names.sort();
        names.dedup();
        let mut out = vec![];
        for name in names {
            let Some(b) = effective(&name, &cfg, &over, &caps) else { continue };
            let source = match (cfg.contains_key(&name), over.contains_key(&name), caps.contains_key(&name)) {
                (true, true, _) => "config, set",
                (true, false, _) => "config",
                (false, true, _) => "set",
                (false, false, true) => "task cap",
                _ => "waiting",
            };
            let start = b.period_start(now);
            let sp = s.store.spend(vec![name.clone()], vec![start]).await?.pop().unwrap_or_default();
            let provider = name.strip_prefix("provider.");
            let windows = match (provider, b.window_percent) {
                (Some(p), Some(_)) => window_state(s, p).await,
                _ => None,
            };
            let mut note = String::new();
            if let (Some(_), Some(_)) = (provider, b.window_percent) {
                if windows.as_ref().is_none_or(|w| w.windows.iter().all(|r| r.used_percent.is_none() && !r.rejected)) {
                    // The fallback: owl's own accounting of the runs it made on this subscription.
                    let (h5, d7) =
                        (now.minus(std::time::Duration::from_secs(5 * 3600)), now.minus(std::time::Duration::from_secs(7 * 86400)));
                    let own = s.store.spend(vec![name.clone(), name.clone()], vec![h5, d7]).await?;
                    note = format!(
                        "the CLI has reported no window usage yet, so the window rule cannot be judged; owl's own count of its runs: ${:.2} and {} tokens in the last 5h, ${:.2} and {} tokens in the last 7d",
                        own[0].usd + own[0].reserved_usd,
                        own[0].tokens + own[0].reserved_tokens,
                        own[1].usd + own[1].reserved_usd,
                        own[1].tokens + own[1].reserved_tokens
                    );
                } else {
                    note = "judged from the windows the CLI reported".into();
                }
            }
            out.push(BudgetStatus {
                scope: name.clone(),
                source: source.into(),
                period: b.period.name(),
                tz: b.tz.clone(),
                usd: b.usd,
                tokens: b.tokens,
                spent_usd: sp.usd,
                spent_tokens: sp.tokens,
                reserved_usd: sp.reserved_usd,
                reserved_tokens: sp.reserved_tokens,
                resets_at: b.resets_at(now, sp.oldest),
                warn_at: b.warn_at,
                window_percent: b.window_percent,
                share_now: b.share_now(now),
                windows,
                note,
                waiting: waits.remove(&name).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Sets (or with `None` removes) the run-time limit of `scope`, then wakes every task
    /// waiting on a budget so each asks again.
    pub async fn set_budget(&self, scope: &str, limit: Option<LimitOverride>) -> Result<(), StoreError> {
        let parsed = Scope::parse(scope).map_err(|m| StoreError::Invalid(owl_core::ValidationError::new("scope", &m)))?;
        if let Some(l) = &limit {
            if l.usd.is_none() && l.tokens.is_none() {
                return Err(StoreError::Invalid(owl_core::ValidationError::new("usd", "give usd, tokens or both")));
            }
            if l.usd.is_some_and(|u| !u.is_finite() || !(0.0..=1e9).contains(&u)) {
                return Err(StoreError::Invalid(owl_core::ValidationError::new("usd", "must be a number of dollars, 0 or more")));
            }
            if l.tokens.is_some_and(|t| t > i64::MAX as u64) {
                return Err(StoreError::Invalid(owl_core::ValidationError::new("tokens", format!("must be at most {}", i64::MAX))));
            }
        }
        if let Scope::Task(id) = parsed {
            self.shared.store.get(TaskId(id)).await?;
        }
        let s = &self.shared;
        let mut over = overrides(s).await?;
        match limit {
            Some(l) => {
                over.insert(scope.to_string(), l);
            }
            None => {
                over.remove(scope);
            }
        }
        s.store.kv_set(OVERRIDES_KEY, &serde_json::to_string(&over).unwrap_or_default()).await?;
        wake(s).await;
        Ok(())
    }

    /// What each scope spent in `[since, until)` (settled and held), for `owl usage --by scope`.
    pub async fn spend_by_scope(&self, since: Timestamp, until: Timestamp) -> Result<Vec<ScopeSpend>, StoreError> {
        self.shared.store.spend_by_scope(since, until).await
    }
}
