//! Settings: one type, layered as defaults, then the TOML file, then `OWL_*` environment
//! variables (the caller applies command-line flags last). Parsing takes text and an
//! environment list, never reads them itself, so every layer is testable.

use crate::duration::{serde_human, serde_human_opt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// Where the queue lives: SQLite in the data dir, or a PostgreSQL shared by several daemons.
    pub store: StoreSettings,
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
    /// USD per million tokens, by model name (over the shipped price table).
    pub prices: crate::agent::Prices,
    /// Spending limits by scope: `[budgets."agent.NAME"]`, `[budgets.global]`, ….
    pub budgets: crate::budget::Budgets,
    /// Coding CLI profiles by name (`[cli.claude]` replaces the built-in one).
    pub cli: crate::coding::CliProfiles,
    /// Workspace templates by name: directories, files and set-up before an agent starts.
    pub templates: crate::template::Templates,
    /// Git worktrees of repository tasks.
    pub git: GitSettings,
    /// Long-term memory.
    pub memory: MemorySettings,
    /// Liveness, readiness, metrics access and schedule health.
    pub health: HealthSettings,
    /// Runs far outside their usual duration, tokens or cost, and failure streaks.
    pub anomalies: AnomalySettings,
    /// The daily report written every morning, and what reports link to.
    pub reports: ReportSettings,
    /// How notifications are delivered: retries, pausing a failing channel.
    pub notify: NotifySettings,
    /// The SMTP relay email channels send through.
    pub email: EmailSettings,
    /// Pull requests and issues on GitHub (or GitHub Enterprise).
    pub github: GithubSettings,
    /// The Slack app: slash commands, buttons, and Slack notification channels.
    pub slack: SlackSettings,
    /// owl's MCP server, and the MCP servers agents use as tools.
    pub mcp: crate::mcp::McpSettings,
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
    /// With `embeddings = "local"`: `f32` (the default) or `int8` (quantized matrices: a
    /// quarter of the memory; see BENCHMARKS.md for its speed and accuracy).
    pub precision: String,
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
            precision: "f32".into(),
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

mod serde_human_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| crate::duration::format(*d)))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter().map(|v| crate::duration::parse(v).map_err(serde::de::Error::custom)).collect()
    }
}

/// `[store]`: the queue's database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `postgres://user:password@host:port/db`: share one PostgreSQL with other daemons. None:
    /// SQLite in the data dir (one daemon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// PostgreSQL connections this daemon keeps open.
    pub pool_size: usize,
    /// Send and listen for a NOTIFY hint when tasks become claimable, so other nodes start
    /// them at once rather than at their next poll (about half a second). Off by default: it
    /// costs every committing submit a global lock, and PgBouncer in transaction mode cannot
    /// carry it.
    pub notify: bool,
    /// SQLite: the write-ahead log is checkpointed and truncated once it grows past this.
    pub wal_checkpoint_mb: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { url: None, pool_size: 8, notify: false, wal_checkpoint_mb: 64 }
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
pub struct HealthSettings {
    /// A loop busy on one pass longer than this is stalled: liveness fails and it is restarted.
    #[serde(with = "serde_human")]
    pub loop_stall: Duration,
    /// Restarts of one loop allowed within an hour; past them the daemon exits non-zero.
    pub loop_restarts: u32,
    /// `/metrics` answers clients on loopback without the token.
    pub metrics_open_on_loopback: bool,
    /// Readiness fails, and no new task starts, while the data dir's disk has less free space.
    pub min_free_disk_mb: u64,
    /// Readiness fails while the machine has less memory available.
    pub min_free_memory_mb: u64,
    /// A schedule is flagged when its first slot after its last success is this long past
    /// (plus that run's duration) without a new success.
    #[serde(with = "serde_human")]
    pub schedule_grace: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            loop_stall: Duration::from_secs(300),
            loop_restarts: 5,
            metrics_open_on_loopback: false,
            min_free_disk_mb: 256,
            min_free_memory_mb: 64,
            schedule_grace: Duration::from_secs(1800),
        }
    }
}

