//! `owl config show|init|path`.

use crate::cli::ConfigAction;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub fn run(action: ConfigAction, config: (PathBuf, bool), data_dir: &Path, json: bool) -> Result<()> {
    match action {
        ConfigAction::Show => {
            let s = crate::settings::load(&config.0, config.1)?;
            if json {
                crate::output::print_json(&s);
            } else {
                let source =
                    if config.0.exists() { config.0.display().to_string() } else { format!("{} (absent: defaults)", config.0.display()) };
                println!("# effective configuration: defaults < {source} < OWL_* environment; secrets redacted");
                print!("{}", s.to_toml_redacted());
            }
        }
        ConfigAction::Init { force } => {
            let path = &config.0;
            if path.exists() && !force {
                bail!("{} already exists; pass --force to overwrite it", path.display());
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(path, owl_core::config::EXAMPLE_CONFIG).with_context(|| format!("cannot write {}", path.display()))?;
            if json {
                crate::output::print_json(&serde_json::json!({"written": path}));
            } else {
                println!("wrote {}", path.display());
            }
        }
        ConfigAction::Path => {
            if json {
                crate::output::print_json(&serde_json::json!({"config": config.0, "data_dir": data_dir}));
            } else {
                println!("config    {}", config.0.display());
                println!("data dir  {}", data_dir.display());
            }
        }
    }
    Ok(())
}
