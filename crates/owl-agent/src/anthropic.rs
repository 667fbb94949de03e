//! The Anthropic Messages API (`POST {base}/v1/messages`), streaming or not.

use crate::msg::{ChatRequest, ChatResponse, Delta, Message, Sink, ToolCall, Usage};
use crate::provider::{json_body, send, Provider, ProviderError};
use crate::sse::SseReader;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub const API_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    name: String,
    url: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Anthropic {
    pub fn new(name: &str, base_url: Option<&str>, key: Option<String>, timeout: Duration) -> Self {
        let base = base_url.unwrap_or("https://api.anthropic.com").trim_end_matches('/');
        Anthropic { name: name.into(), url: format!("{base}/v1/messages"), key, http: crate::http_client(timeout) }
    }
}

pub(crate) fn body(req: &ChatRequest) -> Value {
    let mut system = Vec::new();
    // Anthropic wants alternating user/assistant turns: consecutive blocks of one role merge.
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    let push = |role: &'static str, block: Value, turns: &mut Vec<(&str, Vec<Value>)>| match turns.last_mut() {
        Some((r, blocks)) if *r == role => blocks.push(block),
        _ => turns.push((role, vec![block])),
    };
    for m in &req.messages {
        match m {
            Message::System { content } => system.push(content.clone()),
            Message::User { content } => push("user", json!({"type": "text", "text": content}), &mut turns),
            Message::Assistant { content, tool_calls } => {
                if !content.is_empty() {
                    push("assistant", json!({"type": "text", "text": content}), &mut turns);
                }
                for c in tool_calls {
                    let input = if c.arguments.is_object() { c.arguments.clone() } else { json!({}) };
                    push("assistant", json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}), &mut turns);
                }
            }
            Message::Tool { call_id, content, is_error, .. } => {
                push("user", json!({"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error}), &mut turns)
            }
        }
    }
    let messages: Vec<Value> = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    let mut b = json!({"model": req.model, "max_tokens": req.max_output_tokens, "messages": messages});
    if !system.is_empty() {
        b["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = req.temperature {
        b["temperature"] = json!(t);
    }
    if !req.tools.is_empty() {
        b["tools"] =
            req.tools.iter().map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters})).collect();
        if req.forbid_tools {
            b["tool_choice"] = json!({"type": "none"});
        } else if req.require_tool {
            b["tool_choice"] = json!({"type": "any"});
        }
    }
    if req.stream {
        b["stream"] = json!(true);
    }
    b
}

fn usage(u: &Value) -> Usage {
    let fresh = u["input_tokens"].as_u64().unwrap_or(0);
    let read = u["cache_read_input_tokens"].as_u64().unwrap_or(0);
    let created = u["cache_creation_input_tokens"].as_u64().unwrap_or(0);
    Usage { input: fresh + read + created, output: u["output_tokens"].as_u64().unwrap_or(0), cached: read }
}

fn malformed(name: &str, what: &str) -> ProviderError {
    ProviderError::Fatal(format!("{name}: malformed response: {what}"))
}

fn api_error(name: &str, v: &Value) -> ProviderError {
    let kind = v["error"]["type"].as_str().unwrap_or("error");
    let message = format!("{name}: {kind}: {}", v["error"]["message"].as_str().unwrap_or(""));
    if matches!(kind, "overloaded_error" | "rate_limit_error" | "api_error") {
        ProviderError::Retryable { message, retry_after: None }
    } else {
        ProviderError::Fatal(message)
    }
}

