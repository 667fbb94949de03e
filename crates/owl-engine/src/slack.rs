//! The Slack app: a Socket Mode connection (supervised, made again when Slack asks, when it
//! breaks, or when it goes quiet past `[slack] idle_timeout`) that takes `/owl` commands and
//! button presses. Every envelope is acknowledged first and handled after, so Slack's three
//! seconds are never at risk; an envelope Slack sends again is acknowledged and not handled
//! twice. Only users in `[slack] allow_users` may change anything.
//!
//! A task added from Slack carries the label `slack:<channel>`, and a Slack notification
//! channel `slack-<channel>` is made for it, so its outcome comes back to where it was asked,
//! through the outbox like any notice, threaded under the task's first message.

use crate::{Engine, Shared};
use owl_core::notify::{ChannelSpec, Target};
use owl_core::{Command, TaskId, TaskSpec};
use owl_store::{NewTask, StoreError, TaskFilter};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// The kv key of a task's first Slack message in a channel: replies thread under it.
pub(crate) fn thread_key(channel: &str, task: i64) -> String {
    format!("slack.thread.{channel}.{task}")
}

/// The notification channel a Slack conversation gets for the tasks added from it.
pub(crate) fn origin_channel(conversation: &str) -> String {
    format!("slack-{}", conversation.to_ascii_lowercase())
}

pub(crate) fn bot(s: &Shared) -> Result<owl_notify::slack::WebApi, String> {
    let cfg = s.config();
    let sl = &cfg.slack;
    let token = cfg
        .notify_secrets
        .lookup(Some(sl.bot_token_env.as_str()).filter(|_| sl.bot_token_secret.is_empty()), Some(sl.bot_token_secret.as_str()))
        .map_err(|e| format!("the Slack bot token: {e}"))?;
    owl_notify::slack::WebApi::new(&sl.api_url, &token, cfg.notify.timeout)
}

fn app(s: &Shared) -> Result<owl_notify::slack::WebApi, String> {
    let cfg = s.config();
    let sl = &cfg.slack;
    let token = cfg
        .notify_secrets
        .lookup(Some(sl.app_token_env.as_str()).filter(|_| sl.app_token_secret.is_empty()), Some(sl.app_token_secret.as_str()))
        .map_err(|e| format!("the Slack app-level token: {e}"))?;
    owl_notify::slack::WebApi::new(&sl.api_url, &token, cfg.notify.timeout)
}

pub(crate) async fn slack_loop(s: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    let mut seen: VecDeque<String> = VecDeque::new();
    loop {
        if !s.config().slack.enabled {
            if !crate::sleep_unless_stopped(Duration::from_secs(5), &mut stop).await {
                return;
            }
            continue;
        }
        s.loops.busy("slack");
        let session = async {
            let url = app(&s)?.open_connection().await?;
            let mut ws = owl_notify::slack::SocketMode::connect(&url).await?;
            tracing::info!("connected to Slack (Socket Mode)");
            loop {
                s.loops.idle("slack");
                let next = tokio::select! {
                    n = ws.next(s.config().slack.idle_timeout) => n?,
                    _ = stop.changed() => return Ok::<bool, String>(true),
                };
                s.loops.busy("slack");
                let Some(env) = next else {
                    tracing::info!("Slack's connection closed or went quiet; connecting again");
                    return Ok(false);
                };
                if env.kind == "disconnect" {
                    tracing::info!(reason = env.reason.as_deref().unwrap_or_default(), "Slack asked to reconnect");
                    return Ok(false);
                }
                let Some(id) = env.envelope_id.clone() else { continue };
                ws.ack(&id).await?;
                if seen.contains(&id) {
                    tracing::debug!(envelope = %id, retry = env.retry_attempt, "a Slack envelope again; already handled");
                    continue;
                }
                seen.push_back(id);
                if seen.len() > 1000 {
                    seen.pop_front();
                }
                let s2 = s.clone();
                tokio::spawn(async move { handle(&s2, &env.kind, &env.payload).await });
            }
        };
        match session.await {
            Ok(true) => return,
            Ok(false) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, wait = ?backoff, "Slack connection failed; trying again");
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        s.loops.idle("slack");
        if !crate::sleep_unless_stopped(backoff, &mut stop).await {
            return;
        }
    }
}

