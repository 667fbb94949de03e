//! Reading what coding CLIs stream on stdout (Claude Code's stream-json, `codex exec --json`,
//! Gemini CLI's stream-json) into owl's transcript entries, usage and final result: the same
//! shapes the built-in agent records, so `owl transcript` and `owl usage` show both alike.
//!
//! Lines that are not JSON, or JSON of a kind not known here, are ignored (they stay in the
//! task's log): CLIs add event kinds over time and a parser must not fail on them.

use crate::msg::{ToolCall, Usage};
use owl_core::coding::CliFormat;
use owl_core::transcript::Entry;
use serde_json::{json, Value};
use std::collections::HashMap;

/// What one line meant.
#[derive(Clone, Debug, PartialEq)]
pub enum CliEvent {
    /// A transcript entry (an assistant step, a tool result or a note).
    Entry(Entry),
    /// Tokens (and the cost, when the CLI reports it) of the calls so far.
    Usage { model: String, usage: Usage, cost_usd: Option<f64> },
    /// The CLI's final answer.
    Result { text: String, is_error: bool },
    /// What the CLI said about a subscription window (Claude Code's `rate_limit_event`,
    /// Codex's rate limits): how much of it is used and when it resets.
    Window(owl_core::budget::WindowReading),
}

/// A stateful reader for one run's stdout lines.
pub struct CliParser {
    format: CliFormat,
    model: String,
    /// Tool names by call id (results name only the id).
    calls: HashMap<String, String>,
    /// Gemini streams assistant text in pieces; they become one entry.
    text: String,
    /// Codex: the last agent message is the answer.
    last_message: Option<String>,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Tool output as text: a string, or a list of `{"type":"text","text":…}` blocks.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Seconds since the epoch, or an RFC 3339 string, as an instant.
fn instant(v: &Value) -> Option<owl_core::Timestamp> {
    match v {
        Value::Number(n) => n.as_f64().map(|secs| owl_core::Timestamp((secs * 1000.0) as i64)),
        Value::String(t) => owl_core::Timestamp::parse_rfc3339(t).ok(),
        _ => None,
    }
}

/// The subscription windows a line reports, in the shapes the CLIs use: Claude Code's
/// `{"type":"rate_limit_event","rate_limit_info":{…}}` (a status, a reset, and a utilization
/// where given, also per window under `unifiedWindows`), and Codex's `rate_limits` with
/// `primary` and `secondary` windows (`used_percent`, `window_minutes`, `resets_at` or
/// `resets_in_seconds`), on a `token_count` event or a rate-limit update.
fn windows(v: &Value) -> Vec<owl_core::budget::WindowReading> {
    use owl_core::budget::WindowReading;
    let mut out = vec![];
    if v["type"] == "rate_limit_event" {
        let info = &v["rate_limit_info"];
        let name = info["rateLimitType"].as_str().unwrap_or("five_hour").to_string();
        let fraction = |w: &Value| w["utilization"].as_f64().map(|f| if f <= 1.0 { f * 100.0 } else { f });
        out.push(WindowReading {
            name: name.clone(),
            used_percent: fraction(info),
            resets_at: instant(&info["resetsAt"]),
            minutes: None,
            rejected: info["status"] == "rejected",
        });
        if let Some(ws) = info["unifiedWindows"].as_object() {
            for (n, w) in ws {
                if *n == name && out[0].used_percent.is_some() {
                    continue;
                }
                out.retain(|r| r.name != *n);
                out.push(WindowReading {
                    name: n.clone(),
                    used_percent: fraction(w),
                    resets_at: instant(&w["resetsAt"]),
                    minutes: None,
                    rejected: w["status"] == "rejected" || (*n == name && info["status"] == "rejected"),
                });
            }
        }
        return out;
    }
    let limits = [&v["rate_limits"], &v["payload"]["rate_limits"], &v["msg"]["rate_limits"]].into_iter().find(|l| l.is_object());
    if let Some(l) = limits {
        for slot in ["primary", "secondary"] {
            let w = &l[slot];
            if !w.is_object() {
                continue;
            }
            let minutes = w["window_minutes"].as_u64().map(|m| m as u32);
            let name = match minutes {
                Some(300) => "five_hour".to_string(),
                Some(10080) => "seven_day".to_string(),
                _ => slot.to_string(),
            };
            let resets_at = instant(&w["resets_at"]).or_else(|| {
                w["resets_in_seconds"].as_f64().map(|secs| {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
                    owl_core::Timestamp(now + (secs * 1000.0) as i64)
                })
            });
            let used = w["used_percent"].as_f64();
            out.push(WindowReading { name, used_percent: used, resets_at, minutes, rejected: used.is_some_and(|u| u >= 100.0) });
        }
    }
    out
}

impl CliParser {
    pub fn new(format: CliFormat) -> Self {
        CliParser { format, model: String::new(), calls: HashMap::new(), text: String::new(), last_message: None }
    }

