//! The HTTP API of a real daemon over loopback.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn the_token_is_private_and_required() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let mode = std::fs::metadata(d.dir.join("token")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(d.token.len(), 64);
    assert!(d.addr.starts_with("127.0.0.1:"), "loopback by default");
    rt().block_on(async {
        let http = reqwest::Client::new();
        assert_eq!(http.get(d.url("/healthz")).send().await.unwrap().status(), 200);
        let r = http.get(d.url("/v1/tasks")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let r = http.post(d.url("/v1/tasks")).bearer_auth("nope").json(&serde_json::json!({"shell": "true"})).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(d.json(&["ls"])["tasks"].as_array().unwrap().is_empty(), "nothing was created without the token");
        let r = http.get(d.url("/v1/tasks")).bearer_auth(&d.token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
}

#[test]
fn batch_submit_and_server_sent_events() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    rt().block_on(async {
        let http = reqwest::Client::new();
        let mut events = http.get(d.url("/v1/events")).bearer_auth(&d.token).send().await.unwrap();
        assert_eq!(events.status(), 200);
        assert!(events.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let r = http
            .post(d.url("/v1/tasks/batch"))
            .bearer_auth(&d.token)
            .json(&serde_json::json!({"tasks": [{"shell": "echo one"}, {"command": ["echo", "two"], "after_items": [0]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        let second = body["tasks"][1]["id"].as_i64().unwrap();
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains(&format!("\"task_id\":{second},\"status\":\"succeeded\"")) {
            let chunk = tokio::time::timeout_at(deadline, events.chunk()).await.expect("events in time").unwrap().expect("stream open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(seen.contains("event: task_submitted") && seen.contains("event: task_started"), "{seen}");
        let r = http.get(d.url("/v1/openapi.json")).bearer_auth(&d.token).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/json", "the document is served as JSON");
        let doc: serde_json::Value = r.json().await.unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let big = "x".repeat(2 * 1024 * 1024);
        let r =
            http.post(d.url("/v1/tasks")).bearer_auth(&d.token).header("content-type", "application/json").body(big).send().await.unwrap();
        assert_eq!(r.status(), 413);
    });
}
