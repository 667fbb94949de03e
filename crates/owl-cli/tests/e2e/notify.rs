//! Notifications against real receivers on loopback: webhooks verified by the official
//! `standardwebhooks` library, email through an aiosmtpd SMTP server with STARTTLS, both from
//! PyPI (scripts/test installs them into the test venv). The receivers are
//! `tests/notify/receiver.py`.

use crate::harness::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/notify/receiver.py");

/// The venv's python, if it has the receivers' libraries.
fn python() -> Option<String> {
    let st = std::env::var("OWL_SCHEMATHESIS").ok();
    let home = std::env::var("HOME").unwrap_or_default();
    let venv_bin = st
        .as_deref()
        .and_then(|s| Path::new(s).parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(format!("{home}/.cache/owl/venv/bin")));
    let py = venv_bin.join("python").display().to_string();
    let ok = Command::new(&py).args(["-c", "import aiosmtpd, standardwebhooks"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

struct Receiver {
    child: Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receiver(py: &str, args: &[&str]) -> Receiver {
    let mut child =
        Command::new(py).arg(RECEIVER).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("the receiver starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("the receiver printed no port: {line:?}"));
    Receiver { child, port }
}

fn received(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn config(dir: &Path, extra: &str) {
    let text = format!("[notify]\nretry = [\"1s\", \"1s\", \"1s\"]\npause_after = 3\ntimeout = \"5s\"\n\n{extra}");
    std::fs::write(config_path(dir), text).unwrap();
}

#[test]
fn webhooks_are_signed_retried_filtered_paused_and_survive_a_crash() {
    let Some(py) = python() else {
        return skip("aiosmtpd and standardwebhooks are not installed (scripts/test installs them into ~/.cache/owl/venv)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = tmp.path().join("hooks.jsonl");
    let hold = tmp.path().join("hold");
    let r = receiver(&py, &["webhook", out.to_str().unwrap(), SECRET, hold.to_str().unwrap()]);
    config(&dir, "");
    let mut d = Daemon::start(&dir, &[("OWL_HOOK_SECRET", SECRET)]);
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", r.port);

    // A loopback address is refused unless the channel allows it, and trying cannot help.
    d.ok(&["notify", "add", "strict", "--webhook", &url("/ok"), "--secret-env", "OWL_HOOK_SECRET"]);
    let t = d.owl(&["notify", "test", "strict"]);
    assert_eq!(t.status.code(), Some(1), "{t:?}");
    assert!(String::from_utf8_lossy(&t.stdout).contains("not a public address"), "{t:?}");
    let log = d.json(&["notify", "log", "--channel", "strict"]);
    assert_eq!(log["deliveries"][0]["status"], "dead", "{log}");

    // A bad request names the field.
    let bad = d.owl(&["notify", "rule", "add", "--on", "task_faild", "--to", "strict"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("task_failed"), "{bad:?}");
    let no_channel = d.owl(&["notify", "rule", "add", "--on", "task_failed", "--to", "pager"]);
    assert!(String::from_utf8_lossy(&no_channel.stderr).contains("no notification channel named `pager`"), "{no_channel:?}");

    // Failures and successes of nightly tasks go to a flaky endpoint: 500 first, then 200.
    d.ok(&["notify", "add", "hooks", "--webhook", &url("/flaky"), "--secret-env", "OWL_HOOK_SECRET", "--allow-private"]);
    d.ok(&["notify", "rule", "add", "--on", "task_failed,task_succeeded", "--to", "hooks", "--label", "nightly"]);
    let failed = add(&d, &["--label", "nightly", "--", "sh", "-c", "echo the disk is full; exit 3"]);
    let quiet = add(&d, &["--", "true"]);
    let ok = add(&d, &["--label", "nightly", "--", "true"]);
    for id in [failed, quiet, ok] {
        d.wait_status(id, if id == failed { "failed" } else { "succeeded" });
    }
    let delivered = wait_for("two deliveries accepted", Duration::from_secs(30), || {
        let got: Vec<_> = received(&out).into_iter().filter(|x| x["path"] == "/flaky" && x["status"] == 200).collect();
        (got.len() >= 2).then_some(got)
    });
    let all = received(&out);
    assert!(all.iter().all(|x| x["verified"] == true), "every delivery verifies with the standardwebhooks library: {all:?}");
    for x in &delivered {
        let tries = all.iter().filter(|y| y["path"] == "/flaky" && y["id"] == x["id"]).count();
        assert_eq!(tries, 2, "the retry carried the same webhook-id: {all:?}");
    }
    let bodies: Vec<serde_json::Value> = delivered.iter().map(|x| serde_json::from_str(x["body"].as_str().unwrap()).unwrap()).collect();
    let fail = bodies.iter().find(|b| b["type"] == "task_failed").expect("the failure was delivered");
    assert_eq!(fail["data"]["task_id"], failed);
    assert!(fail["data"]["text"].as_str().unwrap().contains("the disk is full"), "the notice says why: {fail}");
    assert_eq!(fail["data"]["command"], format!("owl logs {failed}"));
    assert!(bodies.iter().any(|b| b["type"] == "task_succeeded" && b["data"]["task_id"] == ok));
    assert!(!bodies.iter().any(|b| b["data"]["task_id"] == quiet), "a task without the label is not sent");
    let log = d.json(&["notify", "log", "--channel", "hooks", "--failed"]);
    let entry = &log["deliveries"][0];
    assert_eq!((entry["status"].as_str(), entry["attempts"].as_u64()), (Some("delivered"), Some(2)), "{log}");
    assert!(entry["log"][0]["answer"].as_str().unwrap().starts_with("HTTP 500"), "{log}");

    // An endpoint that answers 410 is gone: the channel pauses and says why.
    d.ok(&["notify", "add", "gone", "--webhook", &url("/gone"), "--secret-env", "OWL_HOOK_SECRET", "--allow-private"]);
    assert_eq!(d.owl(&["notify", "test", "gone"]).status.code(), Some(1));
    let ch = d.json(&["notify", "show", "gone"]);
    assert_eq!(ch["status"], "paused", "{ch}");
    assert!(ch["paused"].as_str().unwrap().contains("410"), "{ch}");
    assert_eq!(d.json(&["notify", "resume", "gone"])["status"], "active");

    // A crash between tries loses nothing: the delivery waits in the outbox and goes out
    // after the restart, once, with the id it had.
    std::fs::write(&hold, "").unwrap();
    d.ok(&["notify", "add", "held", "--webhook", &url("/hold"), "--secret-env", "OWL_HOOK_SECRET", "--allow-private"]);
    d.ok(&["notify", "rule", "add", "--on", "task_failed", "--to", "held"]);
    let crashed = add(&d, &["--", "false"]);
    d.wait_status(crashed, "failed");
    wait_for("a refused try", Duration::from_secs(20), || received(&out).iter().any(|x| x["path"] == "/hold").then_some(()));
    d.kill9();
    std::fs::remove_file(&hold).unwrap();
    d.restart();
    let held = wait_for("the held delivery after the restart", Duration::from_secs(30), || {
        received(&out).into_iter().find(|x| x["path"] == "/hold" && x["status"] == 200)
    });
    std::thread::sleep(Duration::from_secs(2));
    let ids: Vec<_> = received(&out).into_iter().filter(|x| x["path"] == "/hold").map(|x| x["id"].clone()).collect();
    assert!(ids.iter().all(|i| *i == held["id"]), "one message, retried under one id: {ids:?}");
    assert_eq!(received(&out).iter().filter(|x| x["path"] == "/hold" && x["status"] == 200).count(), 1, "delivered once");
}

fn make_certs(dir: &Path) {
    let script = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=owl test CA' 2>/dev/null \
        && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null \
        && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > ext.cnf \
        && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null";
    let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "{out:?}");
}

fn mails(dir: &Path) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "eml")).collect())
        .unwrap_or_default();
    names.sort();
    names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

#[test]
fn email_goes_through_a_real_smtp_server_over_starttls_retried_with_the_report_attached() {
    let Some(py) = python() else {
        return skip("aiosmtpd and standardwebhooks are not installed (scripts/test installs them into ~/.cache/owl/venv)");
    };
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    let maildir = tmp.path().join("mail");
    let cert = tmp.path().join("server.pem");
    let key = tmp.path().join("server.key");
    // The server refuses the first two messages with a 451 and requires STARTTLS.
    let r = receiver(&py, &["smtp", maildir.to_str().unwrap(), "2", cert.to_str().unwrap(), key.to_str().unwrap()]);
    let dir = tmp.path().join("data");
    let formats = if cfg!(feature = "pdf") { r#"["md", "pdf"]"# } else { r#"["md"]"# };
    let email = format!(
        "[email]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nfrom = \"owl <owl@example.com>\"\nca_file = \"{}\"\n\n[reports]\ndaily = false\nformats = {formats}\ndaily_at = \"00:00\"\n",
        r.port,
        tmp.path().join("ca.pem").display()
    );
    config(&dir, &email);
    let mut d = Daemon::start(&dir, &[]);
    d.ok(&["notify", "add", "ops", "--email", "ops@example.com,lead@example.com"]);
    // A test says how the relay answers now: here a 451, and it is not retried.
    let t = d.owl(&["notify", "test", "ops"]);
    assert_eq!(t.status.code(), Some(1), "the try is refused for now: {t:?}");
    assert!(String::from_utf8_lossy(&t.stdout).contains("451"), "{t:?}");

    // A failure notice meets the second 451 and goes out on the retry.
    d.ok(&["notify", "rule", "add", "--on", "task_failed", "--to", "ops"]);
    d.ok(&["notify", "rule", "add", "--on", "daily_report", "--to", "ops"]);
    let failed = add(&d, &["--", "sh", "-c", "echo cannot reach the backup host; exit 2"]);
    d.wait_status(failed, "failed");
    let fail = wait_for("the retried failure mail", Duration::from_secs(20), || {
        mails(&maildir).into_iter().find(|m| m.contains(&format!("task {failed} failed")))
    });
    assert!(fail.contains("X-Was-TLS: yes"), "STARTTLS was used: {fail}");
    assert!(fail.contains("X-Envelope-To: ops@example.com,lead@example.com"), "{fail}");
    assert!(fail.contains(&format!("Subject: task {failed} failed")), "{fail}");
    assert!(fail.contains("From: owl <owl@example.com>"), "{fail}");
    assert!(fail.contains("Message-ID: <msg_ops_"), "{fail}");
    assert!(fail.contains("multipart/alternative") && fail.contains("text/html"), "text and HTML bodies: {fail}");
    assert!(fail.contains("cannot reach the backup host"), "{fail}");
    assert!(fail.contains(&format!("owl logs {failed}")), "{fail}");
    let log = d.json(&["notify", "log", "--channel", "ops", "--failed"]);
    let retried = log["deliveries"].as_array().unwrap().iter().find(|x| x["event"] == "task_failed").expect("the failure delivery").clone();
    assert_eq!((retried["status"].as_str(), retried["attempts"].as_u64()), (Some("delivered"), Some(2)), "{log}");
    // Now the relay takes a test at once.
    let t = d.ok(&["notify", "test", "ops"]);
    assert!(t.contains("sent to ops: 250"), "{t}");

    // The daily report is written at start when daily_at has passed.
    d.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    let text = std::fs::read_to_string(config_path(&dir)).unwrap().replace("daily = false", "daily = true");
    std::fs::write(config_path(&dir), text).unwrap();
    d.restart();
    let report = wait_for("the daily report mail", Duration::from_secs(60), || {
        mails(&maildir).into_iter().find(|m| m.contains("Subject: owl daily report for"))
    });
    if cfg!(feature = "pdf") {
        assert!(
            report.contains("Content-Type: application/pdf") && report.contains(".pdf"),
            "the PDF is attached: {}",
            &report[..report.len().min(3000)]
        );
    }
    let log = d.json(&["notify", "log", "--channel", "ops"]);
    let all = log["deliveries"].as_array().unwrap();
    assert!(all.iter().filter(|x| x["event"] != "test").all(|x| x["status"] == "delivered"), "{log}");
    let tests: Vec<&str> = all.iter().filter(|x| x["event"] == "test").map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(tests, ["delivered", "dead"], "a refused test is not retried: {log}");
}

fn slack_state(port: u16) -> serde_json::Value {
    reqwest::blocking::get(format!("http://127.0.0.1:{port}/control/state")).unwrap().json().unwrap()
}

fn slack_send(port: u16, env: serde_json::Value) {
    let r = reqwest::blocking::Client::new().post(format!("http://127.0.0.1:{port}/control/envelope")).json(&env).send().unwrap();
    assert!(r.status().is_success());
}

fn slash(port: u16, id: &str, user: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"envelope_id": id, "type": "slash_commands", "accepts_response_payload": true, "retry_attempt": 0,
        "payload": {"command": "/owl", "text": text, "user_id": user, "channel_id": "C0TEAM", "team_id": "T0FAKE",
                    "response_url": format!("http://127.0.0.1:{port}/response/{id}"), "trigger_id": "1.2.3"}})
}

/// A Chat Completions stand-in that answers every call at once.
fn answering_model() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            axum::Json(serde_json::json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "The logs are quiet."}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
        }),
    );
    format!("http://127.0.0.1:{}/v1", serve(app))
}

