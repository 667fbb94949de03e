//! Notifications: channels, rules and deliveries.

use owl_core::notify::{Channel, ChannelSpec, Delivery, EventName, Rule, RuleSpec, Target};
use serde::{Deserialize, Serialize};

/// A channel to create: an email channel names `to`, a webhook channel `url` and where its
/// signing secret is.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// email, webhook or slack.
    #[schema(pattern = "^(email|webhook|slack)$")]
    pub kind: String,
    /// Email addresses (email).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// The endpoint (webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The daemon's environment variable holding the `whsec_...` signing secret (webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The secrets.toml entry holding the signing secret (webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Allow loopback and private addresses (webhook).
    #[serde(default)]
    pub allow_private: bool,
    /// The Slack channel id, like C0123ABCD (slack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl NewChannel {
    /// The spec, or the field at fault and why.
    pub fn into_spec(self) -> Result<ChannelSpec, (String, String)> {
        let wrong = |f: &str, kind: &str| Err((f.to_string(), format!("`{f}` does not apply to a {kind} channel")));
        let target = match self.kind.as_str() {
            "slack" => {
                if !self.to.is_empty() {
                    return wrong("to", "slack");
                }
                if self.url.is_some() {
                    return wrong("url", "slack");
                }
                Target::Slack {
                    channel: self
                        .channel
                        .ok_or(("channel".to_string(), "a slack channel needs `channel` (an id like C0123ABCD)".to_string()))?,
                }
            }
            "email" => {
                if self.channel.is_some() {
                    return wrong("channel", "email");
                }
                if self.url.is_some() {
                    return wrong("url", "email");
                }
                if self.secret_env.is_some() || self.secret.is_some() {
                    return wrong("secret_env", "email");
                }
                Target::Email { to: self.to }
            }
            "webhook" => {
                if !self.to.is_empty() {
                    return wrong("to", "webhook");
                }
                let url = self.url.ok_or(("url".to_string(), "a webhook channel needs `url`".to_string()))?;
                Target::Webhook { url, secret_env: self.secret_env, secret: self.secret, allow_private: self.allow_private }
            }
            other => return Err(("kind".into(), format!("`{other}` is not a channel kind; use email, webhook or slack"))),
        };
        let spec = ChannelSpec { name: self.name, target };
        spec.validate()?;
        Ok(spec)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub name: String,
    pub kind: String,
    /// The addresses or the URL.
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub allow_private: bool,
    /// The Slack channel id (slack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// active or paused.
    pub status: String,
    /// Why it is paused.
    pub paused: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub last_ok_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
}

impl From<Channel> for ChannelView {
    fn from(c: Channel) -> Self {
        let target = c.spec.target.describe();
        let kind = c.spec.target.kind().to_string();
        let (to, url, secret_env, secret, allow_private, channel) = match c.spec.target {
            Target::Email { to } => (to, None, None, None, false, None),
            Target::Webhook { url, secret_env, secret, allow_private } => (vec![], Some(url), secret_env, secret, allow_private, None),
            Target::Slack { channel } => (vec![], None, None, None, false, Some(channel)),
        };
        ChannelView {
            name: c.spec.name,
            kind,
            target,
            to,
            url,
            secret_env,
            secret,
            allow_private,
            channel,
            status: if c.paused.is_some() { "paused" } else { "active" }.into(),
            paused: c.paused,
            failures: c.failures,
            last_ok_at: c.last_ok_at.map(|t| t.to_rfc3339()),
            last_error: c.last_error,
            created_at: c.created_at.to_rfc3339(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelView>,
}

/// A rule to create.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// Event names: task_succeeded, task_failed, task_timed_out, schedule_missed,
    /// schedule_late, approval_waiting, anomaly, daily_report.
    pub on: Vec<String>,
    /// Channel names.
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Collect notices and send one message per window, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^([0-9]{1,6}(ms|s|m|h|d|w))+$")]
    pub digest: Option<String>,
    /// At most this many messages an hour per channel; the rest go out as one digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_per_hour: Option<u32>,
}

impl NewRule {
    pub fn into_spec(self) -> Result<RuleSpec, (String, String)> {
        let on = self.on.iter().map(|e| EventName::parse(e)).collect::<Result<Vec<_>, _>>().map_err(|m| ("on".to_string(), m))?;
        let digest_ms = match self.digest.as_deref() {
            Some(d) => Some(owl_core::duration::parse(d).map_err(|m| ("digest".to_string(), m))?.as_millis() as u64),
            None => None,
        };
        let spec = RuleSpec {
            on,
            to: self.to,
            labels: self.labels,
            group: self.group,
            schedule: self.schedule,
            agent: self.agent,
            digest_ms,
            max_per_hour: self.max_per_hour,
        };
        spec.validate().map_err(|(f, m)| (if f == "digest_ms" { "digest".into() } else { f }, m))?;
        Ok(spec)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleView {
    pub id: i64,
    pub on: Vec<String>,
    pub to: Vec<String>,
    pub labels: Vec<String>,
    pub group: Option<String>,
    pub schedule: Option<String>,
    pub agent: Option<String>,
    pub digest: Option<String>,
    pub max_per_hour: Option<u32>,
    pub created_at: String,
}

impl From<Rule> for RuleView {
    fn from(r: Rule) -> Self {
        RuleView {
            id: r.id,
            on: r.spec.on.iter().map(|e| e.as_str().to_string()).collect(),
            to: r.spec.to,
            labels: r.spec.labels,
            group: r.spec.group,
            schedule: r.spec.schedule,
            agent: r.spec.agent,
            digest: r.spec.digest_ms.map(|ms| owl_core::duration::format(std::time::Duration::from_millis(ms))),
            max_per_hour: r.spec.max_per_hour,
            created_at: r.created_at.to_rfc3339(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub n: u32,
    pub at: String,
    pub ok: bool,
    /// The HTTP status and body start, the SMTP reply, or the error.
    pub answer: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    /// The id receivers deduplicate by (`webhook-id`, the email's Message-ID).
    pub message_id: String,
    pub channel: String,
    pub rule_id: Option<i64>,
    pub event: String,
    pub title: String,
    pub task_id: Option<i64>,
    /// pending, sending, delivered or dead.
    pub status: String,
    /// Set for the notices of one digest.
    pub batch: Option<String>,
    pub attempts: u32,
    /// When it is tried next (pending).
    pub next_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub log: Vec<AttemptView>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        let message_id = d.message_id();
        let pending = d.status == owl_core::notify::DeliveryStatus::Pending;
        DeliveryView {
            id: d.id,
            message_id,
            channel: d.channel,
            rule_id: d.rule_id,
            event: d.notice.event.as_str().into(),
            title: d.notice.title,
            task_id: d.notice.task_id,
            status: d.status.as_str().into(),
            batch: d.batch,
            attempts: d.attempts,
            next_at: pending.then(|| d.next_at.to_rfc3339()),
            created_at: d.created_at.to_rfc3339(),
            updated_at: d.updated_at.to_rfc3339(),
            log: d.log.into_iter().map(|a| AttemptView { n: a.n, at: a.at.to_rfc3339(), ok: a.ok, answer: a.answer }).collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}
