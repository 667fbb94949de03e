//! owl-notify: the senders of notifications, and the GitHub calls of repository tasks. A notice (from `owl_core::notify`) becomes an
//! email through an SMTP relay (lettre) or a signed POST to a webhook (reqwest, signed per the
//! Standard Webhooks spec); each send ends in an [`Outcome`] the engine records. What to send,
//! when to retry and what to pause is decided in the engine; this crate only talks.

pub mod email;
pub mod github;
pub mod message;
pub mod slack;
pub mod webhook;

/// How one send went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; the answer (an HTTP status, an SMTP reply).
    Sent(String),
    /// Failed for now (a timeout, a 5xx, a 4xx SMTP reply): try again later.
    Retry(String),
    /// The endpoint is gone (HTTP 410): stop sending to this channel.
    Gone(String),
    /// Refused for good (a private address, a rejected recipient, a bad setting): trying
    /// again cannot help.
    Refused(String),
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Sent(_))
    }

    pub fn answer(&self) -> &str {
        match self {
            Outcome::Sent(a) | Outcome::Retry(a) | Outcome::Gone(a) | Outcome::Refused(a) => a,
        }
    }
}
