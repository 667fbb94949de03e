//! `owl doctor`: checks the set-up a newcomer depends on and says how to fix each problem:
//! the config, the daemon, the two local models (present and loadable), the sandbox, the
//! configured providers (key set, address reachable) and the disk.

use crate::output::print_json;
use owl_core::agent::{ProviderKind, ProviderSettings};
use owl_core::config::Settings;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(name: &str, level: Level, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check { name: name.into(), level, detail: detail.into(), fix }
}

/// Runs every check; exit code 1 when one fails.
pub async fn run(config: (PathBuf, bool), data_dir: &Path, json: bool) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    let settings = match crate::settings::load(&config.0, config.1) {
        Ok(s) => {
            let what =
                if config.0.is_file() { format!("{} is valid", config.0.display()) } else { "no config file; the defaults apply".into() };
            out.push(check("config", Level::Ok, what, None));
            Some(s)
        }
        Err(e) => {
            out.push(check(
                "config",
                Level::Fail,
                format!("{e:#}"),
                Some(format!("fix the key it names in {} (`owl config init` shows every key)", config.0.display())),
            ));
            None
        }
    };
    out.push(daemon(data_dir).await);
    if let Some(s) = &settings {
        out.extend(models(s));
        out.extend(providers(s, &config.0).await);
        out.extend(mcp_servers(s, data_dir).await);
        out.extend(budgets(s));
    }
    out.extend(sandbox());
    out.push(disk(data_dir));
    let failed = out.iter().any(|c| c.level == Level::Fail);
    if json {
        print_json(&serde_json::json!({"ok": !failed, "checks": out}));
    } else {
        for c in &out {
            let mark = match c.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("{mark}  {:<10} {}", c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("      {:<10} fix: {f}", "");
            }
        }
        if failed {
            println!("\nSome checks failed; each says how to fix it.");
        }
    }
    Ok(if failed { 1 } else { 0 })
}

async fn daemon(data_dir: &Path) -> Check {
    let client = match crate::client::Client::connect(data_dir) {
        Ok(c) => c,
        Err(_) => {
            return check(
                "daemon",
                Level::Warn,
                format!("not running for the data dir {}", data_dir.display()),
                Some("start it with `owl daemon` (or `scripts/start` from the repository, which also fetches the models)".into()),
            )
        }
    };
    match client.get::<owl_api::StatusView>("/v1/status").await {
        Ok(s) if s.version != env!("CARGO_PKG_VERSION") => check(
            "daemon",
            Level::Warn,
            format!("running owl {} (pid {}, {}), but this CLI is {}", s.version, s.pid, s.listen, env!("CARGO_PKG_VERSION")),
            Some("restart the daemon with this build".into()),
        ),
        Ok(s) => {
            check("daemon", Level::Ok, format!("running (owl {}, pid {}, {}, {} workers)", s.version, s.pid, s.listen, s.workers), None)
        }
        Err(e) => check(
            "daemon",
            Level::Warn,
            format!("not answering: {e:#}"),
            Some("start it with `owl daemon`; `owl status` shows what it says".into()),
        ),
    }
}

fn models(s: &Settings) -> Vec<Check> {
    let mut out = Vec::new();
    // The default agent's local model matters only when nothing else carries the default agent.
    if s.providers.is_empty() && s.agents.is_empty() && s.agent.default_model.is_empty() {
        let path = if s.agent.local_model.is_empty() {
            owl_agent::runtime::default_local_model(&crate::agents_setup::cache_dir())
        } else {
            PathBuf::from(owl_core::coding::expand_home(&s.agent.local_model, std::env::var("HOME").ok().as_deref()))
        };
        out.push(local_model(&path));
    }
    if s.memory.enabled && s.memory.embeddings == "local" {
        let dir = crate::memory_setup::model_dir(&s.memory);
        let fix = Some("scripts/fetch-models minilm (from the repository), or set [memory] model_dir".to_string());
        out.push(match owl_memory::embed::BertEmbedder::load(&dir) {
            Ok(e) => match owl_memory::embed::Embedder::embed(&e, &["owl doctor"]) {
                Ok(v) => {
                    check("memory", Level::Ok, format!("the embedding model at {} loads ({}-d vectors)", dir.display(), v[0].len()), None)
                }
                Err(err) => check("memory", Level::Fail, format!("the embedding model at {} does not run: {err}", dir.display()), fix),
            },
            Err(err) => check("memory", Level::Fail, format!("no embedding model: {err}; memory search falls back to full text"), fix),
        });
    }
    out
}

