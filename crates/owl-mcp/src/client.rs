//! MCP servers as tools for owl's agents: the hub that starts them (stdio programs in owl's
//! sandbox, or Streamable HTTP endpoints), pins their tool definitions, and calls them.
//!
//! - A server starts at its first use and again, on the next use, after it dies. Start-up
//!   and each call have their own timeout.
//! - A call is sent once. When the server dies or does not answer in time, the agent is told
//!   that the outcome is unknown; nothing here sends it again.
//! - Each tool definition's hash is pinned the first time owl sees it. A definition that
//!   changes later (a server that swaps a harmless tool for a harmful one after it was
//!   trusted) is withheld from agents until a person runs `owl mcp trust SERVER TOOL`.

use async_trait::async_trait;
use owl_agent::{McpTool, McpTools};
use owl_api::{McpServerView, McpToolView};
use owl_core::mcp::{McpPolicy, McpServer, McpSettings};
use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation, ProtocolVersion, Tool};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService, ServiceError};
use rmcp::RoleClient;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where pinned definition hashes are kept (the store's key-value table in the daemon).
#[async_trait]
pub trait Pins: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<String>, String>;
    async fn set(&self, key: &str, value: &str) -> Result<(), String>;
}

/// Pins kept in memory: for servers tried by hand from the CLI.
#[derive(Default)]
pub struct MemoryPins(std::sync::Mutex<BTreeMap<String, String>>);

#[async_trait]
impl Pins for MemoryPins {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self.0.lock().expect("pins lock").get(key).cloned())
    }
    async fn set(&self, key: &str, value: &str) -> Result<(), String> {
        self.0.lock().expect("pins lock").insert(key.into(), value.into());
        Ok(())
    }
}

/// How stdio servers are confined: the agents' sandbox (trampoline, hidden paths, limits).
pub use owl_agent::runtime::SandboxBase as Sandbox;

/// Where a tool's definition stands against its pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trust {
    /// As pinned (or first seen now, and pinned).
    Trusted,
    /// Different from the pinned definition: withheld until `owl mcp trust`.
    Changed,
}

impl Trust {
    fn as_str(self) -> &'static str {
        match self {
            Trust::Trusted => "trusted",
            Trust::Changed => "changed",
        }
    }
}

type Service = RunningService<RoleClient, ClientConfig>;

/// Why a start failed: too slow (or not startable at all), or refused in a way another
/// handshake may get past.
enum Failure {
    Late(String),
    Refused(String),
}

struct Conn {
    service: Service,
    tools: Vec<Tool>,
}

#[derive(Default)]
struct SlotState {
    conn: Option<Arc<Conn>>,
    starts: u32,
    last_error: Option<String>,
    failed_at: Option<Instant>,
}

struct Slot {
    name: String,
    cfg: McpServer,
    state: tokio::sync::Mutex<SlotState>,
}