    /// The stream format this parser reads.
    pub fn format(&self) -> CliFormat {
        self.format
    }

    /// The model the CLI said it uses, once known.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Reads one line of stdout.
    pub fn line(&mut self, line: &str) -> Vec<CliEvent> {
        let line = line.trim();
        if !line.starts_with('{') {
            return vec![];
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else { return vec![] };
        let mut out = match self.format {
            CliFormat::ClaudeStreamJson => self.claude(&v),
            CliFormat::CodexJson => self.codex(&v),
            CliFormat::GeminiStreamJson => self.gemini(&v),
            CliFormat::Raw => vec![],
        };
        out.extend(windows(&v).into_iter().map(CliEvent::Window));
        out
    }

    /// At the end of the stream: anything still buffered.
    pub fn finish(&mut self) -> Vec<CliEvent> {
        let mut out = self.flush_text();
        if let Some(text) = self.last_message.take() {
            out.push(CliEvent::Result { text, is_error: false });
        }
        out
    }

    fn call(&mut self, id: String, name: String, arguments: Value) -> ToolCall {
        self.calls.insert(id.clone(), name.clone());
        ToolCall { id, name, arguments }
    }

    fn tool(&self, id: &str, content: String, is_error: bool) -> CliEvent {
        let name = self.calls.get(id).cloned().unwrap_or_else(|| "tool".into());
        CliEvent::Entry(Entry::tool(id, name, content, is_error))
    }

    fn claude(&mut self, v: &Value) -> Vec<CliEvent> {
        match v["type"].as_str().unwrap_or("") {
            "system" if v["subtype"] == "init" => {
                self.model = s(&v["model"]);
                vec![CliEvent::Entry(Entry::note(format!("Claude Code session {} on {}", s(&v["session_id"]), self.model)))]
            }
            "assistant" => {
                let msg = &v["message"];
                if let Some(m) = msg["model"].as_str() {
                    self.model = m.to_string();
                }
                let mut text = Vec::new();
                let mut calls = Vec::new();
                for block in msg["content"].as_array().into_iter().flatten() {
                    match block["type"].as_str().unwrap_or("") {
                        "text" => text.push(s(&block["text"])),
                        "tool_use" => calls.push(self.call(s(&block["id"]), s(&block["name"]), block["input"].clone())),
                        _ => {}
                    }
                }
                if text.is_empty() && calls.is_empty() {
                    return vec![];
                }
                vec![CliEvent::Entry(Entry::assistant(text.join("\n"), calls))]
            }
            "user" => v["message"]["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| {
                    self.tool(b["tool_use_id"].as_str().unwrap_or(""), content_text(&b["content"]), b["is_error"].as_bool() == Some(true))
                })
                .collect(),
            "result" => {
                // Per-message usage repeats across the pieces of one message; the result's
                // totals are the ones to count.
                let us = &v["usage"];
                let cached = u(&us["cache_read_input_tokens"]);
                let usage = Usage {
                    input: u(&us["input_tokens"]) + u(&us["cache_creation_input_tokens"]) + cached,
                    output: u(&us["output_tokens"]),
                    cached,
                };
                let is_error = v["is_error"].as_bool() == Some(true) || v["subtype"].as_str().is_some_and(|st| st != "success");
                let mut text = s(&v["result"]);
                if text.is_empty() && is_error {
                    text = format!("the CLI ended with {}", s(&v["subtype"]));
                }
                vec![
                    CliEvent::Usage { model: self.model.clone(), usage, cost_usd: v["total_cost_usd"].as_f64() },
                    CliEvent::Result { text, is_error },
                ]
            }
            _ => vec![],
        }
    }

