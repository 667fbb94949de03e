//! Email through an SMTP relay (lettre): a text and an HTML body, the attachment a notice
//! names (the report PDF), a `Message-ID` that is the same for every retry, STARTTLS or TLS
//! with the system's roots plus an optional CA file, and a login from a secret.

use crate::{message, Outcome};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use owl_core::config::EmailSettings;
use owl_core::notify::Notice;
use std::time::Duration;

/// The largest attachment sent; a bigger file is named in the body instead.
pub const MAX_ATTACHMENT: u64 = 20 * 1024 * 1024;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl Mailer {
    /// A mailer for `[email]`, with the password already read from where the settings say.
    /// Errors name the setting to fix.
    pub fn new(s: &EmailSettings, password: Option<String>, timeout: Duration) -> Result<Mailer, String> {
        if s.host.is_empty() {
            return Err("email is not set up: set [email] host and from in the config (see docs/notifications.md)".into());
        }
        let from: Mailbox = s.from.parse().map_err(|e| format!("[email] from: `{}` is not an address ({e})", s.from))?;
        let tls = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(s.host.clone());
            if !s.ca_file.is_empty() {
                let pem = std::fs::read(&s.ca_file).map_err(|e| format!("[email] ca_file: cannot read {}: {e}", s.ca_file))?;
                let cert =
                    Certificate::from_pem(&pem).map_err(|e| format!("[email] ca_file: {} is not a PEM certificate: {e}", s.ca_file))?;
                b = b.add_root_certificate(cert);
            }
            b.build().map_err(|e| format!("[email]: cannot set up TLS: {e}"))
        };
        let (tls, port) = match s.security.as_str() {
            "starttls" => (Tls::Required(tls()?), 587),
            "tls" => (Tls::Wrapper(tls()?), 465),
            "none" => (Tls::None, 25),
            other => return Err(format!("[email] security: `{other}` is not starttls, tls or none")),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
            .port(if s.port == 0 { port } else { s.port })
            .tls(tls)
            .timeout(Some(timeout));
        if !s.username.is_empty() {
            let pw = password.ok_or("[email] username is set but no password: set password_env or password_secret")?;
            b = b.credentials(Credentials::new(s.username.clone(), pw));
        }
        Ok(Mailer { transport: b.build(), from, host: s.host.clone() })
    }

    /// Builds the message for `to` and sends it.
    pub async fn send(&self, to: &[String], notice: &Notice, message_id: &str) -> Outcome {
        let msg = match self.message(to, notice, message_id) {
            Ok(m) => m,
            Err(e) => return Outcome::Refused(e),
        };
        match self.transport.send(msg).await {
            Ok(r) => Outcome::Sent(format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" "))),
            Err(e) if e.is_permanent() => Outcome::Refused(format!("the relay refused the message: {e}")),
            Err(e) => Outcome::Retry(format!("{}: {}", self.host, describe(&e))),
        }
    }

    /// The message as it goes on the wire.
    pub fn message(&self, to: &[String], n: &Notice, message_id: &str) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(n.title.chars().take(200).collect::<String>())
            .message_id(Some(format!("<{message_id}@owl>")));
        for a in to {
            b = b.to(a.parse().map_err(|e| format!("`{a}` is not an address ({e})"))?);
        }
        let mut text = message::text(n);
        let attachment = match &n.attachment {
            Some(path) => match std::fs::metadata(path) {
                Ok(m) if m.len() <= MAX_ATTACHMENT => {
                    Some((path.clone(), std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?))
                }
                Ok(m) => {
                    text.push_str(&format!(
                        "\n(The attachment {path} is {} MB, too large to send; it is on the daemon's disk.)\n",
                        m.len() / 1_000_000
                    ));
                    None
                }
                Err(e) => {
                    text.push_str(&format!("\n(The attachment {path} could not be read: {e}.)\n"));
                    None
                }
            },
            None => None,
        };
        let body = MultiPart::alternative().singlepart(SinglePart::plain(text)).singlepart(SinglePart::html(message::html(n)));
        let body = match attachment {
            Some((path, bytes)) => {
                let name = std::path::Path::new(&path)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "attachment".into());
                let kind = if name.ends_with(".pdf") { "application/pdf" } else { "application/octet-stream" };
                let kind = ContentType::parse(kind).map_err(|e| e.to_string())?;
                MultiPart::mixed().multipart(body).singlepart(Attachment::new(name).body(bytes, kind))
            }
            None => body,
        };
        b.multipart(body).map_err(|e| format!("cannot build the message: {e}"))
    }
}

fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}
