//! Settings: one type, layered as defaults, then the TOML file, then `OWL_*` environment
//! variables (the caller applies command-line flags last). Parsing takes text and an
//! environment list, never reads them itself, so every layer is testable.

use crate::duration::{serde_human, serde_human_opt};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A string that never shows itself in `Debug`, logs or `owl config show`.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub daemon: DaemonSettings,
    pub tasks: TaskSettings,
    pub api: ApiSettings,
    pub scheduler: SchedulerSettings,
    /// Defaults for every agent.
    pub agent: crate::agent::AgentDefaults,
    /// Which tasks run sandboxed, and the sandbox's limits.
    pub sandbox: SandboxSettings,
    /// Model providers by name.
    pub providers: crate::agent::Providers,
    /// Agents by name.
    pub agents: crate::agent::Agents,
    /// USD per million tokens, by model name.
    pub prices: crate::agent::Prices,
    /// Coding CLI profiles by name (`[cli.claude]` replaces the built-in one).
    pub cli: crate::coding::CliProfiles,
    /// Git worktrees of repository tasks.
    pub git: GitSettings,
    /// Long-term memory.
    pub memory: MemorySettings,
}

/// `[memory]`: local embeddings, dedup, recall into agent prompts, retention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    pub enabled: bool,
    /// A sentence-transformers BERT directory (config.json, tokenizer.json, model.safetensors);
    /// default: all-MiniLM-L6-v2 fetched by scripts/fetch-models into ~/.cache/owl/models.
    pub model_dir: Option<String>,
    /// `local` (candle, in-process), `http` (an OpenAI-compatible /v1/embeddings endpoint) or
    /// `none` (full-text search only).
    pub embeddings: String,
    /// With `embeddings = "http"`: the base URL (e.g. http://127.0.0.1:11434/v1), the model and
    /// the environment variable holding the key (if any).
    pub endpoint: Option<String>,
    pub embedding_model: Option<String>,
    pub api_key_env: Option<String>,
    /// Cosine similarity at which a new item merges into an existing one of the same kind.
    pub dedup_threshold: f32,
    pub max_item_chars: usize,
    /// Memories recalled into an agent's prompt: at most this many, within this many tokens.
    pub recall_k: usize,
    pub recall_tokens: usize,
    /// Store each finished agent task, and each chat turn, as a memory.
    pub remember_tasks: bool,
    pub remember_chats: bool,
    /// How long items of a kind are kept, e.g. `conversation = "90days"`; kinds not listed stay.
    #[serde(with = "serde_human_map")]
    pub retention: std::collections::BTreeMap<String, Duration>,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            enabled: true,
            model_dir: None,
            embeddings: "local".into(),
            endpoint: None,
            embedding_model: None,
            api_key_env: None,
            dedup_threshold: 0.95,
            max_item_chars: 8000,
            recall_k: 5,
            recall_tokens: 600,
            remember_tasks: true,
            remember_chats: true,
            retention: std::collections::BTreeMap::from([("conversation".to_string(), Duration::from_secs(90 * 86400))]),
        }
    }
}

mod serde_human_map {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Duration>, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            map.serialize_entry(k, &crate::duration::format(*v))?;
        }
        map.end()
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter().map(|(k, v)| crate::duration::parse(&v).map(|d| (k, d)).map_err(serde::de::Error::custom)).collect()
    }
}

/// `[git]`: worktrees made for tasks with `--repo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitSettings {
    /// A finished task's worktree is removed this long after the task ended (its branch and
    /// commit stay in the repository).
    #[serde(with = "serde_human")]
    pub worktree_retention: Duration,
    /// How long `git push` may take.
    #[serde(with = "serde_human")]
    pub push_timeout: Duration,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings { worktree_retention: Duration::from_secs(7 * 86400), push_timeout: Duration::from_secs(300) }
    }
}

