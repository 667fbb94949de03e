//! `owl messages` and `owl agents state`: the team's mailboxes and each agent's state.

use crate::cli::{AgentsAction, MessagesAction, StateOp};
use crate::client::Client;
use crate::output::{print_json, table, truncate};
use anyhow::Result;
use owl_api::*;

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub async fn messages(
    client: &Client,
    agent: Option<String>,
    task: Option<String>,
    thread: Option<String>,
    limit: u32,
    action: Option<MessagesAction>,
    json: bool,
) -> Result<()> {
    if let Some(MessagesAction::Send { to, text, kind, thread }) = action {
        let req = SendMessage { to, content: text.join(" "), kind: Some(kind), thread, reply_to: None };
        let m: MessageView = client.post("/v1/messages", &req).await?;
        if json {
            print_json(&m);
        } else {
            let to: Vec<&str> = m.deliveries.iter().map(|d| d.to.as_str()).collect();
            println!("message {} sent to {} (thread {})", m.id, to.join(", "), m.thread);
        }
        return Ok(());
    }
    let mut q = vec![format!("limit={limit}")];
    if let Some(a) = agent {
        q.push(format!("agent={}", enc(&a)));
    }
    if let Some(t) = task {
        let id: owl_core::TaskId = t.parse().map_err(|m: String| anyhow::anyhow!("--task: {m}"))?;
        q.push(format!("task={id}"));
    }
    if let Some(t) = thread {
        q.push(format!("thread={}", enc(t.trim_start_matches('#'))));
    }
    let list: MessageList = client.get(&format!("/v1/messages?{}", q.join("&"))).await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    if list.messages.is_empty() {
        println!("no messages");
        return Ok(());
    }
    for m in &list.messages {
        let deliveries: Vec<String> = m.deliveries.iter().map(|d| format!("{} {}", d.to, d.state)).collect();
        let from = match m.sender_task {
            Some(t) => format!("{} (task {t})", m.sender),
            None => m.sender.clone(),
        };
        let reply = m.reply_to.map(|r| format!(", reply to {r}")).unwrap_or_default();
        println!(
            "#{} {} {} -> {} [{}{reply}] thread {}",
            m.id,
            &m.created_at[..19.min(m.created_at.len())],
            from,
            m.recipient,
            m.kind,
            m.thread
        );
        for line in m.content.lines() {
            println!("    {line}");
        }
        for a in &m.attachments {
            println!("    attachment {} ({} bytes) {}", a.name, a.bytes, a.path);
        }
        println!("    deliveries: {}", if deliveries.is_empty() { "none".into() } else { deliveries.join(", ") });
    }
    Ok(())
}

pub async fn agents_action(client: &Client, action: AgentsAction, json: bool) -> Result<()> {
    let AgentsAction::State { agent, op } = action;
    if let Some(StateOp::Get { key } | StateOp::Set { key, .. } | StateOp::Rm { key, .. }) = &op {
        if key.is_empty() || key == "." || key == ".." {
            anyhow::bail!("`{key}` is not a state key; use 1 to 128 characters, none of them a control character, other than . and ..");
        }
    }
    let base = format!("/v1/agents/{}/state", enc(&agent));
    match op.unwrap_or(StateOp::Ls) {
        StateOp::Ls => {
            let v: AgentStateView = client.get(&base).await?;
            if json {
                print_json(&v);
            } else if v.state.is_empty() {
                println!("agent {agent} has no state yet");
            } else {
                let rows =
                    v.state.iter().map(|e| vec![e.key.clone(), e.version.to_string(), truncate(&e.value.replace('\n', " "), 70)]).collect();
                table(&["KEY", "VERSION", "VALUE"], rows);
            }
        }
        StateOp::Get { key } => {
            let v: AgentStateView = client.get(&base).await?;
            match v.state.into_iter().find(|e| e.key == key) {
                Some(e) if json => print_json(&e),
                Some(e) => println!("{}", e.value),
                None => anyhow::bail!("agent `{agent}` has no state `{key}`; see `owl agents state {agent}`"),
            }
        }
        StateOp::Set { key, value, if_version: version } => {
            let e: StateEntryView = client.put(&format!("{base}/{}", enc(&key)), &PutState { value, version }).await?;
            if json {
                print_json(&e);
            } else {
                println!("{agent}: {} is at version {}", e.key, e.version);
            }
        }
        StateOp::Rm { key, if_version: version } => {
            let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let v: AgentStateView =
                client.request(reqwest::Method::DELETE, &format!("{base}/{}{q}", enc(&key)), None::<&()>).await?.json().await?;
            if json {
                print_json(&v);
            } else {
                println!("{agent}: removed {key}");
            }
        }
    }
    Ok(())
}
