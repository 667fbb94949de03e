//! The dashboard at `/ui`: a few static files embedded in the binary, served under a strict
//! Content-Security-Policy, and the sign-in that guards them.
//!
//! Sign-in: `owl dashboard` asks `POST /v1/dashboard/link` (bearer token) for a one-time link;
//! opening it trades the code for a session, an `HttpOnly; SameSite=Strict` cookie. A request
//! with that cookie is let in by [`crate::auth`] like one with the token, except that one that
//! changes anything must also carry the session's CSRF token in `X-CSRF-Token` (the page reads
//! it from `/ui/session`). Without a session, every `/ui` path answers the sign-in page.

use crate::AppState;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a sign-in link works, once.
pub const LINK_TTL: Duration = Duration::from_secs(120);
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 256;
pub const COOKIE: &str = "owl_session";

/// What every `/ui` answer may load: its own scripts, styles and data, nothing inline, no
/// frames, no other origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded files: (name under `/ui/assets/`, content type, bytes). The one list the
/// router, the index page and the tests read.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../ui/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../ui/app.css")),
    ("preact.js", "text/javascript; charset=utf-8", include_bytes!("../ui/vendor/preact.js")),
    ("hooks.js", "text/javascript; charset=utf-8", include_bytes!("../ui/vendor/hooks.js")),
    ("htm.js", "text/javascript; charset=utf-8", include_bytes!("../ui/vendor/htm.js")),
    ("uplot.js", "text/javascript; charset=utf-8", include_bytes!("../ui/vendor/uplot.js")),
    ("uplot.css", "text/css; charset=utf-8", include_bytes!("../ui/vendor/uplot.css")),
];
const INDEX: &str = include_str!("../ui/index.html");
const SIGNIN: &str = include_str!("../ui/signin.html");

struct Session {
    csrf: String,
    until: Instant,
    made: Instant,
}

/// Sign-in links and sessions, in memory: a restart signs everyone out.
#[derive(Default)]
pub struct Sessions {
    links: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashMap<String, Session>>,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS has randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// A new one-time sign-in code.
    pub fn new_link(&self) -> String {
        let code = random_hex(24);
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        links.retain(|_, until| *until > now);
        links.insert(code.clone(), now + LINK_TTL);
        code
    }

    /// Trades a sign-in code (once) for a session id.
    fn redeem(&self, code: &str) -> Option<String> {
        let until = self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(code)?;
        let now = Instant::now();
        if until <= now {
            return None;
        }
        let id = random_hex(32);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.until > now);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions.iter().min_by_key(|(_, s)| s.made).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => sessions.remove(&k),
                None => break,
            };
        }
        sessions.insert(id.clone(), Session { csrf: random_hex(24), until: now + SESSION_TTL, made: now });
        Some(id)
    }

    /// The CSRF token of a live session.
    pub fn csrf_of(&self, id: &str) -> Option<String> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(id).filter(|s| s.until > Instant::now()).map(|s| s.csrf.clone())
    }

    fn end(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Every `owl_session` value in a request's cookies (another app on this host may have set
/// one of its own, so each is tried).
pub fn session_ids(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then(|| v.to_string())
        })
        .collect()
}

/// The live session a request carries: its id and CSRF token.
pub fn signed_in_with(sessions: &Sessions, headers: &HeaderMap) -> Option<(String, String)> {
    session_ids(headers).into_iter().find_map(|id| sessions.csrf_of(&id).map(|csrf| (id, csrf)))
}

fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(String, String)> {
    signed_in_with(&state.sessions, headers)
}

fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

fn html(status: StatusCode, body: &'static str) -> Response {
    secure_headers(
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body).into_response(),
    )
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Some(_) => html(StatusCode::OK, INDEX),
        None => html(StatusCode::UNAUTHORIZED, SIGNIN),
    }
}

async fn asset(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if signed_in(&state, &headers).is_none() {
        return html(StatusCode::UNAUTHORIZED, SIGNIN);
    }
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => {
            secure_headers(([(header::CONTENT_TYPE, *ty), (header::CACHE_CONTROL, "private, max-age=300")], *body).into_response())
        }
        None => secure_headers((StatusCode::NOT_FOUND, "no such file").into_response()),
    }
}

#[derive(serde::Deserialize)]
struct SigninQuery {
    code: Option<String>,
}

async fn signin(State(state): State<AppState>, Query(q): Query<SigninQuery>) -> Response {
    let Some(id) = q.code.as_deref().and_then(|c| state.sessions.redeem(c)) else {
        return html(StatusCode::UNAUTHORIZED, SIGNIN);
    };
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_TTL.as_secs());
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/"), (header::CACHE_CONTROL, "no-store")]).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex is a valid header"));
    secure_headers(r)
}

async fn session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Some((_, csrf)) => {
            secure_headers(([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({ "csrf": csrf }))).into_response())
        }
        None => secure_headers(
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": {"code": "unauthorized", "message": "not signed in; run `owl dashboard`"}})),
            )
                .into_response(),
        ),
    }
}

async fn signout(State(state): State<AppState>, req: Request) -> Response {
    if let Some((id, csrf)) = signed_in(&state, req.headers()) {
        if req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) == Some(csrf.as_str()) {
            state.sessions.end(&id);
        }
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/")]).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("owl_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"));
    secure_headers(r)
}

/// The dashboard's routes (outside the API's token check: they check the session).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/signin", get(signin))
        .route("/ui/session", get(session))
        .route("/ui/signout", post(signout))
        .route("/ui/assets/{name}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_is_served_and_every_reference_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        for dir in [root.clone(), root.join("vendor")] {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".js") || name.ends_with(".css") {
                    assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name} is in ui/ but not in ASSETS");
                }
            }
        }
        for (page, text) in [("index.html", INDEX), ("app.js", std::str::from_utf8(ASSETS[0].2).unwrap())] {
            for part in text.split("/ui/assets/").skip(1).chain(text.split("from './").skip(1)) {
                let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{page} loads {name}, which is not embedded");
            }
        }
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="), "nothing inline: the CSP forbids it");
    }

    #[test]
    fn a_link_works_once_and_only_while_fresh() {
        let s = Sessions::default();
        let code = s.new_link();
        let id = s.redeem(&code).expect("a fresh link signs in");
        assert!(s.redeem(&code).is_none(), "once");
        assert!(s.redeem("guess").is_none());
        let csrf = s.csrf_of(&id).unwrap();
        assert_eq!(csrf.len(), 48);
        s.end(&id);
        assert!(s.csrf_of(&id).is_none(), "signed out");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; owl_session=abc; b=2"));
        assert_eq!(session_ids(&h), vec!["abc".to_string()]);
        let live = s.redeem(&s.new_link()).unwrap();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("owl_session=decoy; owl_session={live}")).unwrap());
        assert_eq!(signed_in_with(&s, &h).map(|x| x.0), Some(live), "a decoy cookie first does not hide the session");
    }
}