/// `[sandbox]`: tasks an AI drives are always sandboxed (unless they opt out explicitly);
/// plain shell tasks follow `shell_default` and `groups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Sandbox every plain shell task (off: a user's own scripts expect their own permissions).
    pub shell_default: bool,
    /// Groups whose tasks are always sandboxed.
    pub groups: Vec<String>,
    /// More paths every sandboxed task may write (a tool's cache, say).
    pub writable: Vec<String>,
    /// Per sandboxed process; 0 = no limit.
    pub cpu_seconds: u64,
    pub memory_mb: u64,
    pub processes: u64,
    pub file_size_mb: u64,
    pub open_files: u64,
    /// How a sandboxed task without network is cut off: its own empty network namespace
    /// (`namespace`, needed for `--allow-host`), or a seccomp filter denying internet sockets
    /// (`seccomp`, the automatic fallback where namespaces are not allowed).
    pub network_isolation: NetworkIsolation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkIsolation {
    #[default]
    Namespace,
    Seccomp,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            shell_default: false,
            groups: vec![],
            writable: vec![],
            cpu_seconds: 3600,
            memory_mb: 4096,
            processes: 256,
            file_size_mb: 1024,
            open_files: 1024,
            network_isolation: NetworkIsolation::Namespace,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Time zone of cron schedules that do not name one.
    pub default_tz: String,
    /// With `--misfire all`, at most this many missed slots run after downtime.
    pub misfire_cap: u32,
    /// A slot fired later than this counts as missed and follows the misfire policy.
    #[serde(with = "serde_human")]
    pub max_lateness: Duration,
    /// Schedule and trigger history older than this is deleted.
    #[serde(with = "serde_human")]
    pub history_retention: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            default_tz: "UTC".into(),
            misfire_cap: 100,
            max_lateness: Duration::from_secs(60),
            history_retention: Duration::from_secs(30 * 86400),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Address of the HTTP API. Port 0 picks a free port; the bound address is recorded in the data dir.
    pub listen: String,
    /// Tasks that run at once across all groups. 0 means the number of CPU cores.
    pub workers: u32,
    /// On SIGTERM/SIGINT, how long running tasks may keep going before they are stopped and requeued.
    #[serde(with = "serde_human")]
    pub shutdown_grace: Duration,
    /// Between SIGTERM and SIGKILL when a task's process group is stopped.
    #[serde(with = "serde_human")]
    pub kill_grace: Duration,
    /// How long a claim stays valid without a heartbeat. Heartbeats run every third of this.
    #[serde(with = "serde_human")]
    pub lease: Duration,
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `owl_engine=debug,info`.
    pub log_level: String,
    /// The name recorded on runs; empty means the host name.
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSettings {
    /// Applied to tasks submitted without `--timeout`; none by default.
    #[serde(with = "serde_human_opt", skip_serializing_if = "Option::is_none")]
    pub default_timeout: Option<Duration>,
    /// Retries for tasks submitted without `--retries`.
    pub default_retries: u32,
    /// First retry delay; doubles per failure up to `retry_max`, with jitter.
    #[serde(with = "serde_human")]
    pub retry_base: Duration,
    #[serde(with = "serde_human")]
    pub retry_max: Duration,
    /// Per attempt; output past this is dropped and a truncation marker is written.
    pub log_max_bytes: u64,
    /// Times a crash may interrupt one task before it is failed instead of requeued.
    pub max_crash_requeues: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Use this bearer token instead of the one generated in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            listen: "127.0.0.1:7717".into(),
            workers: 0,
            shutdown_grace: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            node: String::new(),
        }
    }
}

