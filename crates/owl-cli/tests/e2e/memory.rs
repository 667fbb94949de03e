//! `owl memory` on the real daemon: add (and a duplicate merged), search with --explain and
//! --json, import of Markdown and JSONL, export and re-import, stats, rm, reindex, and the
//! index surviving a restart. Uses the fetched embedding model when there is one; without it
//! the same commands run on full-text search, which the test checks is said.

use crate::harness::*;

fn have_model() -> bool {
    let have =
        std::env::var("HOME").is_ok_and(|h| std::path::Path::new(&h).join(".cache/owl/models/all-MiniLM-L6-v2/model.safetensors").exists());
    if !have {
        crate::harness::skip("the embedding model is missing (scripts/fetch-models); only the full-text half of this test runs");
    }
    have
}

#[test]
fn memory_commands_round_trip_on_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut d = Daemon::start(&dir, &[]);
    let first = d.ok(&["memory", "add", "The user prefers concise answers without emoji", "--kind", "preference", "--tag", "style"]);
    let id: i64 = first.trim().parse().unwrap();
    let again = d.json(&["memory", "add", "the user prefers concise answers without emoji", "--kind", "preference"]);
    assert_eq!(again["outcome"], "merged");
    assert_eq!(again["id"], id);
    let notes = tmp.path().join("notes.md");
    std::fs::write(
        &notes,
        "# Deploys\nProduction deploys happen on Tuesday mornings only.\n\n# Backups\nBackups go to Frankfurt every six hours.\n",
    )
    .unwrap();
    let facts = tmp.path().join("facts.jsonl");
    std::fs::write(&facts, "{\"text\": \"Alice owns the billing service\", \"kind\": \"knowledge\", \"tags\": [\"people\"]}\n").unwrap();
    let out = d.ok(&["memory", "import", notes.to_str().unwrap(), facts.to_str().unwrap()]);
    assert!(out.contains("3 chunks from 2 files: 3 new"), "{out}");
    let stats = d.json(&["memory", "stats"]);
    assert_eq!(stats["items"], 4);
    assert_eq!(stats["semantic"], have_model(), "{stats}");
    let s = d.json(&["memory", "search", "who is responsible for billing?", "-k", "2"]);
    assert_eq!(s["hits"][0]["item"]["text"], "Alice owns the billing service", "{s}");
    if !have_model() {
        assert!(s["note"].as_str().is_some(), "full-text only is said: {s}");
    }
    let explained = d.ok(&["memory", "search", "how should answers be written?", "--kind", "preference", "--explain"]);
    assert!(explained.contains(&format!("#{id}")) && explained.contains("score"), "{explained}");
    let ls = d.ok(&["memory", "ls", "--kind", "knowledge"]);
    assert_eq!(ls.lines().count(), 3, "{ls}");
    let export = d.ok(&["memory", "export"]);
    assert_eq!(export.lines().count(), 4);
    // Export then import elsewhere: the same memories.
    let dump = tmp.path().join("dump.jsonl");
    std::fs::write(&dump, &export).unwrap();
    let other = Daemon::start(&tmp.path().join("other"), &[]);
    other.ok(&["memory", "import", dump.to_str().unwrap()]);
    assert_eq!(other.json(&["memory", "stats"])["items"], 4);
    // Forget one; a second rm names the missing id.
    d.ok(&["memory", "rm", &id.to_string()]);
    let gone = d.owl(&["memory", "show", &id.to_string()]);
    assert!(!gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains(&format!("memory {id} does not exist")));
    // Bad input is refused with the field named, nothing stored.
    let bad = d.owl(&["memory", "add", &"x".repeat(9000)]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max_item_chars"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert_eq!(d.json(&["memory", "stats"])["items"], 3);
    // Across a restart the memories and the index are there.
    d.signal_and_wait(nix::sys::signal::Signal::SIGTERM, std::time::Duration::from_secs(20));
    d.child = None;
    if have_model() {
        assert!(dir.join("memory.usearch").exists(), "the index is saved at shutdown");
    }
    d.restart();
    let s = d.json(&["memory", "search", "where are backups kept?", "-k", "1"]);
    assert!(s["hits"][0]["item"]["text"].as_str().unwrap().contains("Frankfurt"), "{s}");
    if have_model() {
        assert_eq!(d.json(&["memory", "reindex"])["indexed"], 3);
    }
}
