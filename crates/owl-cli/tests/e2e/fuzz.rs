//! The schema-driven fuzzer against the live daemon: schemathesis reads the generated OpenAPI
//! document and throws schema-valid and schema-breaking requests at every route, with every
//! check (no 5xx, documented statuses and bodies, valid data accepted, invalid data refused,
//! auth enforced). The rules the schema cannot state are listed in
//! `tests/schemathesis/schemathesis.toml`. `scripts/test` installs schemathesis, pinned.

use crate::harness::*;
use std::process::Command;

/// The schemathesis command: `$OWL_SCHEMATHESIS`, else the venv `scripts/test` makes.
fn schemathesis() -> Option<String> {
    if let Ok(p) = std::env::var("OWL_SCHEMATHESIS") {
        return Some(p);
    }
    let home = std::env::var("HOME").ok()?;
    let p = format!("{home}/.cache/owl/venv/bin/st");
    std::path::Path::new(&p).exists().then_some(p)
}

#[test]
fn the_schema_driven_fuzzer_finds_nothing() {
    let Some(st) = schemathesis() else {
        skip("schemathesis is not installed (scripts/test installs it into ~/.cache/owl/venv)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // No agent: chat turns on the local model would only make the run slow.
    let d = Daemon::start(&tmp.path().join("data"), &[("OWL_AGENT_LOCAL_MODEL", "/nonexistent.gguf")]);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis/schemathesis.toml");
    let seconds = std::env::var("OWL_FUZZ_SECONDS").unwrap_or_else(|_| "60".into());
    let run = || {
        let out = Command::new(&st)
            .current_dir(tmp.path())
            .args(["--no-color", "--config-file", config, "run"])
            .arg(format!("http://{}/v1/openapi.json", d.addr))
            .args(["-H", &format!("Authorization: Bearer {}", d.token)])
            .args(["--checks", "all", "--workers", "2", "--max-examples", "25", "--max-time", &seconds, "--seed", "7"])
            .args(["--warnings", "off"])
            .output()
            .expect("schemathesis runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (mut ok, mut text) = run();
    // CPython before 3.11.8 can raise this SystemError while hypothesis parses its own source
    // on a worker thread (CPython gh-106905): a crash of the tool, not a finding about owl, so
    // the run is made once more. A real finding fails both runs.
    if !ok && text.contains("AST constructor recursion depth mismatch") && !text.contains("FAILURES") {
        eprintln!("schemathesis hit CPython gh-106905; running it again");
        (ok, text) = run();
    }
    assert!(ok, "schemathesis found failures:\n{text}");
    // Every documented operation was exercised.
    let tested: usize = text.split("Tested: ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    assert!(tested >= 52 && text.contains("generated"), "{text}");
    // And the daemon is still there, serving.
    assert!(d.owl(&["status"]).status.success(), "the daemon died under the fuzzer");
}
