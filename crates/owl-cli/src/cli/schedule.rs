//! Arguments of the schedule and cron commands.

use super::{TaskArgs, TaskTagArgs};
use clap::{Args, Subcommand};

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

#[derive(Subcommand, Debug)]
pub enum CronAction {
    /// Preview the next fire times of a cron expression (no daemon needed).
    Next(CronNextArgs),
}
