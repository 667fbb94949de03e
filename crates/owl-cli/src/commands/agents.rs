//! `owl agents`, `owl transcript`, `owl chat`, `owl approvals`, `owl approve`, `owl deny`, `owl usage`, `owl anomalies`, `owl report`, `owl dashboard`.

use crate::client::Client;
use crate::output::{now, print_json, relative, table, truncate};
use anyhow::{bail, Context, Result};
use owl_api::*;
use owl_core::TaskId;
use std::io::{BufRead, Write};

pub async fn agents(client: &Client, status: bool, json: bool) -> Result<()> {
    let list: AgentList = client.get("/v1/agents").await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    if list.agents.is_empty() {
        println!("no agents: configure a provider and an agent (see `owl config init`), or fetch a local model with scripts/fetch-models");
        return Ok(());
    }
    if status {
        let rows = list
            .agents
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    if a.available { "available".into() } else { "busy".into() },
                    match a.max_concurrent {
                        Some(m) => format!("{}/{m}", a.running),
                        None => a.running.to_string(),
                    },
                    a.queued.to_string(),
                    a.last_active
                        .as_deref()
                        .and_then(|t| owl_core::Timestamp::parse_rfc3339(t).ok())
                        .map(|t| relative(t, now()))
                        .unwrap_or_else(|| "never".into()),
                    a.unread.to_string(),
                ]
            })
            .collect();
        table(&["AGENT", "STATE", "RUNNING", "QUEUED", "LAST ACTIVE", "UNREAD"], rows);
        return Ok(());
    }
    let rows = list
        .agents
        .iter()
        .map(|a| {
            let caps = if a.capabilities.is_empty() { "-".to_string() } else { a.capabilities.join(",") };
            vec![
                a.name.clone(),
                match &a.cli {
                    Some(cli) => format!("cli:{cli}"),
                    None => format!("{}:{}", a.provider, a.model),
                },
                format!("{caps} [{}-{}]", a.complexity[0], a.complexity[1]),
                a.tools.join(","),
                a.max_steps.to_string(),
                a.max_cost_usd.map(|c| format!("${c}")).unwrap_or_else(|| "-".into()),
                a.problem.clone().unwrap_or_else(|| truncate(&a.description, 50)),
            ]
        })
        .collect();
    table(&["AGENT", "MODEL", "CAPABILITIES", "TOOLS", "STEPS", "COST CAP", "NOTE"], rows);
    Ok(())
}

fn first_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    if lines.len() <= n {
        return s.to_string();
    }
    format!("{}\n… ({} more lines; --full shows all)", lines[..n].join("\n"), lines.len() - n)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

pub fn print_transcript(t: &TranscriptView, full: bool) {
    use owl_core::transcript::Entry;
    for e in &t.entries {
        let head = format!("[{}] {}", e.seq, &e.at[11..19.min(e.at.len())]);
        match &e.body {
            Entry::System { content } => {
                println!("{head} system\n{}", indent(&first_lines(content, if full { usize::MAX } else { 3 })))
            }
            Entry::User { content, .. } => println!("{head} user\n{}", indent(content)),
            Entry::Assistant(r) => {
                let u = r.usage.unwrap_or_default();
                println!(
                    "{head} assistant  ({} via {}, {} in / {} out tokens, ${:.6}, {} ms)",
                    r.model.as_deref().unwrap_or("?"),
                    r.provider.as_deref().unwrap_or("?"),
                    u.input,
                    u.output,
                    r.cost_usd,
                    r.ms.unwrap_or(0)
                );
                if !r.content.is_empty() {
                    println!("{}", indent(&r.content));
                }
                for c in &r.tool_calls {
                    println!("    → {}({})  [{}]", c.name, c.arguments, c.id);
                }
            }
            Entry::Tool { name, content, is_error, ms, .. } => {
                let mark = if *is_error { "error" } else { "ok" };
                println!(
                    "{head} {name} {mark}  ({} ms)\n{}",
                    ms.unwrap_or(0),
                    indent(&if full { content.to_string() } else { first_lines(content, 8) })
                );
            }
            Entry::Note { text, .. } => println!("{head} note: {text}"),
        }
    }
}

pub async fn transcript(client: &Client, id: &str, full: bool, json: bool) -> Result<()> {
    let id: TaskId = id.parse().map_err(|m: String| anyhow::anyhow!(m))?;
    let t: TranscriptView = client.get(&format!("/v1/tasks/{id}/transcript")).await?;
    if json {
        print_json(&t);
    } else if t.entries.is_empty() {
        println!("task {id} has no transcript (only agent tasks have one; it starts when the task does)");
    } else {
        print_transcript(&t, full);
    }
    Ok(())
}

