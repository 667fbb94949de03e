//! Invariants of the source tree no compiler checks (in the manner of rust-analyzer's tidy):
//! owl-core does no IO, every conformance case is registered and every backend runs them all,
//! every module says what it owns.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn owl_core_does_no_io() {
    let mut files = vec![];
    rust_files(&root().join("crates/owl-core/src"), &mut files);
    assert!(files.len() > 10);
    let banned = ["std::fs", "std::net", "std::process", "std::env", "tokio", "SystemTime::now", "Instant::now", "std::io::stdin"];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for b in banned {
            assert!(!text.contains(b), "{} uses {b}: owl-core does no IO (time and text are passed in)", f.display());
        }
    }
}

#[test]
fn every_conformance_case_is_registered() {
    let head = std::fs::read_to_string(root().join("crates/owl-store/src/conformance.rs")).unwrap();
    let (registry, _) = head.split_once("(@cases $make:expr;").expect("the macro's case list");
    let mut files = vec![];
    rust_files(&root().join("crates/owl-store/src/conformance"), &mut files);
    let text: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let cases: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .filter(|l| l.contains("(s: DynStore)"))
        .map(|l| l.split('(').next().unwrap())
        .collect();
    assert!(cases.len() > 20);
    for case in cases {
        assert!(
            registry.contains(&format!("{case},")) || registry.contains(&format!("{case}\n")),
            "conformance case `{case}` is not in conformance_tests!"
        );
    }
}

#[test]
fn every_store_backend_runs_the_conformance_suite() {
    let backends: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("owl-store-"))
        .collect();
    assert!(backends.len() >= 2, "{backends:?}");
    for b in backends {
        let mut files = vec![];
        rust_files(&b.join("src"), &mut files);
        assert!(
            files.iter().any(|f| std::fs::read_to_string(f).unwrap().contains("owl_store::conformance_tests!(")),
            "{} does not run owl_store::conformance_tests!",
            b.display()
        );
    }
}

#[test]
fn every_module_says_what_it_owns() {
    let mut files = vec![];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("//!"), "{} does not start with a //! line saying what it owns", f.display());
    }
}

#[test]
fn the_agent_crate_has_no_module_circle() {
    // job ← runtime, tools ← run: the loop uses the runtime and the tools, never the reverse.
    let agent = root().join("crates/owl-agent/src");
    let mut below = vec![agent.join("runtime.rs"), agent.join("job.rs")];
    rust_files(&agent.join("tools"), &mut below);
    for f in below {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("crate::run::") && !text.contains("use crate::run;"), "{} imports the loop (crate::run)", f.display());
        if !f.ends_with("runtime.rs") {
            assert!(!text.contains("crate::runtime"), "{} imports the runtime", f.display());
        }
    }
}
