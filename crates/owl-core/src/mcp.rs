//! `[mcp]`: owl's own MCP server and the MCP servers whose tools owl's agents may use, and
//! the rules for what an agent sees of them (tool names, pinned definitions).

use crate::duration::serde_human;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[mcp]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSettings {
    /// Offer the approval tools (list, approve, deny) to MCP clients of owl. Off: an agent
    /// that can decide approvals defeats them.
    pub allow_approvals: bool,
    /// MCP servers by name; an agent uses those it lists in its `mcp`.
    pub servers: BTreeMap<String, McpServer>,
}

/// What happens when an agent calls a server's tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum McpPolicy {
    #[default]
    Allow,
    /// Park the call until a person approves it (`owl approve`).
    Ask,
    /// Hide the tool from the agent.
    Deny,
}

impl McpPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            McpPolicy::Allow => "allow",
            McpPolicy::Ask => "ask",
            McpPolicy::Deny => "deny",
        }
    }
}

/// `[mcp.servers.NAME]`: a program speaking MCP on stdio (`command`), or a Streamable HTTP
/// endpoint (`url`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpServer {
    /// The program to start (looked up in PATH).
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Variables for the program; `${NAME}` takes NAME from owl's environment.
    pub env: BTreeMap<String, String>,
    /// A Streamable HTTP endpoint instead of a program.
    pub url: Option<String>,
    /// Headers sent with every HTTP request; `${NAME}` as in `env`.
    pub headers: BTreeMap<String, String>,
    /// How long the server may take to start and answer its first request.
    #[serde(with = "serde_human")]
    pub startup_timeout: Duration,
    /// How long one tool call may take.
    #[serde(with = "serde_human")]
    pub call_timeout: Duration,
    /// The most of a tool's reply an agent is shown; the rest is cut with a note.
    pub max_output_bytes: usize,
    /// Run a stdio server in owl's sandbox (its own directory writable, no network).
    pub sandbox: bool,
    /// Let a sandboxed server reach the network.
    pub allow_net: bool,
    /// More absolute paths a sandboxed server may write.
    pub writable: Vec<String>,
    /// The policy for the server's tools...
    pub policy: McpPolicy,
    /// ... and for single tools, by the server's name for them.
    pub tools: BTreeMap<String, McpPolicy>,
}

impl Default for McpServer {
    fn default() -> Self {
        McpServer {
            command: None,
            args: vec![],
            env: BTreeMap::new(),
            url: None,
            headers: BTreeMap::new(),
            startup_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            max_output_bytes: 64 * 1024,
            sandbox: true,
            allow_net: false,
            writable: vec![],
            policy: McpPolicy::Allow,
            tools: BTreeMap::new(),
        }
    }
}

impl McpServer {
    /// The policy for one of the server's tools.
    pub fn policy_for(&self, tool: &str) -> McpPolicy {
        self.tools.get(tool).copied().unwrap_or(self.policy)
    }
}

impl McpSettings {
    /// Checks each server; the error names the field.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (name, s) in &self.servers {
            let at = |f: &str| format!("mcp.servers.{name}.{f}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || name.contains("__") {
                return Err((
                    format!("mcp.servers.{name}"),
                    "a server name is letters, digits, `-` and `_` (no `__`, which separates it from the tool name)".into(),
                ));
            }
            match (&s.command, &s.url) {
                (None, None) => return Err((at("command"), "give `command` (a program speaking MCP on stdio) or `url`".into())),
                (Some(_), Some(_)) => return Err((at("url"), "give `command` or `url`, not both".into())),
                (Some(c), None) if c.trim().is_empty() => return Err((at("command"), "is empty".into())),
                (None, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return Err((at("url"), format!("`{u}` is not an http(s) URL")))
                }
                _ => {}
            }
            if s.url.is_some() && (!s.args.is_empty() || !s.env.is_empty()) {
                return Err((at("args"), "`args` and `env` are for a `command`; an HTTP server takes `headers`".into()));
            }
            if s.command.is_some() && !s.headers.is_empty() {
                return Err((at("headers"), "`headers` are for a `url`; a command takes `env`".into()));
            }
            if s.startup_timeout.is_zero() {
                return Err((at("startup_timeout"), "must be more than 0s".into()));
            }
            if s.call_timeout.is_zero() {
                return Err((at("call_timeout"), "must be more than 0s".into()));
            }
            if s.max_output_bytes < 256 {
                return Err((at("max_output_bytes"), "must be at least 256".into()));
            }
            if let Some(w) = s.writable.iter().find(|w| !w.starts_with('/')) {
                return Err((at("writable"), format!("`{w}` is not an absolute path")));
            }
        }
        Ok(())
    }
}

