//! Builds the agent runtime from settings, the daemon's environment and the secrets file.

use anyhow::{bail, Context, Result};
use owl_core::config::Settings;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `secrets.toml` beside the config file: `name = "value"` entries, readable by the owner only.
pub fn secrets_file(config: &Path) -> PathBuf {
    config.parent().map(|p| p.join("secrets.toml")).unwrap_or_else(|| PathBuf::from("secrets.toml"))
}

/// Reads the secrets file; a missing file is empty. A file others can read is refused.
pub fn load_secrets(path: &Path) -> Result<BTreeMap<String, String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!("{} is readable by others (mode {:o}); run `chmod 600 {}`", path.display(), mode, path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
    table
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            _ => bail!("{}: `{k}` must be a string", path.display()),
        })
        .collect()
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

pub fn build(
    settings: &Settings,
    config: &Path,
    sandbox: Option<owl_agent::runtime::SandboxBase>,
    mcp: Arc<owl_mcp::Hub>,
) -> Result<Arc<owl_agent::Runtime>> {
    let secrets = load_secrets(&secrets_file(config))?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut providers = settings.providers.clone();
    for p in providers.values_mut() {
        if let Some(m) = &p.model_path {
            p.model_path = Some(expand_home(m));
        }
    }
    let local = if settings.agent.local_model.is_empty() {
        owl_agent::runtime::default_local_model(&cache_dir())
    } else {
        PathBuf::from(expand_home(&settings.agent.local_model))
    };
    let rt = owl_agent::Runtime::new(
        providers,
        settings.agents.clone(),
        settings.prices.clone(),
        settings.agent.clone(),
        &env,
        &secrets,
        Some(local),
    );
    let rt = match sandbox {
        Some(b) => rt.with_sandbox(b),
        None => rt,
    };
    let rt = rt.with_mcp(mcp);
    for a in rt.agents() {
        match &a.problem {
            Some(p) => tracing::warn!(agent = %a.name, problem = %p, "agent cannot run until this is fixed"),
            None => tracing::info!(agent = %a.name, provider = %a.provider, model = %a.model, "agent configured"),
        }
    }
    Ok(Arc::new(rt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secrets_file_must_be_private_and_hold_strings() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets.toml");
        assert!(load_secrets(&p).unwrap().is_empty(), "a missing file is empty");
        std::fs::write(&p, "openai = \"sk-canary\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_secrets(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("sk-canary"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_secrets(&p).unwrap()["openai"], "sk-canary");
        std::fs::write(&p, "n = 3\n").unwrap();
        assert!(load_secrets(&p).unwrap_err().to_string().contains("must be a string"));
    }
}