    fn codex(&mut self, v: &Value) -> Vec<CliEvent> {
        match v["type"].as_str().unwrap_or("") {
            "thread.started" => vec![CliEvent::Entry(Entry::note(format!("Codex thread {}", s(&v["thread_id"]))))],
            "item.started" => {
                let item = &v["item"];
                match self.codex_call(item) {
                    Some(call) => vec![CliEvent::Entry(Entry::assistant("", vec![call]))],
                    None => vec![],
                }
            }
            "item.completed" => {
                let item = &v["item"];
                let id = s(&item["id"]);
                match item["type"].as_str().unwrap_or("") {
                    "agent_message" => {
                        let text = s(&item["text"]);
                        self.last_message = Some(text.clone());
                        vec![CliEvent::Entry(Entry::assistant(text, vec![]))]
                    }
                    "reasoning" => vec![CliEvent::Entry(Entry::note(format!("reasoning: {}", s(&item["text"]))))],
                    "error" => vec![CliEvent::Entry(Entry::note(format!("error: {}", s(&item["message"]))))],
                    "todo_list" => vec![],
                    _ => {
                        let mut out = vec![];
                        if !self.calls.contains_key(&id) {
                            if let Some(call) = self.codex_call(item) {
                                out.push(CliEvent::Entry(Entry::assistant("", vec![call])));
                            }
                        }
                        let failed = item["status"] == "failed" || item["exit_code"].as_i64().is_some_and(|c| c != 0);
                        let content = match item["type"].as_str().unwrap_or("") {
                            "command_execution" => {
                                format!(
                                    "exit {}\n{}",
                                    item["exit_code"].as_i64().map(|c| c.to_string()).unwrap_or("?".into()),
                                    s(&item["aggregated_output"])
                                )
                            }
                            "file_change" => item["changes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|c| format!("{} {}", s(&c["kind"]), s(&c["path"])))
                                .collect::<Vec<_>>()
                                .join("\n"),
                            _ => item.get("result").or(item.get("error")).map(content_text).unwrap_or_else(|| s(&item["status"])),
                        };
                        out.push(self.tool(&id, content, failed));
                        out
                    }
                }
            }
            "turn.completed" => {
                let us = &v["usage"];
                let cached = u(&us["cached_input_tokens"]);
                let usage = Usage { input: u(&us["input_tokens"]), output: u(&us["output_tokens"]), cached };
                let model = if self.model.is_empty() { "codex".to_string() } else { self.model.clone() };
                vec![CliEvent::Usage { model, usage, cost_usd: None }]
            }
            "turn.failed" => {
                let msg = s(&v["error"]["message"]);
                self.last_message = None;
                vec![CliEvent::Entry(Entry::note(format!("turn failed: {msg}"))), CliEvent::Result { text: msg, is_error: true }]
            }
            "error" => vec![CliEvent::Entry(Entry::note(format!("error: {}", s(&v["message"]))))],
            _ => vec![],
        }
    }

    /// A Codex item that is an action, as a tool call.
    fn codex_call(&mut self, item: &Value) -> Option<ToolCall> {
        let id = s(&item["id"]);
        let (name, args) = match item["type"].as_str()? {
            "command_execution" => ("shell".to_string(), json!({"command": item["command"]})),
            "file_change" => ("apply_patch".to_string(), json!({"changes": item["changes"]})),
            "mcp_tool_call" => {
                (format!("{}.{}", s(&item["server"]), s(&item["tool"])), item.get("arguments").cloned().unwrap_or(Value::Null))
            }
            "web_search" => ("web_search".to_string(), json!({"query": item["query"]})),
            _ => return None,
        };
        Some(self.call(id, name, args))
    }

    fn flush_text(&mut self) -> Vec<CliEvent> {
        if self.text.is_empty() {
            return vec![];
        }
        let text = std::mem::take(&mut self.text);
        self.last_message = Some(text.clone());
        vec![CliEvent::Entry(Entry::assistant(text, vec![]))]
    }

    fn gemini(&mut self, v: &Value) -> Vec<CliEvent> {
        let kind = v["type"].as_str().unwrap_or("");
        if kind == "message" && v["role"] == "assistant" {
            self.text.push_str(v["content"].as_str().unwrap_or(""));
            return vec![];
        }
        let mut out = self.flush_text();
        match kind {
            "init" => {
                self.model = s(&v["model"]);
                let session = v.get("session_id").or(v.get("sessionId")).map(s).unwrap_or_default();
                out.push(CliEvent::Entry(Entry::note(format!("Gemini CLI session {session} on {}", self.model))));
            }
            "tool_use" => {
                let call = self.call(s(&v["tool_id"]), s(&v["tool_name"]), v["parameters"].clone());
                out.push(CliEvent::Entry(Entry::assistant("", vec![call])));
            }
            "tool_result" => {
                let failed = v["status"].as_str().is_some_and(|st| st != "success");
                let content = if failed && v["output"].is_null() {
                    v["error"]["message"].as_str().unwrap_or("failed").to_string()
                } else {
                    content_text(&v["output"])
                };
                out.push(self.tool(v["tool_id"].as_str().unwrap_or(""), content, failed));
            }
            "error" => out.push(CliEvent::Entry(Entry::note(format!("{}: {}", s(&v["severity"]), s(&v["message"]))))),
            "result" => {
                let st = &v["stats"];
                let pick = |a: &str, b: &str| st.get(a).or(st.get(b)).map(u).unwrap_or(0);
                let usage = Usage {
                    input: pick("input_tokens", "inputTokens"),
                    output: pick("output_tokens", "outputTokens"),
                    cached: pick("cached", "cachedTokens"),
                };
                out.push(CliEvent::Usage { model: self.model.clone(), usage, cost_usd: None });
                let is_error = v["status"].as_str().is_some_and(|x| x != "success");
                let text = if is_error {
                    v["error"]["message"].as_str().unwrap_or("the CLI reported an error").to_string()
                } else {
                    self.last_message.take().unwrap_or_default()
                };
                self.last_message = None;
                out.push(CliEvent::Result { text, is_error });
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: CliFormat, lines: &[&str]) -> Vec<CliEvent> {
        let mut p = CliParser::new(format);
        let mut out: Vec<CliEvent> = lines.iter().flat_map(|l| p.line(l)).collect();
        out.extend(p.finish());
        out
    }

    fn entries(ev: &[CliEvent]) -> Vec<Value> {
        ev.iter().filter_map(|e| if let CliEvent::Entry(v) = e { Some(serde_json::to_value(v).unwrap()) } else { None }).collect()
    }

    #[test]
    fn claude_stream_json_becomes_calls_results_usage_and_an_answer() {
        let ev = run(
            CliFormat::ClaudeStreamJson,
            &[
                r#"{"type":"system","subtype":"init","session_id":"s1","model":"claude-sonnet-4-5","tools":["Bash"]}"#,
                "not json at all",
                r#"{"type":"assistant","message":{"id":"m1","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Looking."},{"type":"tool_use","id":"tu1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":5,"output_tokens":3}}}"#,
                r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"tu1","content":[{"type":"text","text":"a.rs"}],"is_error":false}]}}"#,
                r#"{"type":"some_future_kind","x":1}"#,
                r#"{"type":"result","subtype":"success","is_error":false,"result":"Fixed it.","total_cost_usd":0.0123,"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":42}}"#,
            ],
        );
        let e = entries(&ev);
        assert_eq!(e[1]["tool_calls"][0]["name"], "Bash");
        assert_eq!(e[1]["tool_calls"][0]["arguments"]["command"], "ls");
        assert_eq!(e[2]["type"], "tool");
        assert_eq!(e[2]["name"], "Bash");
        assert_eq!(e[2]["content"], "a.rs");
        assert!(ev.contains(&CliEvent::Usage {
            model: "claude-sonnet-4-5".into(),
            usage: Usage { input: 115, output: 42, cached: 100 },
            cost_usd: Some(0.0123)
        }));
        assert!(ev.contains(&CliEvent::Result { text: "Fixed it.".into(), is_error: false }));
    }

