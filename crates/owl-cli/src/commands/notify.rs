//! `owl notify ...`.

use crate::cli::{NotifyAction, NotifyAddArgs, RuleAction, RuleAddArgs};
use crate::client::Client;
use crate::output::{print_json, table, truncate};
use anyhow::{bail, Result};
use owl_api::notify::*;

fn new_channel(a: NotifyAddArgs) -> NewChannel {
    if let Some(channel) = a.slack {
        return NewChannel { name: a.name, kind: "slack".into(), channel: Some(channel), ..Default::default() };
    }
    match a.webhook {
        Some(url) => NewChannel {
            name: a.name,
            kind: "webhook".into(),
            url: Some(url),
            secret_env: a.secret_env,
            secret: a.secret,
            allow_private: a.allow_private,
            ..Default::default()
        },
        None => NewChannel { name: a.name, kind: "email".into(), to: a.email, ..Default::default() },
    }
}

fn new_rule(a: RuleAddArgs) -> NewRule {
    NewRule {
        on: a.on,
        to: a.to,
        labels: a.label,
        group: a.group,
        schedule: a.schedule,
        agent: a.agent,
        digest: a.digest,
        max_per_hour: a.max_per_hour,
    }
}

/// A rule's filters (`label nightly`, `schedule backup`) and how it sends (`a digest every 1h`).
fn rule_terms(r: &RuleView) -> (Vec<String>, Vec<String>) {
    let mut only: Vec<String> = r.labels.iter().map(|l| format!("label {l}")).collect();
    for (k, v) in [("group", &r.group), ("schedule", &r.schedule), ("agent", &r.agent)] {
        if let Some(v) = v {
            only.push(format!("{k} {v}"));
        }
    }
    let mut how = Vec::new();
    if let Some(d) = &r.digest {
        how.push(format!("a digest every {d}"));
    }
    if let Some(m) = r.max_per_hour {
        how.push(format!("at most {m} an hour"));
    }
    (only, how)
}

fn print_channel(c: &ChannelView) {
    println!("channel {}  {} ({})", c.name, c.kind, c.status);
    println!("  to         {}", c.target);
    if let Some(v) = &c.secret_env {
        println!("  secret     environment variable {v}");
    }
    if let Some(v) = &c.secret {
        println!("  secret     secrets.toml entry {v}");
    }
    if c.allow_private {
        println!("  addresses  private and loopback allowed");
    }
    if let Some(p) = &c.paused {
        println!("  paused     {p}");
    }
    println!("  failures   {} in a row", c.failures);
    if let Some(t) = &c.last_ok_at {
        println!("  last ok    {t}");
    }
    if let Some(e) = &c.last_error {
        println!("  last error {e}");
    }
}

fn print_delivery(d: &DeliveryView) {
    println!("delivery {}  {} to {}: {}", d.id, d.event, d.channel, d.status);
    println!("  {}", d.title);
    for a in &d.log {
        println!("  attempt {} at {}: {} {}", a.n, a.at, if a.ok { "ok" } else { "failed" }, a.answer);
    }
    if let Some(n) = &d.next_at {
        println!("  next try   {n}");
    }
}

