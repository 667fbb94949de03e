//! Notifications as data: the events people can be told about, channels (where a message
//! goes), rules (which events go where), the notice a rule matches, and deliveries (one
//! notice on its way to one channel, with its attempts). The engine turns what happened into
//! notices, the store keeps the outbox, and the senders in `owl-notify` do the talking.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a rule can react to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventName {
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    /// A schedule slot that did not run (the daemon was down past the misfire policy, or an
    /// overlap skipped it).
    ScheduleMissed,
    /// A slot that ran later than `[scheduler] max_lateness` after its time.
    ScheduleLate,
    /// A tool call waits for a person.
    ApprovalWaiting,
    /// A run far from the usual, or a failure streak (`owl anomalies`).
    Anomaly,
    /// A budget's spend passed its `warn_at` share of a limit.
    BudgetWarning,
    /// The morning report, with the PDF attached when it was written.
    DailyReport,
    /// `owl notify test`: goes to the named channel only, whatever the rules say.
    Test,
}

impl EventName {
    pub const ALL: [EventName; 10] = [
        EventName::TaskSucceeded,
        EventName::TaskFailed,
        EventName::TaskTimedOut,
        EventName::ScheduleMissed,
        EventName::ScheduleLate,
        EventName::ApprovalWaiting,
        EventName::Anomaly,
        EventName::BudgetWarning,
        EventName::DailyReport,
        EventName::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventName::TaskSucceeded => "task_succeeded",
            EventName::TaskFailed => "task_failed",
            EventName::TaskTimedOut => "task_timed_out",
            EventName::ScheduleMissed => "schedule_missed",
            EventName::ScheduleLate => "schedule_late",
            EventName::ApprovalWaiting => "approval_waiting",
            EventName::Anomaly => "anomaly",
            EventName::BudgetWarning => "budget_warning",
            EventName::DailyReport => "daily_report",
            EventName::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Result<EventName, String> {
        EventName::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = EventName::ALL.iter().filter(|e| **e != EventName::Test).map(|e| e.as_str()).collect();
            format!("unknown event `{s}`; use one of {}", names.join(", "))
        })
    }
}