impl Default for TaskSettings {
    fn default() -> Self {
        TaskSettings {
            default_timeout: None,
            default_retries: 0,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            log_max_bytes: 10 * 1024 * 1024,
            max_crash_requeues: 10,
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings { token: None, max_body_bytes: 1024 * 1024 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The file path or the environment variable that is wrong.
    pub source_name: String,
    pub message: String,
}

/// Whether an environment variable's name says it holds a credential.
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "PRIVATE", "SESSION", "COOKIE"].iter().any(|w| n.contains(w))
}

/// Sections that are maps of named tables.
const MAP_SECTIONS: &[&str] = &["providers", "agents", "prices", "cli"];

/// Environment variables that are not settings keys.
const NON_SETTING_VARS: &[&str] = &["OWL_DATA_DIR", "OWL_CONFIG", "OWL_LOG", "OWL_JSON"];

impl Settings {
    /// Builds settings from an optional TOML document and the process environment list.
    /// `OWL_<SECTION>_<KEY>` overrides `[section] key`, e.g. `OWL_DAEMON_WORKERS=4`.
    pub fn load(file: Option<(&str, &str)>, env: impl IntoIterator<Item = (String, String)>) -> Result<Settings, ConfigError> {
        let defaults = toml::Value::try_from(Settings::default()).expect("defaults serialize");
        let mut merged = match defaults {
            toml::Value::Table(t) => t,
            _ => unreachable!("settings serialize as a table"),
        };
        if let Some((name, text)) = file {
            let doc: toml::Table =
                text.parse().map_err(|e: toml::de::Error| ConfigError { source_name: name.into(), message: e.to_string() })?;
            for (section, value) in doc {
                match (merged.get_mut(&section), value) {
                    (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => dst.extend(src),
                    (Some(_), _) => {
                        return Err(ConfigError {
                            source_name: name.into(),
                            message: format!("`{section}` must be a table like [{section}]"),
                        })
                    }
                    (None, _) => {
                        return Err(ConfigError {
                            source_name: name.into(),
                            message: format!("unknown section `{section}`; known sections are {}", known_sections()),
                        })
                    }
                }
            }
            // Surface field-level errors against the file before env overrides can mask them.
            Settings::from_table(merged.clone(), name)?;
        }
        for (key, raw) in env {
            let Some(rest) = key.strip_prefix("OWL_") else { continue };
            if NON_SETTING_VARS.contains(&key.as_str()) || rest.is_empty() {
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            // Only the settings sections are owl's namespace: OWL_DAEMON_*, OWL_TASKS_*,
            // OWL_API_*. A typo there is an error; other OWL_* variables (a user's own, or a
            // test harness's) are not settings and are left alone.
            let Some((section, field)) = lower.split_once('_') else { continue };
            if MAP_SECTIONS.contains(&section) {
                // Providers and agents are named tables: configured in the file, not by variables.
                continue;
            }
            let Some(toml::Value::Table(table)) = merged.get_mut(section) else { continue };
            if !Settings::section_fields(section).unwrap_or_default().contains(&field) {
                return Err(unknown_env(&key));
            }
            // A variable is text; the setting's type decides what it means. Try the readings in
            // order (the default's type first, then by shape, then as text) and keep the first
            // the settings accept, so `OWL_DAEMON_NODE=42` is a name and `0.9` a number.
            let like = table.get(field).cloned();
            let mut first_err = None;
            let mut accepted = false;
            for value in env_readings(&raw, like.as_ref()) {
                let mut trial = merged.clone();
                if let Some(toml::Value::Table(t)) = trial.get_mut(section) {
                    t.insert(field.to_string(), value);
                }
                // Each override is checked on its own so an error names the variable.
                match Settings::from_table(trial.clone(), &key) {
                    Ok(_) => {
                        merged = trial;
                        accepted = true;
                        break;
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if !accepted {
                let e = first_err.expect("at least one reading");
                return Err(ConfigError { source_name: key.clone(), message: format!("{} (for [{section}] {field})", e.message) });
            }
        }
        Settings::from_table(merged, "environment (OWL_*)")
    }

    fn from_table(table: toml::Table, source_name: &str) -> Result<Settings, ConfigError> {
        let text = toml::to_string(&table).expect("table serializes");
        toml::from_str::<Settings>(&text).map_err(|e| ConfigError { source_name: source_name.into(), message: e.message().to_string() })
    }

    /// The keys of a `[section]` that is one struct (not a table of named entries), read from
    /// the section's type, so the `OWL_*` variables can never drift from the settings.
    pub fn section_fields(section: &str) -> Option<&'static [&'static str]> {
        use crate::fields::field_names;
        Some(match section {
            "daemon" => field_names::<DaemonSettings>(),
            "tasks" => field_names::<TaskSettings>(),
            "api" => field_names::<ApiSettings>(),
            "scheduler" => field_names::<SchedulerSettings>(),
            "agent" => field_names::<crate::agent::AgentDefaults>(),
            "sandbox" => field_names::<SandboxSettings>(),
            "git" => field_names::<GitSettings>(),
            "memory" => field_names::<MemorySettings>(),
            _ => return None,
        })
    }

    /// Every `OWL_*` variable that sets a setting, in file order.
    pub fn env_vars() -> Vec<String> {
        crate::fields::field_names::<Settings>()
            .iter()
            .filter_map(|section| Some((section, Settings::section_fields(section)?)))
            .flat_map(|(section, fields)| fields.iter().map(move |f| format!("OWL_{}_{}", section, f).to_ascii_uppercase()))
            .collect()
    }

    /// The effective settings as TOML, with secrets redacted.
    pub fn to_toml_redacted(&self) -> String {
        toml::to_string_pretty(self).expect("settings serialize")
    }

    /// Checks values that parse but make no sense.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, msg: &str| Err(ConfigError { source_name: field.into(), message: msg.into() });
        if self.daemon.lease < Duration::from_secs(1) {
            return bad("daemon.lease", "must be at least 1s so heartbeats can keep up");
        }
        if self.tasks.log_max_bytes < 1024 {
            return bad("tasks.log_max_bytes", "must be at least 1024");
        }
        if self.api.max_body_bytes < 1024 {
            return bad("api.max_body_bytes", "must be at least 1024");
        }
        if crate::schedule::parse_tz("scheduler.default_tz", &self.scheduler.default_tz).is_err() {
            return bad("scheduler.default_tz", "is not a known IANA time zone, e.g. UTC or Europe/Berlin");
        }
        if self.scheduler.misfire_cap == 0 {
            return bad("scheduler.misfire_cap", "must be at least 1");
        }
        crate::agent::check(&self.providers, &self.agents).map_err(|(field, message)| ConfigError { source_name: field, message })?;
        if self.tasks.retry_base.is_zero() || self.tasks.retry_max < self.tasks.retry_base {
            return bad("tasks.retry_base", "must be more than 0 and no larger than tasks.retry_max");
        }
        Ok(())
    }
}

/// `[daemon], [tasks], …, [providers.NAME], …`, from the settings type.
fn known_sections() -> String {
    let names: Vec<String> = crate::fields::field_names::<Settings>()
        .iter()
        .map(|s| match *s {
            "prices" => "[prices.MODEL]".to_string(),
            s if MAP_SECTIONS.contains(&s) => format!("[{s}.NAME]"),
            s => format!("[{s}]"),
        })
        .collect();
    names.join(", ")
}

fn unknown_env(key: &str) -> ConfigError {
    ConfigError {
        source_name: key.into(),
        message: "is not an owl setting; variables look like OWL_DAEMON_WORKERS or OWL_TASKS_RETRY_BASE (see `owl config init`)".into(),
    }
}

/// The ways to read an environment value: as the default's type, then by shape (integer,
/// float, boolean), then as text.
fn env_readings(raw: &str, like: Option<&toml::Value>) -> Vec<toml::Value> {
    let as_int = raw.parse::<i64>().ok().map(toml::Value::Integer);
    let as_float = raw.parse::<f64>().ok().filter(|f| f.is_finite()).map(toml::Value::Float);
    let as_bool = match raw {
        "true" => Some(toml::Value::Boolean(true)),
        "false" => Some(toml::Value::Boolean(false)),
        _ => None,
    };
    let as_text = Some(toml::Value::String(raw.to_string()));
    let first = match like {
        Some(toml::Value::Integer(_)) => as_int.clone(),
        Some(toml::Value::Float(_)) => as_float.clone(),
        Some(toml::Value::Boolean(_)) => as_bool.clone(),
        Some(toml::Value::String(_)) => as_text.clone(),
        _ => None,
    };
    let mut out: Vec<toml::Value> = vec![];
    for v in [first, as_int, as_float, as_bool, as_text].into_iter().flatten() {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// A commented example configuration, written by `owl config init`.
pub const EXAMPLE_CONFIG: &str = r#"# owl configuration. Every key is optional; shown values are the defaults.
# Environment variables override this file: OWL_<SECTION>_<KEY>, e.g. OWL_DAEMON_WORKERS=4.
# Command-line flags override both. `owl config show` prints the effective settings.

[daemon]
# HTTP API address. Keep it on loopback unless you put a proxy with TLS in front.
# Port 0 picks a free port; the CLI finds the bound address in the data dir.
listen = "127.0.0.1:7717"
# Tasks running at once across all groups; 0 = number of CPU cores.
workers = 0
# On SIGTERM/SIGINT, running tasks get this long to finish before they are stopped and requeued.
shutdown_grace = "30s"
# Between SIGTERM and SIGKILL when a task's process group is stopped (timeout, cancel, shutdown).
kill_grace = "5s"
# A claim expires if not renewed for this long (heartbeats renew it every lease/3).
lease = "30s"
# "text" or "json" (one JSON object per line, for journald/Loki).
log_format = "text"
log_level = "info"
# Name recorded on each run; empty = host name.
node = ""

[tasks]
# default_timeout = "1h"
default_retries = 0
retry_base = "1s"
retry_max = "10m"
# Output kept per attempt; the rest is dropped with a visible marker.
log_max_bytes = 10485760
max_crash_requeues = 10

[api]
# token = "..."   # use a fixed bearer token instead of the generated <data-dir>/token
max_body_bytes = 1048576

[scheduler]
# Time zone of cron schedules that do not give --tz (an IANA name).
default_tz = "UTC"
# With --misfire all, at most this many missed slots run after downtime (the most recent).
misfire_cap = 100
# A slot that fires later than this counts as missed and follows the schedule's misfire policy.
max_lateness = "1m"
# Schedule and trigger history older than this is deleted.
history_retention = "30days"

[sandbox]
# Tasks an AI drives (agent shell calls, coding CLIs) are always sandboxed unless they opt out
# with --no-sandbox. Plain shell tasks are sandboxed with --sandbox, or by these defaults:
shell_default = false
groups = []
# More paths every sandboxed task may write.
writable = []
# Limits per sandboxed process; 0 = none.
cpu_seconds = 3600
memory_mb = 4096
processes = 256
file_size_mb = 1024
open_files = 1024
# How a task without network is cut off: "namespace" (its own empty network, needed for
# --allow-host) or "seccomp" (internet sockets denied; the fallback without namespaces).
network_isolation = "namespace"

[memory]
enabled = true
# "local" (all-MiniLM-L6-v2 in-process), "http" (an OpenAI-compatible /embeddings endpoint) or "none".
embeddings = "local"
# model_dir = "~/.cache/owl/models/all-MiniLM-L6-v2"
# endpoint = "http://127.0.0.1:11434/v1"
# embedding_model = "nomic-embed-text"
# api_key_env = "OPENAI_API_KEY"
dedup_threshold = 0.95
max_item_chars = 8000
recall_k = 5
recall_tokens = 600
remember_tasks = true
remember_chats = true

[memory.retention]
conversation = "90days"

[git]
# A finished repository task's worktree is removed this long after it ended (the branch stays).
worktree_retention = "7days"
# How long --push may take.
push_timeout = "5m"

# Coding CLI profiles: claude, codex, gemini and aider are built in; a table replaces one.
# [cli.claude]
# command = ["claude", "-p", "{prompt}", "--output-format", "stream-json", "--verbose"]
# unsandboxed_command = [...]        # what runs instead with --no-sandbox (default: command)
# format = "claude_stream_json"      # claude_stream_json | codex_json | gemini_stream_json | raw
# writable = ["~/.claude", "~/.claude.json"]
# grant_env = ["ANTHROPIC_API_KEY"]
# allow_hosts = ["api.anthropic.com"]
# memory_mb = 0
# env = { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1" }   # more environment for the CLI

[agent]
# An approval request nobody decides within this time counts as denied.
approval_timeout = "1h"
# Tool output handed back to a model is cut to this many bytes.
tool_output_max_bytes = 32768
# Per call of the shell tool.
shell_timeout = "2m"
# A GGUF file for the built-in "default" agent when no provider is configured
# (empty = the gemma-3-270m file that scripts/fetch-models puts in ~/.cache/owl/models, if present).
local_model = ""
# One chat turn (the answer to one message) may take this long; then it is stopped.
chat_timeout = "10m"

# Model providers. kind = "openai" (any Chat Completions API), "anthropic" or "local" (GGUF, in-process).
# API keys come from the daemon's environment (api_key_env) or the secrets file (api_key_secret),
# never from this file.
#
# [providers.openai]
# kind = "openai"
# base_url = "https://api.openai.com/v1"
# api_key_env = "OPENAI_API_KEY"
# model = "gpt-4o-mini"
# timeout = "2m"
# max_retries = 4
#
# [providers.claude]
# kind = "anthropic"
# api_key_secret = "anthropic"      # an entry of ~/.config/owl/secrets.toml (mode 0600)
# model = "claude-3-5-haiku-latest"
#
# [providers.local]
# kind = "local"
# model_path = "~/.cache/owl/models/gemma-3-270m-q4_k_m.gguf"
# threads = 2
# context = 8192

# Agents: a role with its model, prompt, tools and limits.
#
# [agents.researcher]
# description = "Reads and summarises files in its workspace"
# provider = "openai"
# model = "gpt-4o-mini"
# fallback = ["claude"]
# system_prompt = "You are a careful research assistant."
# tools = ["read_file", "write_file", "list_dir", "grep", "shell"]
# max_steps = 30
# max_cost_usd = 0.50
# max_wall = "30m"
# shell_default = "ask"             # allow | deny | ask (a human approves with `owl approve`)
# shell_allow = ["ls", "cat", "git status", "git diff"]
# shell_deny = ["rm", "git push", "curl"]
# ask = ["http_fetch"]                # tools whose every call waits for a human's approval
# max_tokens = 200000                 # input plus output tokens over the whole task
# max_output_tokens = 2048            # per model call
# temperature = 0.2
# must_use_tool = false               # true: the model must call a tool before it may answer
# sandbox = true                      # shell calls run in the sandbox (workspace writes only, no network)
# allow_net = false                   # give sandboxed shell calls the network
# allow_hosts = ["api.github.com"]    # without allow_net: hosts reachable through the allowlist proxy
# grant_env = ["GITHUB_TOKEN"]        # daemon variables the shell tool may see (secret-looking ones are removed)
# http_allow_private = false          # let http_fetch reach loopback and private addresses
# max_subtask_depth = 2               # how deep task_create may nest
# max_schedules = 3                   # schedules one task may create

# Prices in USD per million tokens, for usage and cost limits.
#
# [prices."gpt-4o-mini"]
# input = 0.15
# output = 0.60
# cached = 0.075
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let s = Settings::load(None, vec![]).unwrap();
        assert_eq!(s, Settings::default());
        s.check().unwrap();
    }

    #[test]
    fn the_example_config_parses_to_the_defaults() {
        let s = Settings::load(Some(("example", EXAMPLE_CONFIG)), vec![]).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn file_then_env_layering() {
        let file = "[daemon]\nworkers = 3\nlease = \"10s\"\n[tasks]\ndefault_timeout = \"5m\"\n";
        let s =
            Settings::load(Some(("f.toml", file)), env(&[("OWL_DAEMON_WORKERS", "7"), ("OWL_DATA_DIR", "/x"), ("HOME", "/h")])).unwrap();
        assert_eq!(s.daemon.workers, 7);
        assert_eq!(s.daemon.lease, Duration::from_secs(10));
        assert_eq!(s.tasks.default_timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Settings::load(Some(("f.toml", "[daemon]\nworkerz = 3\n")), vec![]).unwrap_err();
        assert_eq!(e.source_name, "f.toml");
        assert!(e.message.contains("workerz"), "{e}");
        let e = Settings::load(Some(("f.toml", "[deamon]\n")), vec![]).unwrap_err();
        assert!(e.message.contains("deamon"), "{e}");
        let e = Settings::load(None, env(&[("OWL_DAEMON_WORKERZ", "1")])).unwrap_err();
        assert_eq!(e.source_name, "OWL_DAEMON_WORKERZ");
        // Variables outside the settings sections are not owl's to judge.
        Settings::load(None, env(&[("OWL_CRASH_TASKS", "5"), ("OWL_X", "1"), ("OWL_", "")])).unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let e = Settings::load(Some(("f.toml", "[daemon]\nlease = \"soon\"\n")), vec![]).unwrap_err();
        assert!(e.message.contains("soon"), "{e}");
        let e = Settings::load(None, env(&[("OWL_DAEMON_WORKERS", "many")])).unwrap_err();
        assert_eq!(e.source_name, "OWL_DAEMON_WORKERS");
        assert!(e.message.contains("[daemon] workers"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_everywhere_they_could_be_printed() {
        let s = Settings::load(None, env(&[("OWL_API_TOKEN", "canary-7f3a")])).unwrap();
        assert_eq!(s.api.token.as_ref().unwrap().expose(), "canary-7f3a");
        assert!(!s.to_toml_redacted().contains("canary-7f3a"));
        assert!(!format!("{s:?}").contains("canary-7f3a"));
        assert!(s.to_toml_redacted().contains("<redacted>"));
    }

    #[test]
    fn every_setting_has_its_variable() {
        // Each struct section of the settings type has its keys; none is forgotten.
        for section in crate::fields::field_names::<Settings>() {
            let fields = Settings::section_fields(section);
            assert_eq!(fields.is_none(), MAP_SECTIONS.contains(section), "[{section}]: add it to section_fields or MAP_SECTIONS");
            assert!(fields.is_none_or(|f| !f.is_empty()), "[{section}] has no fields");
        }
        // And every variable is accepted: set to its default where that is a plain value,
        // otherwise at least not refused as unknown.
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        let vars = Settings::env_vars();
        assert!(vars.contains(&"OWL_MEMORY_ENABLED".to_string()) && vars.contains(&"OWL_GIT_WORKTREE_RETENTION".to_string()));
        for var in vars {
            let lower = var.trim_start_matches("OWL_").to_ascii_lowercase();
            let (section, field) = lower.split_once('_').unwrap();
            let value = match defaults.get(section).and_then(|t| t.get(field)) {
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Integer(i)) => i.to_string(),
                Some(toml::Value::Boolean(b)) => b.to_string(),
                Some(toml::Value::Float(f)) => f.to_string(),
                _ => String::new(),
            };
            match Settings::load(None, env(&[(&var, &value)])) {
                Ok(_) => {}
                Err(e) => {
                    assert!(!e.message.contains("is not an owl setting"), "{var}: {e}");
                    assert!(value.is_empty(), "{var}={value} (the default) is refused: {e}");
                }
            }
        }
        let s = Settings::load(None, env(&[("OWL_MEMORY_ENABLED", "false"), ("OWL_GIT_WORKTREE_RETENTION", "1d")])).unwrap();
        assert!(!s.memory.enabled);
        assert_eq!(s.git.worktree_retention, Duration::from_secs(86_400));
    }

    #[test]
    fn the_example_config_shows_every_key() {
        // `owl config init` writes EXAMPLE_CONFIG; each key of each section appears in it,
        // set or commented out, under its own section.
        let mut section = String::new();
        let mut shown: std::collections::BTreeSet<(String, String)> = Default::default();
        for line in EXAMPLE_CONFIG.lines() {
            let l = line.trim_start_matches('#').trim();
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = name.split('.').next().unwrap_or(name).to_string();
                // `[memory.retention]` shows the key `retention` of `[memory]`.
                if let Some((_, sub)) = name.split_once('.') {
                    shown.insert((section.clone(), sub.to_string()));
                }
            } else if let Some((key, _)) = l.split_once(" =") {
                shown.insert((section.clone(), key.trim().to_string()));
            }
        }
        let mut missing = vec![];
        for section in crate::fields::field_names::<Settings>() {
            let fields: &[&str] = match *section {
                "providers" => crate::fields::field_names::<crate::agent::ProviderSettings>(),
                "agents" => crate::fields::field_names::<crate::agent::AgentSettings>(),
                "cli" => crate::fields::field_names::<crate::coding::CliProfile>(),
                "prices" => crate::fields::field_names::<crate::agent::Price>(),
                s => Settings::section_fields(s).unwrap(),
            };
            for f in fields {
                if !shown.contains(&(section.to_string(), f.to_string())) {
                    missing.push(format!("[{section}] {f}"));
                }
            }
        }
        assert!(missing.is_empty(), "EXAMPLE_CONFIG does not show: {}", missing.join(", "));
    }

    #[test]
    fn the_readme_configuration_table_shows_every_key() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("### Configuration").expect("a Configuration section");
        let table = &readme[start..readme[start..].find("\n### ").map_or(readme.len(), |e| start + e)];
        let mut missing = vec![];
        for section in crate::fields::field_names::<Settings>() {
            let Some(fields) = Settings::section_fields(section) else { continue };
            for f in fields {
                let full = format!("`{section}.{f}`");
                let table_form = format!("`[{section}.{f}]`");
                let grouped = table.lines().any(|l| l.contains(&format!("`{section}.")) && l.contains(&format!("`{f}`")));
                if !table.contains(&full) && !table.contains(&table_form) && !grouped {
                    missing.push(format!("{section}.{f}"));
                }
            }
        }
        assert!(missing.is_empty(), "README's configuration table does not show: {}", missing.join(", "));
    }
}
