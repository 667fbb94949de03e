//! Triggers on the real daemon: signed webhooks and task-event chains.

use crate::harness::*;
use owl_server::webhook::{github_signature, slack_signature};
use std::time::Duration;

const SECRET: &str = "canary-webhook-secret-5150";

fn post(d: &Daemon, path: &str, body: &str, headers: &[(&str, String)]) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().post(d.url(path)).body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    })
}

#[test]
fn a_signed_webhook_runs_its_task_with_the_payload_and_forgeries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[("DEPLOY_SECRET", SECRET)]);
    let out = d.ok(&[
        "trigger",
        "add",
        "deploy",
        "--webhook",
        "--secret-env",
        "DEPLOY_SECRET",
        "--rate-limit",
        "3/1m",
        "--shell",
        "--",
        "cat \"$OWL_WEBHOOK_PAYLOAD\"; echo; echo delivery=$OWL_WEBHOOK_DELIVERY",
    ]);
    assert!(out.contains("POST /v1/hooks/deploy"), "{out}");
    let body = r#"{"ref":"refs/heads/main","pusher":"owl"}"#;
    let sig = github_signature(SECRET.as_bytes(), body.as_bytes());
    let (status, v) = post(&d, "/v1/hooks/deploy", body, &[("x-hub-signature-256", sig.clone()), ("x-github-delivery", "gh-1".into())]);
    assert_eq!(status, 202, "{v}");
    let id = v["task_id"].as_i64().unwrap();
    d.wait_status(id, "succeeded");
    let log = d.ok(&["logs", &id.to_string()]);
    assert!(log.starts_with(body) && log.contains("delivery=github:gh-1"), "{log}");
    // The payload is a file in the task's own workspace.
    let file = d.dir.join("workspaces").join(id.to_string()).join("webhook-payload.json");
    assert_eq!(std::fs::read_to_string(file).unwrap(), body);

    let cases: Vec<(&str, Vec<(&str, String)>, &str, u16, &str)> = vec![
        (
            "replayed delivery id",
            vec![("x-hub-signature-256", sig.clone()), ("x-github-delivery", "gh-1".into())],
            body,
            409,
            "duplicate_delivery",
        ),
        (
            "forged",
            vec![("x-hub-signature-256", github_signature(b"guess", body.as_bytes())), ("x-github-delivery", "gh-2".into())],
            body,
            401,
            "bad_signature",
        ),
        (
            "tampered",
            vec![("x-hub-signature-256", sig.clone()), ("x-github-delivery", "gh-3".into())],
            r#"{"ref":"refs/heads/main","pusher":"0wl"}"#,
            401,
            "bad_signature",
        ),
        ("unsigned", vec![("x-github-delivery", "gh-4".into())], body, 401, "bad_signature"),
        (
            "stale slack",
            {
                let ts = owl_core::Timestamp::from_system(std::time::SystemTime::now()).0 / 1000 - 600;
                vec![
                    ("x-slack-signature", slack_signature(SECRET.as_bytes(), ts, body.as_bytes())),
                    ("x-slack-request-timestamp", ts.to_string()),
                ]
            },
            body,
            401,
            "bad_signature",
        ),
    ];
    for (what, headers, payload, want, code) in cases {
        let (status, v) = post(&d, "/v1/hooks/deploy", payload, &headers);
        assert_eq!(status, want, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
    }
    // A fresh Slack-form delivery works.
    let ts = owl_core::Timestamp::from_system(std::time::SystemTime::now()).0 / 1000;
    let (status, v) = post(
        &d,
        "/v1/hooks/deploy",
        "text=go",
        &[("x-slack-signature", slack_signature(SECRET.as_bytes(), ts, b"text=go")), ("x-slack-request-timestamp", ts.to_string())],
    );
    assert_eq!(status, 202, "{v}");
    // Only the two good deliveries created tasks.
    assert_eq!(d.json(&["ls", "--label", "trigger:deploy"])["tasks"].as_array().unwrap().len(), 2);
    // Rate limit 3/1m: one more passes, the next is refused with 429.
    let (status, _) = post(&d, "/v1/hooks/deploy", body, &[("x-hub-signature-256", sig.clone()), ("x-github-delivery", "gh-5".into())]);
    assert_eq!(status, 202);
    let (status, v) = post(&d, "/v1/hooks/deploy", body, &[("x-hub-signature-256", sig.clone()), ("x-github-delivery", "gh-6".into())]);
    assert_eq!((status, v["error"]["code"].as_str()), (429, Some("rate_limited")));
    d.ok(&["trigger", "disable", "deploy"]);
    let (status, v) = post(&d, "/v1/hooks/deploy", body, &[("x-hub-signature-256", sig), ("x-github-delivery", "gh-7".into())]);
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("trigger_disabled")));
    let h = d.json(&["trigger", "history", "deploy"]);
    assert!(h["history"].as_array().unwrap().iter().any(|e| e["outcome"] == "rate_limited"));
    let (status, _) = post(&d, "/v1/hooks/nope", body, &[]);
    assert_eq!(status, 404);
    // The secret never shows in the API, the daemon log, or any task's environment.
    let shown = d.ok(&["--json", "trigger", "show", "deploy"]);
    assert!(!shown.contains(SECRET));
    let plain = add(&d, &["--", "env"]);
    d.wait_status(plain, "succeeded");
    let env = d.ok(&["logs", &plain.to_string()]);
    assert!(env.contains("OWL_TASK_ID=") && !env.contains(SECRET) && !env.contains("DEPLOY_SECRET"), "a task saw the webhook secret");
    d.ok(&["trigger", "enable", "deploy"]);
    d.ok(&["trigger", "add", "dump", "--webhook", "--secret-env", "DEPLOY_SECRET", "--", "env"]);
    let sig = github_signature(SECRET.as_bytes(), b"{}");
    let (status, v) = post(&d, "/v1/hooks/dump", "{}", &[("x-hub-signature-256", sig), ("x-github-delivery", "dump-1".into())]);
    assert_eq!(status, 202, "{v}");
    let dump = v["task_id"].as_i64().unwrap();
    d.wait_status(dump, "succeeded");
    assert!(!d.ok(&["logs", &dump.to_string()]).contains(SECRET), "not even the webhook's own task sees the secret");
    let log = std::fs::read_to_string(d.dir.with_extension("daemon.log")).unwrap();
    assert!(!log.contains(SECRET));
}