    #[test]
    fn claude_error_results_are_errors() {
        let ev = run(CliFormat::ClaudeStreamJson, &[r#"{"type":"result","subtype":"error_max_turns","is_error":true,"usage":{}}"#]);
        assert!(matches!(&ev[1], CliEvent::Result { is_error: true, text } if text.contains("error_max_turns")));
    }

    #[test]
    fn codex_items_pair_calls_with_results_and_the_last_message_answers() {
        let ev = run(
            CliFormat::CodexJson,
            &[
                r#"{"type":"thread.started","thread_id":"t1"}"#,
                r#"{"type":"turn.started"}"#,
                r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","status":"in_progress"}}"#,
                r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"x\n","exit_code":2,"status":"failed"}}"#,
                r#"{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"src/a.rs","kind":"update"}],"status":"completed"}}"#,
                r#"{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Done."}}"#,
                r#"{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":40,"output_tokens":7}}"#,
            ],
        );
        let e = entries(&ev);
        assert_eq!(e[1]["tool_calls"][0]["name"], "shell");
        assert_eq!(e[2]["is_error"], true);
        assert!(e[2]["content"].as_str().unwrap().starts_with("exit 2"));
        assert_eq!(e[3]["tool_calls"][0]["name"], "apply_patch");
        assert_eq!(e[4]["content"], "update src/a.rs");
        assert!(ev.contains(&CliEvent::Usage {
            model: "codex".into(),
            usage: Usage { input: 100, output: 7, cached: 40 },
            cost_usd: None
        }));
        assert_eq!(ev.last(), Some(&CliEvent::Result { text: "Done.".into(), is_error: false }));
    }

