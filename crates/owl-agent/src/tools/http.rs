//! `http_fetch`: GET with size and time caps. Every address a name resolves to is checked
//! before connecting (and the connection goes to exactly the checked address, so a DNS
//! answer cannot change in between); redirects are followed by hand and checked again.

use super::{args, ToolCtx};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub allow_private: bool,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub max_redirects: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits { allow_private: false, max_bytes: 1024 * 1024, timeout: Duration::from_secs(30), max_redirects: 5 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    url: String,
    /// The body as it came, instead of a web page's readable text.
    #[serde(default)]
    raw: bool,
}

pub use owl_core::net::is_public;

pub(super) async fn fetch(ctx: &ToolCtx, arguments: &Value) -> Result<String, String> {
    let a: Args = args("http_fetch", arguments)?;
    let limits = &ctx.http;
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let mut url = reqwest::Url::parse(&a.url).map_err(|e| format!("`{}` is not a URL: {e}", a.url))?;
    for hop in 0..=limits.max_redirects {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("only http and https URLs are fetched, not {}", url.scheme()));
        }
        let host = url.host_str().ok_or("the URL has no host")?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| "timed out resolving the host".to_string())?
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .collect(),
        };
        let Some(addr) = addrs.first().copied() else { return Err(format!("{host} has no address")) };
        if !limits.allow_private {
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "refused: {host} resolves to {}, a private, loopback or link-local address (agents.*.http_allow_private allows it)",
                    bad.ip()
                ));
            }
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .timeout(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .user_agent(concat!("owl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(url.clone()).send().await.map_err(|e| format!("GET failed: {}", e.without_url()))?;
        let status = resp.status();
        if status.is_redirection() {
            let loc = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).ok_or("a redirect without a Location")?;
            url = url.join(loc).map_err(|e| format!("a bad redirect Location `{loc}`: {e}"))?;
            tracing::debug!(hop, to = %url, "http_fetch follows a redirect");
            continue;
        }
        let ctype = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let mut body = Vec::new();
        let mut truncated = false;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) =
            tokio::time::timeout_at(deadline, stream.next()).await.map_err(|_| "timed out reading the body".to_string())?
        {
            let chunk = chunk.map_err(|e| format!("the body broke off: {}", e.without_url()))?;
            let room = limits.max_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                truncated = true;
                break;
            }
        }
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if !a.raw && ctype.to_ascii_lowercase().contains("html") {
            text = super::search::readable_text(&text);
        }
        if truncated {
            text.push_str(&format!("\n[... cut at {} bytes]", limits.max_bytes));
        }
        return Ok(format!("HTTP {}\ncontent-type: {ctype}\n\n{text}", status.as_u16()));
    }
    Err(format!("more than {} redirects", limits.max_redirects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }
}

#[cfg(test)]
mod fetch_tests {
    use super::*;
    use crate::confine::Workspace;
    use crate::policy::Policy;
    use crate::tools::{ToolCtx, ToolOutcome};
    use owl_core::agent::{AgentSettings, Owner, PolicyDefault};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct NoHost;
    #[async_trait::async_trait]
    impl crate::Host for NoHost {
        async fn append(&self, _: Owner, _: u32, _: Vec<crate::Entry>) -> crate::HostResult<Vec<u64>> {
            Ok(vec![])
        }
        async fn transcript(&self, _: Owner) -> crate::HostResult<Vec<crate::TranscriptEntry>> {
            Ok(vec![])
        }
        async fn record_usage(&self, _: crate::UsageRecord) -> crate::HostResult<()> {
            Ok(())
        }
        async fn approve(&self, _: crate::ApprovalRequest) -> crate::HostResult<crate::ApprovalDecision> {
            Err(crate::HostError::refused("none"))
        }
        async fn create_task(&self, _: Owner, _: &str, _: &str, _: u32) -> crate::HostResult<owl_core::TaskId> {
            Err(crate::HostError::refused("none"))
        }
        async fn task_result(&self, _: owl_core::TaskId) -> crate::HostResult<Value> {
            Err(crate::HostError::refused("none"))
        }
        async fn schedules_created_by(&self, _: Owner) -> crate::HostResult<u32> {
            Ok(0)
        }
        async fn create_schedule(&self, _: Owner, _: crate::NewAgentSchedule) -> crate::HostResult<Value> {
            Err(crate::HostError::refused("none"))
        }
        async fn manage_schedule(&self, _: &str, _: &str) -> crate::HostResult<Value> {
            Err(crate::HostError::refused("none"))
        }
    }

    fn ctx(ws: &std::path::Path, allow_private: bool) -> ToolCtx {
        let mut agent = AgentSettings::new("p");
        agent.tools = vec!["http_fetch".into()];
        ToolCtx {
            ws: Workspace::new(ws).unwrap(),
            policy: Policy::new(&[], &[], PolicyDefault::Deny).unwrap(),
            owner: Owner::Chat(1),
            agent_name: "a".into(),
            agent,
            depth: 0,
            host: Arc::new(NoHost),
            env: vec![],
            shell_timeout: Duration::from_secs(5),
            sandbox: None,
            output_max: 1 << 20,
            http: HttpLimits { allow_private, max_bytes: 1000, timeout: Duration::from_secs(5), max_redirects: 3 },
            search: None,
            mcp: vec![],
            mcp_hub: None,
            team: false,
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_before_any_connection_and_redirects_are_followed_by_hand() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new()
            .route(
                "/start",
                axum::routing::get(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    async { (axum::http::StatusCode::FOUND, [("location", "/big")]) }
                }),
            )
            .route("/big", axum::routing::get(|| async { "x".repeat(5000) }))
            .route("/loop", axum::routing::get(|| async { (axum::http::StatusCode::FOUND, [("location", "/loop")]) }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let d = tempfile::tempdir().unwrap();
        let strict = ctx(d.path(), false);
        for url in [
            format!("http://127.0.0.1:{port}/start"),
            format!("http://localhost:{port}/start"),
            format!("http://[::1]:{port}/start"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://10.0.0.1/".to_string(),
            "http://[::ffff:127.0.0.1]/".to_string(),
        ] {
            match crate::tools::call(&strict, "http_fetch", &json!({"url": url}), false).await {
                ToolOutcome::Err(e) => assert!(e.contains("refused"), "{url}: {e}"),
                other => panic!("{url} was fetched: {other:?}"),
            }
        }
        assert!(
            matches!(crate::tools::call(&strict, "http_fetch", &json!({"url": "file:///etc/passwd"}), false).await, ToolOutcome::Err(e) if e.contains("only http"))
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0, "no refused request reached the server");
        // Allowed: the redirect is followed by hand and the body is capped.
        let open = ctx(d.path(), true);
        match crate::tools::call(&open, "http_fetch", &json!({"url": format!("http://127.0.0.1:{port}/start")}), false).await {
            ToolOutcome::Ok(body) => {
                assert!(body.starts_with("HTTP 200"), "{body}");
                assert!(body.contains("cut at 1000 bytes") && body.len() < 1300, "{}", body.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(
            matches!(crate::tools::call(&open, "http_fetch", &json!({"url": format!("http://127.0.0.1:{port}/loop")}), false).await, ToolOutcome::Err(e) if e.contains("redirects"))
        );
    }
}
