//! MCP servers' tools for an agent: what the tool loop needs of the daemon's MCP hub. The hub
//! (owl-mcp) starts the servers, pins their tool definitions and makes the calls; the loop
//! offers the tools, asks for approval where the policy says so, and records every call.

use async_trait::async_trait;
use serde_json::Value;

/// One server tool as an agent sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct McpTool {
    /// The name the model calls: `server__tool`, cleaned and at most 64 characters.
    pub name: String,
    pub server: String,
    /// The server's own name for the tool.
    pub tool: String,
    pub description: String,
    /// The tool's input JSON schema.
    pub parameters: Value,
    /// Each call waits for a person's approval (`policy = "ask"`).
    pub ask: bool,
}

/// The MCP servers of the daemon.
#[async_trait]
pub trait McpTools: Send + Sync {
    /// The usable tools of `servers`, started if they are not running, and a line for each
    /// server or tool left out (a server that does not start, a changed definition).
    async fn tools(&self, servers: &[String]) -> (Vec<McpTool>, Vec<String>);
    /// Calls a tool once. The error is for the model: what went wrong and whether the call
    /// may have taken effect (an unknown outcome is never retried here).
    async fn call(&self, tool: &McpTool, arguments: Value) -> Result<String, String>;
}
