//! Agent and provider configuration: `[providers.NAME]`, `[agents.NAME]`, `[prices."MODEL"]`
//! and `[agent]` defaults. Pure data; the agent runtime (owl-agent) gives it behaviour.

use crate::duration::{serde_human, serde_human_opt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Whose transcript, usage or approval a record belongs to: an agent task or a chat.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Owner {
    Task(crate::TaskId),
    Chat(i64),
}

impl Owner {
    /// `task:12` or `chat:3`: the form stored and shown.
    pub fn key(&self) -> String {
        match self {
            Owner::Task(id) => format!("task:{id}"),
            Owner::Chat(id) => format!("chat:{id}"),
        }
    }

    pub fn parse(s: &str) -> Option<Owner> {
        let (kind, id) = s.split_once(':')?;
        let id: i64 = id.parse().ok()?;
        match kind {
            "task" => Some(Owner::Task(crate::TaskId(id))),
            "chat" => Some(Owner::Chat(id)),
            _ => None,
        }
    }

    pub fn task(&self) -> Option<crate::TaskId> {
        match self {
            Owner::Task(id) => Some(*id),
            Owner::Chat(_) => None,
        }
    }
}

/// Which wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI-compatible Chat Completions: OpenAI, OpenRouter, Ollama, vLLM, llama.cpp server, LM Studio.
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// A GGUF model run in-process with llama.cpp (the `local` cargo feature).
    Local,
}

/// One model provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`. Defaults per kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Read the API key from this environment variable of the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Read the API key from this entry of the secrets file (`secrets.toml`, mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<String>,
    /// The model used when an agent names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Per request, including the whole streamed body.
    #[serde(default = "default_request_timeout", with = "serde_human")]
    pub timeout: Duration,
    /// Retries after a 429, a 5xx or a connection error (honouring Retry-After).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Path of the GGUF file (kind = "local").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    /// CPU threads for the local model; 0 = all cores (kind = "local").
    #[serde(default)]
    pub threads: u32,
    /// Largest context window in tokens for the local model (kind = "local"); each call
    /// gets only what its conversation and reply need, up to this.
    #[serde(default = "default_context")]
    pub context: u32,
    /// A local model unused this long is unloaded, and loaded again on the next call
    /// (kind = "local"; like Ollama's keep-alive). `0s` keeps it loaded.
    #[serde(default = "default_keep_alive", with = "serde_human")]
    pub keep_alive: Duration,
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(300)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_retries() -> u32 {
    4
}
fn default_context() -> u32 {
    8192
}

/// What happens to a shell command that no allow or deny rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDefault {
    Allow,
    Deny,
    /// Park the call until a human approves or denies it.
    #[default]
    Ask,
    /// Run it when the call runs in the sandbox, unless the program needs more than the
    /// sandbox gives (the network without `allow_net`, installing software, privileges);
    /// those are asked. Without a sandbox this is `ask`. The built-in default agent's policy.
    Sandboxed,
}