/// The longest tool name model APIs accept.
pub const MAX_TOOL_NAME: usize = 64;

/// The name an agent sees for `tool` of server `server`: `server__tool`, with anything but
/// letters, digits, `_` and `-` made `_`, at most 64 characters. `taken` holds the names
/// already given; on a collision (or a cut) a short hash of the original names tells them apart.
pub fn tool_name(server: &str, tool: &str, taken: &[String]) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect::<String>();
    let plain = format!("{}__{}", clean(server), clean(tool));
    if plain.len() <= MAX_TOOL_NAME && !taken.contains(&plain) {
        return plain;
    }
    let hash = short_hash(&format!("{server}\0{tool}"));
    let keep = MAX_TOOL_NAME - hash.len() - 1;
    let mut cut = plain;
    cut.truncate(keep);
    format!("{cut}_{hash}")
}

/// Eight hex digits of FNV-1a: stable across runs and builds, enough to tell names apart.
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:08x}", (h ^ (h >> 32)) as u32)
}

/// The expansion of `${NAME}` in `value` from `lookup`; a variable that is not set is an
/// error naming it, so a missing key is found at start-up, not in a server's error message.
pub fn expand(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("`${{` without a closing `}}` in `{value}`"))?;
        let name = &after[..end];
        out.push_str(&lookup(name).ok_or_else(|| format!("the variable {name} is not set"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_cleaned_and_bounded() {
        assert_eq!(tool_name("fs", "read_file", &[]), "fs__read_file");
        assert_eq!(tool_name("my.server", "get time!", &[]), "my_server__get_time_");
        let long = tool_name("everything", &"x".repeat(100), &[]);
        assert_eq!(long.len(), MAX_TOOL_NAME);
        assert_ne!(long, tool_name("everything", &"x".repeat(101), &[]), "cut names stay apart");
        // `a.b` and `a_b` clean to the same name: the second gets a hash.
        let first = tool_name("s", "a.b", &[]);
        let second = tool_name("s", "a_b", std::slice::from_ref(&first));
        assert_eq!(first, "s__a_b");
        assert_ne!(first, second);
        assert!(second.starts_with("s__a_b_") && second.len() <= MAX_TOOL_NAME);
        assert!(second.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    }

    #[test]
    fn variables_expand_or_are_named() {
        let env = |k: &str| (k == "KEY").then(|| "s3cret".to_string());
        assert_eq!(expand("Bearer ${KEY}", env).unwrap(), "Bearer s3cret");
        assert_eq!(expand("plain", env).unwrap(), "plain");
        assert!(expand("${MISSING}", env).unwrap_err().contains("MISSING"));
        assert!(expand("${KEY", env).is_err());
    }

    #[test]
    fn servers_are_checked_by_field() {
        let mut m = McpSettings::default();
        m.servers.insert("fs".into(), McpServer::default());
        assert_eq!(m.check().unwrap_err().0, "mcp.servers.fs.command");
        m.servers.get_mut("fs").unwrap().url = Some("ftp://x".into());
        assert_eq!(m.check().unwrap_err().0, "mcp.servers.fs.url");
        m.servers.get_mut("fs").unwrap().url = Some("http://127.0.0.1:9/mcp".into());
        assert!(m.check().is_ok());
        m.servers.insert("a__b".into(), McpServer { command: Some("x".into()), ..Default::default() });
        assert_eq!(m.check().unwrap_err().0, "mcp.servers.a__b");
    }
}
