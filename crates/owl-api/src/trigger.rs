//! Wire types for triggers.

use crate::{SpecDefaults, SubmitTask};
use owl_core::trigger::{FsEvent, On, Probe, RateLimit, TaskOutcome, Trigger, TriggerSpec};
use owl_core::{Timestamp, ValidationError};
use serde::{Deserialize, Serialize};

/// A new trigger: `webhook` with `secret_env`, or `on_task` with at least one filter.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrigger {
    pub name: String,
    #[serde(default)]
    pub webhook: bool,
    /// The daemon's environment variable holding the webhook secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// succeeded, failed or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_task: Option<String>,
    /// An absolute path to watch (recursively).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// With `watch`: created, modified and/or deleted (default: all three).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// With `watch`: only files whose name matches, e.g. `*.pdf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// With `watch`: quiet time before a change counts (default 500ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<String>,
    /// An expression over facts, e.g. `disk_free_percent < 10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// A shell command: the condition is true when it exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// With `condition`/`probe`: how often to check (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// With `condition`/`probe`: quiet time after a fire (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// e.g. `10/1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chain_depth: Option<u32>,
    pub task: SubmitTask,
}

impl CreateTrigger {
    pub fn into_spec(self, task_defaults: &SpecDefaults, now: Timestamp) -> Result<TriggerSpec, ValidationError> {
        let is_condition = self.condition.is_some() || self.probe.is_some();
        let sources = [self.webhook, self.on_task.is_some(), self.watch.is_some(), self.condition.is_some(), self.probe.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if sources > 1 {
            return Err(ValidationError::new("webhook", "give one of `webhook`, `on_task`, `watch`, `condition` and `probe`"));
        }
        if !is_condition && (self.every.is_some() || self.cooldown.is_some()) {
            return Err(ValidationError::new("every", "every and cooldown apply to `condition` and `probe` triggers"));
        }
        if self.watch.is_none() && (!self.events.is_empty() || self.glob.is_some() || self.debounce.is_some()) {
            return Err(ValidationError::new("events", "events, glob and debounce apply to `watch` triggers"));
        }
        let on = match (self.webhook, self.on_task) {
            _ if is_condition => {
                let probe = match (self.condition, self.probe) {
                    (Some(e), None) => Probe::Expr(e),
                    (None, Some(c)) => Probe::Shell(c),
                    _ => unreachable!("counted above"),
                };
                let dur = |field: &str, v: Option<&str>, default: u64| -> Result<u64, ValidationError> {
                    Ok(match v {
                        Some(v) => owl_core::duration::parse(v).map_err(|m| ValidationError::new(field, m))?.as_millis() as u64,
                        None => default,
                    })
                };
                On::Condition {
                    probe,
                    every_ms: dur("every", self.every.as_deref(), 60_000)?,
                    cooldown_ms: dur("cooldown", self.cooldown.as_deref(), 0)?,
                }
            }
            _ if self.watch.is_some() => {
                let events = if self.events.is_empty() {
                    vec![FsEvent::Created, FsEvent::Modified, FsEvent::Deleted]
                } else {
                    self.events
                        .iter()
                        .map(|e| e.parse::<FsEvent>())
                        .collect::<Result<_, _>>()
                        .map_err(|m| ValidationError::new("events", m))?
                };
                let debounce = match self.debounce.as_deref() {
                    Some(d) => owl_core::duration::parse(d).map_err(|m| ValidationError::new("debounce", m))?,
                    None => std::time::Duration::from_millis(500),
                };
                On::Watch {
                    path: self.watch.clone().unwrap_or_default(),
                    events,
                    glob: self.glob.clone(),
                    debounce_ms: debounce.as_millis() as u64,
                }
            }
            (true, None) => {
                if self.label.is_some() || self.group.is_some() || self.schedule.is_some() {
                    return Err(ValidationError::new(
                        "label",
                        "label, group and schedule filters apply to task-event triggers, not webhooks",
                    ));
                }
                let secret_env = self.secret_env.ok_or_else(|| {
                    ValidationError::new(
                        "secret_env",
                        "a webhook needs the name of the daemon's environment variable that holds its secret, e.g. DEPLOY_SECRET",
                    )
                })?;
                On::Webhook { secret_env }
            }
            (false, Some(outcome)) => {
                if self.secret_env.is_some() {
                    return Err(ValidationError::new("secret_env", "a secret applies to webhooks only"));
                }
                On::TaskEvent {
                    outcome: outcome.parse::<TaskOutcome>().map_err(|m| ValidationError::new("on_task", m))?,
                    label: self.label,
                    group: self.group,
                    schedule: self.schedule,
                }
            }
            (true, Some(_)) => return Err(ValidationError::new("webhook", "give either `webhook` or `on_task`, not both")),
            (false, None) => {
                return Err(ValidationError::new(
                    "on_task",
                    "say what starts it: `webhook: true` with `secret_env`, or `on_task` (succeeded, failed, finished) with a filter",
                ))
            }
        };
        let task = self.task;
        for (field, set) in [
            ("task.after", !task.after.is_empty()),
            ("task.run_at", task.run_at.is_some()),
            ("task.delay", task.delay.is_some()),
            ("task.idempotency_key", task.idempotency_key.is_some()),
        ] {
            if set {
                return Err(ValidationError::new(field, "a trigger decides when its task runs; remove this field"));
            }
        }
        let template = task.into_spec(task_defaults, now).map_err(|e| ValidationError::new(format!("task.{}", e.field), e.message))?;
        let spec = TriggerSpec {
            name: self.name,
            on,
            template,
            rate_limit: self
                .rate_limit
                .as_deref()
                .map(str::parse::<RateLimit>)
                .transpose()
                .map_err(|m| ValidationError::new("rate_limit", m))?,
            max_chain_depth: self.max_chain_depth.unwrap_or(5),
        };
        owl_core::trigger::check_trigger_spec(&spec)?;
        Ok(spec)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerView {
    pub name: String,
    pub enabled: bool,
    pub on: On,
    pub describe: String,
    /// For webhooks: where to POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_path: Option<String>,
    pub rate_limit: Option<RateLimit>,
    pub max_chain_depth: u32,
    pub display: String,
    pub fired: u64,
    pub refused: u64,
    pub last_fired_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl From<Trigger> for TriggerView {
    fn from(t: Trigger) -> Self {
        let (describe, hook_path) = match &t.spec.on {
            On::Webhook { secret_env } => (format!("webhook signed with ${secret_env}"), Some(format!("/v1/hooks/{}", t.spec.name))),
            On::Condition { probe, every_ms, cooldown_ms } => (
                format!(
                    "when {} turns true (checked every {}{})",
                    match probe {
                        Probe::Expr(e) => format!("`{e}`"),
                        Probe::Shell(c) => format!("probe `{c}`"),
                    },
                    owl_core::duration::format(std::time::Duration::from_millis(*every_ms)),
                    if *cooldown_ms > 0 {
                        format!(", cooldown {}", owl_core::duration::format(std::time::Duration::from_millis(*cooldown_ms)))
                    } else {
                        String::new()
                    }
                ),
                None,
            ),
            On::Watch { path, events, glob, .. } => (
                format!(
                    "files {} under {path}{}",
                    events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("/"),
                    glob.as_ref().map(|g| format!(" matching {g}")).unwrap_or_default()
                ),
                None,
            ),
            On::TaskEvent { outcome, label, group, schedule } => {
                let mut filters = vec![];
                if let Some(l) = label {
                    filters.push(format!("label {l}"));
                }
                if let Some(g) = group {
                    filters.push(format!("group {g}"));
                }
                if let Some(s) = schedule {
                    filters.push(format!("schedule {s}"));
                }
                (format!("when a task {} ({})", serde_json::to_value(outcome).unwrap().as_str().unwrap_or(""), filters.join(", ")), None)
            }
        };
        TriggerView {
            name: t.spec.name,
            enabled: t.enabled,
            on: t.spec.on,
            describe,
            hook_path,
            rate_limit: t.spec.rate_limit,
            max_chain_depth: t.spec.max_chain_depth,
            display: t.spec.template.command.display(),
            fired: t.fired,
            refused: t.refused,
            last_fired_at: t.last_fired_at,
            created_at: t.created_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerList {
    pub triggers: Vec<TriggerView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerFireView {
    pub source: String,
    pub at: Timestamp,
    pub outcome: String,
    pub reason: Option<String>,
    pub task_id: Option<owl_core::TaskId>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerHistory {
    pub history: Vec<TriggerFireView>,
}