pub async fn run(client: &Client, action: NotifyAction, json: bool) -> Result<i32> {
    match action {
        NotifyAction::Add(a) => {
            let c: ChannelView = client.post("/v1/notify/channels", &new_channel(a)).await?;
            if json {
                print_json(&c)
            } else {
                println!("channel {} added: {} {}", c.name, c.kind, c.target);
                println!("next: `owl notify test {}`, then `owl notify rule add --on task_failed --to {}`", c.name, c.name);
            }
        }
        NotifyAction::Ls => {
            let list: ChannelList = client.get("/v1/notify/channels").await?;
            if json {
                print_json(&list);
            } else if list.channels.is_empty() {
                println!("no channels; add one with `owl notify add NAME --email ADDR` or `--webhook URL --secret-env VAR`");
            } else {
                let rows = list
                    .channels
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.kind.clone(),
                            c.status.clone(),
                            truncate(&c.target, 40),
                            c.failures.to_string(),
                            truncate(c.paused.as_deref().or(c.last_error.as_deref()).unwrap_or(""), 60),
                        ]
                    })
                    .collect();
                table(&["NAME", "KIND", "STATUS", "TO", "FAILURES", "NOTE"], rows);
            }
        }
        NotifyAction::Show { name } => {
            let c: ChannelView = client.get(&format!("/v1/notify/channels/{name}")).await?;
            if json {
                print_json(&c)
            } else {
                print_channel(&c)
            }
        }
        NotifyAction::Rm { name } => {
            client.request(reqwest::Method::DELETE, &format!("/v1/notify/channels/{name}"), None::<&()>).await?;
            if json {
                print_json(&serde_json::json!({"removed": name}))
            } else {
                println!("channel {name} removed")
            }
        }
        NotifyAction::Resume { name } => {
            let before: ChannelView = client.get(&format!("/v1/notify/channels/{name}")).await?;
            let c: ChannelView = client.post(&format!("/v1/notify/channels/{name}/resume"), &serde_json::json!({})).await?;
            if json {
                print_json(&c)
            } else if before.paused.is_none() {
                println!("channel {} was not paused; anything waiting for a retry goes out now", c.name)
            } else {
                println!("channel {} resumed; waiting deliveries go out now", c.name)
            }
        }
        NotifyAction::Test { name, timeout } => {
            let limit = owl_core::duration::parse(&timeout).map_err(|m| anyhow::anyhow!("--timeout: {m}"))?;
            let d: DeliveryView = client.post(&format!("/v1/notify/channels/{name}/test"), &serde_json::json!({})).await?;
            let deadline = std::time::Instant::now() + limit;
            let mut last = d;
            loop {
                if last.status == "delivered" || last.status == "dead" || !last.log.is_empty() {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    bail!("no answer from channel {name} within {timeout}; see `owl notify log --channel {name}`");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                last = client.get(&format!("/v1/notify/deliveries/{}", last.id)).await?;
            }
            let ok = last.status == "delivered";
            if json {
                print_json(&last);
            } else {
                let answer = last.log.last().map(|a| a.answer.clone()).unwrap_or_default();
                if ok {
                    println!("sent to {name}: {answer}");
                } else {
                    println!("not sent to {name}: {answer}");
                    if let Some(n) = &last.next_at {
                        println!("owl tries again at {n}; `owl notify log --channel {name}` shows every attempt");
                    }
                }
            }
            return Ok(if ok { 0 } else { 1 });
        }
        NotifyAction::Rule { action } => match action {
            RuleAction::Add(a) => {
                let r: RuleView = client.post("/v1/notify/rules", &new_rule(a)).await?;
                if json {
                    print_json(&r)
                } else {
                    let (only, how) = rule_terms(&r);
                    let terms: Vec<String> = only.into_iter().chain(how).collect();
                    let terms = if terms.is_empty() { String::new() } else { format!(" ({})", terms.join(", ")) };
                    println!("rule {} added: {} to {}{terms}", r.id, r.on.join(", "), r.to.join(", "));
                }
            }
            RuleAction::Ls => {
                let list: RuleList = client.get("/v1/notify/rules").await?;
                if json {
                    print_json(&list);
                } else if list.rules.is_empty() {
                    println!("no rules; add one with `owl notify rule add --on task_failed --to NAME`");
                } else {
                    let rows = list
                        .rules
                        .iter()
                        .map(|r| {
                            let (only, how) = rule_terms(r);
                            vec![r.id.to_string(), r.on.join(","), r.to.join(","), only.join(", "), how.join(", ")]
                        })
                        .collect();
                    table(&["ID", "ON", "TO", "ONLY", "HOW"], rows);
                }
            }
            RuleAction::Rm { id } => {
                client.request(reqwest::Method::DELETE, &format!("/v1/notify/rules/{id}"), None::<&()>).await?;
                if json {
                    print_json(&serde_json::json!({"removed": id}))
                } else {
                    println!("rule {id} removed")
                }
            }
        },
        NotifyAction::Log { failed, channel, task, limit } => {
            let mut q = format!("/v1/notify/deliveries?limit={limit}");
            if failed {
                q.push_str("&failed=true");
            }
            if let Some(c) = &channel {
                q.push_str(&format!("&channel={c}"));
            }
            if let Some(t) = task {
                q.push_str(&format!("&task={t}"));
            }
            let list: DeliveryList = client.get(&q).await?;
            if json {
                print_json(&list);
            } else if list.deliveries.is_empty() {
                println!("no deliveries");
            } else {
                for d in &list.deliveries {
                    print_delivery(d);
                }
            }
        }
    }
    Ok(0)
}
