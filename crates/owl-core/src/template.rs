//! Workspace templates, `[templates.NAME]`: the directories, files and set-up a task's
//! workspace gets before its agent starts (`owl add --template NAME`). Pure data and the
//! filling-in of file contents; the engine runs the set-up.

use crate::duration::serde_human;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    #[serde(default)]
    pub description: String,
    /// Directories to create, relative to the workspace (`src`, `output`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// Files to write, by path relative to the workspace; `{title}`, `{description}`,
    /// `{task_id}` and `{agent}` in the content are filled in. An existing file is kept (a
    /// retried task keeps the progress its agent wrote).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Python packages for a virtual environment at `.venv` in the workspace, built once per
    /// package list and shared read-only by every task that uses it (`[]`: a bare venv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venv: Option<Vec<String>>,
    /// Shell commands run in the workspace, in the sandbox, before the agent starts (with
    /// `.venv/bin` first on `PATH` when there is a venv). One failing fails the task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// Give the set-up commands (and the venv's pip) the network.
    #[serde(default = "yes")]
    pub setup_net: bool,
    /// For the whole set-up, venv included.
    #[serde(default = "default_setup_timeout", with = "serde_human")]
    pub setup_timeout: Duration,
}

fn yes() -> bool {
    true
}
fn default_setup_timeout() -> Duration {
    Duration::from_secs(600)
}

pub type Templates = BTreeMap<String, TemplateSettings>;

/// What a template's files are filled in with.
pub struct Fill<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub task_id: crate::TaskId,
    pub agent: &'a str,
}

/// `content` with `{title}`, `{description}`, `{task_id}` and `{agent}` replaced.
pub fn fill(content: &str, f: &Fill<'_>) -> String {
    content
        .replace("{title}", f.title)
        .replace("{description}", f.description)
        .replace("{task_id}", &f.task_id.to_string())
        .replace("{agent}", f.agent)
}

/// A prompt's title (its first line, shortened) and its description (the whole prompt).
pub fn title_of(prompt: &str) -> String {
    let line = prompt.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    let short: String = line.chars().take(100).collect();
    if short.len() < line.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// A relative path that stays inside the workspace.
fn check_path(field: &str, p: &str) -> Result<(), (String, String)> {
    let bad = p.is_empty()
        || p.starts_with('/')
        || std::path::Path::new(p).components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        || p.contains('\0');
    if bad {
        return Err((field.into(), format!("`{p}` must be a relative path inside the workspace, without `..`")));
    }
    Ok(())
}

/// A pip requirement: a package name with an optional version spec, nothing that pip would
/// read as an option or a path.
fn check_package(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.[],<>=!~ ".contains(c))
}

/// Checks every template; errors name the key.
pub fn check(templates: &Templates) -> Result<(), (String, String)> {
    for (name, t) in templates {
        crate::validate::check_name(&format!("templates.{name}"), "template", name).map_err(|e| (e.field, e.message))?;
        for d in &t.dirs {
            check_path(&format!("templates.{name}.dirs"), d)?;
        }
        for f in t.files.keys() {
            check_path(&format!("templates.{name}.files"), f)?;
        }
        for p in t.venv.iter().flatten() {
            if !check_package(p) {
                return Err((
                    format!("templates.{name}.venv"),
                    format!("`{p}` is not a package requirement; give names with optional versions, like requests==2.32.3"),
                ));
            }
        }
        if t.setup.iter().any(|c| c.trim().is_empty()) {
            return Err((format!("templates.{name}.setup"), "a set-up command is empty".into()));
        }
        if t.setup_timeout.is_zero() {
            return Err((format!("templates.{name}.setup_timeout"), "must be more than 0s".into()));
        }
    }
    Ok(())
}

/// Where a venv for `packages` is kept: one directory per (sorted) package list.
pub fn venv_key(packages: &[String]) -> String {
    let mut p: Vec<&str> = packages.iter().map(|s| s.trim()).collect();
    p.sort();
    let text = p.join("\n");
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TemplateSettings {
        toml::from_str("dirs = [\"src\"]\nfiles = { \"README.md\" = \"# {title}\" }").unwrap()
    }

    #[test]
    fn files_are_filled_in() {
        let f = Fill { title: "CSV export", description: "Build it.\nAll of it.", task_id: crate::TaskId(7), agent: "coder" };
        assert_eq!(fill("# {title} (task {task_id}, {agent})\n{description}", &f), "# CSV export (task 7, coder)\nBuild it.\nAll of it.");
        assert_eq!(title_of("\n  Build the CSV export  \nmore"), "Build the CSV export");
    }

    #[test]
    fn paths_must_stay_in_the_workspace_and_packages_must_be_requirements() {
        let mut m = Templates::new();
        m.insert("py".into(), t());
        assert!(check(&m).is_ok());
        m.get_mut("py").unwrap().dirs.push("../out".into());
        assert_eq!(check(&m).unwrap_err().0, "templates.py.dirs");
        m.get_mut("py").unwrap().dirs.pop();
        m.get_mut("py").unwrap().files.insert("/etc/x".into(), String::new());
        assert_eq!(check(&m).unwrap_err().0, "templates.py.files");
        m.get_mut("py").unwrap().files.remove("/etc/x");
        m.get_mut("py").unwrap().venv = Some(vec!["requests==2.32.3".into(), "--index-url=http://evil".into()]);
        assert_eq!(check(&m).unwrap_err().0, "templates.py.venv");
    }

    #[test]
    fn a_venv_is_kept_per_package_list_in_any_order() {
        assert_eq!(venv_key(&["b".into(), "a".into()]), venv_key(&["a".into(), " b".into()]));
        assert_ne!(venv_key(&["a".into()]), venv_key(&["a".into(), "b".into()]));
    }
}
