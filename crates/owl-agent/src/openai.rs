//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`), streaming or not.

use crate::msg::{ChatRequest, ChatResponse, Delta, Message, Sink, ToolCall, Usage};
use crate::provider::{json_body, send, Provider, ProviderError};
use crate::sse::SseReader;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct OpenAi {
    name: String,
    url: String,
    key: Option<String>,
    http: reqwest::Client,
    /// Whether the output limit is sent as `max_completion_tokens` (OpenAI's own API, where
    /// reasoning models refuse `max_tokens`) or `max_tokens` (what compatible servers know).
    /// Starts from the host and flips once when a server refuses the one it was sent.
    completion_field: AtomicBool,
}

impl OpenAi {
    pub fn new(name: &str, base_url: Option<&str>, key: Option<String>, timeout: Duration) -> Self {
        let base = base_url.unwrap_or("https://api.openai.com/v1").trim_end_matches('/');
        let official = base.starts_with("https://api.openai.com/");
        OpenAi {
            name: name.into(),
            url: format!("{base}/chat/completions"),
            key,
            http: crate::http_client(timeout),
            completion_field: AtomicBool::new(official),
        }
    }

    fn limit_field(&self) -> &'static str {
        if self.completion_field.load(Ordering::Relaxed) {
            "max_completion_tokens"
        } else {
            "max_tokens"
        }
    }

    async fn post(&self, req: &ChatRequest) -> Result<reqwest::Response, ProviderError> {
        let mut tried_other = false;
        loop {
            let field = self.limit_field();
            let mut r = self.http.post(&self.url).json(&body(req, field));
            if let Some(k) = &self.key {
                r = r.bearer_auth(k);
            }
            match send(&self.name, r).await {
                Err(ProviderError::Fatal(m)) if !tried_other && refuses_limit_field(&m, field) => {
                    tracing::info!(provider = %self.name, refused = field, "the server refused the output-limit field; using the other name");
                    self.completion_field.store(field == "max_tokens", Ordering::Relaxed);
                    tried_other = true;
                }
                other => return other,
            }
        }
    }
}

/// Whether an error says the server does not take `field` (OpenAI: "Unsupported parameter:
/// 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.";
/// older servers: "Unrecognized request argument supplied: max_completion_tokens").
fn refuses_limit_field(message: &str, field: &str) -> bool {
    message.contains(" 400 ") && message.contains(field) && {
        let m = message.to_ascii_lowercase();
        ["unsupported", "unrecognized", "unknown", "not supported", "extra inputs", "not permitted"].iter().any(|w| m.contains(w))
    }
}

pub(crate) fn body(req: &ChatRequest, limit_field: &str) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| match m {
            Message::System { content } => json!({"role": "system", "content": content}),
            Message::User { content } => json!({"role": "user", "content": content}),
            Message::Assistant { content, tool_calls } => {
                let mut v = json!({"role": "assistant", "content": if content.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(content) }});
                if !tool_calls.is_empty() {
                    v["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            let args = match &c.arguments {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args}})
                        })
                        .collect();
                }
                v
            }
            Message::Tool { call_id, content, .. } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        })
        .collect();
    let mut b = json!({"model": req.model, "messages": messages});
    b[limit_field] = json!(req.max_output_tokens);
    if let Some(t) = req.temperature {
        b["temperature"] = json!(t);
    }
    if !req.tools.is_empty() {
        b["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        if req.forbid_tools {
            b["tool_choice"] = json!("none");
        } else if req.require_tool {
            b["tool_choice"] = json!("required");
        }
    }
    if req.stream {
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

fn parse_args(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return json!({});
    }
    // Invalid JSON is kept as a string so the tool can tell the model what went wrong.
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

fn usage(u: &Value) -> Usage {
    Usage {
        input: u["prompt_tokens"].as_u64().unwrap_or(0),
        output: u["completion_tokens"].as_u64().unwrap_or(0),
        cached: u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0),
    }
}

fn malformed(name: &str, what: &str) -> ProviderError {
    ProviderError::Fatal(format!("{name}: malformed response: {what}"))
}

