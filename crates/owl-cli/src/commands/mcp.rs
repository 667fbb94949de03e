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
    let scope = owl_mcp::Scope { approvals, task: None };
    // The tools come from this binary's own API document: the daemon need not be up yet.
    let doc = serde_json::to_value(owl_server::openapi_document())?;
    let server = owl_mcp::OwlServer::new(Arc::new(Daemon { data_dir: data_dir.to_path_buf() }), scope, &doc).map_err(|e| anyhow!(e))?;
    owl_mcp::serve_stdio(server).await.map_err(|e| anyhow!(e))
}

/// Relays MCP between stdin/stdout and a task's own MCP server on a Unix socket: each message
/// from the client is POSTed to `/v1/mcp` over the socket and the reply written back. Runs
/// inside the task's sandbox, which has no network but can reach its workspace.
pub async fn bridge(socket: &Path) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let mut version: Option<String> = None;
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let msg: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let err = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("not JSON: {e}")}});
                out.write_all(format!("{err}\n").as_bytes()).await?;
                out.flush().await?;
                continue;
            }
        };
        // The revision agreed at `initialize` goes on every later request, as HTTP wants.
        if msg["method"] == "initialize" {
            version = msg["params"]["protocolVersion"].as_str().map(String::from);
        }
        let reply = post_unix(socket, &line, version.as_deref()).await;
        let text = match reply {
            Ok((status, body)) if (200..300).contains(&status) => body,
            Ok((status, body)) => {
                let id = msg.get("id").cloned().unwrap_or(serde_json::Value::Null);
                if id.is_null() {
                    continue; // a notification: nothing to answer
                }
                serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": format!("owl answered {status}: {body}")}}).to_string()
            }
            Err(e) => {
                let id = msg.get("id").cloned().unwrap_or(serde_json::Value::Null);
                if id.is_null() {
                    continue;
                }
                serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": format!("owl's MCP server for this task does not answer: {e}")}}).to_string()
            }
        };
        // A reply may come as JSON or as one server-sent event; a notification gets none.
        for reply in json_messages(&text) {
            out.write_all(format!("{reply}\n").as_bytes()).await?;
        }
        out.flush().await?;
    }
    Ok(())
}

/// The JSON-RPC messages in a reply body: a JSON object, or `data:` lines of SSE.
fn json_messages(body: &str) -> Vec<String> {
    let t = body.trim();
    if t.is_empty() {
        return vec![];
    }
    if t.starts_with('{') || t.starts_with('[') {
        return vec![t.replace('\n', " ")];
    }
    t.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect()
}

/// One POST of `body` to `/v1/mcp` over the Unix socket.
async fn post_unix(socket: &Path, body: &str, version: Option<&str>) -> Result<(u16, String)> {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| anyhow!("cannot connect to {}: {e}", socket.display()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::post("/v1/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(v) = version {
        req = req.header("mcp-protocol-version", v);
    }
    let resp = send.send_request(req.body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
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
