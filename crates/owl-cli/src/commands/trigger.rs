//! `owl trigger ...`.

use crate::cli::{TaskTagArgs, TriggerAction, TriggerAddArgs};
use crate::client::Client;
use crate::output::{now, print_json, relative, table, truncate};
use anyhow::Result;
use owl_api::trigger::{CreateTrigger, TriggerHistory, TriggerList, TriggerView};

fn build(a: TriggerAddArgs) -> Result<CreateTrigger> {
    let on_task = if a.on_task_succeeded {
        Some("succeeded")
    } else if a.on_task_failed {
        Some("failed")
    } else if a.on_task_finished {
        Some("finished")
    } else {
        None
    };
    let task = crate::commands::add::build_task(a.task, TaskTagArgs { group: a.task_group, label: a.task_label })?;
    let watch = match a.watch {
        Some(p) => Some(std::path::absolute(&p)?.display().to_string()),
        None => None,
    };
    Ok(CreateTrigger {
        condition: a.condition,
        probe: a.probe,
        every: a.every,
        cooldown: a.cooldown,
        watch,
        events: a.watch_on,
        glob: a.glob,
        debounce: a.debounce,
        name: a.name,
        webhook: a.webhook,
        secret_env: a.secret_env,
        on_task: on_task.map(str::to_string),
        label: a.label,
        group: a.group,
        schedule: a.schedule,
        rate_limit: a.rate_limit,
        max_chain_depth: a.max_chain_depth,
        task,
    })
}

fn print_view(v: &TriggerView) {
    println!("trigger {}  {}", v.name, if v.enabled { "enabled" } else { "disabled" });
    println!("  on         {}", v.describe);
    if let Some(p) = &v.hook_path {
        println!("  endpoint   POST {p}");
    }
    println!("  command    {}", v.display);
    if let Some(r) = v.rate_limit {
        println!("  rate limit {} per {}", r.max, owl_core::duration::format(std::time::Duration::from_millis(r.per_ms)));
    }
    println!("  chain      at most {} deep", v.max_chain_depth);
    println!(
        "  fired      {} (refused {}){}",
        v.fired,
        v.refused,
        v.last_fired_at.map(|t| format!(", last {}", relative(t, now()))).unwrap_or_default()
    );
}

pub async fn run(client: &Client, action: TriggerAction, json: bool) -> Result<()> {
    let simple = |v: TriggerView| {
        if json {
            print_json(&v)
        } else {
            print_view(&v)
        }
    };
    match action {
        TriggerAction::Add(a) => {
            let v: TriggerView = client.post("/v1/triggers", &build(a)?).await?;
            if json {
                print_json(&v)
            } else {
                println!("trigger {} created: {}", v.name, v.describe);
                if let Some(p) = &v.hook_path {
                    println!("deliveries: POST {p} signed with X-Hub-Signature-256 or X-Slack-Signature");
                }
            }
        }
        TriggerAction::Ls => {
            let list: TriggerList = client.get("/v1/triggers").await?;
            if json {
                print_json(&list);
            } else if list.triggers.is_empty() {
                println!("no triggers");
            } else {
                let rows = list
                    .triggers
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            if v.enabled { "enabled" } else { "disabled" }.to_string(),
                            truncate(&v.describe, 50),
                            v.fired.to_string(),
                            v.refused.to_string(),
                            v.last_fired_at.map(|t| relative(t, now())).unwrap_or_else(|| "never".into()),
                            truncate(&v.display, 40),
                        ]
                    })
                    .collect();
                table(&["NAME", "STATE", "ON", "FIRED", "REFUSED", "LAST", "COMMAND"], rows);
            }
        }
        TriggerAction::Show { name } => simple(client.get(&format!("/v1/triggers/{name}")).await?),
        TriggerAction::Enable { name } => simple(client.post(&format!("/v1/triggers/{name}/enable"), &serde_json::json!({})).await?),
        TriggerAction::Disable { name } => simple(client.post(&format!("/v1/triggers/{name}/disable"), &serde_json::json!({})).await?),
        TriggerAction::History { name, limit } => {
            let h: TriggerHistory = client.get(&format!("/v1/triggers/{name}/history?limit={limit}")).await?;
            if json {
                print_json(&h);
            } else if h.history.is_empty() {
                println!("no events yet");
            } else {
                let rows = h
                    .history
                    .iter()
                    .map(|f| {
                        vec![
                            f.at.to_string(),
                            f.outcome.clone(),
                            f.task_id.map(|t| t.to_string()).unwrap_or_default(),
                            truncate(&f.source, 40),
                            f.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(&["AT", "OUTCOME", "TASK", "SOURCE", "REASON"], rows);
            }
        }
        TriggerAction::Rm { name } => {
            client.request(reqwest::Method::DELETE, &format!("/v1/triggers/{name}"), None::<&()>).await?;
            if json {
                print_json(&serde_json::json!({"removed": name}))
            } else {
                println!("trigger {name} removed")
            }
        }
    }
    Ok(())
}