pub async fn approvals(client: &Client, all: bool, json: bool) -> Result<()> {
    let list: ApprovalList = client.get(&format!("/v1/approvals{}", if all { "?all=true" } else { "" })).await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    if list.approvals.is_empty() {
        println!("{}", if all { "no approval requests" } else { "nothing waits for approval" });
        return Ok(());
    }
    let rows = list
        .approvals
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.owner.clone(),
                a.agent.clone(),
                a.tool.clone(),
                truncate(&a.arguments.to_string(), 60),
                a.status.clone(),
                truncate(a.decision_reason.as_deref().unwrap_or(&a.reason), 50),
            ]
        })
        .collect();
    table(&["ID", "FOR", "AGENT", "TOOL", "CALL", "STATUS", "WHY"], rows);
    Ok(())
}

pub async fn decide(client: &Client, id: &str, approve: bool, reason: Option<String>, json: bool) -> Result<()> {
    let id = id.trim_start_matches('#');
    let path = format!("/v1/approvals/{id}/{}", if approve { "approve" } else { "deny" });
    let a: ApprovalView = client.post(&path, &Decide { reason }).await?;
    if json {
        print_json(&a);
    } else {
        println!("approval {} {} ({} on {})", a.id, a.status, a.tool, a.owner);
    }
    Ok(())
}

pub async fn usage(client: &Client, by: &str, since: &str, json: bool) -> Result<()> {
    let r: UsageReport = client.get(&format!("/v1/usage?by={by}&since={since}")).await?;
    if json {
        print_json(&r);
        return Ok(());
    }
    let by_scope = by == "scope";
    let by_model = by == "model";
    let fmt = |u: &UsageRowView| {
        let mut row = vec![u.key.clone(), u.calls.to_string()];
        if by_scope {
            row.push(u.tokens.to_string());
        } else {
            row.extend([u.input_tokens.to_string(), u.output_tokens.to_string(), u.cached_tokens.to_string()]);
        }
        row.push(format!("${:.4}", u.cost_usd));
        if by_model {
            row.push(if u.price.is_empty() { "-".into() } else { u.price.clone() });
        }
        row
    };
    let mut rows: Vec<Vec<String>> = r.rows.iter().map(fmt).collect();
    rows.push(fmt(&r.total));
    let upper = by.to_uppercase();
    let mut head: Vec<&str> = vec![&upper, if by_scope { "ENTRIES" } else { "CALLS" }];
    if by_scope {
        head.push("TOKENS");
    } else {
        head.extend(["INPUT", "OUTPUT", "CACHED"]);
    }
    head.push("COST");
    if by_model {
        head.push("PRICE");
    }
    table(&head, rows);
    if by_scope {
        println!("(each call counts in every scope it was charged to; the total is the global scope)");
    }
    Ok(())
}

pub struct AnomalyArgs {
    pub since: String,
    pub scope: Option<String>,
    pub subject: Option<String>,
    pub task: Option<String>,
    pub limit: u32,
}

pub async fn anomalies(client: &Client, a: AnomalyArgs, json: bool) -> Result<()> {
    let mut q = vec![("since", a.since.clone()), ("limit", a.limit.to_string())];
    if let Some(s) = a.scope {
        q.push(("scope", s));
    }
    if let Some(s) = a.subject {
        q.push(("subject", s));
    }
    if let Some(t) = a.task {
        q.push(("task", t.trim_start_matches('#').to_string()));
    }
    let mut url = reqwest::Url::parse("http://owl/v1/anomalies").expect("a fixed URL parses");
    url.query_pairs_mut().extend_pairs(&q);
    let list: AnomalyList = client.get(&format!("{}?{}", url.path(), url.query().unwrap_or_default())).await?;
    if json {
        print_json(&list);
        return Ok(());
    }
    if list.anomalies.is_empty() {
        println!("no anomalies in the last {}", a.since);
        return Ok(());
    }
    let rows = list
        .anomalies
        .iter()
        .map(|x| {
            let at = owl_core::Timestamp::parse_rfc3339(&x.at).map(|t| relative(t, now())).unwrap_or_else(|_| x.at.clone());
            vec![x.id.to_string(), at, format!("{} (attempt {})", x.task_id, x.attempt), x.summary.clone()]
        })
        .collect();
    table(&["ID", "AT", "TASK", "WHAT"], rows);
    if list.next_before.is_some() {
        println!("(the newest {}; more with --limit)", list.anomalies.len());
    }
    Ok(())
}

