//! The Q5_0 token-table copy of the real gemma-3-270m file (fetched by scripts/fetch-models):
//! every other tensor is copied byte for byte, the table stays within half a 5-bit step of the
//! original (a step at most where Q5_0's asymmetric range clamps), the copy is written once and reused, a damaged source leaves nothing behind, and
//! the copy loads and generates.

use owl_llama::{slim, LocalModel};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

fn model_path() -> Option<PathBuf> {
    let dir = std::env::var_os("OWL_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
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

fn bytes(path: &Path, start: u64, len: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut b = vec![0u8; len as usize];
    f.read_exact(&mut b).unwrap();
    b
}

#[test]
fn the_copy_changes_only_the_token_table_and_loads() {
    let Some(original) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("gemma.gguf");
    std::fs::copy(&original, &source).unwrap();

    let out = slim::slim_table(&source).unwrap();
    assert_eq!(out, dir.path().join(format!("gemma.{}.gguf", slim::SUFFIX)));
    let before = slim::tensors(&source).unwrap();
    let after = slim::tensors(&out).unwrap();
    assert_eq!(before.len(), after.len());
    let saved = std::fs::metadata(&source).unwrap().len() - std::fs::metadata(&out).unwrap().len();
    assert!(saved > 55 << 20, "the copy is only {saved} bytes smaller");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.name, &b.dims), (&a.name, &a.dims));
        if b.name == "token_embd.weight" {
            assert_eq!((b.ty, a.ty), (8, 6), "Q8_0 becomes Q5_0");
            // Whole rows spread over the table: each value within half a step of its block.
            let row_blocks = b.dims[0] / 32;
            for row in [0u64, 1, 2, 106, 4_000, 100_000, b.dims[1] - 1] {
                let q8 = bytes(&source, b.start + row * row_blocks * 34, row_blocks * 34);
                let q5 = bytes(&out, a.start + row * row_blocks * 22, row_blocks * 22);
                for (x8, x5) in q8.chunks(34).zip(q5.chunks(22)) {
                    let (v8, v5) = (slim::q8_0_values(x8), slim::q5_0_values(x5));
                    let step = v8.iter().fold(0f32, |m, v| m.max(v.abs())) / 16.0;
                    for (x, y) in v8.iter().zip(v5) {
                        // Q5_0 spans -16..15 steps, the largest value at -16: one on the far
                        // side beyond 15 steps is clamped (up to a step off); the f16 scale adds
                        // its rounding.
                        let bound = if x.abs() > 15.0 * step { step } else { step * 0.5 } + step * 0.02 + 1e-9;
                        assert!((x - y).abs() <= bound, "row {row}: {y} for {x} (step {step})");
                    }
                }
            }
        } else {
            assert_eq!(b.ty, a.ty, "{}", b.name);
            let len = b.len.min(a.len);
            assert!(bytes(&source, b.start, len) == bytes(&out, a.start, len), "{} differs", b.name);
        }
    }

    // Written once: a second call returns the same file untouched.
    let written = std::fs::metadata(&out).unwrap().modified().unwrap();
    assert_eq!(slim::slim_table(&source).unwrap(), out);
    assert_eq!(std::fs::metadata(&out).unwrap().modified().unwrap(), written);
    // The copy needs no copy of its own.
    assert_eq!(slim::slim_table(&out).unwrap(), out);

    // Loading the original loads the copy, and it still speaks.
    let m = LocalModel::load(&source, 2, 512).unwrap();
    let prompt = m.chat_prompt(&[("user".into(), "Say the word yes.".into())]).unwrap();
    let g = m.generate(&prompt, None, 8, 0.0, &mut |_| {}).unwrap();
    assert!(!g.text.trim().is_empty(), "no words from the copy");
}

#[test]
fn a_cut_short_source_fails_and_leaves_no_file() {
    let Some(original) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("cut.gguf");
    let whole = std::fs::read(&original).unwrap();
    std::fs::write(&source, &whole[..whole.len() / 2]).unwrap();
    drop(whole);
    assert!(slim::slim_table(&source).is_err());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("cut.gguf")], "nothing but the source remains");
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gguf");
    std::fs::write(&p, b"not a model at all").unwrap();
    let e = slim::slim_table(&p).unwrap_err();
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
}
