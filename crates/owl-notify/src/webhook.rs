//! Outgoing webhooks, signed per the Standard Webhooks spec: `webhook-id` (the same for every
//! retry of a delivery), `webhook-timestamp` (seconds) and `webhook-signature: v1,<base64
//! HMAC-SHA256 of "id.timestamp.body">` under a `whsec_` secret. Addresses that are not
//! public (loopback, private, link-local, CGNAT, multicast) are refused unless the channel
//! allows them, and the request goes to the address that was checked (no second lookup, no
//! redirects), so a DNS answer cannot be changed between check and connect.

use crate::Outcome;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The `webhook-signature` value for one message.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the signing secret is not base64 (a Standard Webhooks secret looks like whsec_ followed by base64)".to_string())?;
    if key.is_empty() {
        return Err("the signing secret is empty".into());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// A new random signing secret, `whsec_` and 32 bytes in base64.
pub fn new_secret(bytes: [u8; 32]) -> String {
    format!("whsec_{}", B64.encode(bytes))
}

pub use owl_core::net::is_public;

/// Where the request will go: the URL's host resolved, every answer checked.
async fn resolve(url: &reqwest::Url, allow_private: bool) -> Result<(String, Vec<SocketAddr>), String> {
    let host = url.host_str().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| format!("cannot resolve {host}: no answer within 10s"))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if !allow_private {
        if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
            let what = if host.parse::<IpAddr>().is_ok() { host.clone() } else { format!("{host} (at {})", a.ip()) };
            return Err(format!(
                "{what} is not a public address; owl refuses it unless the channel allows private addresses: `owl notify rm NAME`, then add it again with --allow-private"
            ));
        }
    }
    Ok((host, addrs))
}

/// POSTs `body` with the Standard Webhooks headers. 2xx is sent, 410 is gone, other 4xx but
/// 408 and 429 are refused, the rest is retried.
pub async fn send(url: &str, secret: &str, allow_private: bool, msg_id: &str, timestamp: i64, body: &str, timeout: Duration) -> Outcome {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => u,
        _ => return Outcome::Refused(format!("`{url}` is not an http(s) URL")),
    };
    let signature = match sign(secret, msg_id, timestamp, body) {
        Ok(s) => s,
        Err(e) => return Outcome::Refused(e),
    };
    let (host, addrs) = match resolve(&parsed, allow_private).await {
        Ok(r) => r,
        Err(e) if e.starts_with("cannot resolve") => return Outcome::Retry(e),
        Err(e) => return Outcome::Refused(e),
    };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the name again, past the check above.
        .no_proxy()
        .timeout(timeout)
        .resolve_to_addrs(&host, &addrs)
        .user_agent(concat!("owl/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Retry(format!("cannot build the HTTP client: {e}")),
    };
    let reply = client
        .post(parsed)
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await;
    match reply {
        Err(e) if e.is_timeout() => Outcome::Retry(format!("no answer within {}s", timeout.as_secs())),
        Err(e) => Outcome::Retry(format!("cannot reach {host}:{}: {}", addrs[0].port(), root_cause(&e))),
        Ok(mut r) => {
            let status = r.status();
            // The answer's start is all that is kept.
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = r.chunk().await {
                body.extend_from_slice(&chunk[..chunk.len().min(4096 - body.len().min(4096))]);
                if body.len() >= 4096 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            let answer = format!("HTTP {}{}", status.as_u16(), short(&text));
            match status.as_u16() {
                200..=299 => Outcome::Sent(answer),
                410 => Outcome::Gone(answer),
                408 | 429 => Outcome::Retry(answer),
                300..=499 => Outcome::Refused(answer),
                _ => Outcome::Retry(answer),
            }
        }
    }
}

fn short(body: &str) -> String {
    let b = body.trim();
    if b.is_empty() {
        return String::new();
    }
    let cut: String = b.chars().take(200).collect();
    format!(": {}", cut.replace(['\n', '\r'], " "))
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_spec_example() {
        // The example of the Standard Webhooks spec: this secret, id, timestamp and body
        // sign to this value.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("whsec_!!", "m", 1, "b").is_err());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "64:ff9b::7f00:1",
            "::10.0.0.1",
            "2002:a00:1::1",
            "fec0::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn a_loopback_endpoint_is_refused_unless_allowed() {
        let out = send("http://127.0.0.1:9/h", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false, "m", 1, "{}", Duration::from_secs(2)).await;
        assert!(matches!(&out, Outcome::Refused(m) if m.contains("not a public address")), "{out:?}");
        let out = send("http://localhost:9/h", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false, "m", 1, "{}", Duration::from_secs(2)).await;
        assert!(matches!(&out, Outcome::Refused(_)), "a name that resolves to loopback is refused too: {out:?}");
        let out = send("http://127.0.0.1:9/h", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true, "m", 1, "{}", Duration::from_secs(2)).await;
        assert!(matches!(&out, Outcome::Retry(m) if m.contains("cannot reach")), "allowed, it is tried (and nothing listens): {out:?}");
    }
}
