//! The provider trait, errors, retries with Retry-After, and the fallback chain.

use crate::msg::{ChatRequest, ChatResponse, Sink};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// Worth trying again: 429, 5xx, a dropped connection, a timeout.
    #[error("{message}")]
    Retryable { message: String, retry_after: Option<Duration> },
    /// Trying again will not help: bad key, bad request, a malformed reply.
    #[error("{0}")]
    Fatal(String),
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Retryable { .. })
    }
}

/// One model API.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's configured name (for records and errors).
    fn name(&self) -> &str;
    /// One model call. With `req.stream`, deltas go to `sink` as they arrive.
    async fn chat(&self, req: &ChatRequest, sink: Sink<'_>) -> Result<ChatResponse, ProviderError>;
}

/// How often and how long to retry one provider.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 4, base: Duration::from_millis(500), max_delay: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// Delay before retry number `n` (from 1): the server's Retry-After when it gave one
    /// (capped), else exponential backoff with full jitter.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self.base.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(self.max_delay);
        exp.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// A provider with a model, retried per its policy.
#[derive(Clone)]
pub struct Route {
    pub provider: Arc<dyn Provider>,
    pub model: String,
    pub retry: RetryPolicy,
    /// The provider's circuit breaker, shared by every route to it.
    pub breaker: Arc<Breaker>,
}

/// A provider that keeps failing is skipped for a while: after `trip_after` failed calls in a
/// row (each after its retries), calls to it are not made for `cooldown` (doubling, up to ten
/// times, while trial calls keep failing); the agent's fallbacks answer meanwhile. One success
/// closes it.
pub struct Breaker {
    state: std::sync::Mutex<BreakerState>,
    trip_after: u32,
    cooldown: Duration,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    trips: u32,
    open_until: Option<std::time::Instant>,
    /// A trial call is out after a cool-down; its outcome decides.
    trial: bool,
    last_error: Option<String>,
}

/// A breaker as readiness reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerStatus {
    /// Calls are being skipped for this long yet.
    pub open_for: Option<Duration>,
    pub failures: u32,
    pub last_error: Option<String>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new(5, Duration::from_secs(60))
    }
}

