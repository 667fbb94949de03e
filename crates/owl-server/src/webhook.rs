//! Webhook signatures: GitHub's `X-Hub-Signature-256` and Slack's timestamped `v0:` form,
//! HMAC-SHA256 over the raw body, compared in constant time.

use crate::ApiError;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Slack-form deliveries older (or newer) than this are refused as replays.
pub const REPLAY_WINDOW_SECS: i64 = 300;

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", msg)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks a delivery and returns its id (used to refuse duplicates).
pub fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<String, ApiError> {
    let mac = || Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    if let Some(sig) = header(headers, "x-hub-signature-256") {
        let hex = sig.strip_prefix("sha256=").ok_or_else(|| unauthorized("X-Hub-Signature-256 must look like sha256=<hex>"))?;
        let given = hex_decode(hex).ok_or_else(|| unauthorized("X-Hub-Signature-256 is not hex"))?;
        let mut m = mac();
        m.update(body);
        m.verify_slice(&given).map_err(|_| unauthorized("the signature does not match the body and the secret"))?;
        let delivery = header(headers, "x-github-delivery").filter(|d| !d.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "X-GitHub-Delivery",
                "missing: GitHub-form deliveries need X-GitHub-Delivery so duplicates can be refused",
            )
        })?;
        return Ok(format!("github:{delivery}"));
    }
    if let Some(sig) = header(headers, "x-slack-signature") {
        let ts_raw = header(headers, "x-slack-request-timestamp")
            .ok_or_else(|| unauthorized("X-Slack-Signature needs X-Slack-Request-Timestamp"))?;
        let ts: i64 = ts_raw.parse().map_err(|_| unauthorized("X-Slack-Request-Timestamp must be Unix seconds"))?;
        let hex = sig.strip_prefix("v0=").ok_or_else(|| unauthorized("X-Slack-Signature must look like v0=<hex>"))?;
        let given = hex_decode(hex).ok_or_else(|| unauthorized("X-Slack-Signature is not hex"))?;
        let mut m = mac();
        m.update(format!("v0:{ts_raw}:").as_bytes());
        m.update(body);
        m.verify_slice(&given).map_err(|_| unauthorized("the signature does not match the body, the timestamp and the secret"))?;
        let age = (now_secs - ts).abs();
        if age > REPLAY_WINDOW_SECS {
            return Err(unauthorized(format!(
                "stale delivery: its timestamp is {age} s away from now; deliveries outside {REPLAY_WINDOW_SECS} s are refused as replays"
            )));
        }
        return Ok(format!("slack:{ts_raw}:{hex}"));
    }
    Err(unauthorized(
        "missing signature: send X-Hub-Signature-256 (GitHub form) or X-Slack-Signature with X-Slack-Request-Timestamp (Slack form)",
    ))
}

/// Signs like GitHub: the value of `X-Hub-Signature-256`.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    m.update(body);
    format!("sha256={}", hex_encode(&m.finalize().into_bytes()))
}

/// Signs like Slack: the value of `X-Slack-Signature` for timestamp `ts`.
pub fn slack_signature(secret: &[u8], ts: i64, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    m.update(format!("v0:{ts}:").as_bytes());
    m.update(body);
    format!("v0={}", hex_encode(&m.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const NOW: i64 = 1_790_000_000;

    fn gh(sig: &str, delivery: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", sig.parse().unwrap());
        if let Some(d) = delivery {
            h.insert("x-github-delivery", d.parse().unwrap());
        }
        h
    }

    fn slack(sig: &str, ts: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-signature", sig.parse().unwrap());
        h.insert("x-slack-request-timestamp", ts.to_string().parse().unwrap());
        h
    }

    #[test]
    fn githubs_documented_example_verifies() {
        // The test vector GitHub publishes for X-Hub-Signature-256.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(github_signature(SECRET, b"Hello, World!"), sig);
        assert_eq!(verify(SECRET, &gh(sig, Some("d-1")), b"Hello, World!", NOW).unwrap(), "github:d-1");
    }

    #[test]
    fn forged_tampered_and_unsigned_deliveries_are_refused() {
        let body = br#"{"ref":"main"}"#;
        let good = github_signature(SECRET, body);
        assert_eq!(verify(b"wrong secret", &gh(&good, Some("d")), body, NOW).unwrap_err().status, StatusCode::UNAUTHORIZED, "forged");
        for i in 0..body.len() {
            let mut tampered = body.to_vec();
            tampered[i] ^= 1;
            assert!(verify(SECRET, &gh(&good, Some("d")), &tampered, NOW).is_err(), "one flipped bit at byte {i}");
        }
        let mut bad_sig = good.clone();
        bad_sig.replace_range(bad_sig.len() - 1.., if good.ends_with('0') { "1" } else { "0" });
        assert!(verify(SECRET, &gh(&bad_sig, Some("d")), body, NOW).is_err(), "one changed hex digit");
        assert!(verify(SECRET, &HeaderMap::new(), body, NOW).unwrap_err().message.contains("missing signature"));
        assert_eq!(verify(SECRET, &gh(&good, None), body, NOW).unwrap_err().status, StatusCode::BAD_REQUEST, "no delivery id");
        assert!(verify(SECRET, &gh("sha256=zz", Some("d")), body, NOW).is_err());
    }

    #[test]
    fn slack_form_has_a_five_minute_replay_window() {
        let body = b"token=x&command=%2Fdeploy";
        let fresh = slack_signature(SECRET, NOW - 10, body);
        assert!(verify(SECRET, &slack(&fresh, NOW - 10), body, NOW).unwrap().starts_with("slack:"));
        let stale_ts = NOW - REPLAY_WINDOW_SECS - 1;
        let stale = slack_signature(SECRET, stale_ts, body);
        let e = verify(SECRET, &slack(&stale, stale_ts), body, NOW).unwrap_err();
        assert!(e.message.contains("stale"), "{}", e.message);
        // A signature for one timestamp does not cover another (replay with a fresh stamp).
        assert!(verify(SECRET, &slack(&stale, NOW), body, NOW).is_err());
        assert!(verify(b"other", &slack(&fresh, NOW - 10), body, NOW).is_err());
    }
}