/// `owl dashboard`: a one-time sign-in link, opened in the browser (or printed).
pub async fn dashboard(client: &Client, print: bool, json: bool) -> Result<()> {
    let link: DashboardLink = client.post("/v1/dashboard/link", &serde_json::json!({})).await?;
    if json {
        print_json(&link);
        return Ok(());
    }
    let opened = !print
        && std::process::Command::new("xdg-open")
            .arg(&link.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if opened {
        println!("opened the dashboard in your browser (the link works once, for {} minutes)", link.expires_in_s / 60);
    } else {
        println!("{}", link.url);
        eprintln!("open it in a browser on this machine; it works once, for {} minutes", link.expires_in_s / 60);
    }
    Ok(())
}

/// `owl report daily|performance`: the daemon renders, this writes the bytes where asked.
pub async fn report(client: &Client, action: crate::cli::ReportAction, json: bool) -> Result<()> {
    use crate::cli::ReportAction;
    let out = match &action {
        ReportAction::Daily { out, .. } | ReportAction::Performance { out, .. } => out,
    };
    let by_name = out.out.as_ref().and_then(|p| p.extension()).and_then(|e| e.to_str()).and_then(|e| match e {
        "md" | "markdown" => Some("md"),
        "html" | "htm" => Some("html"),
        "pdf" => Some("pdf"),
        "json" => Some("json"),
        _ => None,
    });
    let format = out.format.clone().or(by_name.map(String::from)).unwrap_or_else(|| if json { "json".into() } else { "md".into() });
    let (path, out) = match action {
        ReportAction::Daily { date, out } => (format!("/v1/reports/daily?date={}&format={format}", enc(&date)), out),
        ReportAction::Performance { since, out } => (format!("/v1/reports/performance?since={}&format={format}", enc(&since)), out),
    };
    if out.out.is_none() && format == "pdf" && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("a PDF is not for the terminal; write it to a file with --out report.pdf");
    }
    let bytes = client.request(reqwest::Method::GET, &path, None::<&()>).await?.bytes().await?;
    match out.out {
        Some(file) => {
            let mut tmp = file.clone().into_os_string();
            tmp.push(".partial");
            let tmp = std::path::PathBuf::from(tmp);
            std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!("wrote {} ({} bytes)", file.display(), bytes.len());
        }
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

fn enc(s: &str) -> String {
    let mut url = reqwest::Url::parse("http://owl/").expect("a fixed URL parses");
    url.query_pairs_mut().append_pair("v", s);
    url.query().unwrap_or_default().trim_start_matches("v=").to_string()
}

/// Sends one message and prints the streamed reply; returns the answer.
async fn send(client: &Client, chat: i64, message: &str, json: bool) -> Result<String> {
    let resp = client
        .request(reqwest::Method::POST, &format!("/v1/chats/{chat}/messages"), Some(&ChatMessage { message: message.into() }))
        .await?;
    let mut reader = owl_agent::sse::SseReader::new(Box::pin(resp.bytes_stream()));
    let mut out = std::io::stdout();
    let mut answer = String::new();
    while let Some(ev) = reader.next().await.map_err(|e| anyhow::anyhow!(e))? {
        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
        if json {
            println!("{}", serde_json::json!({"event": ev.event, "data": v}));
        }
        match ev.event.as_deref() {
            Some("delta") if !json => {
                let _ = write!(out, "{}", v["text"].as_str().unwrap_or(""));
                let _ = out.flush();
            }
            Some("tool") if !json => println!("\n  [{}]", v["name"].as_str().unwrap_or("tool")),
            Some("done") => {
                answer = v["answer"].as_str().unwrap_or("").to_string();
                break;
            }
            Some("error") => bail!("{}", v["error"].as_str().unwrap_or("the chat turn failed")),
            _ => {}
        }
    }
    if !json {
        println!();
    }
    Ok(answer)
}

pub async fn cancel_chat(client: &Client, id: i64, json: bool) -> Result<()> {
    let r: owl_api::ChatCancelled = client.post(&format!("/v1/chats/{id}/cancel"), &serde_json::json!({})).await?;
    if json {
        print_json(&r);
    } else {
        println!("chat {id}: the running turn was cancelled");
    }
    Ok(())
}

pub async fn chat(
    client: &Client,
    agent: Option<String>,
    resume: Option<i64>,
    list: bool,
    message: Option<String>,
    json: bool,
) -> Result<()> {
    if list {
        let l: ChatList = client.get("/v1/chats").await?;
        if json {
            print_json(&l);
        } else {
            table(
                &["ID", "AGENT", "TITLE", "UPDATED"],
                l.chats.iter().map(|c| vec![c.id.to_string(), c.agent.clone(), truncate(&c.title, 50), c.updated_at.clone()]).collect(),
            );
        }
        return Ok(());
    }
    let chat = match resume {
        Some(id) => {
            let t: TranscriptView = client.get(&format!("/v1/chats/{id}")).await?;
            if !json && message.is_none() {
                print_transcript(&t, false);
            }
            id
        }
        None => {
            let c: ChatView = client.post("/v1/chats", &CreateChat { agent }).await?;
            if !json && message.is_none() {
                println!("chat {} with {} (resume later with `owl chat --resume {}`; Ctrl-D ends)", c.id, c.agent, c.id);
            }
            c.id
        }
    };
    if let Some(m) = message {
        send(client, chat, &m, json).await?;
        return Ok(());
    }
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush().ok();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("cannot read the terminal")? == 0 {
            println!();
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = send(client, chat, line.trim(), json).await {
            eprintln!("error: {e:#}");
        }
    }
}