/// One agent: a role with its model, prompt, tools and limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// A line saying what this agent is for (shown by `owl agents`).
    #[serde(default)]
    pub description: String,
    /// A key of `[providers]`; leave it out for an agent that is a coding CLI (`cli`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// Work this agent's tasks with a coding CLI instead of the built-in tool loop: a profile
    /// name (`claude`, `codex`, `gemini`, `aider` or one from `[cli.NAME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
    /// What this agent is for, as words a task can ask for (`owl add --needs rust`): a task
    /// goes to an agent that has every capability it needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// The task sizes it takes, `[low, high]` on a scale of 1 to 10.
    #[serde(default = "default_complexity")]
    pub complexity: [u8; 2],
    /// At most this many of its tasks run at once (tasks in the default group); the rest wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Tasks one task of this agent may delegate in all (`delegate`, `task_create`).
    #[serde(default = "default_max_children")]
    pub max_children: u32,
    /// The workspace template (`[templates.NAME]`) its tasks get unless they name another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// How often a reviewer of a `delegate` call may send work back for changes.
    #[serde(default = "default_review_rounds")]
    pub max_review_rounds: u32,
    /// A message sent to this agent while none of its tasks is queued or running starts one
    /// that reads it.
    #[serde(default)]
    pub wake_on_message: bool,
    /// Model name; defaults to the provider's `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tried in order when the main provider fails after its retries: `"provider"` or `"provider:model"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Tool names; empty means the default set (shell and the file tools).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    /// Input plus output tokens over the whole task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, with = "serde_human_opt", skip_serializing_if = "Option::is_none")]
    pub max_wall: Option<Duration>,
    /// Output tokens per model call.
    #[serde(default = "default_max_output")]
    pub max_output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// The model must call at least one tool before it may give its final answer.
    #[serde(default)]
    pub must_use_tool: bool,
    /// Shell commands no rule matches.
    #[serde(default)]
    pub shell_default: PolicyDefault,
    /// Rules matched on the parsed argv: `"git status"` matches `git status -s`; `*` matches one word.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell_allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell_deny: Vec<String>,
    /// Tool names whose every call needs a human's approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ask: Vec<String>,
    /// Let `http_fetch` reach loopback, private and link-local addresses.
    #[serde(default)]
    pub http_allow_private: bool,
    /// Environment variables of the daemon passed to the shell tool (all others that look secret are removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_env: Vec<String>,
    /// Run shell calls in the sandbox (writes confined to the workspace, no network, limits).
    #[serde(default = "yes")]
    pub sandbox: bool,
    /// Give sandboxed shell calls the network.
    #[serde(default)]
    pub allow_net: bool,
    /// Without `allow_net`: hosts sandboxed shell calls may still reach through the allowlist
    /// proxy (`host`, `host:port`, `*.domain`).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// How deep `task_create` may nest subtasks.
    #[serde(default = "default_depth")]
    pub max_subtask_depth: u32,
    /// Schedules one task may create with `schedule_create`.
    #[serde(default = "default_max_schedules")]
    pub max_schedules: u32,
    /// The backend of the `web_search` tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSettings>,
    /// MCP servers (from `[mcp.servers]`) whose tools this agent may call, as `NAME__tool`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp: Vec<String>,
}

/// Where `web_search` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    /// A SearXNG instance's JSON API (`format=json` enabled in its settings).
    Searxng,
    /// The Brave Search API (an API key).
    Brave,
    /// DuckDuckGo's HTML endpoint (no key; may answer with an anti-bot check).
    Duckduckgo,
    /// The Tavily search API (an API key).
    Tavily,
}

impl SearchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Searxng => "searxng",
            SearchKind::Brave => "brave",
            SearchKind::Duckduckgo => "duckduckgo",
            SearchKind::Tavily => "tavily",
        }
    }
}

/// An agent's `search = { kind = "searxng", base_url = "http://127.0.0.1:8888" }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    pub kind: SearchKind,
    /// The API root; defaults per kind (SearXNG: http://127.0.0.1:8888).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The API key from this environment variable of the daemon (brave, tavily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// ... or from this entry of secrets.toml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<String>,
    /// Results per query unless the call asks for fewer or more (at most 20).
    #[serde(default = "default_search_results")]
    pub max_results: u32,
    /// The same query within this long is answered from the cache.
    #[serde(default = "default_search_cache", with = "serde_human")]
    pub cache_ttl: Duration,
    /// Requests to the backend are at least this far apart (its rate limit).
    #[serde(default = "default_search_interval", with = "serde_human")]
    pub min_interval: Duration,
    #[serde(default = "default_search_timeout", with = "serde_human")]
    pub timeout: Duration,
}

fn default_search_results() -> u32 {
    5
}
fn default_search_cache() -> Duration {
    Duration::from_secs(3600)
}
fn default_search_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_search_timeout() -> Duration {
    Duration::from_secs(20)
}

fn yes() -> bool {
    true
}
fn default_max_steps() -> u32 {
    30
}
fn default_max_output() -> u32 {
    2048
}
fn default_depth() -> u32 {
    2
}
fn default_max_schedules() -> u32 {
    3
}
fn default_complexity() -> [u8; 2] {
    [1, 10]
}
fn default_max_children() -> u32 {
    5
}
fn default_review_rounds() -> u32 {
    2
}