#[test]
fn slack_takes_commands_and_buttons_over_socket_mode_and_reports_back_in_the_thread() {
    let Some(py) = python() else {
        return skip("the Python test tools are not installed (scripts/test installs them into ~/.cache/owl/venv)");
    };
    if Command::new(&py).args(["-c", "import slack_sdk, aiohttp"]).output().map(|o| !o.status.success()).unwrap_or(true) {
        return skip("slack_sdk and aiohttp are not installed (scripts/test installs them into ~/.cache/owl/venv)");
    }
    let fake = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/notify/fake_slack.py");
    let mut child = Command::new(&py).arg(fake).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let r = Receiver { child, port: line.trim().parse().unwrap() };
    let port = r.port;

    // The official client accepts the stand-in's answers and envelopes.
    let check = Command::new(&py)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/notify/slack_sdk_check.py"))
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(check.status.success(), "slack_sdk against the stand-in: {check:?}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let model = answering_model();
    config(
        &dir,
        &format!(
            "[slack]\nenabled = true\napi_url = \"http://127.0.0.1:{port}/api\"\nallow_users = [\"U0ADMIN\"]\nidle_timeout = \"10s\"\n\n[providers.fake]\nkind = \"openai\"\nbase_url = \"{model}\"\nmodel = \"m\"\n\n[agents.default]\nprovider = \"fake\"\n"
        ),
    );
    let d = Daemon::start(&dir, &[("SLACK_APP_TOKEN", "xapp-test"), ("SLACK_BOT_TOKEN", "xoxb-test")]);
    wait_for("owl's Socket Mode connection", Duration::from_secs(20), || (slack_state(port)["live"].as_u64() >= Some(1)).then_some(()));
    let response = |id: &str| {
        wait_for(&format!("the answer to {id}"), Duration::from_secs(20), || {
            slack_state(port)["responses"].as_array().unwrap().iter().find(|x| x["id"] == id).map(|x| x["body"].clone())
        })
    };

    // Anyone may look; only allowed users may change anything.
    slack_send(port, slash(port, "e1", "U0NOBODY", "add tidy up"));
    assert!(response("e1")["text"].as_str().unwrap().contains("may not change anything"), "{}", slack_state(port));
    slack_send(port, slash(port, "e2", "U0NOBODY", "ls"));
    assert_eq!(response("e2")["text"], "no tasks yet");

    // An allowed user adds a task: it is queued, announced in the channel, and its outcome
    // comes back threaded under that message.
    slack_send(port, slash(port, "e3", "U0ADMIN", "add Summarise the logs"));
    assert!(response("e3")["text"].as_str().unwrap().starts_with("task 1 queued"));
    // Slack sends an envelope again when it thinks the ack was lost: acknowledged, not redone.
    let mut again = slash(port, "e3", "U0ADMIN", "add Summarise the logs");
    again["retry_attempt"] = serde_json::json!(1);
    again["retry_reason"] = serde_json::json!("timeout");
    slack_send(port, again);
    d.wait_status(1, "succeeded");
    let posts = wait_for("the outcome in the thread", Duration::from_secs(20), || {
        let calls = slack_state(port)["calls"].as_array().unwrap().clone();
        let team: Vec<_> = calls.into_iter().filter(|c| c["body"]["channel"] == "C0TEAM").collect();
        (team.len() >= 2).then_some(team)
    });
    assert!(posts[0]["body"]["text"].as_str().unwrap().contains("task 1 queued for agent default by <@U0ADMIN>"), "{posts:?}");
    let outcome = &posts[1]["body"];
    assert!(outcome["text"].as_str().unwrap().contains("task 1 succeeded"), "{outcome}");
    assert_eq!(outcome["thread_ts"], "1700000000.000002", "threaded under the first message: {posts:?}");
    assert!(posts.iter().all(|p| p["auth"] == "Bearer xoxb-test"));
    let state = slack_state(port);
    for id in ["e1", "e2", "e3"] {
        let sent = state["sent"].as_array().unwrap().iter().find(|s| s["envelope_id"] == id).unwrap()["at"].as_f64().unwrap();
        let acked = state["acks"].as_array().unwrap().iter().find(|a| a["envelope_id"] == id).expect("every envelope is acknowledged")
            ["at"]
            .as_f64()
            .unwrap();
        assert!(acked - sent < 3.0, "{id} acknowledged within Slack's 3 s");
    }
    assert_eq!(
        state["acks"].as_array().unwrap().iter().filter(|a| a["envelope_id"] == "e3").count(),
        2,
        "the redelivery was acknowledged too"
    );
    assert_eq!(d.json(&["ls"])["tasks"].as_array().unwrap().len(), 1, "the redelivered command did not add a second task");

    // A failure notice carries a Retry button; pressing it retries the task.
    d.ok(&["notify", "add", "team", "--slack", "C0TEAM"]);
    d.ok(&["notify", "rule", "add", "--on", "task_failed", "--to", "team"]);
    let failed = add(&d, &["--", "sh", "-c", "echo no route to host; exit 1"]);
    d.wait_status(failed, "failed");
    let notice = wait_for("the failure notice", Duration::from_secs(20), || {
        slack_state(port)["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["body"]["text"].as_str().is_some_and(|t| t.contains(&format!("task {failed} failed"))))
            .cloned()
    });
    let blocks = notice["body"]["blocks"].to_string();
    assert!(blocks.contains("owl_retry") && blocks.contains("no route to host"), "{blocks}");
    slack_send(
        port,
        serde_json::json!({"envelope_id": "b1", "type": "interactive", "accepts_response_payload": false,
            "payload": {"type": "block_actions", "user": {"id": "U0ADMIN", "username": "admin"}, "channel": {"id": "C0TEAM"},
                        "response_url": format!("http://127.0.0.1:{port}/response/b1"),
                        "actions": [{"action_id": "owl_retry", "value": failed.to_string(), "type": "button", "block_id": "x"}]}}),
    );
    assert!(response("b1")["text"].as_str().unwrap().contains(&format!("task {failed} queued again by <@U0ADMIN>")));
    wait_for("the retried attempt", Duration::from_secs(20), || (d.task(failed)["attempts"].as_u64() == Some(2)).then_some(()));

    // Slack asks the app to reconnect (it does so every few hours): owl opens a new connection.
    reqwest::blocking::Client::new().post(format!("http://127.0.0.1:{port}/control/disconnect")).send().unwrap();
    wait_for("a new connection", Duration::from_secs(20), || {
        (slack_state(port)["connections"].as_u64() >= Some(2) && slack_state(port)["live"].as_u64() == Some(1)).then_some(())
    });
    slack_send(port, slash(port, "e4", "U0NOBODY", "status"));
    assert!(response("e4")["text"].as_str().unwrap().contains("succeeded"), "{}", slack_state(port));
}

#[test]
fn a_schedule_that_missed_and_ran_late_during_downtime_is_reported_once_each() {
    let Some(py) = python() else {
        return skip("aiosmtpd and standardwebhooks are not installed (scripts/test installs them into ~/.cache/owl/venv)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = tmp.path().join("hooks.jsonl");
    let r = receiver(&py, &["webhook", out.to_str().unwrap(), SECRET, tmp.path().join("hold").to_str().unwrap()]);
    config(&dir, "");
    let mut d = Daemon::start(&dir, &[("OWL_HOOK_SECRET", SECRET)]);
    d.ok(&[
        "notify",
        "add",
        "hooks",
        "--webhook",
        &format!("http://127.0.0.1:{}/ok", r.port),
        "--secret-env",
        "OWL_HOOK_SECRET",
        "--allow-private",
    ]);
    d.ok(&["notify", "rule", "add", "--on", "schedule_missed,schedule_late", "--to", "hooks", "--schedule", "tick"]);
    d.ok(&["schedule", "add", "tick", "--every", "2s", "--misfire", "once", "--max-lateness", "1s", "--", "true"]);
    wait_for("the first run", Duration::from_secs(20), || (!d.json(&["ls"])["tasks"].as_array().unwrap().is_empty()).then_some(()));
    // Down for a while: the slots in between are missed, and the latest runs late.
    d.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(7));
    d.restart();
    let got = wait_for("a missed and a late notice", Duration::from_secs(40), || {
        let all = received(&out);
        let kinds: Vec<String> = all
            .iter()
            .map(|x| serde_json::from_str::<serde_json::Value>(x["body"].as_str().unwrap()).unwrap()["type"].as_str().unwrap().to_string())
            .collect();
        (kinds.iter().any(|k| k == "schedule_missed") && kinds.iter().any(|k| k == "schedule_late")).then_some(all)
    });
    let bodies: Vec<serde_json::Value> = got.iter().map(|x| serde_json::from_str(x["body"].as_str().unwrap()).unwrap()).collect();
    let late = bodies.iter().find(|b| b["type"] == "schedule_late").unwrap();
    assert!(late["data"]["title"].as_str().unwrap().starts_with("schedule tick ran "), "{late}");
    assert_eq!(late["data"]["command"], "owl schedule history tick");
    // Read again on the next passes, each slot is still sent once.
    std::thread::sleep(Duration::from_secs(12));
    let keys: Vec<String> = received(&out)
        .iter()
        .map(|x| {
            serde_json::from_str::<serde_json::Value>(x["body"].as_str().unwrap()).unwrap()["data"]["key"].as_str().unwrap().to_string()
        })
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "no slot reported twice: {keys:?}");
}

#[test]
fn channels_declared_in_the_config_are_made_and_follow_a_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    config(&dir, "[notify.channels.ops]\nkind = \"email\"\nto = [\"ops@example.com\"]\n");
    let d = Daemon::start(&dir, &[]);
    let ops = wait_for("the declared channel", Duration::from_secs(20), || {
        d.owl(&["notify", "show", "ops", "--json"]).status.success().then(|| d.json(&["notify", "show", "ops"]))
    });
    assert_eq!(ops["to"], serde_json::json!(["ops@example.com"]));
    config(&dir, "[notify.channels.ops]\nkind = \"email\"\nto = [\"ops@example.com\", \"lead@example.com\"]\n\n[notify.channels.team]\nkind = \"slack\"\nchannel = \"C0TEAM\"\n");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the reloaded channels", Duration::from_secs(20), || {
        let list = d.json(&["notify", "ls"]);
        let chans = list["channels"].as_array().unwrap().clone();
        let ops = chans.iter().find(|c| c["name"] == "ops")?;
        (ops["to"].as_array()?.len() == 2 && chans.iter().any(|c| c["name"] == "team" && c["channel"] == "C0TEAM")).then_some(())
    });
    // A bad declaration is refused with the field named.
    config(&dir, "[notify.channels.bad]\nkind = \"email\"\nto = [\"nobody\"]\n");
    let out = d.owl(&["config", "show"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("notify.channels.bad.to"), "{out:?}");
}