/// `[anomalies]`: each finished attempt is compared with the recent successful runs of its
/// schedule, agent or kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalySettings {
    pub enabled: bool,
    /// How many recent runs of a schedule, agent or kind make its baseline.
    pub baseline_runs: u32,
    /// A run is news only when it is also this much longer than the median.
    #[serde(with = "serde_human")]
    pub duration_floor: Duration,
    /// ... this many more tokens than the median.
    pub tokens_floor: u64,
    /// ... this much more cost (USD) than the median.
    pub cost_floor_usd: f64,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        AnomalySettings {
            enabled: true,
            baseline_runs: 50,
            duration_floor: Duration::from_secs(30),
            tokens_floor: 5000,
            cost_floor_usd: 0.05,
        }
    }
}

impl AnomalySettings {
    pub fn floors(&self) -> crate::anomaly::Floors {
        crate::anomaly::Floors {
            duration_seconds: self.duration_floor.as_secs_f64(),
            tokens: self.tokens_floor as f64,
            cost_usd: self.cost_floor_usd,
        }
    }
}

/// `[notify]`: delivery of notifications (channels and rules are made with `owl notify`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    pub enabled: bool,
    /// The waits between tries after a failed one, each spread by ±20 %; after the last a
    /// delivery is a dead letter (`owl notify log --failed`).
    #[serde(with = "serde_human_list")]
    pub retry: Vec<Duration>,
    /// A channel whose last this many attempts all failed is paused until `owl notify resume`.
    pub pause_after: u32,
    /// How long one send may take before it counts as failed (and its claim runs out).
    #[serde(with = "serde_human")]
    pub timeout: Duration,
    /// Channels declared here (`[notify.channels.NAME]`, with `kind` and its fields) are made,
    /// or brought up to date, in the store at start and at every reload.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, crate::notify::Target>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            enabled: true,
            retry: crate::notify::default_retry_schedule(),
            pause_after: 10,
            timeout: Duration::from_secs(30),
            channels: BTreeMap::new(),
        }
    }
}

/// `[github]`: the REST API `--pr` and `--from-issue` talk to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubSettings {
    /// The API root: `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise.
    pub api_url: String,
    /// The token from this environment variable of the daemon...
    pub token_env: String,
    /// ... or from this entry of secrets.toml (used when set).
    pub token_secret: String,
    /// Comment on a task's issue when the task succeeds (with its pull request).
    pub comment_on_issue: bool,
}

impl Default for GithubSettings {
    fn default() -> Self {
        GithubSettings {
            api_url: "https://api.github.com".into(),
            token_env: "GITHUB_TOKEN".into(),
            token_secret: String::new(),
            comment_on_issue: true,
        }
    }
}

/// `[slack]`: a Socket Mode app (no public URL needed) that takes `/owl` commands and button
/// presses, and the bot that posts Slack notifications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// Connect to Slack and answer `/owl` and buttons (notifications are sent either way).
    pub enabled: bool,
    /// The app-level token (`xapp-...`, scope connections:write) from this variable...
    pub app_token_env: String,
    /// ... or this entry of secrets.toml (used when set).
    pub app_token_secret: String,
    /// The bot token (`xoxb-...`) from this variable...
    pub bot_token_env: String,
    /// ... or this entry of secrets.toml (used when set).
    pub bot_token_secret: String,
    /// Slack user ids (U0123ABCD) who may change anything: add, approve, deny, retry. Others
    /// may only look (`/owl ls`, `/owl status`, `/owl show`).
    pub allow_users: Vec<String>,
    /// The Web API root.
    pub api_url: String,
    /// With no frame from Slack for this long, the connection is dropped and made again.
    #[serde(with = "serde_human")]
    pub idle_timeout: Duration,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            enabled: false,
            app_token_env: "SLACK_APP_TOKEN".into(),
            app_token_secret: String::new(),
            bot_token_env: "SLACK_BOT_TOKEN".into(),
            bot_token_secret: String::new(),
            allow_users: vec![],
            api_url: "https://slack.com/api".into(),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// `[email]`: the SMTP relay for email channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    /// The relay's host name; empty: email channels cannot send (they say so).
    pub host: String,
    /// 0: 587 for starttls, 465 for tls, 25 for none.
    pub port: u16,
    /// `starttls` (upgrade a plain connection; refused when the server cannot), `tls` (TLS
    /// from the start) or `none` (plain text, for a relay on loopback).
    pub security: String,
    /// The sender address (`owl <owl@example.com>`).
    pub from: String,
    /// Log in with this user (empty: no login).
    pub username: String,
    /// The password from this environment variable of the daemon...
    pub password_env: String,
    /// ... or from this entry of secrets.toml.
    pub password_secret: String,
    /// A PEM file of certificates to trust besides the system's (a private relay's CA).
    pub ca_file: String,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            host: String::new(),
            port: 0,
            security: "starttls".into(),
            from: String::new(),
            username: String::new(),
            password_env: String::new(),
            password_secret: String::new(),
            ca_file: String::new(),
        }
    }
}