#[test]
fn a_task_event_trigger_made_from_the_cli_chains_a_publish_after_a_build() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    d.ok(&[
        "trigger",
        "add",
        "after-build",
        "--on-task-succeeded",
        "--label",
        "build",
        "--task-label",
        "publish",
        "--",
        "sh",
        "-c",
        "echo publishing $OWL_TRIGGER_TASK",
    ]);
    let build = add(&d, &["--label", "build", "--", "true"]);
    let published = wait_for("the chained task", Duration::from_secs(20), || {
        let tasks = d.json(&["ls", "--label", "publish"]);
        let t = tasks["tasks"].as_array()?.first()?.clone();
        (t["status"] == "succeeded").then_some(t)
    });
    let log = d.ok(&["logs", &published["id"].to_string()]);
    assert_eq!(log, format!("publishing {build}\n"));
    let ls = d.ok(&["trigger", "ls"]);
    assert!(ls.contains("after-build") && ls.contains("when a task succeeded (label build)"), "{ls}");
    let bad = d.owl(&["trigger", "add", "x", "--on-task-succeeded", "--", "true"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs a filter"));
    assert_eq!(d.owl(&["trigger", "add", "x", "--", "true"]).status.code(), Some(2), "a source is required");
    d.ok(&["trigger", "rm", "after-build"]);
}

#[test]
fn a_watch_trigger_made_from_the_cli_ingests_new_pdfs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let out = d.ok(&[
        "trigger",
        "add",
        "inbox",
        "--watch",
        inbox.to_str().unwrap(),
        "--on",
        "created",
        "--glob",
        "*.pdf",
        "--debounce",
        "100ms",
        "--task-label",
        "ingest",
        "--",
        "sh",
        "-c",
        "echo $OWL_WATCH_EVENT $OWL_WATCH_PATH",
    ]);
    assert!(out.contains("files created under") && out.contains("matching *.pdf"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(inbox.join("a.pdf"), "%PDF").unwrap();
    let t = wait_for("the ingest task", Duration::from_secs(20), || {
        let t = d.json(&["ls", "--label", "ingest"])["tasks"].as_array()?.first()?.clone();
        (t["status"] == "succeeded").then_some(t)
    });
    assert_eq!(d.ok(&["logs", &t["id"].to_string()]), format!("created {}\n", inbox.join("a.pdf").display()));
    let out = d.owl(&["trigger", "add", "x", "--watch", "/nonexistent/dir", "--", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn condition_triggers_are_created_and_bad_expressions_shown_where_they_are_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let out = d.ok(&[
        "trigger",
        "add",
        "disk",
        "--condition",
        "disk_free_percent < 10",
        "--every",
        "1m",
        "--cooldown",
        "1h",
        "--",
        "./cleanup.sh",
    ]);
    assert!(out.contains("when `disk_free_percent < 10` turns true (checked every 1m, cooldown 1h)"), "{out}");
    let out = d.owl(&["trigger", "add", "bad", "--condition", "disk_free < 10", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown name `disk_free`") && err.contains("disk_free_percent") && err.contains("\n  ^"), "{err}");
    let out = d.owl(&["trigger", "add", "bad", "--condition", "queue_depth = 3", "--", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`==`"));
}
