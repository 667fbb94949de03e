//! Arguments of the task commands: add, ls, logs, wait, groups.

use clap::{Args, Subcommand};
use std::path::PathBuf;

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
    /// With --cli claude or codex: give the CLI owl's MCP server, scoped to this task, so it
    /// can queue follow-up tasks (and see those) and search and add memories.
    #[arg(long, requires = "cli")]
    pub owl_mcp: bool,
    /// With --agent or --cli: what this task (with its subtasks) may spend in all, in US
    /// dollars, e.g. 0.30. Reaching it pauses the task (`owl budget set task.ID --usd N`).
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
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
    #[arg(long, value_name = "NAME", default_value = "origin")]
    pub remote: String,
    /// After the commit, push the branch and open a pull request on GitHub (or update the
    /// open one); its text comes from the task and its result.
    #[arg(long)]
    pub pr: bool,
    /// The GitHub repository as owner/name (default: from the remote's URL).
    #[arg(long, value_name = "OWNER/NAME")]
    pub github: Option<String>,
    /// Work on this GitHub issue (owner/name#42): its text is the prompt, the pull request
    /// closes it, and a comment on it says how the task ended. --repo defaults to the current
    /// directory.
    #[arg(long, value_name = "OWNER/NAME#N")]
    pub from_issue: Option<String>,
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
    /// Instead of --agent: the capabilities the agent must have (comma-separated, e.g.
    /// rust,code); owl routes the task to an available agent that has them all.
    #[arg(long, value_delimiter = ',', value_name = "CAPS", conflicts_with_all = ["agent", "cli"])]
    pub needs: Vec<String>,
    /// The task's size from 1 (trivial) to 10 (hard), matched against agents' ranges.
    #[arg(long, value_name = "1-10", conflicts_with_all = ["agent", "cli"])]
    pub complexity: Option<u8>,
    /// With --agent: a team run. The agent plans and hands the steps to the other agents
    /// (`delegate`), waits for them, reviews and answers.
    #[arg(long)]
    pub team: bool,
    /// With --agent or --cli: set the workspace up from this template ([templates.NAME]:
    /// directories, files, a Python venv, set-up commands) before the work starts.
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
    /// The command and its arguments, after `--` (with --agent, --cli, --needs or --complexity: the prompt).
    #[arg(required_unless_present = "from_issue", trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
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
pub enum BudgetAction {
    /// Every scope: limit, spent, held by work in flight, resets at, what waits on it (the default).
    Ls,
    /// Set a scope's limit now, over the config's; tasks waiting on budgets ask again.
    Set {
        /// global, provider.NAME, agent.NAME, schedule.NAME, group.NAME or task.ID
        scope: String,
        /// US dollars per period (a task's cap: in all).
        #[arg(long, required_unless_present = "tokens")]
        usd: Option<f64>,
        /// Input plus output tokens per period.
        #[arg(long)]
        tokens: Option<u64>,
    },
    /// Remove a limit set with `owl budget set` (the config's applies again).
    Unset { scope: String },
    /// The prices owl charges at: [prices] over the shipped, dated table.
    Prices,
}
