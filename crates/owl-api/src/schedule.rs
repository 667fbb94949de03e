//! Wire types for schedules.

use crate::{SpecDefaults, SubmitTask};
use owl_core::schedule::{Compiled, Misfire, Overlap, Schedule, ScheduleSpec, ScheduleState, When};
use owl_core::task::Status;
use owl_core::{Command, TaskId, Timestamp, ValidationError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A new schedule: exactly one of `cron`, `every` or `at`, and the task to run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    pub name: String,
    /// 5 or 6 fields (seconds first), or a nickname such as `@daily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of `cron`; default `scheduler.default_tz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// A fixed interval such as `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// RFC 3339 instant the interval counts from; default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// Run once at this RFC 3339 instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// skip (default), once or all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire_cap: Option<u32>,
    /// skip (default), allow, queue or replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lateness: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// No slots after this RFC 3339 instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u64>,
    pub task: SubmitTask,
}

/// Server-side defaults for schedules.
#[derive(Clone, Debug)]
pub struct ScheduleDefaults {
    pub tz: String,
    pub misfire_cap: u32,
    pub max_lateness: Duration,
}

fn dur(field: &str, v: &str) -> Result<Duration, ValidationError> {
    owl_core::duration::parse(v).map_err(|m| ValidationError::new(field, m))
}

fn instant(field: &str, v: &str) -> Result<Timestamp, ValidationError> {
    Timestamp::parse_rfc3339(v).map_err(|m| ValidationError::new(field, m))
}