/// Where a channel sends. Secrets are never stored here, only where to find them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Mail through the SMTP relay of `[notify.smtp]`.
    Email { to: Vec<String> },
    /// A POST of the notice as JSON, signed per the Standard Webhooks spec.
    Webhook {
        url: String,
        /// The daemon's environment variable holding the `whsec_...` signing secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_env: Option<String>,
        /// The entry of `secrets.toml` holding the signing secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// Allow loopback, private and link-local addresses (refused by default).
        #[serde(default)]
        allow_private: bool,
    },
    /// A message in a Slack channel (by id, like C0123ABCD), through the bot of `[slack]`;
    /// notices about one task are threaded under its first message.
    Slack { channel: String },
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Email { .. } => "email",
            Target::Webhook { .. } => "webhook",
            Target::Slack { .. } => "slack",
        }
    }

    /// One line for listings: the addresses or the URL.
    pub fn describe(&self) -> String {
        match self {
            Target::Email { to } => to.join(", "),
            Target::Webhook { url, .. } => url.clone(),
            Target::Slack { channel } => format!("slack {channel}"),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub name: String,
    #[serde(flatten)]
    pub target: Target,
}

impl ChannelSpec {
    /// Checks what can be checked without the network, naming the field at fault.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_string(), m));
        if !valid_name(&self.name) {
            return bad("name", format!("`{}` is not a channel name: use 1 to 64 letters, digits, `-` or `_`", self.name));
        }
        match &self.target {
            Target::Email { to } => {
                if to.is_empty() {
                    return bad("to", "an email channel needs at least one address".into());
                }
                for a in to {
                    if !plausible_address(a) {
                        return bad("to", format!("`{a}` is not an email address (expected name@host)"));
                    }
                }
            }
            Target::Slack { channel } => {
                if !slack_channel_id(channel) {
                    return bad("channel", format!("`{channel}` is not a Slack channel id (like C0123ABCD: right-click the channel, View channel details, the id is at the bottom)"));
                }
            }
            Target::Webhook { url, secret_env, secret, .. } => {
                let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
                if !scheme_ok || url.len() > 2048 || url.contains(char::is_whitespace) {
                    return bad("url", format!("`{url}` is not an http(s) URL"));
                }
                if secret_env.is_some() && secret.is_some() {
                    return bad("secret", "give the signing secret one way: `secret_env` or `secret`, not both".into());
                }
                if secret_env.is_none() && secret.is_none() {
                    return bad(
                        "secret_env",
                        "a webhook channel needs a signing secret: `--secret-env VAR` (a `whsec_...` value in the daemon's environment) or `--secret NAME` (an entry of secrets.toml)".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

fn plausible_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, host)) => {
            !local.is_empty()
                && host.contains('.')
                && !host.starts_with('.')
                && !host.ends_with('.')
                && !a.contains(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == ',')
                && a.len() <= 254
        }
        None => false,
    }
}

/// A Slack conversation id: C (channel), G (private group) or D (direct message), then
/// upper-case letters and digits.
pub fn slack_channel_id(s: &str) -> bool {
    (2..=24).contains(&s.len()) && s.starts_with(['C', 'G', 'D']) && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A channel and how its deliveries have been going.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    #[serde(flatten)]
    pub spec: ChannelSpec,
    pub created_at: Timestamp,
    /// Why the channel is paused (too many failures in a row, or the endpoint answered 410
    /// Gone); its deliveries wait until `owl notify resume`.
    pub paused: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub last_ok_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// Which events go to which channels.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub on: Vec<EventName>,
    /// Channel names.
    pub to: Vec<String>,
    /// Only tasks that carry every one of these labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Collect matching notices and send one message per window (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_ms: Option<u64>,
    /// At most this many messages an hour per channel; the rest of the hour's notices go out
    /// together as one digest when the hour ends (none is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_hour: Option<u32>,
}

impl RuleSpec {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        if self.on.is_empty() {
            return bad("on", "a rule needs at least one event (`--on task_failed,...`)");
        }
        if self.on.contains(&EventName::Test) {
            return bad("on", "`test` is what `owl notify test` sends; rules cannot ask for it");
        }
        if self.to.is_empty() {
            return bad("to", "a rule needs at least one channel (`--to NAME`)");
        }
        if let Some(d) = self.digest_ms {
            if !(60_000..=7 * 86_400_000).contains(&d) {
                return bad("digest_ms", "a digest window is between 1 minute and 7 days");
            }
        }
        if self.max_per_hour == Some(0) {
            return bad("max_per_hour", "at least 1 (leave it out for no limit)");
        }
        Ok(())
    }

    /// Whether this rule wants the notice. Filters that the notice has no value for (a label
    /// filter on a schedule miss, say) do not match.
    pub fn matches(&self, n: &Notice) -> bool {
        self.on.contains(&n.event)
            && self.labels.iter().all(|l| n.labels.contains(l))
            && self.group.as_ref().is_none_or(|g| n.group.as_ref() == Some(g))
            && self.schedule.as_ref().is_none_or(|s| n.schedule.as_ref() == Some(s))
            && self.agent.as_ref().is_none_or(|a| n.agent.as_ref() == Some(a))
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: i64,
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub created_at: Timestamp,
}

/// What happened, said once for every channel: the message and the facts rules filter on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub event: EventName,
    /// Stable for one happening (`task_failed:42:3`), so a notice written twice is sent once.
    pub key: String,
    pub at: Timestamp,
    /// One line: what happened.
    pub title: String,
    /// Why, and what to look at; plain text, a few lines.
    pub text: String,
    /// The one command that acts on it (`owl logs 42`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A dashboard link, when `[reports] task_link` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A file sent with email (the report PDF); webhooks carry its name only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first try, its next retry, its digest window, or a paused channel.
    Pending,
    /// Claimed by a sender (until its lease ends).
    Sending,
    Delivered,
    /// Every try failed (or the channel refused it for good): the dead letter.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<DeliveryStatus, String> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "sending" => Ok(DeliveryStatus::Sending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "dead" => Ok(DeliveryStatus::Dead),
            _ => Err(format!("unknown delivery status `{s}`")),
        }
    }
}

