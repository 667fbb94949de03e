//! Slack: the Web API calls owl makes with the bot token (post a message, answer a
//! `response_url`) and a Socket Mode connection made with the app-level token. Socket Mode
//! needs no public URL: owl asks `apps.connections.open` for a WebSocket URL, Slack sends
//! envelopes over it, and each is acknowledged by its `envelope_id` (Slack wants that within
//! three seconds, so the ack goes out before any work).

use crate::Outcome;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub struct WebApi {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl WebApi {
    pub fn new(api_url: &str, token: &str, timeout: Duration) -> Result<WebApi, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("owl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(WebApi { http, api: api_url.trim_end_matches('/').to_string(), token: token.to_string() })
    }

    /// Calls a Web API method with a JSON body. Slack answers HTTP 200 with `"ok": false` and
    /// an error code for most failures; 429 means rate limited.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, Outcome> {
        let resp = self
            .http
            .post(format!("{}/{method}", self.api))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| Outcome::Retry(format!("Slack cannot be reached: {}", e.without_url())))?;
        if resp.status().as_u16() == 429 {
            let after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
            return Err(Outcome::Retry(format!("Slack rate-limited {method} (retry after {after}s)")));
        }
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| Outcome::Retry(format!("Slack answered {status} to {method} with no JSON: {e}")))?;
        if v["ok"].as_bool() == Some(true) {
            return Ok(v);
        }
        let err = v["error"].as_str().unwrap_or("unknown_error").to_string();
        let hint = match err.as_str() {
            "channel_not_found" => " (a channel id like C0123ABCD, and the bot invited: /invite @owl)",
            "not_in_channel" => " (invite the bot to the channel: /invite @owl)",
            "invalid_auth" | "not_authed" | "token_revoked" => " (the bot token of [slack]: xoxb-...)",
            "missing_scope" => " (add the scope the app manifest in docs/slack.md lists, then reinstall the app)",
            _ => "",
        };
        let msg = format!("Slack refused {method}: {err}{hint}");
        Err(match err.as_str() {
            "ratelimited" | "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => Outcome::Retry(msg),
            _ => Outcome::Refused(msg),
        })
    }

    /// Posts a message; its `ts` (the id replies thread under).
    pub async fn post(&self, channel: &str, text: &str, blocks: &Value, thread_ts: Option<&str>) -> Result<String, Outcome> {
        let mut body = json!({"channel": channel, "text": text, "blocks": blocks, "unfurl_links": false});
        if let Some(t) = thread_ts {
            body["thread_ts"] = json!(t);
        }
        let v = self.call("chat.postMessage", &body).await?;
        Ok(v["ts"].as_str().unwrap_or_default().to_string())
    }

    /// Answers a slash command or a button through its `response_url`.
    pub async fn respond(&self, response_url: &str, text: &str, in_channel: bool) -> Result<(), String> {
        let body = json!({"text": text, "response_type": if in_channel { "in_channel" } else { "ephemeral" }, "replace_original": false});
        let resp =
            self.http.post(response_url).json(&body).send().await.map_err(|e| format!("cannot answer Slack: {}", e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("Slack answered {} to a response", resp.status()))
        }
    }

    /// `apps.connections.open` (with the app-level token): the WebSocket URL to connect to.
    pub async fn open_connection(&self) -> Result<String, String> {
        let v = self.call("apps.connections.open", &json!({})).await.map_err(|o| o.answer().to_string())?;
        v["url"].as_str().map(String::from).ok_or_else(|| "Slack's apps.connections.open answer has no url".to_string())
    }
}

/// The blocks of a notice: its text, the next step, and buttons (`(label, action_id, value,
/// style)`; a value starting with `http` makes a link button).
pub fn blocks(title: &str, text: &str, next: Option<&str>, buttons: &[(String, String, String, Option<&str>)]) -> Value {
    let mut body = format!("*{}*", escape(&title.chars().take(200).collect::<String>()));
    if !text.is_empty() {
        let escaped = escape(text);
        // A section holds at most 3000 characters; cut before an entity rather than inside it.
        let mut cut: String = escaped.chars().take(2700).collect();
        if let Some(amp) = cut.rfind('&') {
            if !cut[amp..].contains(';') {
                cut.truncate(amp);
            }
        }
        body.push_str(&format!("\n{cut}"));
    }
    let mut out = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": body}})];
    if let Some(n) = next {
        out.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Next: `{}`", escape(n))}]}));
    }
    if !buttons.is_empty() {
        let elements: Vec<Value> = buttons
            .iter()
            .map(|(label, action, value, style)| {
                let mut b = json!({"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action});
                if value.starts_with("http://") || value.starts_with("https://") {
                    b["url"] = json!(value);
                } else {
                    b["value"] = json!(value);
                }
                if let Some(s) = style {
                    b["style"] = json!(s);
                }
                b
            })
            .collect();
        out.push(json!({"type": "actions", "elements": elements}));
    }
    Value::Array(out)
}

/// Slack's three escapes for message text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One envelope from Slack.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub envelope_id: Option<String>,
    /// hello, events_api, slash_commands, interactive, disconnect.
    pub kind: String,
    pub payload: Value,
    /// Set when Slack sends an envelope again because it saw no ack.
    pub retry_attempt: u32,
    pub reason: Option<String>,
}

pub struct SocketMode {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl SocketMode {
    pub async fn connect(url: &str) -> Result<SocketMode, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("cannot open Slack's WebSocket: {e}"))?;
        Ok(SocketMode { ws })
    }

    /// The next envelope; `Ok(None)` when the connection closed or went quiet past `idle`
    /// (the caller connects again).
    pub async fn next(&mut self, idle: Duration) -> Result<Option<Envelope>, String> {
        loop {
            let frame = match tokio::time::timeout(idle, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(format!("Slack's WebSocket broke: {e}")),
                Ok(Some(Ok(f))) => f,
            };
            match frame {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).map_err(|e| format!("Slack sent a frame that is not JSON: {e}"))?;
                    return Ok(Some(Envelope {
                        envelope_id: v["envelope_id"].as_str().map(String::from),
                        kind: v["type"].as_str().unwrap_or_default().to_string(),
                        payload: v["payload"].clone(),
                        retry_attempt: v["retry_attempt"].as_u64().unwrap_or(0) as u32,
                        reason: v["reason"].as_str().map(String::from),
                    }));
                }
                Message::Ping(p) => {
                    let _ = self.ws.send(Message::Pong(p)).await;
                }
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
    }

    /// Acknowledges an envelope.
    pub async fn ack(&mut self, envelope_id: &str) -> Result<(), String> {
        self.ws
            .send(Message::text(json!({"envelope_id": envelope_id}).to_string()))
            .await
            .map_err(|e| format!("cannot acknowledge a Slack envelope: {e}"))
    }
}
