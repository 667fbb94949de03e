//! Loading the layered settings: defaults, file, OWL_* environment (flags are applied by the caller).

use anyhow::{bail, Context, Result};
use owl_core::config::Settings;
use std::path::Path;

pub fn load(path: &Path, explicit: bool) -> Result<Settings> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
        Err(e) => bail!("cannot read the config file {}: {e}", path.display()),
    };
    let name = path.display().to_string();
    let settings = Settings::load(text.as_deref().map(|t| (name.as_str(), t)), std::env::vars())
        .with_context(|| "the configuration is invalid".to_string())?;
    settings.check().context("the configuration is invalid")?;
    Ok(settings)
}
