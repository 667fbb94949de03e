//! Triggers: work that starts itself when something happens. Pure data and matching rules.

use crate::task::{Status, Task, TaskSpec};
use crate::validate::ValidationError;
use serde::{Deserialize, Serialize};

/// Which finished tasks a task-event trigger reacts to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    Succeeded,
    /// Failed or timed out.
    Failed,
    /// Any final status, cancelled included.
    Finished,
}

impl std::str::FromStr for TaskOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "succeeded" => Ok(TaskOutcome::Succeeded),
            "failed" => Ok(TaskOutcome::Failed),
            "finished" => Ok(TaskOutcome::Finished),
            other => Err(format!("`{other}` is not a task outcome; use succeeded, failed or finished")),
        }
    }
}

/// A change to a file under a watched path.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsEvent {
    Created,
    Modified,
    Deleted,
}

impl FsEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            FsEvent::Created => "created",
            FsEvent::Modified => "modified",
            FsEvent::Deleted => "deleted",
        }
    }

    /// What a burst of changes to one file amounts to: a new file that was then written is
    /// created; anything then deleted is deleted; a file deleted and created again is modified.
    pub fn merge(self, next: FsEvent) -> FsEvent {
        match (self, next) {
            (_, FsEvent::Deleted) => FsEvent::Deleted,
            (FsEvent::Deleted, FsEvent::Created) => FsEvent::Modified,
            (FsEvent::Created, _) => FsEvent::Created,
            (_, n) => n,
        }
    }
}

impl std::str::FromStr for FsEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "created" => Ok(FsEvent::Created),
            "modified" => Ok(FsEvent::Modified),
            "deleted" => Ok(FsEvent::Deleted),
            other => Err(format!("`{other}` is not a file event; use created, modified or deleted")),
        }
    }
}

/// Whether a (debounced) change to `file` is one a watch trigger reacts to. The glob is
/// matched against the file name.
pub fn watch_matches(events: &[FsEvent], glob: Option<&str>, file: &std::path::Path, event: FsEvent) -> bool {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    events.contains(&event) && glob.is_none_or(|g| glob::Pattern::new(g).map(|p| p.matches(name)).unwrap_or(false))
}

/// What a trigger reacts to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum On {
    /// A task that ends with `outcome` and matches every filter given.
    TaskEvent { outcome: TaskOutcome, label: Option<String>, group: Option<String>, schedule: Option<String> },
    /// `POST /v1/hooks/<name>`, signed with the secret in the daemon's environment variable
    /// `secret_env` (GitHub `X-Hub-Signature-256` or Slack `v0` form).
    Webhook { secret_env: String },
    /// Changes to files under `path` (recursively), debounced per file.
    Watch { path: String, events: Vec<FsEvent>, glob: Option<String>, debounce_ms: u64 },
    /// Checked every `every_ms`; fires when it turns from false to true, at most once per
    /// `cooldown_ms`.
    Condition { probe: Probe, every_ms: u64, cooldown_ms: u64 },
}

/// How a condition is checked.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// An expression in the condition language (see [`crate::expr`]).
    Expr(String),
    /// A shell command: true when it exits 0.
    Shell(String),
}

/// At most `max` fires per `per_ms`; fires beyond it are recorded as rate-limited.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub max: u32,
    pub per_ms: u64,
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    /// `10/1m`, `1/30s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a rate limit; write it like 10/1m (at most 10 per minute)");
        let (n, per) = s.split_once('/').ok_or_else(bad)?;
        let max: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = crate::duration::parse(per).map_err(|_| bad())?;
        if max == 0 || per.is_zero() {
            return Err(bad());
        }
        Ok(RateLimit { max, per_ms: per.as_millis() as u64 })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerSpec {
    pub name: String,
    pub on: On,
    pub template: TaskSpec,
    pub rate_limit: Option<RateLimit>,
    /// Task-event chains deeper than this are refused (loop protection).
    pub max_chain_depth: u32,
}

/// A stored trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: i64,
    pub spec: TriggerSpec,
    pub enabled: bool,
    pub fired: u64,
    /// Events not acted on: rate-limited, chain too deep.
    pub refused: u64,
    pub last_fired_at: Option<crate::Timestamp>,
    pub created_at: crate::Timestamp,
    /// When it was created or last enabled: it reacts only to events after this.
    pub active_since: crate::Timestamp,
}

/// The environment variable that carries a task's place in a chain of triggers.
pub const CHAIN_DEPTH_ENV: &str = "OWL_CHAIN_DEPTH";