    #[test]
    fn gemini_deltas_join_into_one_message() {
        let ev = run(
            CliFormat::GeminiStreamJson,
            &[
                r#"{"type":"init","session_id":"g1","model":"gemini-2.5-pro"}"#,
                r#"{"type":"message","role":"user","content":"do it"}"#,
                r#"{"type":"message","role":"assistant","content":"Work","delta":true}"#,
                r#"{"type":"message","role":"assistant","content":"ing.","delta":true}"#,
                r#"{"type":"tool_use","tool_name":"run_shell_command","tool_id":"c1","parameters":{"command":"ls"}}"#,
                r#"{"type":"tool_result","tool_id":"c1","status":"success","output":"a.rs"}"#,
                r#"{"type":"message","role":"assistant","content":"All done.","delta":true}"#,
                r#"{"type":"result","status":"success","stats":{"total_tokens":30,"input_tokens":20,"output_tokens":10}}"#,
            ],
        );
        let e = entries(&ev);
        assert_eq!(e[1]["content"], "Working.");
        assert_eq!(e[3]["name"], "run_shell_command");
        assert_eq!(e[4]["content"], "All done.");
        assert!(ev.contains(&CliEvent::Result { text: "All done.".into(), is_error: false }));
        assert!(ev.iter().any(|x| matches!(x, CliEvent::Usage { usage, .. } if usage.input == 20 && usage.output == 10)));
    }

    #[test]
    fn subscription_windows_are_read_from_both_clis() {
        let w = |ev: Vec<CliEvent>| -> Vec<owl_core::budget::WindowReading> {
            ev.into_iter().filter_map(|e| if let CliEvent::Window(w) = e { Some(w) } else { None }).collect()
        };
        // Claude Code: a status-only event, then one with utilization per window.
        let bare = w(run(
            CliFormat::ClaudeStreamJson,
            &[
                r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1784283600,"rateLimitType":"five_hour","overageStatus":"allowed","isUsingOverage":false}}"#,
            ],
        ));
        assert_eq!(bare.len(), 1);
        assert_eq!((bare[0].name.as_str(), bare[0].used_percent, bare[0].rejected), ("five_hour", None, false));
        assert_eq!(bare[0].resets_at, Some(owl_core::Timestamp(1_784_283_600_000)));
        let full = w(run(
            CliFormat::ClaudeStreamJson,
            &[
                r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1784283600,"rateLimitType":"five_hour","utilization":1,"unifiedWindows":{"five_hour":{"utilization":1,"resetsAt":1784283600},"seven_day":{"utilization":0.49,"resetsAt":1784800000}}}}"#,
            ],
        ));
        let seven = full.iter().find(|r| r.name == "seven_day").unwrap();
        assert!((seven.used_percent.unwrap() - 49.0).abs() < 1e-9 && !seven.rejected);
        let five = full.iter().find(|r| r.name == "five_hour").unwrap();
        assert!(five.rejected && five.used_percent == Some(100.0));
        // Codex: rate limits on a token-count event, and on the rollout's wrapped form.
        let codex = w(run(
            CliFormat::CodexJson,
            &[
                r#"{"type":"token_count","rate_limits":{"primary":{"used_percent":27.0,"window_minutes":300,"resets_at":1782770922},"secondary":{"used_percent":4.0,"window_minutes":10080,"resets_in_seconds":5000}}}"#,
            ],
        ));
        assert_eq!(
            codex.iter().map(|r| (r.name.as_str(), r.used_percent)).collect::<Vec<_>>(),
            vec![("five_hour", Some(27.0)), ("seven_day", Some(4.0))]
        );
        assert!(codex[1].resets_at.is_some());
        let wrapped = w(run(
            CliFormat::CodexJson,
            &[r#"{"type":"event_msg","payload":{"type":"token_count","rate_limits":{"primary":{"used_percent":50,"window_minutes":60}}}}"#],
        ));
        assert_eq!((wrapped[0].name.as_str(), wrapped[0].minutes), ("primary", Some(60)));
        assert!(w(run(CliFormat::CodexJson, &[r#"{"type":"token_count","rate_limits":null}"#])).is_empty());
    }

    #[test]
    fn raw_output_yields_nothing() {
        assert!(run(CliFormat::Raw, &[r#"{"type":"result"}"#, "hello"]).is_empty());
    }
}
