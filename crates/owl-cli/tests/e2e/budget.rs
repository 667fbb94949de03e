//! Budgets through the real daemon and CLI: a loopback Chat Completions server that reports
//! usage, a task cap from `owl add --max-cost` that pauses the task, `owl budget` showing it,
//! `owl budget set` waking it, and `owl usage` by scope and by model with the price used.

use crate::harness::*;
use std::time::Duration;

/// Every call: 10 input and 1000 output tokens, $0.01002 at $2/$10 per million.
fn model() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            axum::Json(serde_json::json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "done"}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1000}}))
        }),
    );
    format!("http://127.0.0.1:{}/v1", serve(app))
}

#[test]
fn a_task_over_budget_waits_until_owl_budget_set_raises_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = model();
    std::fs::write(
        config_path(&dir),
        format!(
            "[providers.fake]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\n\n[agents.worker]\nprovider = \"fake\"\nmax_output_tokens = 1000\nsandbox = false\ntools = [\"read_file\"]\n\n[prices.\"m\"]\ninput = 2.0\noutput = 10.0\n\n[budgets.\"agent.worker\"]\ntokens = 1000000\nperiod = \"day\"\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(&dir, &[]);
    // A cap with no agent is refused before anything is queued.
    let out = d.owl(&["add", "--max-cost", "1", "--", "true"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--max-cost"), "{out:?}");
    // $0.005: less than one call may cost, so the task cannot ever fit and fails with why.
    let small = add(&d, &["--agent", "worker", "--max-cost", "0.005", "say hi"]);
    let t = d.wait_status(small, "failed");
    assert!(t["state"]["reason"].as_str().unwrap().contains("more than all of task."), "{t}");
    // $0.015: its one call fits.
    let id = add(&d, &["--agent", "worker", "--max-cost", "0.015", "say hi"]);
    d.wait_status(id, "succeeded");
    let list = d.json(&["budget"]);
    let worker = list["budgets"].as_array().unwrap().iter().find(|b| b["scope"] == "agent.worker").unwrap().clone();
    assert_eq!(worker["source"], "config");
    assert!(worker["spent_tokens"].as_u64().unwrap() >= 1010, "{worker}");
    let human = d.ok(&["budget"]);
    assert!(human.contains("agent.worker") && human.contains("1000000 tok /day"), "{human}");

    // A limit set now that leaves no room for the next call: the task waits, with the reason.
    d.ok(&["budget", "set", "agent.worker", "--tokens", "1500"]);
    let paused = add(&d, &["--agent", "worker", "say hi thrice"]);
    let t = wait_for("the task to wait on its budget", Duration::from_secs(20), || {
        let t = d.task(paused);
        (t["state"]["status"] == "waiting").then_some(t)
    });
    assert_eq!(t["state"]["reason"]["on"], "budget", "{t}");
    assert_eq!(t["state"]["reason"]["scope"], "agent.worker");
    let shown = d.ok(&["ls"]);
    assert!(shown.contains("over budget agent.worker"), "{shown}");
    let list = d.json(&["budget"]);
    let worker = list["budgets"].as_array().unwrap().iter().find(|b| b["scope"] == "agent.worker").unwrap().clone();
    assert_eq!(worker["waiting"], serde_json::json!([paused]));
    assert_eq!(worker["source"], "config, set");
    // Raising it wakes the task at once.
    d.ok(&["budget", "set", "agent.worker", "--tokens", "10000000"]);
    d.wait_status(paused, "succeeded");
    d.ok(&["budget", "unset", "agent.worker"]);
    assert_eq!(d.json(&["budget"])["budgets"][0]["tokens"], 1000000);

    // Usage by scope shows the ledger; by model, the price each call was charged at.
    let by_scope = d.json(&["usage", "--by", "scope"]);
    let scopes: Vec<&str> = by_scope["rows"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    for s in ["global", "agent.worker", "provider.fake", &format!("task.{id}")] {
        assert!(scopes.contains(&s), "{s} in {scopes:?}");
    }
    let by_model = d.json(&["usage", "--by", "model"]);
    assert_eq!(by_model["rows"][0]["price"], "[prices.\"m\"]", "{by_model}");
    let prices = d.ok(&["budget", "prices"]);
    assert!(prices.contains("claude-sonnet-4-5") && prices.contains("config"), "{prices}");
    // A bad scope names the field.
    let out = d.owl(&["budget", "set", "team.x", "--usd", "1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a kind of scope"), "{out:?}");
}

#[test]
fn a_call_in_flight_when_the_daemon_dies_is_charged_its_estimate_once_and_the_task_resumes() {
    // The first call never answers (the daemon is killed meanwhile); later ones answer at once.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
                axum::Json(serde_json::json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "done"}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1000}}))
            }
        }),
    );
    let url = format!("http://127.0.0.1:{}/v1", serve(app));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(
        config_path(&dir),
        format!(
            "[providers.fake]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\ntimeout = \"10m\"\n\n[agents.worker]\nprovider = \"fake\"\nmax_output_tokens = 1000\nsandbox = false\ntools = [\"read_file\"]\n\n[prices.\"m\"]\ninput = 2.0\noutput = 10.0\n\n[budgets.global]\nusd = 1.0\n"
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&dir, &[]);
    let id = add(&d, &["--agent", "worker", "say hi"]);
    wait_for("the first call to be in flight", Duration::from_secs(20), || {
        (calls.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
    });
    let held = wait_for("the reservation", Duration::from_secs(10), || {
        let b = d.json(&["budget"]);
        let g = b["budgets"][0].clone();
        (g["reserved_usd"].as_f64().unwrap_or(0.0) > 0.0).then_some(g)
    });
    let estimate = held["reserved_usd"].as_f64().unwrap();
    assert!(estimate > 0.01, "the whole output limit is reserved: {held}");
    d.kill9();
    d.restart();
    d.wait_status(id, "succeeded");
    // The interrupted call counts at its estimate (whether it was billed is not known), the
    // resumed call at what it cost, and nothing is left held.
    let g = d.json(&["budget"])["budgets"][0].clone();
    assert_eq!(g["reserved_usd"].as_f64().unwrap(), 0.0, "{g}");
    let spent = g["spent_usd"].as_f64().unwrap();
    assert!((spent - (estimate + 0.01002)).abs() < 1e-9, "spent {spent}, estimate {estimate}: {g}");
}
