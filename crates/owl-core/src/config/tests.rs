//! Tests of the layered settings: files, variables, the example and the README table.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_need_no_file() {
    let s = Settings::load(None, vec![]).unwrap();
    assert_eq!(s, Settings::default());
    s.check().unwrap();
}

#[test]
fn the_example_config_parses_to_the_defaults() {
    let s = Settings::load(Some(("example", EXAMPLE_CONFIG)), vec![]).unwrap();
    assert_eq!(s, Settings::default());
}

#[test]
fn file_then_env_layering() {
    let file = "[daemon]\nworkers = 3\nlease = \"10s\"\n[tasks]\ndefault_timeout = \"5m\"\n";
    let s = Settings::load(Some(("f.toml", file)), env(&[("OWL_DAEMON_WORKERS", "7"), ("OWL_DATA_DIR", "/x"), ("HOME", "/h")])).unwrap();
    assert_eq!(s.daemon.workers, 7);
    assert_eq!(s.daemon.lease, Duration::from_secs(10));
    assert_eq!(s.tasks.default_timeout, Some(Duration::from_secs(300)));
}

#[test]
fn unknown_keys_are_named() {
    let e = Settings::load(Some(("f.toml", "[daemon]\nworkerz = 3\n")), vec![]).unwrap_err();
    assert_eq!(e.source_name, "f.toml");
    assert!(e.message.contains("workerz"), "{e}");
    let e = Settings::load(Some(("f.toml", "[deamon]\n")), vec![]).unwrap_err();
    assert!(e.message.contains("deamon"), "{e}");
    let e = Settings::load(None, env(&[("OWL_DAEMON_WORKERZ", "1")])).unwrap_err();
    assert_eq!(e.source_name, "OWL_DAEMON_WORKERZ");
    // Variables outside the settings sections are not owl's to judge.
    Settings::load(None, env(&[("OWL_CRASH_TASKS", "5"), ("OWL_X", "1"), ("OWL_", "")])).unwrap();
}

#[test]
fn bad_values_are_named() {
    let e = Settings::load(Some(("f.toml", "[daemon]\nlease = \"soon\"\n")), vec![]).unwrap_err();
    assert!(e.message.contains("soon"), "{e}");
    let e = Settings::load(None, env(&[("OWL_DAEMON_WORKERS", "many")])).unwrap_err();
    assert_eq!(e.source_name, "OWL_DAEMON_WORKERS");
    assert!(e.message.contains("[daemon] workers"), "{e}");
    let e = Settings::load(None, env(&[("OWL_AGENT_DEFAULT_MODEL", "gpt-4o")])).unwrap().check().unwrap_err();
    assert_eq!(e.source_name, "agent.default_model");
    assert!(e.message.contains("openai:MODEL"), "{e}");
    let s = Settings::load(None, env(&[("OWL_AGENT_DEFAULT_MODEL", "anthropic:claude-haiku-4-5")])).unwrap();
    assert_eq!(s.agent.default_model, "anthropic:claude-haiku-4-5");
}

#[test]
fn secrets_are_redacted_everywhere_they_could_be_printed() {
    let s = Settings::load(None, env(&[("OWL_API_TOKEN", "canary-7f3a")])).unwrap();
    assert_eq!(s.api.token.as_ref().unwrap().expose(), "canary-7f3a");
    assert!(!s.to_toml_redacted().contains("canary-7f3a"));
    assert!(!format!("{s:?}").contains("canary-7f3a"));
    assert!(s.to_toml_redacted().contains("<redacted>"));
}

