//! Sample-first constrained decoding gives the same output as masking every candidate, on the
//! real gemma-3-270m model (fetched by scripts/fetch-models), and still obeys the grammar.

use owl_llama::{Constrain, LocalModel};

fn model_path() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("OWL_MODEL_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
        cache.join("owl/models")
    });
    let p = dir.join("gemma-3-270m-q4_k_m.gguf");
    if p.is_file() {
        return Some(p);
    }
    assert!(std::env::var("CI").is_err(), "{} is missing under CI: run scripts/fetch-models gemma", p.display());
    eprintln!("SKIPPED: {} is missing (scripts/fetch-models gemma)", p.display());
    None
}

const GRAMMAR: &str = r#"root ::= "{\"tool\": \"" name "\", \"arguments\": {\"path\": \"" path "\"}}"
name ::= "read_file" | "list_dir"
path ::= [a-zA-Z0-9_./-]{1,40}
"#;

#[test]
fn sample_first_matches_full_masking_token_for_token() {
    let Some(path) = model_path() else { return };
    let mut m = LocalModel::load(&path, 2, 2048).unwrap();
    let prompts =
        ["Read the file notes.txt and tell me what it says. Reply with JSON.", "What files are in the folder src? Reply with JSON."];
    for p in prompts {
        let prompt = m.chat_prompt(&[("user".into(), p.into())]).unwrap();
        m.set_constrain(Constrain::Full);
        let full = m.generate(&prompt, Some(GRAMMAR), 48, 0.0, &mut |_| {}).unwrap();
        m.set_constrain(Constrain::SampleFirst);
        let fast = m.generate(&prompt, Some(GRAMMAR), 48, 0.0, &mut |_| {}).unwrap();
        assert_eq!(fast.text, full.text, "{p}");
        assert!(fast.text.starts_with("{\"tool\": \""), "{}", fast.text);
        assert!(!fast.truncated, "the grammar ends the reply: {}", fast.text);
        let v: serde_json::Value = serde_json::from_str(&fast.text).unwrap_or_else(|e| panic!("{}: {e}", fast.text));
        assert!(v["arguments"]["path"].is_string(), "{v}");
    }
}
