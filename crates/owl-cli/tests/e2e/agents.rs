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

/// The newcomer's first run: no configuration at all, the built-in default agent on the local
/// model. Its shell calls run in the sandbox without waiting for a person, and a task is
/// never a success unless the agent did something.
#[cfg(feature = "local")]
#[test]
fn the_default_agent_works_unattended_with_no_configuration() {
    model_path();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("notes.txt"), "the meeting is on tuesday\n").unwrap();
    let d = Daemon::start(&dir, &[]);
    let agents = d.json(&["agents"]);
    assert_eq!(agents["agents"][0]["name"], "default", "{agents}");
    assert!(agents["agents"][0]["problem"].is_null(), "{agents}");
    let cwd = files.to_str().unwrap();
    let write = add(&d, &["--agent", "default", "--cwd", cwd, "Create a file named hello.txt containing the word owl"]);
    let shell = add(&d, &["--agent", "default", "--cwd", cwd, "Run the shell command `cat notes.txt` and tell me what day the meeting is"]);
    for id in [write, shell] {
        let t = wait_for(&format!("agent task {id} to finish"), Duration::from_secs(300), || {
            let t = d.task(id);
            matches!(t["status"].as_str(), Some("succeeded" | "failed")).then_some(t)
        });
        let tr = d.json(&["transcript", &id.to_string()]);
        let tools = tr["entries"].as_array().unwrap().iter().filter(|e| e["type"] == "tool").count();
        if t["status"] == "succeeded" {
            assert!(tools > 0, "a success without any tool call: {tr}");
        } else {
            let reason = t["state"]["reason"].as_str().unwrap_or_default();
            assert!(!reason.contains("approval"), "nothing waited for a person: {t}");
        }
    }
    let approvals = d.json(&["approvals", "--all"]);
    assert_eq!(approvals["approvals"].as_array().unwrap().len(), 0, "no call asked for approval: {approvals}");
    // Every shell call ran (in the sandbox) instead of being parked.
    for id in [write, shell] {
        let tr = d.json(&["transcript", &id.to_string()]);
        for e in tr["entries"].as_array().unwrap().iter().filter(|e| e["type"] == "tool" && e["name"] == "shell") {
            assert!(!e["content"].as_str().unwrap_or_default().contains("needs approval"), "{e}");
        }
    }
}