pub(crate) fn parse_reply(name: &str, v: &Value) -> Result<ChatResponse, ProviderError> {
    if v["type"] == "error" {
        return Err(api_error(name, v));
    }
    let blocks = v["content"].as_array().ok_or_else(|| malformed(name, "no content array"))?;
    let mut out = ChatResponse {
        usage: usage(&v["usage"]),
        model: v["model"].as_str().unwrap_or_default().into(),
        stop_reason: v["stop_reason"].as_str().unwrap_or_default().into(),
        ..Default::default()
    };
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => out.content.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let id = b["id"].as_str().ok_or_else(|| malformed(name, "a tool_use block has no id"))?;
                let tname = b["name"].as_str().ok_or_else(|| malformed(name, "a tool_use block has no name"))?;
                out.tool_calls.push(ToolCall { id: id.into(), name: tname.into(), arguments: b["input"].clone() });
            }
            _ => {} // thinking and other blocks are not part of the answer
        }
    }
    Ok(out)
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, req: &ChatRequest, sink: Sink<'_>) -> Result<ChatResponse, ProviderError> {
        let mut r = self.http.post(&self.url).header("anthropic-version", API_VERSION).json(&body(req));
        if let Some(k) = &self.key {
            r = r.header("x-api-key", k);
        }
        let resp = send(&self.name, r).await?;
        if !req.stream {
            return parse_reply(&self.name, &json_body(&self.name, resp).await?);
        }
        let mut reader = SseReader::new(Box::pin(resp.bytes_stream()));
        let mut out = ChatResponse::default();
        // Content blocks by index: text, or a tool call whose JSON input arrives in fragments.
        let mut tools: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
        let mut stopped = false;
        while let Some(ev) =
            reader.next().await.map_err(|m| ProviderError::Retryable { message: format!("{}: {m}", self.name), retry_after: None })?
        {
            let v: Value = match serde_json::from_str(&ev.data) {
                Ok(v) => v,
                Err(e) => return Err(malformed(&self.name, &format!("a stream event is not JSON ({e})"))),
            };
            match v["type"].as_str().or(ev.event.as_deref()).unwrap_or_default() {
                "message_start" => {
                    out.model = v["message"]["model"].as_str().unwrap_or_default().into();
                    out.usage = usage(&v["message"]["usage"]);
                }
                "content_block_start" => {
                    let idx = v["index"].as_u64().unwrap_or(0);
                    let cb = &v["content_block"];
                    if cb["type"] == "tool_use" {
                        let name = cb["name"].as_str().unwrap_or_default().to_string();
                        sink(Delta::ToolStart { name: name.clone() });
                        tools.insert(idx, (cb["id"].as_str().unwrap_or_default().into(), name, String::new()));
                    } else if let Some(t) = cb["text"].as_str().filter(|t| !t.is_empty()) {
                        out.content.push_str(t);
                        sink(Delta::Text(t.into()));
                    }
                }
                "content_block_delta" => {
                    let idx = v["index"].as_u64().unwrap_or(0);
                    let d = &v["delta"];
                    match d["type"].as_str() {
                        Some("text_delta") => {
                            let t = d["text"].as_str().unwrap_or_default();
                            out.content.push_str(t);
                            sink(Delta::Text(t.into()));
                        }
                        Some("input_json_delta") => {
                            if let Some(e) = tools.get_mut(&idx) {
                                e.2.push_str(d["partial_json"].as_str().unwrap_or_default());
                            }
                        }
                        _ => {}
                    }
                }
                "message_delta" => {
                    if let Some(s) = v["delta"]["stop_reason"].as_str() {
                        out.stop_reason = s.into();
                    }
                    if let Some(o) = v["usage"]["output_tokens"].as_u64() {
                        out.usage.output = o;
                    }
                }
                "message_stop" => {
                    stopped = true;
                    break;
                }
                "error" => return Err(api_error(&self.name, &v)),
                _ => {} // ping, content_block_stop
            }
        }
        if !stopped {
            return Err(ProviderError::Retryable {
                message: format!("{}: the stream ended before message_stop", self.name),
                retry_after: None,
            });
        }
        for (_, (id, name, json)) in tools {
            if id.is_empty() || name.is_empty() {
                return Err(malformed(&self.name, "a streamed tool_use block has no id or name"));
            }
            let arguments = if json.trim().is_empty() { json!({}) } else { serde_json::from_str(&json).unwrap_or(Value::String(json)) };
            out.tool_calls.push(ToolCall { id, name, arguments });
        }
        Ok(out)
    }
}