impl AgentSettings {
    /// An agent on `provider` with every other field at its default.
    pub fn new(provider: impl Into<String>) -> Self {
        AgentSettings {
            description: String::new(),
            provider: provider.into(),
            cli: None,
            capabilities: vec![],
            complexity: default_complexity(),
            max_concurrent: None,
            max_children: default_max_children(),
            max_review_rounds: default_review_rounds(),
            template: None,
            wake_on_message: false,
            model: None,
            fallback: vec![],
            system_prompt: None,
            tools: vec![],
            max_steps: default_max_steps(),
            max_tokens: None,
            max_cost_usd: None,
            max_wall: None,
            max_output_tokens: default_max_output(),
            temperature: None,
            must_use_tool: false,
            shell_default: PolicyDefault::Ask,
            shell_allow: vec![],
            shell_deny: vec![],
            ask: vec![],
            http_allow_private: false,
            grant_env: vec![],
            sandbox: true,
            allow_net: false,
            allow_hosts: vec![],
            max_subtask_depth: default_depth(),
            max_schedules: default_max_schedules(),
            search: None,
            mcp: vec![],
        }
    }
}

/// USD per million tokens for one model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached input tokens; defaults to the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<f64>,
}

impl Price {
    pub fn cost(&self, input: u64, output: u64, cached: u64) -> f64 {
        let fresh = input.saturating_sub(cached) as f64;
        (fresh * self.input + cached as f64 * self.cached.unwrap_or(self.input) + output as f64 * self.output) / 1_000_000.0
    }
}

/// `[agent]`: defaults for every agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentDefaults {
    /// An approval request nobody decides within this time counts as denied.
    #[serde(with = "serde_human")]
    pub approval_timeout: Duration,
    /// Tool output handed back to the model is cut to this many bytes.
    pub tool_output_max_bytes: usize,
    /// Per shell tool call.
    #[serde(with = "serde_human")]
    pub shell_timeout: Duration,
    /// The GGUF model used for the default agent when no provider is configured.
    pub local_model: String,
    /// Point the built-in default agent at a hosted model instead of the local one, when no
    /// provider is configured: `openai:MODEL` (key in `OPENAI_API_KEY`, base URL from
    /// `OPENAI_BASE_URL` when set) or `anthropic:MODEL` (key in `ANTHROPIC_API_KEY`).
    pub default_model: String,
    /// One chat turn (the answer to one message) may take this long.
    #[serde(with = "serde_human")]
    pub chat_timeout: Duration,
}

impl Default for AgentDefaults {
    fn default() -> Self {
        AgentDefaults {
            approval_timeout: Duration::from_secs(3600),
            tool_output_max_bytes: 32 * 1024,
            shell_timeout: Duration::from_secs(120),
            local_model: String::new(),
            default_model: String::new(),
            chat_timeout: Duration::from_secs(600),
        }
    }
}

pub type Providers = BTreeMap<String, ProviderSettings>;
pub type Agents = BTreeMap<String, AgentSettings>;
pub type Prices = BTreeMap<String, Price>;

/// Tool names the runtime knows.
pub const TOOL_NAMES: &[&str] = &[
    "shell",
    "read_file",
    "write_file",
    "edit_file",
    "list_dir",
    "grep",
    "http_fetch",
    "task_create",
    "task_result",
    "schedule_create",
    "schedule_manage",
    "github_issue_create",
    "github_comment",
    "web_search",
    "delegate",
    "send_message",
    "read_messages",
    "state_get",
    "state_set",
    "memory_search",
    "memory_add",
];

/// What a team run (`owl add --team`) adds to the agent's tools.
pub const TEAM_TOOLS: &[&str] = &["delegate", "send_message", "read_messages"];

/// The tools an agent gets when its config lists none.
pub const DEFAULT_TOOLS: &[&str] = &["shell", "read_file", "write_file", "edit_file", "list_dir", "grep", "memory_search", "memory_add"];

/// The provider `[agent] default_model` names (`openai:gpt-4o-mini`), with its name; `None`
/// when it is empty. `base_url` is `OPENAI_BASE_URL` from the daemon's environment, if set.
pub fn default_model_provider(spec: &str, openai_base_url: Option<&str>) -> Result<Option<(String, ProviderSettings)>, String> {
    if spec.trim().is_empty() {
        return Ok(None);
    }
    let (kind, model) = spec
        .split_once(':')
        .filter(|(_, m)| !m.trim().is_empty())
        .ok_or_else(|| format!("`{spec}` must be `openai:MODEL` or `anthropic:MODEL`, e.g. openai:gpt-4o-mini"))?;
    let (kind, key, base) = match kind.trim() {
        "openai" => (ProviderKind::Openai, "OPENAI_API_KEY", openai_base_url.map(str::to_string)),
        "anthropic" => (ProviderKind::Anthropic, "ANTHROPIC_API_KEY", None),
        other => return Err(format!("`{other}` is not a hosted provider kind; use openai or anthropic (e.g. openai:gpt-4o-mini)")),
    };
    let name = if kind == ProviderKind::Openai { "openai" } else { "anthropic" };
    Ok(Some((
        name.to_string(),
        ProviderSettings {
            kind,
            base_url: base,
            api_key_env: Some(key.into()),
            api_key_secret: None,
            model: Some(model.trim().to_string()),
            timeout: Duration::from_secs(120),
            max_retries: 2,
            model_path: None,
            threads: 0,
            context: 0,
            keep_alive: default_keep_alive(),
        },
    )))
}