impl Breaker {
    pub fn new(trip_after: u32, cooldown: Duration) -> Self {
        Breaker { state: Default::default(), trip_after: trip_after.max(1), cooldown }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the provider is skipped now, if it is. Once the cool-down ends one trial call may go.
    pub fn refuses(&self, provider: &str) -> Option<String> {
        let mut s = self.lock();
        let until = s.open_until?;
        let now = std::time::Instant::now();
        if now >= until && !s.trial {
            // Half open: this call is the trial; the others wait for its outcome.
            s.open_until = Some(now + self.cooldown);
            s.trial = true;
            return None;
        }
        Some(format!(
            "{provider}: skipped for {} more after {} failed calls in a row (last: {})",
            owl_core::duration::format(Duration::from_secs((until - now).as_secs().max(1))),
            s.failures,
            s.last_error.as_deref().unwrap_or("unknown")
        ))
    }

    pub fn succeeded(&self) {
        *self.lock() = BreakerState::default();
    }

    /// A call failed in a way that says the provider is in trouble. Calls that were already in
    /// flight when it opened do not push it further out; only the trial's failure does.
    pub fn failed(&self, error: &str) {
        let mut s = self.lock();
        s.failures += 1;
        s.last_error = Some(error.chars().take(200).collect());
        let trip = if s.trial { true } else { s.open_until.is_none() && s.failures >= self.trip_after };
        if trip {
            s.trial = false;
            s.trips += 1;
            let factor = 1u32 << (s.trips - 1).min(4);
            s.open_until = Some(std::time::Instant::now() + (self.cooldown * factor).min(self.cooldown * 10));
        }
    }

    pub fn status(&self) -> BreakerStatus {
        let s = self.lock();
        let now = std::time::Instant::now();
        BreakerStatus {
            open_for: s.open_until.filter(|u| *u > now).map(|u| u - now),
            failures: s.failures,
            last_error: s.last_error.clone(),
        }
    }
}

/// One failed try of a route.
pub use owl_core::transcript::ProviderFailure as Attempt;

/// Tries each route in order, each with its retries; the first answer wins.
/// Returns the answer, the route that gave it, and the failures before it.
/// `req.model` is set to each route's model in turn (the request is not copied).
pub async fn call_with_fallback(
    routes: &[Route],
    req: &mut ChatRequest,
    sink: Sink<'_>,
) -> Result<(ChatResponse, usize, Vec<Attempt>), (ProviderError, Vec<Attempt>)> {
    let mut failures = Vec::new();
    let mut last = ProviderError::Fatal("no provider configured".into());
    for (i, route) in routes.iter().enumerate() {
        if let Some(why) = route.breaker.refuses(route.provider.name()) {
            failures.push(Attempt { provider: route.provider.name().into(), model: route.model.clone(), error: why.clone() });
            last = ProviderError::Retryable { message: why, retry_after: None };
            continue;
        }
        req.model.clone_from(&route.model);
        let mut n = 0;
        loop {
            match route.provider.chat(req, &mut *sink).await {
                Ok(r) => {
                    route.breaker.succeeded();
                    return Ok((r, i, failures));
                }
                Err(e) => {
                    failures.push(Attempt { provider: route.provider.name().into(), model: route.model.clone(), error: e.to_string() });
                    let retry_after = match &e {
                        ProviderError::Retryable { retry_after, .. } => Some(*retry_after),
                        ProviderError::Fatal(_) => None,
                    };
                    last = e;
                    match retry_after {
                        Some(after) if n < route.retry.max_retries => {
                            n += 1;
                            let d = route.retry.delay(n, after);
                            tracing::warn!(provider = route.provider.name(), retry = n, delay_ms = d.as_millis() as u64, error = %last, "model call failed; retrying");
                            tokio::time::sleep(d).await;
                        }
                        _ => {
                            // Only what says the provider itself is in trouble (down, overloaded,
                            // rate-limited) counts; a refused request is the request's fault, and
                            // an answer at all shows the provider is up.
                            if last.is_retryable() {
                                route.breaker.failed(&last.to_string());
                            } else {
                                route.breaker.succeeded();
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
    Err((last, failures))
}

/// Parses a Retry-After header: delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// Maps an HTTP error status to a provider error, keeping a short excerpt of the body.
pub fn http_error(provider: &str, status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> ProviderError {
    let excerpt: String = body.chars().take(300).collect();
    let message = format!("{provider}: HTTP {status}: {excerpt}");
    let retry_after =
        headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
        ProviderError::Retryable { message, retry_after }
    } else {
        ProviderError::Fatal(message)
    }
}

/// Sends a request; a non-2xx answer becomes the matching provider error.
pub async fn send(provider: &str, r: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
    let resp = r.send().await.map_err(|e| transport_error(provider, e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Err(http_error(provider, status, &headers, &text))
}

/// Reads a whole JSON body.
pub async fn json_body(provider: &str, resp: reqwest::Response) -> Result<serde_json::Value, ProviderError> {
    let text = resp.text().await.map_err(|e| transport_error(provider, e))?;
    serde_json::from_str(&text).map_err(|e| ProviderError::Fatal(format!("{provider}: malformed response: not JSON ({e})")))
}

/// Maps a transport error.
pub fn transport_error(provider: &str, e: reqwest::Error) -> ProviderError {
    let message = format!("{provider}: {}", describe(&e));
    if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
        ProviderError::Retryable { message, retry_after: None }
    } else {
        ProviderError::Fatal(message)
    }
}

/// What went wrong, where and why, in words: `cannot connect to http://127.0.0.1:9/: Connection
/// refused (os error 111)`. The address is the URL's scheme, host and port only: some gateways
/// carry a key in the path or query, which never goes into a message.
pub fn describe(e: &reqwest::Error) -> String {
    let place = e
        .url()
        .map(|u| format!("{}://{}{}/", u.scheme(), u.host_str().unwrap_or("?"), u.port().map(|p| format!(":{p}")).unwrap_or_default()))
        .unwrap_or_else(|| "the provider".into());
    let what = if e.is_connect() {
        format!("cannot connect to {place}")
    } else if e.is_timeout() {
        format!("no answer from {place} in time (the provider's timeout)")
    } else if e.is_body() || e.is_decode() {
        format!("the reply from {place} broke off or could not be read")
    } else if e.is_status() {
        format!("{place} answered {}", e.status().map(|s| s.to_string()).unwrap_or_default())
    } else {
        format!("the request to {place} failed")
    };
    // The underlying causes (DNS, refused, TLS...), innermost last, without reqwest's own words.
    let mut causes: Vec<String> = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let text = c.to_string();
        let text = match e.url() {
            Some(u) => text.replace(u.as_str(), "(url)"),
            None => text,
        };
        if !text.is_empty() && !causes.iter().any(|k| k.contains(&text) || text.contains(k.as_str())) {
            causes.push(text);
        } else if let Some(last) = causes.last_mut() {
            if text.len() > last.len() && text.contains(last.as_str()) {
                *last = text;
            }
        }
        src = c.source();
    }
    match causes.last() {
        Some(c) => format!("{what}: {c}"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_provider_is_named_with_its_address_and_cause() {
        // A port nothing listens on: the real connect error, as a newcomer would meet it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/v1/chat/completions?key=sk-secret")).send().await.unwrap_err();
        let m = describe(&e);
        assert!(m.starts_with(&format!("cannot connect to http://127.0.0.1:{port}/")), "{m}");
        assert!(m.to_lowercase().contains("refused"), "the cause is said: {m}");
        assert!(!m.contains("sk-secret") && !m.contains("(url)"), "{m}");
        let e = reqwest::Client::new().get("http://owl-no-such-host.invalid/v1").send().await.unwrap_err();
        let m = describe(&e);
        assert!(m.starts_with("cannot connect to http://owl-no-such-host.invalid/"), "{m}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5", now), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Sat, 21 Nov 2026 10:00:07 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sat, 21 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped_and_retry_after_wins() {
        let p = RetryPolicy { max_retries: 5, base: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        assert!(p.delay(1, None) <= Duration::from_millis(100));
        assert!(p.delay(3, None) >= Duration::from_millis(200));
        assert!(p.delay(10, None) <= Duration::from_secs(1));
        assert_eq!(p.delay(1, Some(Duration::from_millis(30))), Duration::from_millis(30));
        assert_eq!(p.delay(1, Some(Duration::from_secs(100))), Duration::from_secs(1));
    }
}