/// One try and the answer it got (an HTTP status and body start, an SMTP reply, an error).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    pub at: Timestamp,
    pub ok: bool,
    pub answer: String,
}

/// One notice on its way to one channel.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub rule_id: Option<i64>,
    pub notice: Notice,
    pub status: DeliveryStatus,
    /// Notices sent together as one digest share this.
    pub batch: Option<String>,
    pub attempts: u32,
    /// When it is tried next (pending), or when its lease ends (sending).
    pub next_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The newest tries, oldest first (at most [`ATTEMPTS_KEPT`]).
    pub log: Vec<Attempt>,
}

/// How many attempts a delivery remembers.
pub const ATTEMPTS_KEPT: usize = 20;

impl Delivery {
    /// The stable id a receiver deduplicates by (`webhook-id`, `Message-ID`): the same for
    /// every retry of this delivery, and for every node that sends it.
    pub fn message_id(&self) -> String {
        format!("msg_{}_{}", self.channel, self.id)
    }
}

/// When to try again after failed attempt `attempt` (1-based), or `None` after the last.
/// `unit` in 0..1 spreads retries of many deliveries apart (±20 %).
pub fn retry_after(schedule: &[Duration], attempt: u32, unit: f64) -> Option<Duration> {
    let base = *schedule.get(attempt.checked_sub(1)? as usize)?;
    let factor = 0.8 + 0.4 * unit.clamp(0.0, 1.0);
    Some(Duration::from_millis((base.as_millis() as f64 * factor) as u64))
}

/// The published retry schedule: after the first try fails, 5 s, 30 s, 2 min, 10 min, 30 min,
/// 1 h, 3 h and 6 h (about 11 hours in all), each ±20 %.
pub fn default_retry_schedule() -> Vec<Duration> {
    [5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600].into_iter().map(Duration::from_secs).collect()
}

/// The window a digest notice at `at` belongs to: its start and end.
pub fn digest_window(at: Timestamp, window_ms: u64) -> (Timestamp, Timestamp) {
    let w = window_ms.max(1) as i64;
    let start = at.0.div_euclid(w) * w;
    (Timestamp(start), Timestamp(start + w))
}