/// Checks agents and providers against each other; errors name the config key.
pub fn check(providers: &Providers, agents: &Agents) -> Result<(), (String, String)> {
    for (name, p) in providers {
        crate::validate::check_name(&format!("providers.{name}"), "provider", name).map_err(|e| (e.field, e.message))?;
        if p.api_key_env.is_some() && p.api_key_secret.is_some() {
            return Err((format!("providers.{name}"), "give either api_key_env or api_key_secret, not both".into()));
        }
        if p.kind == ProviderKind::Local && p.model_path.is_none() {
            return Err((format!("providers.{name}.model_path"), "a local provider needs the path of a GGUF file".into()));
        }
        if let Some(u) = &p.base_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err((format!("providers.{name}.base_url"), format!("`{u}` must start with http:// or https://")));
            }
        }
    }
    for (name, a) in agents {
        crate::validate::check_name(&format!("agents.{name}"), "agent", name).map_err(|e| (e.field, e.message))?;
        let known = |p: &str| providers.contains_key(p);
        match (&a.cli, a.provider.is_empty()) {
            (Some(_), false) => {
                return Err((
                    format!("agents.{name}.cli"),
                    "give either `provider` (a model agent) or `cli` (a coding CLI), not both".into(),
                ))
            }
            (None, true) => {
                return Err((
                    format!("agents.{name}.provider"),
                    format!("missing: give `provider` (one of: {}) or `cli` (a coding CLI such as claude or codex)", names(providers)),
                ))
            }
            _ => {}
        }
        let [low, high] = a.complexity;
        if !(1..=10).contains(&low) || !(1..=10).contains(&high) || low > high {
            return Err((
                format!("agents.{name}.complexity"),
                format!("[{low}, {high}] is not a range of task sizes; give [low, high] with 1 <= low <= high <= 10, e.g. [1, 7]"),
            ));
        }
        for c in &a.capabilities {
            crate::routing::check_capability(c).map_err(|m| (format!("agents.{name}.capabilities"), m))?;
        }
        if a.max_concurrent == Some(0) {
            return Err((format!("agents.{name}.max_concurrent"), "must be at least 1 (leave it out for no limit)".into()));
        }
        if a.cli.is_some() {
            continue;
        }
        if !known(&a.provider) {
            return Err((
                format!("agents.{name}.provider"),
                format!(
                    "`{}` is not a configured provider; add [providers.{}] or use one of: {}",
                    a.provider,
                    a.provider,
                    names(providers)
                ),
            ));
        }
        for f in &a.fallback {
            let p = f.split_once(':').map(|(p, _)| p).unwrap_or(f);
            if !known(p) {
                return Err((format!("agents.{name}.fallback"), format!("`{p}` is not a configured provider")));
            }
        }
        for t in a.tools.iter().chain(&a.ask) {
            if !TOOL_NAMES.contains(&t.as_str()) {
                return Err((format!("agents.{name}.tools"), format!("`{t}` is not a tool; tools are: {}", TOOL_NAMES.join(", "))));
            }
        }
        if a.max_steps == 0 {
            return Err((format!("agents.{name}.max_steps"), "must be at least 1".into()));
        }
        if a.model.is_none() && providers.get(&a.provider).is_some_and(|p| p.model.is_none() && p.kind != ProviderKind::Local) {
            return Err((format!("agents.{name}.model"), format!("missing, and [providers.{}] names no default model", a.provider)));
        }
    }
    Ok(())
}

fn names(providers: &Providers) -> String {
    if providers.is_empty() {
        "(none configured)".into()
    } else {
        providers.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}
