//! `owl notify ...`: channels, rules, test sends and the delivery log.

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("channel_kind").required(true).args(["email", "webhook", "slack"])))]
pub struct NotifyAddArgs {
    /// The channel's name (letters, digits, `-`, `_`).
    pub name: String,
    /// Send email to these addresses (comma-separated), through the relay of `[email]`.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub email: Vec<String>,
    /// POST each notice to this URL, signed per the Standard Webhooks spec.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Post to this Slack channel (its id, like C0123ABCD) through the bot of `[slack]`.
    #[arg(long, value_name = "CHANNEL_ID")]
    pub slack: Option<String>,
    /// The daemon's environment variable holding the `whsec_...` signing secret.
    #[arg(long, value_name = "VAR", requires = "webhook")]
    pub secret_env: Option<String>,
    /// The secrets.toml entry holding the signing secret.
    #[arg(long, value_name = "NAME", requires = "webhook", conflicts_with = "secret_env")]
    pub secret: Option<String>,
    /// Allow a loopback or private address (refused by default).
    #[arg(long, requires = "webhook")]
    pub allow_private: bool,
}

#[derive(Args, Debug)]
pub struct RuleAddArgs {
    /// Events, comma-separated: task_succeeded, task_failed, task_timed_out, schedule_missed,
    /// schedule_late, approval_waiting, anomaly, daily_report.
    #[arg(long, value_name = "EVENTS", value_delimiter = ',', required = true)]
    pub on: Vec<String>,
    /// Channels, comma-separated.
    #[arg(long, value_name = "CHANNELS", value_delimiter = ',', required = true)]
    pub to: Vec<String>,
    /// Only tasks with this label (repeatable: every one must be present).
    #[arg(long, value_name = "LABEL")]
    pub label: Vec<String>,
    /// Only tasks of this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only runs of this schedule.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Only tasks of this agent or coding CLI.
    #[arg(long)]
    pub agent: Option<String>,
    /// Collect notices and send one message per window, e.g. 1h.
    #[arg(long, value_name = "WINDOW")]
    pub digest: Option<String>,
    /// At most this many messages an hour per channel; the rest go out as one digest at the hour's end.
    #[arg(long, value_name = "N")]
    pub max_per_hour: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum RuleAction {
    /// Route events to channels.
    Add(RuleAddArgs),
    Ls,
    Rm {
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum NotifyAction {
    /// Add a channel: `--email ADDR`, `--webhook URL --secret-env VAR` or `--slack CHANNEL_ID`.
    Add(NotifyAddArgs),
    /// Channels and how their deliveries go (paused ones say why).
    Ls,
    Show {
        name: String,
    },
    /// Remove a channel (its rules first).
    Rm {
        name: String,
    },
    /// Unpause a channel; what waited goes out now.
    Resume {
        name: String,
    },
    /// Send a test notice to a channel and wait for its answer.
    Test {
        name: String,
        /// Give up waiting after this long.
        #[arg(long, default_value = "60s")]
        timeout: String,
    },
    /// Rules: which events go to which channels.
    Rule {
        #[command(subcommand)]
        action: RuleAction,
    },
    /// Every delivery, its attempts and the answers, newest first.
    Log {
        /// Only deliveries with a failed attempt (dead letters among them).
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        channel: Option<String>,
        /// Only the deliveries about this task.
        #[arg(long, value_name = "ID")]
        task: Option<i64>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}
