//! The command line, as clap types.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "owl", version, about = "owl: an always-on runtime for tasks and agents", propagate_version = true)]
pub struct Cli {
    /// Data directory (database, logs, workspaces, token). Default: $XDG_DATA_HOME/owl or ~/.local/share/owl.
    #[arg(long, global = true, env = "OWL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file. Default: $XDG_CONFIG_HOME/owl/config.toml or ~/.config/owl/config.toml.
    #[arg(long, global = true, env = "OWL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (systemd-friendly).
    Daemon(DaemonArgs),
    /// Queue a task; prints its id.
    Add(AddArgs),
    /// List tasks, newest first.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show one task with its runs.
    Show { id: String },
    /// Print an attempt's output; -f follows it live.
    Logs(LogsArgs),
    /// Wait until tasks finish; exits 0 only if all succeeded.
    Wait(WaitArgs),
    /// Cancel tasks (running ones are stopped).
    Cancel {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Queue failed, timed out or cancelled tasks again.
    Retry {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List groups, or set a group's parallel limit.
    Groups {
        #[command(subcommand)]
        action: Option<GroupsAction>,
    },
    /// Daemon status and task counts.
    Status,
    /// Show or create the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Schedules: cron, intervals and one-time runs.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Triggers: webhooks and task-event chains.
    Trigger {
        #[command(subcommand)]
        action: TriggerAction,
    },
    /// Cron tools.
    Cron {
        #[command(subcommand)]
        action: CronAction,
    },
    /// The configured agents, with model, tools and limits.
    Agents,
    /// Long-term memory: add, search, list, import, export.
    Memory {
        #[command(subcommand)]
        action: MemoryAction,
    },
    /// The sandbox: what this machine can enforce.
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// An agent task's transcript: every message, tool call and result, with tokens and cost.
    Transcript {
        id: String,
        /// Show tool results in full instead of their first lines.
        #[arg(long)]
        full: bool,
    },
    /// Chat with an agent interactively (streamed); the conversation is stored.
    Chat {
        /// The agent (default: the first configured).
        #[arg(long)]
        agent: Option<String>,
        /// Continue a stored chat by id.
        #[arg(long, value_name = "ID", conflicts_with = "list")]
        resume: Option<i64>,
        /// List stored chats.
        #[arg(long)]
        list: bool,
        /// Send this one message and exit instead of reading from the terminal.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Tool calls waiting for a human's decision.
    Approvals {
        /// Include decided, expired and used requests.
        #[arg(long)]
        all: bool,
    },
    /// Approve a pending tool call (used once, for that exact call).
    Approve { id: String },
    /// Deny a pending tool call.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Tokens and cost of model calls.
    Usage {
        /// Group by agent, provider, model or day.
        #[arg(long, default_value = "agent")]
        by: String,
        /// Window, e.g. 7d.
        #[arg(long, default_value = "30d")]
        since: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// API address; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// `text` or `json`.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Tasks running at once (0 = CPU cores).
    #[arg(long)]
    pub workers: Option<u32>,
}

/// The task's group and labels, for `owl add` and `owl schedule add` (`owl trigger add` uses
/// `--group`/`--label` as event filters and has `--task-group`/`--task-label` instead).
#[derive(Args, Debug)]
pub struct TaskTagArgs {
    /// Group (each group can have a parallel limit).
    #[arg(long, short)]
    pub group: Option<String>,
    /// Label (repeatable).
    #[arg(long, short)]
    pub label: Vec<String>,
}

/// What a task runs and how: shared by `owl add`, `owl schedule add` and `owl trigger add`.
#[derive(Args, Debug)]
pub struct TaskArgs {
    /// Higher runs first.
    #[arg(long, short, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i32,
    /// Per-attempt limit, e.g. 30m.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Extra attempts after a failure or timeout (exponential backoff with jitter).
    #[arg(long)]
    pub retries: Option<u32>,
    /// Environment for the task, KEY=VALUE (repeatable).
    #[arg(long, short, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory (default: the task's own workspace under the data dir).
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Run the words as one string with /bin/sh -c.
    #[arg(long, conflicts_with_all = ["agent", "cli"])]
    pub shell: bool,
    /// Give the words as a prompt to a coding CLI: a profile (claude, codex, gemini, aider, or
    /// one from [cli.NAME] in the config) or `custom:'TEMPLATE'` with {prompt} and {workspace}.
    #[arg(long, value_name = "PROFILE", conflicts_with = "agent")]
    pub cli: Option<String>,
    /// Work in a new git worktree of this repository, on branch owl/task-<id>; the changes are
    /// committed when the task succeeds.
    #[arg(long, value_name = "PATH", conflicts_with = "cwd")]
    pub repo: Option<PathBuf>,
    /// The branch or commit the task's branch starts from (default: the repository's HEAD).
    #[arg(long, value_name = "REV", requires = "repo")]
    pub base: Option<String>,
    /// After the commit, push the branch (to origin, or the remote given with --remote).
    #[arg(long, requires = "repo")]
    pub push: bool,
    /// The remote --push pushes to.
    #[arg(long, value_name = "NAME", default_value = "origin", requires = "push")]
    pub remote: String,
    /// Run in the sandbox: writes confined to the workspace, no network, secrets removed, limits.
    #[arg(long, conflicts_with = "no_sandbox")]
    pub sandbox: bool,
    /// Run without the sandbox even where it is the default (recorded on the task).
    #[arg(long)]
    pub no_sandbox: bool,
    /// Keep the network inside the sandbox.
    #[arg(long)]
    pub allow_net: bool,
    /// Inside the sandbox, still reach this host through owl's proxy: `host`, `host:port` or
    /// `*.domain` (repeatable). Clients that honour HTTPS_PROXY (curl, git, pip, npm) use it.
    #[arg(long, value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Pass this secret-looking environment variable into the sandbox anyway (repeatable).
    #[arg(long, value_name = "NAME")]
    pub grant_env: Vec<String>,
    /// Another absolute path the sandboxed task may write (repeatable).
    #[arg(long, value_name = "PATH")]
    pub writable: Vec<PathBuf>,
    /// Give the words as a prompt to this agent (see `owl agents`) instead of running them.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// The command and its arguments, after `--` (with --agent: the prompt).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Start only after these tasks succeeded (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    pub after: Vec<String>,
    /// Start after this delay, e.g. 2h.
    #[arg(long = "in", value_name = "DURATION", conflicts_with = "at")]
    pub delay: Option<String>,
    /// Start at this instant, e.g. 2026-12-01T09:00:00+01:00.
    #[arg(long)]
    pub at: Option<String>,
    /// Idempotency key: submitting the same key again returns the existing task.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub tags: TaskTagArgs,
    #[command(flatten)]
    pub task: TaskArgs,
}

#[derive(Args, Debug)]
pub struct CronNextArgs {
    /// A cron expression: 5 fields, 6 with seconds first, or a nickname such as @daily.
    pub expr: String,
    /// IANA time zone (default: the configured scheduler.default_tz).
    #[arg(long)]
    pub tz: Option<String>,
    /// Start after this RFC 3339 instant (default: now).
    #[arg(long)]
    pub after: Option<String>,
    /// How many fire times.
    #[arg(short = 'n', long = "count", default_value_t = 5)]
    pub count: usize,
}

#[derive(Args, Debug)]
pub struct ScheduleAddArgs {
    /// A unique name for the schedule.
    pub name: String,
    /// Cron expression: 5 fields, 6 with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly.
    #[arg(long, conflicts_with_all = ["every", "once_at"], required_unless_present_any = ["every", "once_at"])]
    pub cron: Option<String>,
    /// IANA time zone of --cron (default: scheduler.default_tz, UTC out of the box).
    #[arg(long, requires = "cron")]
    pub tz: Option<String>,
    /// A fixed interval, e.g. 90s.
    #[arg(long, conflicts_with = "once_at")]
    pub every: Option<String>,
    /// RFC 3339 instant the interval counts from (default: now).
    #[arg(long, requires = "every")]
    pub anchor: Option<String>,
    /// Run once at this RFC 3339 instant.
    #[arg(long = "at", id = "once_at")]
    pub once_at: Option<String>,
    /// After downtime: skip (default), once (the latest missed slot) or all (capped).
    #[arg(long)]
    pub misfire: Option<String>,
    /// With --misfire all, at most this many missed slots run.
    #[arg(long)]
    pub misfire_cap: Option<u32>,
    /// When the previous run is still going: skip (default), allow, queue (buffer one) or replace.
    #[arg(long)]
    pub overlap: Option<String>,
    /// A slot fired later than this counts as missed (default: scheduler.max_lateness).
    #[arg(long)]
    pub max_lateness: Option<String>,
    /// Start each run up to this much after its slot, at random.
    #[arg(long)]
    pub jitter: Option<String>,
    /// No slots after this RFC 3339 instant.
    #[arg(long)]
    pub until: Option<String>,
    /// Stop after this many runs.
    #[arg(long)]
    pub max_runs: Option<u64>,
    #[command(flatten)]
    pub tags: TaskTagArgs,
    #[command(flatten)]
    pub task: TaskArgs,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum ScheduleAction {
    /// Create a schedule.
    Add(ScheduleAddArgs),
    /// List schedules with their health.
    Ls,
    /// One schedule with its next slots.
    Show {
        name: String,
    },
    /// Fires, newest first: slot, lateness, outcome, task.
    History {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    Pause {
        name: String,
    },
    /// Resume from now; slots passed while paused are not run.
    Resume {
        name: String,
    },
    /// Run the schedule's task now, outside its slots.
    RunNow {
        name: String,
    },
    /// Remove the schedule and its history (its tasks stay).
    Rm {
        name: String,
    },
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["webhook", "on_task_succeeded", "on_task_failed", "on_task_finished", "watch", "condition", "probe"])))]
pub struct TriggerAddArgs {
    /// A unique name; a webhook answers at /v1/hooks/<name>.
    pub name: String,
    /// Start on a signed POST to /v1/hooks/<name>.
    #[arg(long, requires = "secret_env")]
    pub webhook: bool,
    /// The daemon's environment variable that holds the webhook's secret.
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// Start when a matching task succeeds.
    #[arg(long)]
    pub on_task_succeeded: bool,
    /// Start when a matching task fails or times out.
    #[arg(long)]
    pub on_task_failed: bool,
    /// Start when a matching task ends in any way.
    #[arg(long)]
    pub on_task_finished: bool,
    /// Start when files change under this directory (recursively).
    #[arg(long, value_name = "PATH")]
    pub watch: Option<PathBuf>,
    /// With --watch: created, modified and/or deleted (repeat or comma-separate; default all).
    #[arg(long = "on", value_delimiter = ',', requires = "watch", value_name = "EVENT")]
    pub watch_on: Vec<String>,
    /// With --watch: only files whose name matches, e.g. '*.pdf'.
    #[arg(long, requires = "watch")]
    pub glob: Option<String>,
    /// With --watch: quiet time before a change counts (default 500ms).
    #[arg(long, requires = "watch")]
    pub debounce: Option<String>,
    /// Start when this expression turns true, e.g. 'disk_free_percent < 10' (facts: queue_depth,
    /// running, failures_last_hour, disk_free_percent, memory_free_percent, load_average).
    #[arg(long, value_name = "EXPR")]
    pub condition: Option<String>,
    /// Start when this shell command starts exiting 0.
    #[arg(long, value_name = "COMMAND")]
    pub probe: Option<String>,
    /// With --condition/--probe: how often to check (default 1m).
    #[arg(long)]
    pub every: Option<String>,
    /// With --condition/--probe: no second fire within this time.
    #[arg(long)]
    pub cooldown: Option<String>,
    /// Filter: tasks with this label.
    #[arg(long)]
    pub label: Option<String>,
    /// Filter: tasks of this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Filter: tasks created by this schedule.
    #[arg(long)]
    pub schedule: Option<String>,
    /// At most N fires per period, e.g. 10/1m.
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Chains of triggered tasks deeper than this are refused (default 5).
    #[arg(long)]
    pub max_chain_depth: Option<u32>,
    /// The created task's group.
    #[arg(long)]
    pub task_group: Option<String>,
    /// The created task's labels (repeatable).
    #[arg(long)]
    pub task_label: Vec<String>,
    #[command(flatten)]
    pub task: TaskArgs,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum TriggerAction {
    /// Create a trigger.
    Add(TriggerAddArgs),
    Ls,
    Show {
        name: String,
    },
    /// Events offered to the trigger: fired, rate_limited, refused.
    History {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    Enable {
        name: String,
    },
    Disable {
        name: String,
    },
    Rm {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CronAction {
    /// Preview the next fire times of a cron expression (no daemon needed).
    Next(CronNextArgs),
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only these statuses (comma-separated): queued, waiting, running, succeeded, failed, timed_out, cancelled.
    #[arg(long, short)]
    pub status: Option<String>,
    #[arg(long, short)]
    pub group: Option<String>,
    #[arg(long, short)]
    pub label: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub id: String,
    /// Follow the output until the attempt ends.
    #[arg(long, short)]
    pub follow: bool,
    /// Which attempt (default: the latest).
    #[arg(long)]
    pub attempt: Option<u32>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Give up after this long (exit code 124).
    #[arg(long)]
    pub timeout: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum GroupsAction {
    /// List groups (the default).
    Ls,
    /// Set a group's parallel limit.
    Set {
        name: String,
        #[arg(long, conflicts_with = "unlimited", required_unless_present = "unlimited")]
        parallel: Option<u32>,
        /// Remove the group's limit.
        #[arg(long)]
        unlimited: bool,
    },
}

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
pub enum SandboxAction {
    /// What isolation this machine supports, and what is enforced for which tasks.
    Check,
}
