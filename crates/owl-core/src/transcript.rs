//! What an agent's transcript holds, typed: the entries the tool loop and the coding CLIs
//! write, the tool calls and token counts inside them, and the usage record of one model
//! call. The stored JSON is the serde form of these types (`{"type": "assistant", …}`), so
//! every reader (the resuming tool loop, the step log, the CLI, the HTTP API) reads the same
//! fields the same way.

use crate::agent::Owner;
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One tool call the model asked for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call (generated when the provider gives none).
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them; parsed and validated by the tool.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub arguments: Value,
}

/// Tokens of one call.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's prompt cache (included in `input`).
    #[serde(default)]
    pub cached: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input + self.output
    }
    pub fn add(&mut self, o: Usage) {
        self.input += o.input;
        self.output += o.output;
        self.cached += o.cached;
    }
}

/// A provider that failed before another answered.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderFailure {
    pub provider: String,
    pub model: String,
    pub error: String,
}

/// A model's reply, as recorded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Absent for a coding CLI's steps (its usage is counted once, at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How long the model call took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Part of a chat turn (a chat's step limits count per turn).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chat_turn: bool,
    /// Providers tried first that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_before: Vec<ProviderFailure>,
}

/// One entry of a transcript.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    System {
        content: String,
    },
    User {
        content: String,
        /// owl's own reminder (a nudge to call a tool or to answer), not the submitter's words.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        nudge: bool,
    },
    Assistant(Reply),
    Tool {
        call_id: String,
        name: String,
        #[serde(default)]
        content: String,
        #[serde(default)]
        is_error: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    /// What owl noted: a resume, a timeout, a failure, a CLI session's start.
    Note {
        text: String,
        /// Calls whose results were never recorded when the task resumed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pending_calls: Vec<ToolCall>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failures: Vec<ProviderFailure>,
    },
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Entry {
    pub fn system(content: impl Into<String>) -> Entry {
        Entry::System { content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Entry {
        Entry::User { content: content.into(), nudge: false }
    }
    pub fn note(text: impl Into<String>) -> Entry {
        Entry::Note { text: text.into(), pending_calls: vec![], failures: vec![] }
    }
    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Entry {
        Entry::Assistant(Reply { content: content.into(), tool_calls, ..Reply::default() })
    }
    pub fn tool(call_id: impl Into<String>, name: impl Into<String>, content: impl Into<String>, is_error: bool) -> Entry {
        Entry::Tool { call_id: call_id.into(), name: name.into(), content: content.into(), is_error, ms: None }
    }

    /// The entry's kind as stored in `type`: `system`, `user`, `assistant`, `tool`, `note`.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::System { .. } => "system",
            Entry::User { .. } => "user",
            Entry::Assistant(_) => "assistant",
            Entry::Tool { .. } => "tool",
            Entry::Note { .. } => "note",
        }
    }

    /// The tool calls an assistant entry made (none for other kinds).
    pub fn tool_calls(&self) -> &[ToolCall] {
        match self {
            Entry::Assistant(r) => &r.tool_calls,
            _ => &[],
        }
    }

    /// Tokens and cost the entry accounts for (an assistant entry's; zero otherwise).
    pub fn spend(&self) -> (Usage, f64) {
        match self {
            Entry::Assistant(r) => (r.usage.unwrap_or_default(), r.cost_usd),
            _ => (Usage::default(), 0.0),
        }
    }

    /// Every string the entry carries, to rewrite in place (redaction): the text fields and
    /// the strings inside tool arguments. Numbers inside tool arguments go through `number`,
    /// which may turn one into a string.
    pub fn rewrite_strings(&mut self, text: &mut dyn FnMut(&mut String), number: &mut dyn FnMut(&mut Value)) {
        match self {
            Entry::System { content } | Entry::User { content, .. } => text(content),
            Entry::Assistant(r) => {
                text(&mut r.content);
                rewrite_calls(&mut r.tool_calls, text, number);
                for s in [&mut r.provider, &mut r.model, &mut r.stop_reason].into_iter().flatten() {
                    text(s);
                }
                rewrite_failures(&mut r.failed_before, text);
            }
            Entry::Tool { call_id, name, content, .. } => {
                text(call_id);
                text(name);
                text(content);
            }
            Entry::Note { text: t, pending_calls, failures: fs } => {
                text(t);
                rewrite_calls(pending_calls, text, number);
                rewrite_failures(fs, text);
            }
        }
    }

    /// One line for logs and the event stream: what the entry says, cut to 160 characters.
    pub fn summary(&self) -> String {
        let cut = |s: &str| -> String {
            let one = s.replace('\n', " ");
            if one.chars().count() > 160 {
                format!("{}…", one.chars().take(160).collect::<String>())
            } else {
                one
            }
        };
        match self {
            Entry::Assistant(r) if r.tool_calls.is_empty() => format!("assistant: {}", cut(&r.content)),
            Entry::Assistant(r) => {
                let calls: Vec<String> = r.tool_calls.iter().map(|c| format!("{}({})", c.name, cut(&c.arguments.to_string()))).collect();
                format!("assistant calls {}", calls.join(", "))
            }
            Entry::Tool { name, content, is_error, .. } => {
                format!("{name} {}: {}", if *is_error { "error" } else { "ok" }, cut(content))
            }
            Entry::User { content, .. } => format!("user: {}", cut(content)),
            Entry::System { .. } => "system prompt set".into(),
            Entry::Note { text, .. } => format!("note: {}", cut(text)),
        }
    }

    /// Reads a stored entry. One that is not a known entry (written by a newer owl, or
    /// damaged) becomes a note that shows it, so one bad row never hides a transcript.
    pub fn from_stored(text: &str) -> Entry {
        serde_json::from_str(text).unwrap_or_else(|_| Entry::note(format!("unreadable transcript entry: {text}")))
    }
}

fn rewrite_calls(calls: &mut [ToolCall], text: &mut dyn FnMut(&mut String), number: &mut dyn FnMut(&mut Value)) {
    for c in calls {
        text(&mut c.id);
        text(&mut c.name);
        rewrite_value(&mut c.arguments, text, number);
    }
}

fn rewrite_failures(fs: &mut [ProviderFailure], text: &mut dyn FnMut(&mut String)) {
    for f in fs {
        text(&mut f.provider);
        text(&mut f.model);
        text(&mut f.error);
    }
}

fn rewrite_value(v: &mut Value, text: &mut dyn FnMut(&mut String), number: &mut dyn FnMut(&mut Value)) {
    match v {
        Value::String(s) => text(s),
        Value::Number(_) => number(v),
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_value(i, text, number)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (mut k, mut val) in old {
                text(&mut k);
                rewrite_value(&mut val, text, number);
                map.insert(k, val);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// A stored transcript entry: its position, the attempt that wrote it, and when.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// Position in the owner's transcript, from 1.
    pub seq: u64,
    pub attempt: u32,
    pub at: Timestamp,
    pub body: Entry,
}

/// One model call's usage, as the agent runtime reports it (the store stamps the time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub owner: Owner,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    pub cost_usd: f64,
    /// Where the price came from (`crate::budget::price_label`).
    #[serde(default)]
    pub price: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_read_the_json_owl_has_always_stored() {
        let stored = [
            json!({"type": "system", "content": "s"}),
            json!({"type": "user", "content": "go", "nudge": true}),
            json!({"type": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "shell", "arguments": {"command": "ls"}}],
                   "usage": {"input": 10, "output": 2, "cached": 0}, "cost_usd": 0.5, "provider": "p", "model": "m", "ms": 3,
                   "stop_reason": "tool_calls", "chat_turn": true}),
            json!({"type": "tool", "call_id": "c1", "name": "shell", "content": "a", "is_error": false, "ms": 4}),
            json!({"type": "note", "text": "resumed in attempt 2", "pending_calls": []}),
        ];
        for v in stored {
            let e: Entry = serde_json::from_value(v.clone()).unwrap_or_else(|err| panic!("{v}: {err}"));
            let back = serde_json::to_value(&e).unwrap();
            for (k, val) in v.as_object().unwrap() {
                if val != &json!([]) {
                    assert_eq!(&back[k], val, "{k} of {v}");
                }
            }
        }
    }

    #[test]
    fn an_unknown_entry_is_shown_not_lost() {
        let e = Entry::from_stored(r#"{"type":"from_the_future","x":1}"#);
        assert_eq!(e.kind(), "note");
        assert!(e.summary().contains("from_the_future"));
    }

    #[test]
    fn rewriting_reaches_every_string_and_argument_number() {
        let mut e = Entry::Assistant(Reply {
            content: "key".into(),
            tool_calls: vec![ToolCall { id: "key".into(), name: "n".into(), arguments: json!({"key": ["key", 42]}) }],
            ..Reply::default()
        });
        e.rewrite_strings(&mut |s| *s = s.replace("key", "<r>"), &mut |v| *v = json!("<n>"));
        let v = serde_json::to_value(&e).unwrap();
        assert!(!v.to_string().contains("key"), "{v}");
        assert_eq!(v["tool_calls"][0]["arguments"]["<r>"], json!(["<r>", "<n>"]));
    }
}