#[cfg(feature = "local")]
fn local_model(path: &Path) -> Check {
    let fix = Some("scripts/fetch-models gemma (from the repository), or set agent.default_model to a hosted model".to_string());
    if !path.is_file() {
        return check(
            "model",
            Level::Fail,
            format!("the default agent's model {} is missing, so there is no default agent", path.display()),
            fix,
        );
    }
    match owl_llama::LocalModel::load(path, 0, 512) {
        Ok(_) => check("model", Level::Ok, format!("the default agent's model {} loads", path.display()), None),
        Err(e) => check("model", Level::Fail, format!("{} does not load: {e}", path.display()), fix),
    }
}

#[cfg(not(feature = "local"))]
fn local_model(path: &Path) -> Check {
    check(
        "model",
        Level::Fail,
        format!("this owl was built without the local model provider, so the default agent cannot use {}", path.display()),
        Some(
            "build with `cargo build --release --features local` (scripts/start does), or set agent.default_model to a hosted model".into(),
        ),
    )
}

async fn providers(s: &Settings, config: &Path) -> Vec<Check> {
    let mut list: Vec<(String, ProviderSettings)> = s.providers.iter().map(|(n, p)| (n.clone(), p.clone())).collect();
    if s.providers.is_empty() && s.agents.is_empty() {
        let base = std::env::var("OPENAI_BASE_URL").ok();
        if let Ok(Some(p)) = owl_core::agent::default_model_provider(&s.agent.default_model, base.as_deref()) {
            list.push(p);
        }
    }
    let secrets = crate::agents_setup::load_secrets(&crate::agents_setup::secrets_file(config)).unwrap_or_default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    let mut out = Vec::new();
    for (name, p) in list {
        let label = format!("provider {name}");
        if p.kind == ProviderKind::Local {
            let path = p.model_path.clone().unwrap_or_default();
            let path = owl_core::coding::expand_home(&path, std::env::var("HOME").ok().as_deref());
            out.push(if Path::new(&path).is_file() {
                check(&label, Level::Ok, format!("local model {path}"), None)
            } else {
                check(&label, Level::Fail, format!("model_path {path} does not exist"), Some(format!("fix [providers.{name}] model_path")))
            });
            continue;
        }
        if let Some(var) = &p.api_key_env {
            if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                out.push(check(
                    &label,
                    Level::Fail,
                    format!("its key variable {var} is not set here"),
                    Some(format!("export {var}=... in the daemon's environment")),
                ));
                continue;
            }
        }
        if let Some(sec) = &p.api_key_secret {
            if !secrets.contains_key(sec) {
                out.push(check(
                    &label,
                    Level::Fail,
                    format!("its key `{sec}` is not in secrets.toml"),
                    Some(format!("add {sec} = \"...\" to the secrets file (mode 0600)")),
                ));
                continue;
            }
        }
        let base = p.base_url.clone().unwrap_or_else(|| match p.kind {
            ProviderKind::Anthropic => "https://api.anthropic.com".into(),
            _ => "https://api.openai.com/v1".into(),
        });
        out.push(match client.get(&base).send().await {
            Ok(r) => check(&label, Level::Ok, format!("{base} answers (HTTP {})", r.status().as_u16()), None),
            Err(e) => check(
                &label,
                Level::Fail,
                owl_agent::provider::describe(&e),
                Some(format!("check [providers.{name}] base_url, the network, or a proxy")),
            ),
        });
    }
    out
}

