//! The command line, as clap types: the top level here, each area's arguments in its module.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

mod admin;
mod notify;
mod schedule;
mod task;
mod trigger;

pub use admin::*;
pub use notify::*;
pub use schedule::*;
pub use task::*;
pub use trigger::*;

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
    /// Without a command, owl says what it is and the commands to start with.
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Every daemon sharing this store: last heartbeat, running tasks, version.
    Nodes,
    /// Liveness and readiness, each check with its reason; exits 1 when any fails.
    Health,
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
    /// The configured agents, with model, tools, limits and roles; `owl agents state NAME`
    /// reads and writes an agent's persistent state.
    Agents {
        /// Each agent's load: busy or available, running, queued for it, last active, unread messages.
        #[arg(long)]
        status: bool,
        #[command(subcommand)]
        action: Option<AgentsAction>,
    },
    /// The durable messages between agents (and from people): by agent, task or thread.
    Messages {
        /// Only messages sent by or delivered to this agent.
        #[arg(long, conflicts_with = "task")]
        agent: Option<String>,
        /// Only messages sent by or delivered to this task.
        #[arg(long)]
        task: Option<String>,
        /// Only this thread: a team run's root task id, or `person`.
        #[arg(long)]
        thread: Option<String>,
        #[arg(long, default_value_t = 200)]
        limit: u32,
        #[command(subcommand)]
        action: Option<MessagesAction>,
    },
    /// Long-term memory: add, search, list, import, export.
    Memory {
        #[command(subcommand)]
        action: MemoryAction,
    },
    /// MCP: owl as a server for other agents (`owl mcp serve`), and the MCP servers owl's agents use.
    Mcp {
        #[command(subcommand)]
        action: McpAction,
    },
    /// Check the set-up (config, daemon, models, providers, sandbox, disk) and say how to fix each problem.
    Doctor,
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
        /// Stop the turn chat ID is running (the conversation stays; its next message starts a new turn).
        #[arg(long, value_name = "ID", conflicts_with_all = ["list", "resume", "message", "agent"])]
        cancel: Option<i64>,
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
    /// Budgets: what each scope may spend and has spent, limits set now, prices.
    Budget {
        #[command(subcommand)]
        action: Option<BudgetAction>,
    },
    /// Tokens and cost of model calls.
    Usage {
        /// Group by agent, provider, model, day or scope (the budget ledger).
        #[arg(long, default_value = "agent")]
        by: String,
        /// Window, e.g. 7d.
        #[arg(long, default_value = "30d")]
        since: String,
    },
    /// Open the web dashboard: a one-time sign-in link for this daemon, in your browser.
    Dashboard {
        /// Print the link instead of opening a browser.
        #[arg(long)]
        url: bool,
    },
    /// A report: what ran, what failed and why, schedule health, anomalies, tokens and cost.
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
    /// Notifications: channels (email, webhook), rules, test sends and the delivery log.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// Runs far from the usual of their schedule, agent or kind, and failure streaks.
    Anomalies {
        /// Window, e.g. 24h.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Only this scope: schedule, agent or kind.
        #[arg(long, value_parser = ["schedule", "agent", "kind"])]
        scope: Option<String>,
        /// Only this schedule, agent or kind (by name).
        #[arg(long, value_name = "NAME")]
        subject: Option<String>,
        /// Only the anomalies of this task.
        #[arg(long, value_name = "ID")]
        task: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Bring a PostgreSQL store's schema up to date (after upgrading owl on every node).
    Migrate {
        /// The database (default: `[store] url` or OWL_STORE_URL).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Also copy this SQLite data dir's unfinished tasks, groups, schedules and triggers
        /// into the (empty) PostgreSQL store. Stop its daemon first.
        #[arg(long, value_name = "DATA_DIR")]
        from: Option<std::path::PathBuf>,
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
    /// Share this PostgreSQL (postgres://user:password@host:port/db) with other daemons
    /// instead of SQLite in the data dir; also `[store] url` or OWL_STORE_URL.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// This daemon's name among the nodes (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AgentsAction {
    /// An agent's persistent state: list it, or get, set or remove one key.
    State {
        agent: String,
        #[command(subcommand)]
        op: Option<StateOp>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StateOp {
    /// Every key with its value and version (the default).
    Ls,
    /// One key's value.
    Get { key: String },
    /// Write one key; with --if-version, only if it is still at that version (0: a new key).
    Set {
        key: String,
        value: String,
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
    },
    /// Remove one key (with --if-version, only if it is still at that version).
    Rm {
        key: String,
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MessagesAction {
    /// Send a message as a person: to an agent (NAME or agent:NAME), a task (task:ID) or all.
    Send {
        to: String,
        #[arg(required = true, trailing_var_arg = true)]
        text: Vec<String>,
        /// note, question, answer, ...
        #[arg(long = "type", default_value = "note")]
        kind: String,
        #[arg(long)]
        thread: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn every_command_is_well_formed() {
        // clap checks these only when a command is first parsed; this checks them all at once
        // (an argument named like a built-in flag, two arguments with one name).
        Cli::command().debug_assert();
    }
}
