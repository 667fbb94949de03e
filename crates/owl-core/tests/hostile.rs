//! Hostile input against every parser in owl-core: each must answer with an error or a
//! value, never panic or overflow the stack, whatever a client, a model or a file sends.

use owl_core::config::Settings;
use owl_core::expr::{Expr, MAX_LEN, MAX_NESTING};
use proptest::prelude::*;

/// Strings an attacker would try: any Unicode, NUL bytes, bracket soup, huge numbers.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[()!\\-+*/<>=&|a-z_0-9. \\x00]{0,200}",
        "[0-9]{1,400}(\\.[0-9]{0,400})?",
        (1usize..5000).prop_map(|n| "(".repeat(n)),
        (1usize..5000).prop_map(|n| format!("{}1{} > 0", "(".repeat(n), ")".repeat(n))),
        (1usize..5000).prop_map(|n| format!("{}running > 0", "not ".repeat(n))),
        (1usize..5000).prop_map(|n| format!("{}1 > 0", "-".repeat(n))),
        (1usize..3000).prop_map(|n| format!("{}1 > 0", "1 + ".repeat(n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conditions_never_panic(src in hostile()) {
        if let Ok(e) = Expr::parse(&src) {
            prop_assert!(src.len() <= MAX_LEN);
            let _ = e.eval(&Default::default());
        }
    }

    #[test]
    fn durations_never_panic(src in hostile()) {
        let _ = owl_core::duration::parse(&src);
    }

    #[test]
    fn cron_time_zones_and_timestamps_never_panic(src in hostile()) {
        let _ = owl_core::schedule::parse_cron("cron", &src);
        let _ = owl_core::schedule::parse_tz("tz", &src);
        let _ = owl_core::Timestamp::parse_rfc3339(&src);
        let _ = owl_core::coding::split_template(&src);
        let _ = owl_core::agent::Owner::parse(&src);
    }

    #[test]
    fn config_files_and_environment_never_panic(src in hostile(), key in "[A-Z_]{0,40}") {
        let _ = Settings::load(Some(("owl.toml", &src)), []);
        let _ = Settings::load(Some(("owl.toml", &format!("[daemon]\nworkers = {src}\n"))), []);
        let _ = Settings::load(None, [(format!("OWL_{key}"), src.clone())]);
    }
}

#[test]
fn deep_nesting_is_refused_with_a_clear_error() {
    let deep = format!("{}1{} > 0", "(".repeat(1000), ")".repeat(1000));
    // Too long first; within the length limit, too deep.
    assert!(Expr::parse(&deep).unwrap_err().message.contains("bytes long"));
    let deep = format!("{}1{} > 0", "(".repeat(100), ")".repeat(100));
    let e = Expr::parse(&deep).unwrap_err();
    assert!(e.message.contains(&format!("more than {MAX_NESTING} levels")), "{e}");
    let e = Expr::parse(&format!("{}running > 0", "not ".repeat(100))).unwrap_err();
    assert!(e.message.contains("levels"), "{e}");
    // The limit leaves room for anything a person writes.
    let ok = format!("{}running > 0{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    assert!(Expr::parse(&ok).is_ok());
}

#[test]
fn deeply_nested_config_is_an_error_not_a_crash() {
    for n in [100, 10_000, 100_000] {
        let text = format!("[daemon]\nworkers = {}1{}\n", "[".repeat(n), "]".repeat(n));
        assert!(Settings::load(Some(("owl.toml", &text)), []).is_err());
        let text = format!("[daemon]\nworkers = {}1{}\n", "{a=".repeat(n), "}".repeat(n));
        assert!(Settings::load(Some(("owl.toml", &text)), []).is_err());
    }
}