/// Each configured MCP server: started through the daemon when it runs (that is the real
/// test), else its program looked up.
async fn mcp_servers(s: &Settings, data_dir: &Path) -> Vec<Check> {
    let client = crate::client::Client::connect(data_dir).ok();
    let mut out = Vec::new();
    for (name, server) in &s.mcp.servers {
        let label = format!("mcp {name}");
        if let Some(c) = &client {
            match c.get::<owl_api::McpToolList>(&format!("/v1/mcp-servers/{name}/tools")).await {
                Ok(list) => {
                    let changed = list.tools.iter().filter(|t| t.trust == "changed").map(|t| t.name.clone()).collect::<Vec<_>>();
                    out.push(if changed.is_empty() {
                        check(&label, Level::Ok, format!("started; {} tools", list.tools.len()), None)
                    } else {
                        check(
                            &label,
                            Level::Warn,
                            format!("changed since trusted, withheld from agents: {}", changed.join(", ")),
                            Some(format!("review with `owl mcp tools {name}`, then `owl mcp trust {name} TOOL`")),
                        )
                    });
                }
                Err(e) => out.push(check(
                    &label,
                    Level::Fail,
                    format!("{e:#}"),
                    Some(format!("fix [mcp.servers.{name}], then `owl mcp tools {name}`")),
                )),
            }
            continue;
        }
        if let Some(cmd) = &server.command {
            let found = cmd.contains('/') && Path::new(cmd).is_file()
                || std::env::var("PATH").unwrap_or_default().split(':').any(|d| !d.is_empty() && Path::new(d).join(cmd).is_file());
            out.push(if found {
                check(&label, Level::Ok, format!("`{cmd}` is installed (started at first use)"), None)
            } else {
                check(
                    &label,
                    Level::Fail,
                    format!("`{cmd}` is not found in PATH"),
                    Some(format!("install it, or give its absolute path in mcp.servers.{name}.command")),
                )
            });
        }
    }
    out
}

/// Dollar budgets need a price for every model the work may use: an agent on a model owl has
/// no price for would fail at its first call.
fn budgets(s: &Settings) -> Vec<Check> {
    use owl_core::agent::ProviderKind;
    if s.budgets.is_empty() {
        return vec![];
    }
    let priced = s.budgets.iter().any(|(_, b)| b.usd.is_some());
    let table = owl_core::budget::price_table();
    let mut unpriced = vec![];
    for (name, a) in &s.agents {
        let Some(p) = s.providers.get(&a.provider) else { continue };
        if p.kind == ProviderKind::Local {
            continue;
        }
        let model = a.model.clone().or_else(|| p.model.clone()).unwrap_or_default();
        if owl_core::budget::lookup_price(&s.prices, &table, &model).is_none() {
            unpriced.push(format!("agents.{name} ({model})"));
        }
    }
    let scopes = s.budgets.keys().cloned().collect::<Vec<_>>().join(", ");
    if priced && !unpriced.is_empty() {
        return vec![check(
            "budgets",
            Level::Warn,
            format!(
                "{scopes}: a dollar limit applies, but owl has no price for {}; their tasks fail at the first call",
                unpriced.join(", ")
            ),
            Some(
                "add [prices.\"MODEL\"] with input and output in USD per million tokens (`owl budget prices` lists the known ones)".into(),
            ),
        )];
    }
    vec![check("budgets", Level::Ok, format!("{scopes}; every agent's model has a price"), None)]
}

fn sandbox() -> Vec<Check> {
    let caps = owl_sandbox::check();
    let missing: Vec<&owl_sandbox::Capability> = caps.iter().filter(|c| !c.available).collect();
    if missing.is_empty() {
        return vec![check("sandbox", Level::Ok, format!("every protection is available ({})", names(&caps)), None)];
    }
    missing
        .into_iter()
        .map(|c| {
            check(
                "sandbox",
                Level::Warn,
                format!("{}: {}", c.name, c.detail),
                Some("sandboxed tasks that need it do not run; `owl sandbox check` shows the rest".into()),
            )
        })
        .collect()
}

fn names(caps: &[owl_sandbox::Capability]) -> String {
    caps.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn disk(data_dir: &Path) -> Check {
    // The data dir may not exist yet; its nearest existing ancestor is on the same disk.
    let mut at = data_dir.to_path_buf();
    while !at.exists() && at.pop() {}
    match nix::sys::statvfs::statvfs(&at) {
        Ok(v) => {
            let free = v.blocks_available() * v.fragment_size();
            let gib = free as f64 / (1u64 << 30) as f64;
            let detail = format!("{gib:.1} GiB free for {}", data_dir.display());
            if free < 1 << 30 {
                check("disk", Level::Fail, detail, Some("free some space: tasks, logs and the database need room to write".into()))
            } else if free < 5 << 30 {
                check("disk", Level::Warn, detail, Some("less than 5 GiB left; workspaces and logs grow".into()))
            } else {
                check("disk", Level::Ok, detail, None)
            }
        }
        Err(e) => check("disk", Level::Warn, format!("cannot read free space at {}: {e}", at.display()), None),
    }
}