async fn handle(s: &Arc<Shared>, kind: &str, p: &serde_json::Value) {
    let (user, text, response_url, conversation, action) = match kind {
        "slash_commands" => (
            p["user_id"].as_str().unwrap_or_default().to_string(),
            p["text"].as_str().unwrap_or_default().trim().to_string(),
            p["response_url"].as_str().unwrap_or_default().to_string(),
            p["channel_id"].as_str().unwrap_or_default().to_string(),
            None,
        ),
        "interactive" if p["type"] == "block_actions" => {
            let a = &p["actions"][0];
            (
                p["user"]["id"].as_str().unwrap_or_default().to_string(),
                String::new(),
                p["response_url"].as_str().unwrap_or_default().to_string(),
                p["channel"]["id"].as_str().unwrap_or_default().to_string(),
                Some((a["action_id"].as_str().unwrap_or_default().to_string(), a["value"].as_str().unwrap_or_default().to_string())),
            )
        }
        _ => return,
    };
    let engine = Engine { shared: s.clone() };
    let reply = match action {
        Some((action, value)) => match action.as_str() {
            "owl_approve" => command(&engine, &user, &conversation, &format!("approve {value}")).await,
            "owl_deny" => command(&engine, &user, &conversation, &format!("deny {value}")).await,
            "owl_retry" => command(&engine, &user, &conversation, &format!("retry {value}")).await,
            _ => return,
        },
        None => command(&engine, &user, &conversation, &text).await,
    };
    let (text, in_channel) = match reply {
        Ok(r) => r,
        Err(e) => (e, false),
    };
    if response_url.is_empty() {
        return;
    }
    match bot(s) {
        Ok(b) => {
            if let Err(e) = b.respond(&response_url, &text, in_channel).await {
                tracing::warn!(error = %e, "cannot answer a Slack command");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot answer a Slack command"),
    }
}

const HELP: &str = "`/owl ls` the latest tasks · `/owl status` counts · `/owl show ID` one task · `/owl add [--agent NAME] PROMPT` hand the agent a task (its outcome comes back here) · `/owl approve ID` · `/owl deny ID [reason]` · `/owl retry ID`";

fn task_id(arg: Option<&str>) -> Result<TaskId, String> {
    arg.map(|a| a.trim_start_matches('#'))
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map(TaskId)
        .ok_or_else(|| "give a task id, like `/owl show 12`".into())
}

fn err(e: StoreError) -> String {
    e.to_string()
}

/// One `/owl` command: the answer, and whether the whole channel sees it.
pub(crate) async fn command(engine: &Engine, user: &str, conversation: &str, text: &str) -> Result<(String, bool), String> {
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or("help");
    let allowed = engine.shared.config().slack.allow_users.iter().any(|u| u == user);
    let changes = matches!(verb, "add" | "approve" | "deny" | "retry" | "cancel");
    if changes && !allowed {
        return Err(format!(
            "<@{user}> may not change anything here: ask an owl admin to add your member id ({user}) to [slack] allow_users"
        ));
    }
    let store = engine.store();
    match verb {
        "ls" => {
            let tasks = store.list(TaskFilter { limit: Some(10), ..Default::default() }).await.map_err(err)?;
            if tasks.is_empty() {
                return Ok(("no tasks yet".into(), false));
            }
            let lines: Vec<String> = tasks
                .iter()
                .map(|t| {
                    format!(
                        "`{}` {} {}",
                        t.id.0,
                        t.state.status().as_str(),
                        owl_notify::slack::escape(&t.spec.command.display().chars().take(80).collect::<String>())
                    )
                })
                .collect();
            Ok((lines.join("\n"), false))
        }
        "status" => {
            let c = store.counts().await.map_err(err)?;
            let parts: Vec<String> = c.0.iter().map(|(k, v)| format!("{} {v}", k.as_str())).collect();
            Ok((if parts.is_empty() { "no tasks".into() } else { parts.join(" · ") }, false))
        }
        "show" => {
            let id = task_id(words.next())?;
            let t = store.get(id).await.map_err(err)?;
            let mut out =
                format!("task `{}` {}: {}", id.0, t.state.status().as_str(), owl_notify::slack::escape(&t.spec.command.display()));
            if let Ok(Some(r)) = store.task_result(id).await {
                out.push_str(&format!("\n>{}", owl_notify::slack::escape(&r.chars().take(1500).collect::<String>()).replace('\n', "\n>")));
            }
            Ok((out, false))
        }
        "add" => {
            let mut rest: Vec<&str> = words.collect();
            let mut agent = "default".to_string();
            if rest.first() == Some(&"--agent") && rest.len() >= 2 {
                agent = rest[1].to_string();
                rest.drain(..2);
            }
            let prompt = rest.join(" ");
            if prompt.is_empty() {
                return Err("what should the agent do? `/owl add Summarise the open issues`".into());
            }
            let mut spec = TaskSpec::new(Command::agent(agent.clone(), prompt.clone()));
            if owl_core::notify::slack_channel_id(conversation) {
                spec.labels.push(format!("slack:{conversation}"));
            }
            owl_core::validate::check_spec(&spec).map_err(|e| e.to_string())?;
            let id = engine.submit(vec![NewTask::new(spec)]).await.map_err(err)?[0].id;
            // The outcome comes back to this conversation, threaded under the first message.
            if owl_core::notify::slack_channel_id(conversation) {
                let name = origin_channel(conversation);
                if store.get_channel(&name).await.is_err() {
                    let spec = ChannelSpec { name, target: Target::Slack { channel: conversation.to_string() } };
                    if let Err(e) = engine.create_channel(spec).await {
                        tracing::warn!(error = %e, "cannot make the Slack channel for a task's outcome");
                    }
                }
                if let Ok(b) = bot(&engine.shared) {
                    let text = format!("task {} queued for agent {agent} by <@{user}>: {}", id.0, owl_notify::slack::escape(&prompt));
                    let blocks = owl_notify::slack::blocks(&text, "", Some(&format!("owl show {}", id.0)), &[]);
                    match b.post(conversation, &text, &blocks, None).await {
                        Ok(ts) => {
                            let _ = store.kv_set(&thread_key(conversation, id.0), &ts).await;
                        }
                        Err(e) => tracing::warn!(answer = %e.answer(), "cannot post a task's first Slack message"),
                    }
                }
            }
            Ok((format!("task {} queued; `/owl show {}`", id.0, id.0), false))
        }
        "approve" | "deny" => {
            let n = words
                .next()
                .and_then(|a| a.trim_start_matches('#').parse::<i64>().ok())
                .ok_or("give an approval id, like `/owl approve 3`")?;
            let reason = words.collect::<Vec<_>>().join(" ");
            let approve = verb == "approve";
            let by = format!("by <@{user}> in Slack");
            let reason = if reason.is_empty() { Some(by.clone()) } else { Some(format!("{reason} ({by})")) };
            let a = engine.decide_approval(n, approve, reason).await.map_err(err)?;
            Ok((format!("approval {} {} {by}: {} wanted {}", a.id, if approve { "approved" } else { "denied" }, a.agent, a.tool), true))
        }
        "retry" => {
            let id = task_id(words.next())?;
            engine.retry(id).await.map_err(err)?;
            Ok((format!("task {} queued again by <@{user}>", id.0), true))
        }
        _ => Ok((HELP.into(), false)),
    }
}
