//! Agent tasks on the real daemon with the real local model (gemma-3-270m, fetched by
//! scripts/fetch-models): at least one grammar-constrained tool call, run to completion.

use crate::harness::*;
use std::time::Duration;

fn model_path() -> std::path::PathBuf {
    let dir = std::env::var_os("OWL_MODEL_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
        cache.join("owl/models")
    });
    let p = dir.join("gemma-3-270m-q4_k_m.gguf");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-models gemma", p.display());
    p
}

#[cfg(feature = "local")]
#[test]
fn the_local_model_runs_a_constrained_tool_call_to_completion_on_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("shopping.txt"), "milk\n").unwrap();
    std::fs::write(
        config_path(&dir),
        format!(
            r#"
[providers.local]
kind = "local"
model_path = "{}"
threads = 2
context = 4096

[agents.lister]
description = "lists files"
provider = "local"
tools = ["list_dir", "read_file"]
must_use_tool = true
temperature = 0.0
max_steps = 6
max_output_tokens = 96
"#,
            model_path().display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&dir, &[]);
    let agents = d.json(&["agents"]);
    assert_eq!(agents["agents"][0]["name"], "lister", "{agents}");
    assert!(agents["agents"][0]["problem"].is_null(), "{agents}");
    let id = add(&d, &["--agent", "lister", "--cwd", files.to_str().unwrap(), "List the files here, then answer with their names."]);
    let t = wait_for(&format!("agent task {id} to finish"), Duration::from_secs(240), || {
        let t = d.task(id);
        matches!(t["status"].as_str(), Some("succeeded" | "failed")).then_some(t)
    });
    let tr = d.json(&["transcript", &id.to_string()]);
    let entries = tr["entries"].as_array().unwrap();
    let calls: Vec<&serde_json::Value> = entries.iter().filter(|e| e["type"] == "tool").collect();
    assert!(!calls.is_empty(), "at least one tool call ran: {tr}");
    let first = calls[0];
    assert_eq!(first["is_error"], false, "the constrained call was well-formed and ran: {first}");
    assert!(["list_dir", "read_file"].contains(&first["name"].as_str().unwrap()), "the call names a tool the agent has: {first}");
    assert_eq!(t["status"], "succeeded", "the loop ran to a final answer: {tr}");
    assert!(t["result"].as_str().is_some_and(|r| !r.is_empty()), "{t}");
    assert!(tr["input_tokens"].as_u64().unwrap() > 0 && tr["output_tokens"].as_u64().unwrap() > 0);
    // The human-readable transcript and the task log show the same steps.
    let text = d.ok(&["transcript", &id.to_string()]);
    assert!(text.contains(first["name"].as_str().unwrap()), "{text}");
}