pub(crate) fn parse_reply(name: &str, v: &Value) -> Result<ChatResponse, ProviderError> {
    if let Some(err) = v.get("error") {
        return Err(ProviderError::Fatal(format!("{name}: {}", err["message"].as_str().unwrap_or("error without a message"))));
    }
    let choice = v["choices"].get(0).ok_or_else(|| malformed(name, "no choices"))?;
    let msg = &choice["message"];
    if !msg.is_object() {
        return Err(malformed(name, "choices[0].message is missing"));
    }
    let mut tool_calls = Vec::new();
    if let Some(calls) = msg["tool_calls"].as_array() {
        for (i, c) in calls.iter().enumerate() {
            let fname = c["function"]["name"].as_str().ok_or_else(|| malformed(name, "a tool call has no function name"))?;
            let raw = match &c["function"]["arguments"] {
                Value::String(s) => parse_args(s),
                Value::Null => json!({}),
                other => other.clone(),
            };
            let id = c["id"].as_str().map(str::to_string).unwrap_or_else(|| format!("call_{i}"));
            tool_calls.push(ToolCall { id, name: fname.to_string(), arguments: raw });
        }
    }
    Ok(ChatResponse {
        content: msg["content"].as_str().unwrap_or_default().to_string(),
        tool_calls,
        usage: usage(&v["usage"]),
        model: v["model"].as_str().unwrap_or_default().to_string(),
        stop_reason: choice["finish_reason"].as_str().unwrap_or_default().to_string(),
    })
}

#[async_trait]
impl Provider for OpenAi {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, req: &ChatRequest, sink: Sink<'_>) -> Result<ChatResponse, ProviderError> {
        let resp = self.post(req).await?;
        if !req.stream {
            return parse_reply(&self.name, &json_body(&self.name, resp).await?);
        }
        let mut reader = SseReader::new(Box::pin(resp.bytes_stream()));
        let mut out = ChatResponse::default();
        // Tool calls arrive in pieces keyed by index: id and name first, arguments in fragments.
        let mut calls: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
        let mut finished = false;
        while let Some(ev) =
            reader.next().await.map_err(|m| ProviderError::Retryable { message: format!("{}: {m}", self.name), retry_after: None })?
        {
            if ev.data.trim() == "[DONE]" {
                finished = true;
                break;
            }
            let v: Value =
                serde_json::from_str(&ev.data).map_err(|e| malformed(&self.name, &format!("a stream chunk is not JSON ({e})")))?;
            if let Some(err) = v.get("error") {
                return Err(ProviderError::Fatal(format!("{}: {}", self.name, err["message"].as_str().unwrap_or("stream error"))));
            }
            if let Some(m) = v["model"].as_str() {
                out.model = m.to_string();
            }
            if v["usage"].is_object() {
                out.usage = usage(&v["usage"]);
            }
            let Some(choice) = v["choices"].get(0) else { continue };
            let d = &choice["delta"];
            if let Some(t) = d["content"].as_str() {
                if !t.is_empty() {
                    out.content.push_str(t);
                    sink(Delta::Text(t.to_string()));
                }
            }
            if let Some(tcs) = d["tool_calls"].as_array() {
                for tc in tcs {
                    let idx = tc["index"].as_u64().unwrap_or(0);
                    let e = calls.entry(idx).or_default();
                    if let Some(id) = tc["id"].as_str() {
                        e.0 = id.to_string();
                    }
                    if let Some(n) = tc["function"]["name"].as_str() {
                        e.1.push_str(n);
                        sink(Delta::ToolStart { name: n.to_string() });
                    }
                    if let Some(a) = tc["function"]["arguments"].as_str() {
                        e.2.push_str(a);
                    }
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                out.stop_reason = f.to_string();
            }
        }
        if !finished && out.stop_reason.is_empty() {
            return Err(ProviderError::Retryable {
                message: format!("{}: the stream ended before the reply was complete", self.name),
                retry_after: None,
            });
        }
        for (i, (id, name, args)) in calls {
            if name.is_empty() {
                return Err(malformed(&self.name, "a streamed tool call has no name"));
            }
            let id = if id.is_empty() { format!("call_{i}") } else { id };
            out.tool_calls.push(ToolCall { id, name, arguments: parse_args(&args) });
        }
        Ok(out)
    }
}
