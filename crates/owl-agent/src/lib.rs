//! owl-agent: the built-in agent.
//!
//! - [`provider`]: one trait over model APIs, with retries that honour Retry-After and a
//!   fallback chain; [`openai`] and [`anthropic`] speak the two wire formats, `local` runs a
//!   GGUF model in-process (cargo feature `local`).
//! - [`tools`]: shell under the [`policy`], file tools confined by [`confine`], http_fetch
//!   with SSRF checks, and task and schedule tools that go through the [`host::Host`];
//!   MCP servers' tools through an [`mcp::McpTools`] hub.
//! - [`run`]: the tool loop, which persists every message, call and result through the host
//!   as it goes, so a restarted daemon resumes a task where it stopped.
//!
//! The crate does no storage of its own: the engine implements [`host::Host`] over the store.

pub mod anthropic;
pub mod cli_stream;
pub mod confine;
pub mod host;
pub mod job;
#[cfg(feature = "local")]
pub mod local;
pub mod local_prompt;
pub mod mcp;
pub mod msg;
pub mod openai;
pub mod policy;
pub mod provider;
mod run;
pub mod runtime;
pub mod sse;
pub mod tools;

pub use host::{
    Admission, ApprovalDecision, ApprovalRequest, DelegateRequest, Delegation, Entry, Host, HostError, HostResult, NewAgentSchedule,
    OutgoingMessage, Owner, SpendRequest, TranscriptEntry, UsageRecord,
};
pub use job::{AgentEnd, Halt, Job};
pub use mcp::{McpTool, McpTools};
pub use run::run as run_job;
pub use runtime::{AgentInfo, Runtime};

pub(crate) fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(30)))
        .user_agent(concat!("owl/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with only timeouts set builds")
}
