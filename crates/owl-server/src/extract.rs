//! Extractors whose rejections are API errors: JSON bodies, query strings, task ids.

use crate::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use owl_core::TaskId;
use serde::de::DeserializeOwned;

/// A JSON body: size-limited, unknown fields rejected, errors naming the field's path.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let empty_ok = ct.is_empty();
        if !empty_ok && !ct.starts_with("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send JSON with `Content-Type: application/json` (got `{ct}`)"),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than api.max_body_bytes; send fewer tasks per batch",
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// How deeply arrays and objects may nest in a request body. No request type of the API
/// nests deeper than a few levels; free-form values (a task's input, a webhook's payload)
/// get room to spare.
pub const MAX_JSON_DEPTH: usize = 64;

/// The deepest nesting of arrays and objects in a JSON text, stopping once past `limit`.
/// Brackets inside strings do not count.
pub fn json_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // No body, or `null`, is an empty object: the routes whose body is optional take it so.
    let blank = bytes.iter().all(|b| b.is_ascii_whitespace()) || bytes.trim_ascii() == b"null";
    let body: &[u8] = if blank { b"{}" } else { bytes };
    if json_depth_exceeds(body, MAX_JSON_DEPTH) {
        return Err(ApiError::bad_request(
            "body",
            format!("the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; flatten it"),
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("body", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("body", "the body must be a JSON object, like {\"field\": value}"));
    }
    serde_path_to_error::deserialize(integral(value)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut field = if path == "." || path.is_empty() { "body".to_string() } else { path };
        // A missing field is reported at its parent; name the field itself.
        let text = inner.to_string();
        if let Some(name) = text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            field = if field == "body" { name.to_string() } else { format!("{field}.{name}") };
        }
        ApiError::bad_request(field.clone(), format!("{field}: {text}"))
    })
}

/// In JSON (and JSON Schema) `3.0` is the integer 3; serde's integer types refuse it. Numbers
/// with no fractional part that fit an integer become integers before typing, so a client
/// that writes `{"parallel": 4.0}` is understood.
fn integral(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) => Value::from(f as i64),
            Some(f) if f.fract() == 0.0 && f >= 0.0 && f < 2f64.powi(64) => Value::from(f as u64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

/// Parses a query string into `T`, rejecting unknown parameters.
/// A bad value names its parameter in `field`.
pub fn parse_query<T: DeserializeOwned>(raw: Option<String>) -> Result<T, ApiError> {
    let raw = raw.unwrap_or_default();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        if field.is_empty() || field == "." {
            ApiError::bad_request("query", format!("bad query parameters: {}", e.inner()))
        } else {
            ApiError::bad_request(field.clone(), format!("`{field}`: {}", e.inner()))
        }
    })
}

/// A task id in a query string, exactly as the document's pattern says: digits, no sign, no
/// leading zero (a path segment may also be written `#12`; see [`parse_id`]).
pub fn query_id(field: &str, raw: &str) -> Result<TaskId, ApiError> {
    let plain = !raw.is_empty() && raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit()) && !raw.starts_with('0');
    match raw.parse::<i64>() {
        Ok(n) if plain => Ok(TaskId(n)),
        _ => Err(ApiError::bad_request(field, format!("`{raw}` is not a task id; ids are positive integers like 12"))),
    }
}

pub fn parse_id(raw: &str) -> Result<TaskId, ApiError> {
    raw.parse::<TaskId>().map_err(|m| ApiError::bad_request("id", m))
}