/// A task's depth in a trigger chain (0 for a task nothing triggered).
pub fn chain_depth(task: &Task) -> u32 {
    task.spec.env.get(CHAIN_DEPTH_ENV).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Whether a finished `task` is one that `on` reacts to.
pub fn matches(on: &On, task: &Task) -> bool {
    let On::TaskEvent { outcome, label, group, schedule } = on else { return false };
    let status = task.state.status();
    let outcome_ok = match outcome {
        TaskOutcome::Succeeded => status == Status::Succeeded,
        TaskOutcome::Failed => matches!(status, Status::Failed | Status::TimedOut),
        TaskOutcome::Finished => status.is_terminal(),
    };
    outcome_ok
        && label.as_ref().is_none_or(|l| task.spec.labels.contains(l))
        && group.as_ref().is_none_or(|g| &task.spec.group == g)
        && schedule.as_ref().is_none_or(|s| task.spec.labels.contains(&format!("schedule:{s}")))
}

pub fn check_trigger_spec(spec: &TriggerSpec) -> Result<(), ValidationError> {
    crate::validate::check_name("name", "trigger", &spec.name)?;
    crate::validate::check_spec(&spec.template)?;
    match &spec.on {
        On::TaskEvent { label, group, schedule, .. } => {
            if label.is_none() && group.is_none() && schedule.is_none() {
                return Err(ValidationError::new(
                    "on",
                    "a task-event trigger needs a filter: --label, --group or --schedule (reacting to every task invites loops)",
                ));
            }
        }
        On::Watch { path, events, glob, debounce_ms } => {
            if !path.starts_with('/') {
                return Err(ValidationError::new("watch", format!("`{path}` is not an absolute path")));
            }
            if events.is_empty() {
                return Err(ValidationError::new("on", "name the file events to react to: created, modified and/or deleted"));
            }
            if let Some(g) = glob {
                glob::Pattern::new(g).map_err(|e| ValidationError::new("glob", format!("`{g}` is not a glob pattern: {e}")))?;
            }
            if *debounce_ms > 3_600_000 {
                return Err(ValidationError::new("debounce", "at most 1h"));
            }
        }
        On::Condition { probe, every_ms, cooldown_ms } => {
            if let Probe::Expr(e) = probe {
                crate::expr::Expr::parse(e).map_err(|err| ValidationError::new("condition", err.to_string()))?;
            }
            if let Probe::Shell(c) = probe {
                if c.trim().is_empty() {
                    return Err(ValidationError::new("probe", "the probe command is empty"));
                }
            }
            if *every_ms < 1000 {
                return Err(ValidationError::new("every", "check at most once a second (--every 1s or more)"));
            }
            if *cooldown_ms > 30 * 86_400_000 {
                return Err(ValidationError::new("cooldown", "at most 30 days"));
            }
        }
        On::Webhook { secret_env } => {
            if secret_env.is_empty() || !secret_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ValidationError::new(
                    "secret_env",
                    "name the environment variable that holds the webhook secret, e.g. DEPLOY_SECRET",
                ));
            }
        }
    }
    if spec.max_chain_depth == 0 || spec.max_chain_depth > 100 {
        return Err(ValidationError::new("max_chain_depth", "must be between 1 and 100"));
    }
    if !spec.template.depends_on.is_empty() || spec.template.idempotency_key.is_some() || spec.template.run_at.is_some() {
        return Err(ValidationError::new("template", "a trigger's task cannot have --after, --key, --in or --at"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Command, TaskId, TaskState};
    use crate::Timestamp;

    fn finished(status: TaskState, labels: &[&str], group: &str) -> Task {
        let mut spec = TaskSpec::new(Command::Argv(vec!["true".into()]));
        spec.labels = labels.iter().map(|s| s.to_string()).collect();
        spec.group = group.into();
        Task {
            id: TaskId(1),
            spec,
            state: status,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            attempts: 1,
            failures: 0,
            interruptions: 0,
        }
    }

    #[test]
    fn task_event_filters_all_have_to_match() {
        let ok = TaskState::Succeeded { attempt: 1, finished_at: Timestamp(0) };
        let failed = TaskState::TimedOut { attempt: 1, finished_at: Timestamp(0) };
        let on = On::TaskEvent { outcome: TaskOutcome::Succeeded, label: Some("build".into()), group: None, schedule: None };
        assert!(matches(&on, &finished(ok.clone(), &["build"], "default")));
        assert!(!matches(&on, &finished(ok.clone(), &["test"], "default")));
        assert!(!matches(&on, &finished(failed.clone(), &["build"], "default")));
        let on = On::TaskEvent { outcome: TaskOutcome::Failed, label: None, group: Some("gpu".into()), schedule: Some("nightly".into()) };
        assert!(matches(&on, &finished(failed.clone(), &["schedule:nightly"], "gpu")));
        assert!(!matches(&on, &finished(failed, &["schedule:nightly"], "cpu")));
        let on = On::TaskEvent { outcome: TaskOutcome::Finished, label: Some("x".into()), group: None, schedule: None };
        assert!(matches(&on, &finished(TaskState::Cancelled { finished_at: Timestamp(0), reason: None }, &["x"], "d")));
        assert!(!matches(&on, &finished(TaskState::Queued, &["x"], "d")), "only finished tasks");
    }

    #[test]
    fn watch_matching_and_event_merging() {
        let p = std::path::Path::new("/in/report.pdf");
        assert!(watch_matches(&[FsEvent::Created], Some("*.pdf"), p, FsEvent::Created));
        assert!(!watch_matches(&[FsEvent::Created], Some("*.txt"), p, FsEvent::Created));
        assert!(!watch_matches(&[FsEvent::Deleted], None, p, FsEvent::Created));
        assert_eq!(FsEvent::Created.merge(FsEvent::Modified), FsEvent::Created);
        assert_eq!(FsEvent::Modified.merge(FsEvent::Deleted), FsEvent::Deleted);
        assert_eq!(FsEvent::Deleted.merge(FsEvent::Created), FsEvent::Modified);
        assert_eq!(FsEvent::Modified.merge(FsEvent::Modified), FsEvent::Modified);
    }

    #[test]
    fn rate_limits_parse_with_the_fix_on_error() {
        assert_eq!("10/1m".parse::<RateLimit>().unwrap(), RateLimit { max: 10, per_ms: 60_000 });
        assert!("10".parse::<RateLimit>().unwrap_err().contains("10/1m"));
        assert!("0/1m".parse::<RateLimit>().is_err());
    }
}