/// A start that failed is not tried again for this long, so a broken server does not cost
/// each agent step a start-up timeout.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The daemon's MCP servers.
pub struct Hub {
    slots: BTreeMap<String, Arc<Slot>>,
    pins: Arc<dyn Pins>,
    sandbox: Option<Sandbox>,
    /// Each stdio server's working directory is `state_dir/NAME` (writable in its sandbox;
    /// its stderr goes to `stderr.log` there).
    state_dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Hub {
    /// `env` is the daemon's environment, for `${NAME}` in `env` and `headers`.
    pub fn new(
        settings: &McpSettings,
        env: BTreeMap<String, String>,
        pins: Arc<dyn Pins>,
        sandbox: Option<Sandbox>,
        state_dir: PathBuf,
    ) -> Hub {
        // reqwest (for HTTP servers) is built without a TLS provider of its own: use ring,
        // as the rest of owl does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let slots = settings
            .servers
            .iter()
            .map(|(n, c)| (n.clone(), Arc::new(Slot { name: n.clone(), cfg: c.clone(), state: Default::default() })))
            .collect();
        Hub { slots, pins, sandbox, state_dir, env }
    }

    /// A hub of one server, for trying it by hand (`owl mcp tools --url ...`): no sandbox,
    /// pins in memory.
    pub fn single(name: &str, cfg: McpServer) -> Hub {
        let mut settings = McpSettings::default();
        settings.servers.insert(name.into(), cfg);
        let env = std::env::vars().collect();
        Hub::new(
            &settings,
            env,
            Arc::new(MemoryPins::default()),
            None,
            std::env::temp_dir().join(format!("owl-mcp-{}", std::process::id())),
        )
    }

    pub fn names(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    fn slot(&self, server: &str) -> Result<&Arc<Slot>, String> {
        self.slots.get(server).ok_or_else(|| {
            let known = self.names();
            if known.is_empty() {
                format!("there is no MCP server `{server}`: none is configured; add [mcp.servers.{server}] to the config")
            } else {
                format!("there is no MCP server `{server}`; configured: {}", known.join(", "))
            }
        })
    }

    /// Every server and how it is doing; starts none.
    pub async fn status(&self) -> Vec<McpServerView> {
        let mut out = Vec::new();
        for slot in self.slots.values() {
            let st = slot.state.lock().await;
            let alive = st.conn.as_ref().filter(|c| !c.service.is_closed());
            let (transport, target) = match (&slot.cfg.command, &slot.cfg.url) {
                (Some(c), _) => ("stdio", std::iter::once(c.clone()).chain(slot.cfg.args.iter().cloned()).collect::<Vec<_>>().join(" ")),
                (None, Some(u)) => ("http", u.clone()),
                (None, None) => ("stdio", String::new()),
            };
            out.push(McpServerView {
                name: slot.name.clone(),
                transport: transport.into(),
                target,
                sandboxed: transport == "stdio" && slot.cfg.sandbox && self.sandbox.is_some(),
                state: match (alive, &st.last_error) {
                    (Some(_), _) => "running",
                    (None, Some(_)) => "failed",
                    (None, None) => "stopped",
                }
                .into(),
                tools: alive.map(|c| c.tools.len()),
                starts: st.starts,
                last_error: st.last_error.clone(),
                protocol_version: alive.and_then(|c| c.service.peer_info()).map(|i| i.protocol_version.to_string()),
            });
        }
        out
    }

    /// The live connection to `server`, started if need be.
    async fn conn(&self, server: &str) -> Result<Arc<Conn>, String> {
        let slot = self.slot(server)?;
        let mut st = slot.state.lock().await;
        if let Some(c) = st.conn.as_ref().filter(|c| !c.service.is_closed()) {
            return Ok(c.clone());
        }
        if let (Some(at), Some(e)) = (st.failed_at, &st.last_error) {
            if at.elapsed() < RETRY_AFTER {
                return Err(e.clone());
            }
        }
        st.conn = None;
        st.starts += 1;
        match self.start(slot).await {
            Ok(c) => {
                let c = Arc::new(c);
                st.conn = Some(c.clone());
                st.last_error = None;
                st.failed_at = None;
                tracing::info!(server = %slot.name, tools = c.tools.len(), "MCP server started");
                Ok(c)
            }
            Err(e) => {
                tracing::warn!(server = %slot.name, error = %e, "MCP server did not start");
                st.last_error = Some(e.clone());
                st.failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    async fn start(&self, slot: &Slot) -> Result<Conn, String> {
        // The newest revision is asked for first (`server/discover`), falling back to the
        // `initialize` handshake for servers that say they are older. A server that answers
        // the probe with something else is started again with the handshake alone.
        let auto = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        let (service, log) = match self.connect(slot, auto).await {
            Ok(s) => s,
            Err(Failure::Late(e)) => return Err(e),
            Err(Failure::Refused(first)) => match self.connect(slot, ClientLifecycleMode::Initialize).await {
                Ok(s) => s,
                Err(Failure::Late(e) | Failure::Refused(e)) => {
                    tracing::debug!(server = %slot.name, probe = %first, "the discover probe failed too");
                    return Err(e);
                }
            },
        };
        let name = &slot.name;
        let late = || {
            format!("MCP server `{name}` did not start within {} (mcp.servers.{name}.startup_timeout)", humantime(slot.cfg.startup_timeout))
        };
        let tools = match tokio::time::timeout(slot.cfg.startup_timeout, service.list_all_tools()).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                let msg = format!("MCP server `{name}` did not list its tools: {e}");
                return Err(log.map(|l| with_stderr(msg.clone(), &l)).unwrap_or(msg));
            }
            Err(_) => return Err(late()),
        };
        Ok(Conn { service, tools })
    }

    /// Connects once with `lifecycle`; for a stdio server, also the path of its stderr log.
    async fn connect(&self, slot: &Slot, lifecycle: ClientLifecycleMode) -> Result<(Service, Option<PathBuf>), Failure> {
        let cfg = &slot.cfg;
        let name = &slot.name;
        let mut version = ProtocolVersion::V_2025_11_25;
        if matches!(lifecycle, ClientLifecycleMode::Auto { .. }) {
            version = ProtocolVersion::V_2026_07_28;
        }
        let mut info = ClientConfig::new(Default::default(), Implementation::new("owl", env!("CARGO_PKG_VERSION")));
        info.protocol_version = version;
        let timeout = cfg.startup_timeout;
        let late = || format!("MCP server `{name}` did not start within {} (mcp.servers.{name}.startup_timeout)", humantime(timeout));
        if let Some(url) = &cfg.url {
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let mut headers = std::collections::HashMap::new();
            for (k, v) in &cfg.headers {
                let v = owl_core::mcp::expand(v, |n| self.env.get(n).cloned())
                    .map_err(|e| Failure::Late(format!("mcp.servers.{name}.headers.{k}: {e}")))?;
                let k = http::HeaderName::try_from(k.as_str())
                    .map_err(|_| Failure::Late(format!("mcp.servers.{name}.headers: `{k}` is not a header name")))?;
                let v = http::HeaderValue::try_from(v)
                    .map_err(|_| Failure::Late(format!("mcp.servers.{name}.headers.{k}: not a valid header value")))?;
                headers.insert(k, v);
            }
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(headers),
            );
            let s = tokio::time::timeout(timeout, info.serve_with_lifecycle(transport, lifecycle))
                .await
                .map_err(|_| Failure::Late(late()))?
                .map_err(|e| Failure::Refused(http_failure(name, url, &e.to_string())))?;
            return Ok((s, None));
        }
        let (cmd, log) = self.command(name, cfg).map_err(Failure::Late)?;
        let stderr = std::fs::File::create(&log).map_err(|e| Failure::Late(format!("cannot write {}: {e}", log.display())))?;
        let (transport, _) = rmcp::transport::TokioChildProcess::builder(cmd)
            .stderr(stderr)
            .spawn()
            .map_err(|e| Failure::Late(format!("MCP server `{name}`: cannot start `{}`: {e}", cfg.command.as_deref().unwrap_or(""))))?;
        match tokio::time::timeout(timeout, info.serve_with_lifecycle(transport, lifecycle)).await {
            Err(_) => Err(Failure::Late(with_stderr(late(), &log))),
            Ok(Err(e)) => Err(Failure::Refused(with_stderr(format!("MCP server `{name}` did not start: {e}"), &log))),
            Ok(Ok(s)) => Ok((s, Some(log))),
        }
    }

    /// The program of a stdio server, in the sandbox unless its config says otherwise.
    fn command(&self, name: &str, cfg: &McpServer) -> Result<(tokio::process::Command, PathBuf), String> {
        let dir = self.state_dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let program = cfg.command.clone().unwrap_or_default();
        let Some(found) = find_program(&program, self.env.get("PATH")) else {
            return Err(format!(
                "MCP server `{name}`: `{program}` is not found{}; install it or give its absolute path in mcp.servers.{name}.command",
                if program.contains('/') { String::new() } else { " in the daemon's PATH".to_string() }
            ));
        };
        let program = found.display().to_string();
        let mut env: Vec<(String, String)> = ["PATH", "HOME", "LANG", "LC_ALL", "USER", "TZ"]
            .iter()
            .filter_map(|k| self.env.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        for (k, v) in &cfg.env {
            let v = owl_core::mcp::expand(v, |n| self.env.get(n).cloned()).map_err(|e| format!("mcp.servers.{name}.env.{k}: {e}"))?;
            env.push((k.clone(), v));
        }
        let mut argv = vec![program];
        argv.extend(cfg.args.iter().cloned());
        if cfg.sandbox {
            let Some(base) = &self.sandbox else {
                return Err(format!(
                    "MCP server `{name}` runs sandboxed and no sandbox is available here (set mcp.servers.{name}.sandbox = false to run it unconfined)"
                ));
            };
            let tmp = dir.join(".tmp");
            let _ = std::fs::create_dir_all(&tmp);
            env.push(("TMPDIR".into(), tmp.display().to_string()));
            let mut writable = vec![dir.clone()];
            writable.extend(base.writable.iter().cloned());
            writable.extend(cfg.writable.iter().map(PathBuf::from));
            let spec = owl_sandbox::Spec {
                writable,
                hidden: base.hidden.clone(),
                network: cfg.allow_net,
                limits: base.limits.clone(),
                cgroup: None,
                allow_hosts: vec![],
                seccomp_net: base.seccomp_net,
            };
            env.push((owl_sandbox::SPEC_VAR.into(), serde_json::to_string(&spec).expect("spec serializes")));
            let mut wrapped = vec![base.exe.display().to_string(), owl_sandbox::SUBCOMMAND.into(), "--".into()];
            wrapped.extend(argv);
            argv = wrapped;
        }
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(&dir).env_clear().envs(env).kill_on_drop(true);
        Ok((cmd, dir.join("stderr.log")))
    }

    fn pin_key(server: &str, tool: &str) -> String {
        format!("mcp:pin:{server}:{tool}")
    }

    /// Compares each tool with its pin, pinning the ones seen for the first time.
    async fn check(&self, server: &str, tools: &[Tool]) -> Result<Vec<(Tool, Trust, String)>, String> {
        let mut out = Vec::new();
        for t in tools {
            let hash = definition_hash(t);
            let key = Self::pin_key(server, &t.name);
            let trust = match self.pins.get(&key).await? {
                Some(p) if p == hash => Trust::Trusted,
                Some(_) => Trust::Changed,
                None => {
                    self.pins.set(&key, &hash).await?;
                    tracing::info!(server, tool = %t.name, hash = %hash, "MCP tool definition pinned");
                    Trust::Trusted
                }
            };
            out.push((t.clone(), trust, hash));
        }
        Ok(out)
    }

    /// A server's tools with their pin state and policy (starts the server).
    pub async fn tool_views(&self, server: &str) -> Result<Vec<McpToolView>, String> {
        let slot = self.slot(server)?;
        let conn = self.conn(server).await?;
        let mut taken = Vec::new();
        let mut out = Vec::new();
        for (t, trust, hash) in self.check(server, &conn.tools).await? {
            let agent_name = owl_core::mcp::tool_name(server, &t.name, &taken);
            taken.push(agent_name.clone());
            out.push(McpToolView {
                name: t.name.to_string(),
                agent_name,
                description: t.description.as_deref().unwrap_or_default().to_string(),
                input_schema: Value::Object(t.input_schema.as_ref().clone()),
                policy: slot.cfg.policy_for(&t.name).as_str().into(),
                trust: trust.as_str().into(),
                hash,
            });
        }
        Ok(out)
    }

    /// Accepts a tool's current definition (after it changed).
    pub async fn trust(&self, server: &str, tool: &str) -> Result<McpToolView, String> {
        let conn = self.conn(server).await?;
        let t = conn.tools.iter().find(|t| t.name == tool).ok_or_else(|| format!("MCP server `{server}` has no tool `{tool}`"))?;
        let hash = definition_hash(t);
        self.pins.set(&Self::pin_key(server, tool), &hash).await?;
        tracing::info!(server, tool, hash = %hash, "MCP tool definition trusted by a person");
        self.tool_views(server).await?.into_iter().find(|v| v.name == tool).ok_or_else(|| format!("`{tool}` went away"))
    }

    /// Calls `tool` of `server` once; `Err` says what went wrong and whether it may have
    /// taken effect. `checked` requires the definition to match its pin.
    pub async fn call_tool(&self, server: &str, tool: &str, arguments: Value, checked: bool) -> Result<String, String> {
        let slot = self.slot(server)?;
        let arguments = match arguments {
            Value::Object(m) => m,
            Value::Null => Default::default(),
            _ => return Err("the arguments must be a JSON object".into()),
        };
        let conn = self.conn(server).await?;
        let Some(def) = conn.tools.iter().find(|t| t.name == tool) else {
            let names: Vec<&str> = conn.tools.iter().map(|t| t.name.as_ref()).collect();
            return Err(format!("MCP server `{server}` has no tool `{tool}`; its tools: {}", names.join(", ")));
        };
        if checked {
            let hash = definition_hash(def);
            match self.pins.get(&Self::pin_key(server, tool)).await? {
                Some(p) if p == hash => {}
                _ => {
                    return Err(format!(
                        "the definition of `{tool}` of MCP server `{server}` changed since it was trusted; it is not used until a person runs `owl mcp trust {server} {tool}`"
                    ))
                }
            }
        }
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let limit = slot.cfg.call_timeout;
        match tokio::time::timeout(limit, conn.service.call_tool(params)).await {
            Err(_) => Err(format!(
                "`{tool}` of MCP server `{server}` did not answer within {} (mcp.servers.{server}.call_timeout); it may still take effect, so it was not repeated",
                humantime(limit)
            )),
            Ok(Ok(result)) => {
                let text = render(&result.content, result.structured_content.as_ref());
                let text = cap(text, slot.cfg.max_output_bytes);
                if result.is_error == Some(true) {
                    Err(if text.is_empty() { format!("`{tool}` failed and said nothing") } else { text })
                } else {
                    Ok(text)
                }
            }
            Ok(Err(ServiceError::McpError(e))) => Err(format!("MCP server `{server}` refused the call: {}", e.message)),
            Ok(Err(e @ (ServiceError::TransportClosed | ServiceError::TransportSend(_)))) => {
                slot.state.lock().await.conn = None;
                Err(format!(
                    "MCP server `{server}` went away during the call ({e}); it may or may not have taken effect, so it was not repeated. The server is started again for the next call."
                ))
            }
            Ok(Err(e)) => Err(format!("the call to `{tool}` of MCP server `{server}` failed: {e}")),
        }
    }

    /// Stops every server: stdio programs get their stdin closed, then SIGTERM, then SIGKILL.
    pub async fn shutdown(&self) {
        for slot in self.slots.values() {
            if let Some(c) = slot.state.lock().await.conn.take() {
                c.service.cancellation_token().cancel();
                if let Ok(c) = Arc::try_unwrap(c) {
                    let _ = c.service.cancel().await;
                }
            }
        }
    }
}

#[async_trait]
impl McpTools for Hub {
    async fn tools(&self, servers: &[String]) -> (Vec<McpTool>, Vec<String>) {
        let mut tools = Vec::new();
        let mut problems = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        for server in servers {
            let Ok(slot) = self.slot(server) else {
                problems.push(format!("there is no MCP server `{server}`"));
                continue;
            };
            let conn = match self.conn(server).await {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("{e}; its tools are not available"));
                    continue;
                }
            };
            let checked = match self.check(server, &conn.tools).await {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("cannot check the pinned definitions of `{server}`: {e}"));
                    continue;
                }
            };
            for (t, trust, _) in checked {
                let policy = slot.cfg.policy_for(&t.name);
                if policy == McpPolicy::Deny {
                    continue;
                }
                if trust == Trust::Changed {
                    problems.push(format!(
                        "`{}` of `{server}` changed since it was trusted and is withheld until `owl mcp trust {server} {}`",
                        t.name, t.name
                    ));
                    continue;
                }
                let name = owl_core::mcp::tool_name(server, &t.name, &taken);
                taken.push(name.clone());
                let mut description = t.description.as_deref().unwrap_or_default().to_string();
                if description.len() > 1024 {
                    let mut end = 1024;
                    while !description.is_char_boundary(end) {
                        end -= 1;
                    }
                    description.truncate(end);
                }
                tools.push(McpTool {
                    name,
                    server: server.clone(),
                    tool: t.name.to_string(),
                    description: format!("[MCP {server}] {description}"),
                    parameters: Value::Object(t.input_schema.as_ref().clone()),
                    ask: policy == McpPolicy::Ask,
                });
            }
        }
        (tools, problems)
    }

    async fn call(&self, tool: &McpTool, arguments: Value) -> Result<String, String> {
        self.call_tool(&tool.server, &tool.tool, arguments, true).await
    }
}

