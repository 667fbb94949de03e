//! The provider-neutral conversation: messages, tool calls, usage, requests and replies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use owl_core::transcript::{ToolCall, Usage};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        #[serde(default)]
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        call_id: String,
        name: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
}

/// A tool as offered to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_output_tokens: u32,
    pub temperature: Option<f32>,
    /// The model must call a tool in this reply.
    pub require_tool: bool,
    /// The model may not call a tool in this reply: it must answer.
    pub forbid_tools: bool,
    /// Ask the provider to stream, and hand deltas to the sink as they arrive.
    pub stream: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// The model that actually answered (as the provider reports it).
    pub model: String,
    /// Why the model stopped, as the provider says it (`stop`, `tool_calls`, `end_turn`, `length`...).
    pub stop_reason: String,
}

/// A piece of a streamed reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta {
    Text(String),
    /// A tool call's name is known (arguments follow).
    ToolStart {
        name: String,
    },
}

/// Where streamed deltas go.
pub type Sink<'a> = &'a mut (dyn FnMut(Delta) + Send);
