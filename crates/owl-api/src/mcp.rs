//! MCP servers on the wire: `owl mcp ls`, `owl mcp tools`, `owl mcp call`, `owl mcp trust`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One configured MCP server and how it is doing.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpServerView {
    pub name: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// The command line, or the URL.
    pub target: String,
    /// Whether a stdio server runs in owl's sandbox.
    pub sandboxed: bool,
    /// `running`, `stopped` (not started yet: servers start at first use) or `failed`.
    pub state: String,
    /// Its tools, while it runs.
    pub tools: Option<usize>,
    /// How often it was started.
    pub starts: u32,
    /// Why its last start failed.
    pub last_error: Option<String>,
    /// The protocol revision agreed with it, while it runs.
    pub protocol_version: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpServerList {
    pub servers: Vec<McpServerView>,
}

/// One tool of a server.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpToolView {
    /// The server's name for it.
    pub name: String,
    /// What agents call it: `server__tool`.
    pub agent_name: String,
    pub description: String,
    pub input_schema: Value,
    /// `allow`, `ask` or `deny`.
    pub policy: String,
    /// `trusted`, or `changed` since its definition was pinned (withheld from agents until
    /// `owl mcp trust`).
    pub trust: String,
    /// The hash of its definition as served now.
    pub hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpToolList {
    pub server: String,
    pub tools: Vec<McpToolView>,
}

/// A call of one tool, by hand.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpCall {
    #[schema(min_length = 1, max_length = 256)]
    pub tool: String,
    /// The tool's arguments, a JSON object.
    #[serde(default)]
    pub arguments: serde_json::Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct McpCallReply {
    /// The tool reported an error (or the call failed: `text` says how).
    pub is_error: bool,
    pub text: String,
}

/// Accept a tool's current definition.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpTrust {
    #[schema(min_length = 1, max_length = 256)]
    pub tool: String,
}
