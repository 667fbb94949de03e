//! Where the data dir and config file are, per XDG.

use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return absolute(d);
    }
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("owl"),
        None => home().join(".local/share/owl"),
    }
}

/// The config path and whether the user named it explicitly (then it must exist).
pub fn config_file(flag: Option<PathBuf>) -> (PathBuf, bool) {
    if let Some(f) = flag {
        return (absolute(f), true);
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => home().join(".config"),
    };
    (base.join("owl/config.toml"), false)
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|c| c.join(&p)).unwrap_or(p)
    }
}
