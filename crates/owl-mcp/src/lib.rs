//! owl over the Model Context Protocol, through the official Rust SDK (`rmcp`).
//!
//! [`server`] offers owl's queue to MCP clients, over Streamable HTTP inside the daemon
//! (`/v1/mcp`) and over stdio (`owl mcp serve`). Both protocol revisions in use are answered:
//! 2025-11-25 (with `initialize`) and the stateless 2026-07-28 (with `server/discover`). The
//! HTTP side keeps no sessions: every request stands alone, as the newer revision wants.

pub mod client;
pub mod server;

pub use client::Hub;
pub use server::{Backend, OwlServer, Reply, Scope};

use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

/// The Streamable HTTP service for `/v1/mcp`, for a daemon listening on `listen`
/// (`host:port`). Browsers may reach it only from owl's own origin: a request with any other
/// `Origin` is refused, and the `Host` must be the listen address or a loopback name (a guard
/// against DNS rebinding on top of the bearer token).
pub fn http_service(server: OwlServer, listen: &str, max_body_bytes: usize) -> StreamableHttpService<OwlServer, NeverSessionManager> {
    let (host, port) = match listen.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), p.to_string()),
        None => (listen.to_string(), "80".to_string()),
    };
    let loopback = ["localhost", "127.0.0.1", "[::1]"];
    let mut origins: Vec<String> = loopback.iter().map(|h| format!("http://{h}:{port}")).collect();
    let wildcard = host == "0.0.0.0" || host == "::";
    let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    if !wildcard && !loopback.contains(&shown_host.as_str()) {
        origins.push(format!("http://{shown_host}:{port}"));
    }
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(max_body_bytes)
        .with_allowed_origins(origins)
        .enforce_origin_validation();
    // Listening on every address, owl cannot know the names it is reached by; the bearer
    // token still guards every request.
    config = if wildcard {
        config.disable_allowed_hosts()
    } else {
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        if !hosts.contains(&host) {
            hosts.push(host);
        }
        config.with_allowed_hosts(hosts)
    };
    StreamableHttpService::new(move || Ok(server.clone()), Arc::new(NeverSessionManager::default()), config)
}

/// Serves one client on stdin and stdout until it goes away.
pub async fn serve_stdio(server: OwlServer) -> Result<(), String> {
    use rmcp::ServiceExt;
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| format!("the MCP client did not connect: {e}"))?;
    running.waiting().await.map_err(|e| format!("the MCP connection failed: {e}"))?;
    Ok(())
}