impl CreateSchedule {
    pub fn into_spec(self, d: &ScheduleDefaults, task_defaults: &SpecDefaults, now: Timestamp) -> Result<ScheduleSpec, ValidationError> {
        let when = match (self.cron, self.every, self.at) {
            (Some(expr), None, None) => When::Cron { expr, tz: self.tz.unwrap_or_else(|| d.tz.clone()) },
            (None, Some(every), None) => {
                if self.tz.is_some() {
                    return Err(ValidationError::new("tz", "a time zone applies to cron schedules only"));
                }
                let anchor = self.anchor.as_deref().map(|a| instant("anchor", a)).transpose()?.unwrap_or(now);
                When::Every { every_ms: dur("every", &every)?.as_millis() as u64, anchor }
            }
            (None, None, Some(at)) => When::Once { at: instant("at", &at)? },
            (None, None, None) => {
                return Err(ValidationError::new(
                    "cron",
                    "say when: give `cron` (e.g. \"0 2 * * *\"), `every` (e.g. \"90s\") or `at` (an RFC 3339 instant)",
                ))
            }
            _ => return Err(ValidationError::new("cron", "give only one of `cron`, `every` and `at`")),
        };
        if self.anchor.is_some() && !matches!(when, When::Every { .. }) {
            return Err(ValidationError::new("anchor", "an anchor applies to `every` schedules only"));
        }
        let mut task = self.task;
        for (field, set) in [
            ("task.after", !task.after.is_empty()),
            ("task.run_at", task.run_at.is_some()),
            ("task.delay", task.delay.is_some()),
            ("task.idempotency_key", task.idempotency_key.is_some()),
            ("task.after_items", !task.after_items.is_empty()),
        ] {
            if set {
                return Err(ValidationError::new(field, "a schedule decides when its task runs; remove this field"));
            }
        }
        task.run_at = None;
        let template = task.into_spec(task_defaults, now).map_err(|e| ValidationError::new(format!("task.{}", e.field), e.message))?;
        let spec = ScheduleSpec {
            name: self.name,
            when,
            template,
            misfire: self
                .misfire
                .as_deref()
                .map(str::parse::<Misfire>)
                .transpose()
                .map_err(|m| ValidationError::new("misfire", m))?
                .unwrap_or_default(),
            misfire_cap: self.misfire_cap.unwrap_or(d.misfire_cap),
            overlap: self
                .overlap
                .as_deref()
                .map(str::parse::<Overlap>)
                .transpose()
                .map_err(|m| ValidationError::new("overlap", m))?
                .unwrap_or_default(),
            max_lateness_ms: self.max_lateness.as_deref().map(|v| dur("max_lateness", v)).transpose()?.unwrap_or(d.max_lateness).as_millis()
                as u64,
            jitter_ms: self.jitter.as_deref().map(|v| dur("jitter", v)).transpose()?.unwrap_or_default().as_millis() as u64,
            end_at: self.until.as_deref().map(|v| instant("until", v)).transpose()?,
            max_runs: self.max_runs,
            created_by: None,
        };
        owl_core::schedule::check_schedule_spec(&spec)?;
        Ok(spec)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub state: ScheduleState,
    pub when: When,
    /// One line: `cron "0 2 * * *" in Europe/Berlin`, `every 1m 30s`, `once at ...`.
    pub describe: String,
    pub misfire: Misfire,
    pub misfire_cap: u32,
    pub overlap: Overlap,
    pub max_lateness_ms: u64,
    pub jitter_ms: u64,
    pub end_at: Option<Timestamp>,
    pub max_runs: Option<u64>,
    pub command: Command,
    pub display: String,
    pub group: String,
    pub next_fire_at: Option<Timestamp>,
    /// The next slot in the schedule's own time zone.
    pub next_fire_local: Option<String>,
    pub pending_slot: Option<Timestamp>,
    pub last_fire_at: Option<Timestamp>,
    pub last_task_id: Option<TaskId>,
    pub fired: u64,
    pub missed: u64,
    pub skipped: u64,
    pub late: u64,
    /// Fires that came within a second of their slot.
    pub on_time: u64,
    /// When a run last succeeded, and how long that run took.
    pub last_success_at: Option<Timestamp>,
    pub last_success_ms: Option<u64>,
    /// The status of the latest run's task.
    pub last_status: Option<Status>,
    /// By when it should have succeeded again: the first slot after the last success, plus
    /// `[health] schedule_grace` and that run's duration. None while paused or finished.
    pub success_due_by: Option<Timestamp>,
    /// Past `success_due_by` with no success since: something needs a look.
    pub overdue: bool,
    pub created_at: Timestamp,
    /// In `show`: the next few slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upcoming: Vec<Timestamp>,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> Self {
        let compiled = Compiled::new(s.spec.when.clone()).ok();
        ScheduleView {
            describe: s.spec.when.describe(),
            next_fire_local: s.next_fire_at.and_then(|t| compiled.as_ref().map(|c| c.local(t))),
            name: s.spec.name,
            state: s.state,
            when: s.spec.when,
            misfire: s.spec.misfire,
            misfire_cap: s.spec.misfire_cap,
            overlap: s.spec.overlap,
            max_lateness_ms: s.spec.max_lateness_ms,
            jitter_ms: s.spec.jitter_ms,
            end_at: s.spec.end_at,
            max_runs: s.spec.max_runs,
            display: s.spec.template.command.display(),
            command: s.spec.template.command,
            group: s.spec.template.group,
            next_fire_at: s.next_fire_at,
            pending_slot: s.pending_slot,
            last_fire_at: s.last_fire_at,
            last_task_id: s.last_task_id,
            fired: s.fired,
            missed: s.missed,
            skipped: s.skipped,
            late: s.late,
            on_time: s.fired.saturating_sub(s.late),
            last_success_at: s.last_success_at,
            last_success_ms: s.last_success_ms,
            last_status: None,
            success_due_by: None,
            overdue: false,
            created_at: s.created_at,
            upcoming: vec![],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FireView {
    pub scheduled_for: Timestamp,
    pub fired_at: Timestamp,
    pub lateness_ms: u64,
    pub outcome: String,
    pub reason: Option<String>,
    pub task_id: Option<TaskId>,
    pub task_status: Option<Status>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct History {
    pub history: Vec<FireView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunNow {
    pub task_id: TaskId,
}