#[test]
fn every_setting_has_its_variable() {
    // Each struct section of the settings type has its keys; none is forgotten.
    for section in crate::fields::field_names::<Settings>() {
        let fields = Settings::section_fields(section);
        assert_eq!(fields.is_none(), MAP_SECTIONS.contains(section), "[{section}]: add it to section_fields or MAP_SECTIONS");
        assert!(fields.is_none_or(|f| !f.is_empty()), "[{section}] has no fields");
    }
    // And every variable is accepted: set to its default where that is a plain value,
    // otherwise at least not refused as unknown.
    let defaults = toml::Value::try_from(Settings::default()).unwrap();
    let vars = Settings::env_vars();
    assert!(vars.contains(&"OWL_MEMORY_ENABLED".to_string()) && vars.contains(&"OWL_GIT_WORKTREE_RETENTION".to_string()));
    for var in vars {
        let lower = var.trim_start_matches("OWL_").to_ascii_lowercase();
        let (section, field) = lower.split_once('_').unwrap();
        let value = match defaults.get(section).and_then(|t| t.get(field)) {
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Integer(i)) => i.to_string(),
            Some(toml::Value::Boolean(b)) => b.to_string(),
            Some(toml::Value::Float(f)) => f.to_string(),
            _ => String::new(),
        };
        match Settings::load(None, env(&[(&var, &value)])) {
            Ok(_) => {}
            Err(e) => {
                assert!(!e.message.contains("is not an owl setting"), "{var}: {e}");
                assert!(value.is_empty(), "{var}={value} (the default) is refused: {e}");
            }
        }
    }
    let s = Settings::load(None, env(&[("OWL_MEMORY_ENABLED", "false"), ("OWL_GIT_WORKTREE_RETENTION", "1d")])).unwrap();
    assert!(!s.memory.enabled);
    assert_eq!(s.git.worktree_retention, Duration::from_secs(86_400));
}

#[test]
fn the_example_config_shows_every_key() {
    // `owl config init` writes EXAMPLE_CONFIG; each key of each section appears in it,
    // set or commented out, under its own section.
    let mut section = String::new();
    let mut shown: std::collections::BTreeSet<(String, String)> = Default::default();
    for line in EXAMPLE_CONFIG.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = name.split('.').next().unwrap_or(name).to_string();
            // `[memory.retention]` shows the key `retention` of `[memory]`.
            if let Some((_, sub)) = name.split_once('.') {
                shown.insert((section.clone(), sub.to_string()));
            }
        } else if let Some((key, _)) = l.split_once(" =") {
            shown.insert((section.clone(), key.trim().to_string()));
        }
    }
    let mut missing = vec![];
    for section in crate::fields::field_names::<Settings>() {
        let fields: &[&str] = match *section {
            "providers" => crate::fields::field_names::<crate::agent::ProviderSettings>(),
            "agents" => crate::fields::field_names::<crate::agent::AgentSettings>(),
            "cli" => crate::fields::field_names::<crate::coding::CliProfile>(),
            "prices" => crate::fields::field_names::<crate::agent::Price>(),
            "budgets" => crate::fields::field_names::<crate::budget::BudgetSettings>(),
            "templates" => crate::fields::field_names::<crate::template::TemplateSettings>(),
            s => Settings::section_fields(s).unwrap(),
        };
        for f in fields {
            if !shown.contains(&(section.to_string(), f.to_string())) {
                missing.push(format!("[{section}] {f}"));
            }
        }
    }
    assert!(missing.is_empty(), "EXAMPLE_CONFIG does not show: {}", missing.join(", "));
}

#[test]
fn the_configuration_reference_shows_every_key() {
    // The reference moved out of the README as it grew; the README links to it.
    let table = include_str!("../../../../docs/configuration.md");
    assert!(include_str!("../../../../README.md").contains("(docs/configuration.md)"), "the README links the reference");
    let mut missing = vec![];
    for section in crate::fields::field_names::<Settings>() {
        let Some(fields) = Settings::section_fields(section) else { continue };
        for f in fields {
            let full = format!("`{section}.{f}`");
            let table_form = format!("`[{section}.{f}]`");
            let grouped = table.lines().any(|l| l.contains(&format!("`{section}.")) && l.contains(&format!("`{f}`")));
            if !table.contains(&full) && !table.contains(&table_form) && !grouped {
                missing.push(format!("{section}.{f}"));
            }
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md does not show: {}", missing.join(", "));
}
