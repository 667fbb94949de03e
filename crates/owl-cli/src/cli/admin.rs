//! Arguments of the config, memory, report and sandbox commands.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Print the effective configuration (defaults, file, OWL_* variables), secrets redacted.
    Show,
    /// Write a commented example config file.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the paths owl uses.
    Path,
}

#[derive(Subcommand, Debug)]
pub enum MemoryAction {
    /// Remember something.
    Add {
        text: String,
        /// conversation, knowledge, task, preference, or your own.
        #[arg(long, default_value = "knowledge")]
        kind: String,
        /// A tag (repeatable).
        #[arg(long)]
        tag: Vec<String>,
        /// Only for this agent (default: every agent).
        #[arg(long)]
        agent: Option<String>,
        /// About this user.
        #[arg(long)]
        user: Option<String>,
        /// Where it came from.
        #[arg(long)]
        source: Option<String>,
    },
    /// Find memories by meaning and words.
    Search {
        query: String,
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Only these kinds (repeatable).
        #[arg(long)]
        kind: Vec<String>,
        /// Only items with this tag (repeatable: all of them).
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long)]
        agent: Option<String>,
        /// Only items about this user (and those about anyone).
        #[arg(long)]
        user: Option<String>,
        /// Only items created within this long, e.g. 7d.
        #[arg(long)]
        since: Option<String>,
        /// Favour recent items, with this half-life (e.g. 30d).
        #[arg(long)]
        recency: Option<String>,
        /// Diversity (MMR), 0..1; 1 is relevance alone.
        #[arg(long)]
        mmr: Option<f32>,
        /// Show why each hit ranked where it did.
        #[arg(long)]
        explain: bool,
    },
    /// List memories, newest first.
    Ls {
        #[arg(long)]
        kind: Vec<String>,
        #[arg(long)]
        tag: Vec<String>,
        /// Created within this long, e.g. 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One memory in full.
    Show { id: String },
    /// Forget a memory.
    Rm { id: String },
    /// Import Markdown, text or JSONL files (long documents are split into chunks).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The kind of imported items (JSONL lines may say their own).
        #[arg(long, default_value = "knowledge")]
        kind: String,
        #[arg(long)]
        tag: Vec<String>,
    },
    /// Every memory as JSONL on stdout (what `import` reads back).
    Export,
    /// Counts by kind, vectors, the embedding model.
    Stats,
    /// Rebuild the vector index from the database.
    Reindex,
}

#[derive(Subcommand, Debug)]
pub enum ReportAction {
    /// One day, by hour (in `[reports] tz`).
    Daily {
        /// YYYY-MM-DD, today or yesterday.
        #[arg(long, default_value = "today")]
        date: String,
        #[command(flatten)]
        out: ReportOut,
    },
    /// A window of days ending now, by day.
    Performance {
        /// The window, e.g. 30d.
        #[arg(long, default_value = "7d")]
        since: String,
        #[command(flatten)]
        out: ReportOut,
    },
}

#[derive(Args, Debug)]
pub struct ReportOut {
    /// md, html, pdf (in a build with the `pdf` feature) or json; default: from --out's
    /// extension, json with --json, else md.
    #[arg(long, value_parser = ["md", "html", "pdf", "json"])]
    pub format: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum SandboxAction {
    /// What isolation this machine supports, and what is enforced for which tasks.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum McpAction {
    /// Serve owl's tools to an MCP client on stdin and stdout (for clients that launch a
    /// command, like Claude Code and Codex). The daemon must be running; this talks to it.
    Serve {
        /// Offer the approval tools too (also needs `[mcp] allow_approvals = true`).
        #[arg(long)]
        approvals: bool,
        /// Talk to a coding CLI task's own MCP server on this Unix socket instead of the
        /// daemon's API (what owl gives a CLI task started with --owl-mcp).
        #[arg(long, value_name = "PATH", conflicts_with = "approvals")]
        socket: Option<std::path::PathBuf>,
    },
    /// The MCP servers of `[mcp.servers]` and their state (servers start at first use).
    Ls,
    /// A server's tools: what agents call them, their policy, and whether a definition changed
    /// since it was trusted. Starts the server.
    Tools {
        /// The server, as in `[mcp.servers.NAME]` (or give --url or --command).
        #[arg(required_unless_present_any = ["url", "command"])]
        server: Option<String>,
        #[command(flatten)]
        adhoc: McpAdhoc,
    },
    /// Call a tool by hand: `owl mcp call SERVER TOOL '{"path": "notes.md"}'`, or
    /// `owl mcp call --url URL TOOL '{...}'` for a server that is not configured.
    Call {
        /// SERVER TOOL [ARGUMENTS], or TOOL [ARGUMENTS] with --url or --command; the
        /// arguments are a JSON object (default `{}`).
        #[arg(required = true, num_args = 1..=3)]
        args: Vec<String>,
        #[command(flatten)]
        adhoc: McpAdhoc,
    },
    /// Accept the current definition of a tool that changed since it was trusted, so agents
    /// may use it again.
    Trust {
        /// The server, as in `[mcp.servers.NAME]`.
        server: String,
        tool: String,
    },
}

/// A server given on the command line and run by the CLI itself (unsandboxed, nothing
/// pinned), to try it before configuring it.
#[derive(Args, Debug)]
pub struct McpAdhoc {
    /// A Streamable HTTP endpoint.
    #[arg(long, conflicts_with = "command")]
    pub url: Option<String>,
    /// A program speaking MCP on stdio, with its arguments (split on spaces).
    #[arg(long)]
    pub command: Option<String>,
    /// A header for --url, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "url")]
    pub headers: Vec<String>,
}