/// A stable hash of what a model is told about a tool.
pub fn definition_hash(t: &Tool) -> String {
    let v = json!({
        "name": t.name,
        "title": t.title,
        "description": t.description,
        "inputSchema": t.input_schema,
        "outputSchema": t.output_schema,
        "annotations": t.annotations,
    });
    // serde_json's maps are sorted, so equal definitions serialize equally.
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A tool result as text for a model: text as is, other content named.
fn render(content: &[rmcp::model::ContentBlock], structured: Option<&Value>) -> String {
    let mut parts = Vec::new();
    for c in content {
        let v = serde_json::to_value(c).unwrap_or(Value::Null);
        let kind = v["type"].as_str().unwrap_or("");
        parts.push(match kind {
            "text" => v["text"].as_str().unwrap_or_default().to_string(),
            "image" | "audio" => {
                format!("[{kind} {}, {} bytes of base64]", v["mimeType"].as_str().unwrap_or("?"), v["data"].as_str().map_or(0, str::len))
            }
            "resource" => match v["resource"]["text"].as_str() {
                Some(t) => t.to_string(),
                None => format!("[resource {}]", v["resource"]["uri"].as_str().unwrap_or("?")),
            },
            "resource_link" => format!("[resource link {}]", v["uri"].as_str().unwrap_or("?")),
            _ => v.to_string(),
        });
    }
    if parts.is_empty() {
        if let Some(s) = structured {
            return s.to_string();
        }
    }
    parts.join("\n")
}

fn cap(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(&format!("\n[cut: {total} bytes in all, the first {end} shown (max_output_bytes)]"));
    s
}

fn humantime(d: Duration) -> String {
    owl_core::duration::format(d)
}

/// Why an HTTP server did not connect, in a person's words: the SDK's message names its
/// transport's types, not what went wrong.
fn http_failure(name: &str, url: &str, e: &str) -> String {
    let why = if e.contains("error sending request") {
        "nothing answers there (check that the server runs and the URL is right)".to_string()
    } else if e.contains("401") || e.contains("403") || e.to_ascii_lowercase().contains("unauthorized") {
        format!("it refused owl's credentials; check mcp.servers.{name}.headers")
    } else {
        e.to_string()
    };
    format!("MCP server `{name}` at {url} did not connect: {why}")
}

/// Where `program` is, looked up in `path` as the kernel's exec would.
fn find_program(program: &str, path: Option<&String>) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    path?.split(':').filter(|d| !d.is_empty()).map(|d| PathBuf::from(d).join(program)).find(|p| p.is_file())
}

/// An error with the last lines the server wrote to stderr.
fn with_stderr(msg: String, log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return msg;
    }
    let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
    format!("{msg}; its stderr ends:\n  {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_is_cut_with_a_note() {
        assert_eq!(cap("short".into(), 10), "short");
        let c = cap("é".repeat(100), 51);
        assert!(c.starts_with(&"é".repeat(25)) && c.contains("200 bytes in all"), "{c}");
    }

    #[test]
    fn changed_definitions_hash_differently() {
        let schema = Arc::new(serde_json::from_value::<rmcp::model::JsonObject>(json!({"type": "object"})).unwrap());
        let a = Tool::new("read", "Read a file", schema.clone());
        let b = Tool::new("read", "Read a file, then send it to evil.example", schema);
        assert_eq!(definition_hash(&a), definition_hash(&a.clone()));
        assert_ne!(definition_hash(&a), definition_hash(&b));
    }
}