/// One message for several notices (a digest): a title with the count, a line per notice.
pub fn digest(notices: &[Notice]) -> Notice {
    if notices.len() == 1 {
        return notices[0].clone();
    }
    let first = &notices[0];
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in notices {
        *counts.entry(n.event.as_str()).or_default() += 1;
    }
    let what: Vec<String> = counts.iter().map(|(e, c)| format!("{c} {e}")).collect();
    let mut text = String::new();
    for n in notices {
        text.push_str(&format!("- {}", n.title));
        if let Some(c) = &n.command {
            text.push_str(&format!("  ({c})"));
        }
        text.push('\n');
    }
    Notice {
        event: first.event,
        key: format!("digest:{}", first.key),
        at: notices.iter().map(|n| n.at).max().unwrap_or(first.at),
        title: format!("owl digest: {} notices ({})", notices.len(), what.join(", ")),
        text,
        command: Some("owl notify log".into()),
        link: None,
        task_id: None,
        labels: vec![],
        group: None,
        schedule: None,
        agent: None,
        attachment: notices.iter().find_map(|n| n.attachment.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(event: EventName) -> Notice {
        Notice {
            event,
            key: "k".into(),
            at: Timestamp(0),
            title: "t".into(),
            text: String::new(),
            command: None,
            link: None,
            task_id: Some(1),
            labels: vec!["nightly".into(), "db".into()],
            group: Some("default".into()),
            schedule: Some("backup".into()),
            agent: None,
            attachment: None,
        }
    }

    #[test]
    fn rules_match_on_event_and_every_filter() {
        let mut r = RuleSpec { on: vec![EventName::TaskFailed], to: vec!["ops".into()], ..Default::default() };
        assert!(r.matches(&notice(EventName::TaskFailed)));
        assert!(!r.matches(&notice(EventName::TaskSucceeded)));
        r.labels = vec!["db".into()];
        assert!(r.matches(&notice(EventName::TaskFailed)));
        r.labels = vec!["db".into(), "web".into()];
        assert!(!r.matches(&notice(EventName::TaskFailed)), "every label must be present");
        r.labels.clear();
        r.schedule = Some("backup".into());
        assert!(r.matches(&notice(EventName::TaskFailed)));
        r.schedule = Some("other".into());
        assert!(!r.matches(&notice(EventName::TaskFailed)));
        r.schedule = None;
        r.agent = Some("researcher".into());
        assert!(!r.matches(&notice(EventName::TaskFailed)), "an agent filter never matches a task with no agent");
    }

    #[test]
    fn validation_names_the_field() {
        let spec = |t: Target| ChannelSpec { name: "ops".into(), target: t };
        assert_eq!(spec(Target::Email { to: vec!["a@b.co".into()] }).validate(), Ok(()));
        assert_eq!(spec(Target::Email { to: vec!["nobody".into()] }).validate().unwrap_err().0, "to");
        let hook = |url: &str, env: Option<&str>| Target::Webhook {
            url: url.into(),
            secret_env: env.map(String::from),
            secret: None,
            allow_private: false,
        };
        assert_eq!(spec(hook("ftp://x", Some("S"))).validate().unwrap_err().0, "url");
        assert_eq!(spec(hook("https://x.example/h", None)).validate().unwrap_err().0, "secret_env");
        assert_eq!(spec(hook("https://x.example/h", Some("S"))).validate(), Ok(()));
        let bad_name = ChannelSpec { name: "a b".into(), target: Target::Email { to: vec!["a@b.co".into()] } };
        assert_eq!(bad_name.validate().unwrap_err().0, "name");
        let r = RuleSpec { on: vec![], to: vec!["ops".into()], ..Default::default() };
        assert_eq!(r.validate().unwrap_err().0, "on");
        let r = RuleSpec { on: vec![EventName::Anomaly], to: vec![], ..Default::default() };
        assert_eq!(r.validate().unwrap_err().0, "to");
        assert!(EventName::parse("task_faild").unwrap_err().contains("task_failed"));
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_and_stop_after_the_last() {
        let s = default_retry_schedule();
        assert_eq!(retry_after(&s, 1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(&s, 1, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(retry_after(&s, 1, 1.0), Some(Duration::from_secs(6)));
        assert_eq!(retry_after(&s, 8, 0.5), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(retry_after(&s, 9, 0.5), None);
        assert_eq!(retry_after(&s, 0, 0.5), None);
    }

    #[test]
    fn digest_windows_align_and_digests_count_by_event() {
        assert_eq!(digest_window(Timestamp(3_700_000), 3_600_000), (Timestamp(3_600_000), Timestamp(7_200_000)));
        let mut a = notice(EventName::TaskFailed);
        a.title = "task 1 failed".into();
        let mut b = notice(EventName::TaskFailed);
        b.title = "task 2 failed".into();
        let d = digest(&[a.clone(), b]);
        assert!(d.title.contains("2 notices (2 task_failed)"), "{}", d.title);
        assert!(d.text.contains("- task 1 failed\n- task 2 failed"), "{}", d.text);
        assert_eq!(digest(std::slice::from_ref(&a)), a);
    }
}
