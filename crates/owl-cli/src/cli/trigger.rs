//! Arguments of the trigger commands.

use super::TaskArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