/// `[reports]`: `owl report` and the daily report file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSettings {
    /// Write the previous day's report every morning.
    pub daily: bool,
    /// When, in `tz` (HH:MM).
    pub daily_at: String,
    /// The reports' time zone (empty: `[scheduler] default_tz`).
    pub tz: String,
    /// Which formats the daily report is written in: md, html, pdf (with the `pdf` build), json.
    pub formats: Vec<String>,
    /// Where the daily reports go (empty: `reports/` in the data dir).
    pub dir: String,
    /// Daily report files older than this are deleted.
    #[serde(with = "serde_human")]
    pub keep: Duration,
    /// Where a task's page is, with `{id}` for its id (a dashboard URL); empty: reports say
    /// `owl show ID`.
    pub task_link: String,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            daily: true,
            daily_at: "07:00".into(),
            tz: String::new(),
            formats: vec!["md".into(), "html".into()],
            dir: String::new(),
            keep: Duration::from_secs(90 * 86400),
            task_link: String::new(),
        }
    }
}

impl ReportSettings {
    /// `daily_at` as (hour, minute).
    pub fn daily_time(&self) -> Result<(u32, u32), String> {
        let bad = || format!("`{}` is not a time of day; write it like 07:00", self.daily_at);
        let (h, m) = self.daily_at.split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok((h, m))
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
const MAP_SECTIONS: &[&str] = &["providers", "agents", "prices", "budgets", "cli", "templates"];

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
            "store" => field_names::<StoreSettings>(),
            "scheduler" => field_names::<SchedulerSettings>(),
            "agent" => field_names::<crate::agent::AgentDefaults>(),
            "sandbox" => field_names::<SandboxSettings>(),
            "git" => field_names::<GitSettings>(),
            "memory" => field_names::<MemorySettings>(),
            "health" => field_names::<HealthSettings>(),
            "anomalies" => field_names::<AnomalySettings>(),
            "reports" => field_names::<ReportSettings>(),
            "notify" => field_names::<NotifySettings>(),
            "email" => field_names::<EmailSettings>(),
            "github" => field_names::<GithubSettings>(),
            "slack" => field_names::<SlackSettings>(),
            "mcp" => field_names::<crate::mcp::McpSettings>(),
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
        if let Err(m) = self.reports.daily_time() {
            return bad("reports.daily_at", &m);
        }
        if !self.reports.tz.is_empty() && self.reports.tz.parse::<chrono_tz::Tz>().is_err() {
            return bad("reports.tz", &format!("`{}` is not an IANA time zone (like Europe/Berlin)", self.reports.tz));
        }
        if let Some(f) = self.reports.formats.iter().find(|f| !["md", "html", "pdf", "json"].contains(&f.as_str())) {
            return bad("reports.formats", &format!("`{f}` is not a report format; use md, html, pdf or json"));
        }
        if !self.reports.task_link.is_empty() && !self.reports.task_link.contains("{id}") {
            return bad("reports.task_link", "must contain {id}, where the task's id goes");
        }
        if !(self.github.api_url.starts_with("https://") || self.github.api_url.starts_with("http://")) {
            return bad("github.api_url", "must be an http(s) URL, like https://api.github.com");
        }
        if let Some(u) = self
            .slack
            .allow_users
            .iter()
            .find(|u| !(u.starts_with(['U', 'W']) && u.len() >= 2 && u.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())))
        {
            return bad(
                "slack.allow_users",
                &format!("`{u}` is not a Slack user id (like U0123ABCD: a member's profile, More, Copy member ID)"),
            );
        }
        if self.slack.idle_timeout < Duration::from_secs(10) {
            return bad("slack.idle_timeout", "must be at least 10s (Slack pings about every 30s)");
        }
        for (name, target) in &self.notify.channels {
            let spec = crate::notify::ChannelSpec { name: name.clone(), target: target.clone() };
            if let Err((field, m)) = spec.validate() {
                return bad(&format!("notify.channels.{name}.{field}"), &m);
            }
        }
        if let Err((field, m)) = self.mcp.check() {
            return bad(&field, &m);
        }
        for (name, a) in self.agents.iter() {
            if let Some(m) = a.mcp.iter().find(|m| !self.mcp.servers.contains_key(*m)) {
                return bad(
                    &format!("agents.{name}.mcp"),
                    &format!("`{m}` is not a server in [mcp.servers]; add [mcp.servers.{m}] or remove it"),
                );
            }
        }
        if self.notify.pause_after == 0 {
            return bad("notify.pause_after", "must be at least 1");
        }
        if self.notify.timeout < Duration::from_secs(1) {
            return bad("notify.timeout", "must be at least 1s");
        }
        if !["starttls", "tls", "none"].contains(&self.email.security.as_str()) {
            return bad("email.security", "must be starttls, tls or none");
        }
        if !self.email.host.is_empty() && self.email.from.is_empty() {
            return bad("email.from", "is needed once email.host is set: the sender address, like `owl <owl@example.com>`");
        }
        if !self.email.password_env.is_empty() && !self.email.password_secret.is_empty() {
            return bad("email.password_env", "give the password one way: password_env or password_secret, not both");
        }
        if !(self.anomalies.cost_floor_usd.is_finite() && self.anomalies.cost_floor_usd >= 0.0) {
            return bad("anomalies.cost_floor_usd", "must be zero or more");
        }
        if !(crate::anomaly::MIN_SAMPLES as u32..=10_000).contains(&self.anomalies.baseline_runs) {
            return bad(
                "anomalies.baseline_runs",
                &format!("must be between {} (the fewest runs a baseline is judged on) and 10000", crate::anomaly::MIN_SAMPLES),
            );
        }
        if self.health.loop_stall < Duration::from_secs(1) {
            return bad("health.loop_stall", "must be at least 1s: a shorter limit aborts loops in the middle of ordinary work");
        }
        if self.store.wal_checkpoint_mb == 0 {
            return bad("store.wal_checkpoint_mb", "must be at least 1 (MiB)");
        }
        if self.tasks.log_max_bytes < 1024 {
            return bad("tasks.log_max_bytes", "must be at least 1024");
        }
        if self.api.max_body_bytes < 1024 {
            return bad("api.max_body_bytes", "must be at least 1024");
        }
        if let Some(url) = &self.store.url {
            let u = url.expose();
            if !(u.is_empty() || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return bad(
                    "store.url",
                    "must be a PostgreSQL URL (postgres://user:password@host:port/db), or left out for SQLite in the data dir",
                );
            }
        }
        if self.store.pool_size == 0 || self.store.pool_size > 1000 {
            return bad("store.pool_size", "must be between 1 and 1000");
        }
        if crate::schedule::parse_tz("scheduler.default_tz", &self.scheduler.default_tz).is_err() {
            return bad("scheduler.default_tz", "is not a known IANA time zone, e.g. UTC or Europe/Berlin");
        }
        if self.scheduler.misfire_cap == 0 {
            return bad("scheduler.misfire_cap", "must be at least 1");
        }
        crate::agent::check(&self.providers, &self.agents).map_err(|(field, message)| ConfigError { source_name: field, message })?;
        crate::template::check(&self.templates).map_err(|(field, message)| ConfigError { source_name: field, message })?;
        for (name, a) in &self.agents {
            if let Some(cli) = &a.cli {
                crate::coding::resolve(cli, &self.cli)
                    .map_err(|message| ConfigError { source_name: format!("agents.{name}.cli"), message })?;
            }
            if let Some(t) = a.template.as_ref().filter(|t| !self.templates.contains_key(*t)) {
                return Err(ConfigError {
                    source_name: format!("agents.{name}.template"),
                    message: format!("`{t}` is not a template; add [templates.{t}]"),
                });
            }
        }
        crate::budget::check(&self.budgets).map_err(|(field, message)| ConfigError { source_name: field, message })?;
        if let Err(m) = crate::agent::default_model_provider(&self.agent.default_model, None) {
            return bad("agent.default_model", &m);
        }
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
            "budgets" => "[budgets.SCOPE]".to_string(),
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
pub const EXAMPLE_CONFIG: &str = include_str!("config/example.toml");

#[cfg(test)]
mod tests;
