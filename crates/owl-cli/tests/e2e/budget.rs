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
