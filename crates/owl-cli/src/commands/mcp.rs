//! `owl mcp`: owl's MCP server on stdio, and the MCP servers owl's agents use.

use crate::cli::{McpAction, McpAdhoc};
use crate::client::Client;
use crate::output::{print_json, table};
use anyhow::{anyhow, Result};
use async_trait::async_trait;
use owl_api::{McpCallReply, McpToolView};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The daemon over HTTP, found through the data dir at each call, so `owl mcp serve` can be
/// started before the daemon (a client launches it at its own start) and outlives a restart.
struct Daemon {
    data_dir: PathBuf,
}

#[async_trait]
impl owl_mcp::Backend for Daemon {
    async fn send(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<owl_mcp::Reply, String> {
        let client = Client::connect(&self.data_dir).map_err(|e| e.to_string())?;
        let (status, body) = client.raw(method, path, body).await.map_err(|e| e.to_string())?;
        Ok(owl_mcp::Reply { status, body })
    }
}

pub async fn serve(config: (PathBuf, bool), data_dir: &Path, approvals: bool) -> Result<()> {
    let settings = crate::settings::load(&config.0, config.1)?;
    if approvals && !settings.mcp.allow_approvals {
        return Err(anyhow!(
            "--approvals needs `[mcp] allow_approvals = true` in {}: deciding approvals from another agent defeats them, so the config must say so",
            config.0.display()
        ));
    }
    let scope = owl_mcp::Scope { approvals };
    // The tools come from this binary's own API document: the daemon need not be up yet.
    let doc = serde_json::to_value(owl_server::openapi_document())?;
    let server = owl_mcp::OwlServer::new(Arc::new(Daemon { data_dir: data_dir.to_path_buf() }), scope, &doc).map_err(|e| anyhow!(e))?;
    owl_mcp::serve_stdio(server).await.map_err(|e| anyhow!(e))
}

/// A server given on the command line, as a one-server hub of the CLI's own.
fn adhoc_hub(adhoc: &McpAdhoc) -> Result<Option<owl_mcp::Hub>> {
    let mut cfg = owl_core::mcp::McpServer { sandbox: false, ..Default::default() };
    match (&adhoc.url, &adhoc.command) {
        (Some(u), _) => {
            cfg.url = Some(u.clone());
            for h in &adhoc.headers {
                let (k, v) = h.split_once(':').ok_or_else(|| anyhow!("--header `{h}`: write it as `Name: value`"))?;
                cfg.headers.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        (None, Some(c)) => {
            let mut words = c.split_whitespace().map(String::from);
            cfg.command = Some(words.next().ok_or_else(|| anyhow!("--command is empty"))?);
            cfg.args = words.collect();
        }
        (None, None) => return Ok(None),
    }
    let mut check = owl_core::mcp::McpSettings::default();
    check.servers.insert(ADHOC.into(), cfg.clone());
    check.check().map_err(|(field, m)| anyhow!("{}: {m}", field.replace("mcp.servers.adhoc.", "--")))?;
    Ok(Some(owl_mcp::Hub::single(ADHOC, cfg)))
}

const ADHOC: &str = "adhoc";

fn print_tools(server: &str, tools: &[McpToolView], json: bool) {
    if json {
        return print_json(&owl_api::McpToolList { server: server.into(), tools: tools.to_vec() });
    }
    if tools.is_empty() {
        println!("{server} offers no tools");
        return;
    }
    let rows = tools
        .iter()
        .map(|t| {
            let mut d = t.description.lines().next().unwrap_or_default().to_string();
            if d.chars().count() > 70 {
                d = d.chars().take(69).collect::<String>() + "…";
            }
            let trust = if t.trust == "changed" { format!("CHANGED (owl mcp trust {server} {})", t.name) } else { t.trust.clone() };
            vec![t.name.clone(), t.agent_name.clone(), t.policy.clone(), trust, d]
        })
        .collect();
    table(&["TOOL", "AGENTS CALL IT", "POLICY", "DEFINITION", "DESCRIPTION"], rows);
}

fn print_reply(reply: &McpCallReply, json: bool) -> i32 {
    if json {
        print_json(reply);
    } else if reply.is_error {
        eprintln!("error: {}", reply.text);
    } else {
        println!("{}", reply.text);
    }
    if reply.is_error {
        1
    } else {
        0
    }
}

fn parse_args(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(anyhow!("the arguments must be a JSON object, like '{{\"path\": \"notes.md\"}}'")),
        Err(e) => Err(anyhow!("the arguments are not JSON ({e}); write a JSON object, like '{{\"path\": \"notes.md\"}}'")),
    }
}

/// `owl mcp ls|tools|call|trust`.
pub async fn run(action: McpAction, data_dir: &Path, json: bool) -> Result<i32> {
    match action {
        McpAction::Serve { .. } => unreachable!("served in main"),
        McpAction::Ls => {
            let list: owl_api::McpServerList = Client::connect(data_dir)?.get("/v1/mcp-servers").await?;
            if json {
                print_json(&list);
            } else if list.servers.is_empty() {
                println!("no MCP servers are configured; add [mcp.servers.NAME] to the config (see docs/mcp.md)");
            } else {
                let rows = list
                    .servers
                    .iter()
                    .map(|s| {
                        let state = s.state.clone();
                        let tools = s.tools.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
                        let sandbox = if s.transport == "http" {
                            "-"
                        } else if s.sandboxed {
                            "yes"
                        } else {
                            "no"
                        };
                        vec![s.name.clone(), s.transport.clone(), sandbox.into(), tools, state, s.target.clone()]
                    })
                    .collect();
                table(&["NAME", "TRANSPORT", "SANDBOX", "TOOLS", "STATE", "TARGET"], rows);
                for s in list.servers.iter().filter(|s| s.state == "failed") {
                    println!("\n{}: {}", s.name, s.last_error.as_deref().unwrap_or("failed"));
                }
            }
            Ok(0)
        }
        McpAction::Tools { server, adhoc } => {
            if let Some(hub) = adhoc_hub(&adhoc)? {
                let tools = hub.tool_views(ADHOC).await.map_err(|e| anyhow!(e));
                hub.shutdown().await;
                print_tools(adhoc.url.as_deref().or(adhoc.command.as_deref()).unwrap_or(ADHOC), &tools?, json);
                return Ok(0);
            }
            let server = server.expect("clap requires a server without --url or --command");
            let list: owl_api::McpToolList = Client::connect(data_dir)?.get(&format!("/v1/mcp-servers/{server}/tools")).await?;
            print_tools(&server, &list.tools, json);
            Ok(0)
        }
        McpAction::Call { args, adhoc } => {
            if let Some(hub) = adhoc_hub(&adhoc)? {
                let (tool, arguments) = match args.as_slice() {
                    [tool] => (tool.clone(), "{}".to_string()),
                    [tool, a] => (tool.clone(), a.clone()),
                    _ => return Err(anyhow!("with --url or --command, give TOOL [ARGUMENTS]")),
                };
                let arguments = parse_args(&arguments)?;
                let r = hub.call_tool(ADHOC, &tool, serde_json::Value::Object(arguments), false).await;
                hub.shutdown().await;
                let reply = match r {
                    Ok(text) => McpCallReply { is_error: false, text },
                    Err(text) => McpCallReply { is_error: true, text },
                };
                return Ok(print_reply(&reply, json));
            }
            let (server, tool, arguments) = match args.as_slice() {
                [s, t] => (s.clone(), t.clone(), "{}".to_string()),
                [s, t, a] => (s.clone(), t.clone(), a.clone()),
                _ => return Err(anyhow!("give SERVER TOOL [ARGUMENTS] (or --url URL TOOL [ARGUMENTS])")),
            };
            let body = owl_api::McpCall { tool, arguments: parse_args(&arguments)? };
            let reply: McpCallReply = Client::connect(data_dir)?.post(&format!("/v1/mcp-servers/{server}/call"), &body).await?;
            Ok(print_reply(&reply, json))
        }
        McpAction::Trust { server, tool } => {
            let view: McpToolView =
                Client::connect(data_dir)?.post(&format!("/v1/mcp-servers/{server}/trust"), &owl_api::McpTrust { tool }).await?;
            if json {
                print_json(&view);
            } else {
                println!("trusted {} of {server} as it is now ({}); agents may call it as {}", view.name, view.hash, view.agent_name);
            }
            Ok(0)
        }
    }
}
