//! Validation of task specs and names. Every error names the field and says how to fix it.

use crate::task::{Command, TaskSpec};
use serde::Serialize;
use std::fmt;

/// A rejected input: which field, what is wrong, and the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;
pub const MAX_TIMEOUT_MS: u64 = 366 * 24 * 3600 * 1000;
pub const MAX_DEPENDENCIES: usize = 1000;
pub const MAX_LABELS: usize = 64;
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Group, label and schedule names: 1 to 128 characters of letters, digits, `-`, `_`, `.`, `:` and `=`.
pub fn check_name(field: &str, kind: &str, name: &str) -> Result<(), ValidationError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:=/".contains(c));
    if name.is_empty() || name.len() > 128 || !ok_chars {
        return Err(ValidationError::new(
            field,
            format!("`{name}` is not a valid {kind} name; use 1 to 128 letters, digits and - _ . : = /"),
        ));
    }
    Ok(())
}

/// Largest prompt an agent task accepts.
pub const MAX_PROMPT_BYTES: usize = 256 * 1024;

/// Checks a spec whose defaults are already filled in.
pub fn check_spec(spec: &TaskSpec) -> Result<(), ValidationError> {
    match &spec.command {
        Command::Argv(argv) => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(ValidationError::new("command", "the command is empty; give a program to run, e.g. `owl add -- ./backup.sh`"));
            }
            if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
                return Err(ValidationError::new(format!("command.argv[{i}]"), "contains a NUL byte, which no program argument can hold"));
            }
        }
        Command::Shell(s) => {
            if s.trim().is_empty() {
                return Err(ValidationError::new("command.shell", "the shell command is empty; give a command string"));
            }
            if s.contains('\0') {
                return Err(ValidationError::new("command.shell", "contains a NUL byte, which no shell command can hold"));
            }
        }
        Command::Cli { cli, prompt, .. } => {
            if cli.trim().is_empty() {
                return Err(ValidationError::new("cli", "is empty; name a profile such as claude or codex, or custom:'COMMAND {prompt}'"));
            }
            if let Some(t) = cli.strip_prefix("custom:") {
                let argv = crate::coding::split_template(t).map_err(|m| ValidationError::new("cli", m))?;
                if argv.is_empty() || !argv.iter().any(|a| a.contains("{prompt}")) {
                    return Err(ValidationError::new("cli", "a custom command must contain {prompt} where the prompt goes"));
                }
            } else {
                check_name("cli", "coding CLI profile", cli)?;
            }
            if prompt.trim().is_empty() {
                return Err(ValidationError::new("prompt", "the prompt is empty; say what the coding CLI should do"));
            }
            if prompt.len() > MAX_PROMPT_BYTES {
                return Err(ValidationError::new("prompt", format!("is {} bytes; at most {MAX_PROMPT_BYTES} are allowed", prompt.len())));
            }
        }
        Command::Agent { agent, prompt, route, .. } => {
            match route {
                // Asked for capabilities: routed to an agent at submission.
                Some(r) if agent.is_empty() => {
                    crate::routing::check_request(&r.needs, r.complexity).map_err(|(f, m)| ValidationError::new(f, m))?
                }
                _ => check_name("agent", "agent", agent)?,
            }
            if prompt.trim().is_empty() {
                return Err(ValidationError::new("prompt", "the prompt is empty; say what the agent should do"));
            }
            if prompt.len() > MAX_PROMPT_BYTES {
                return Err(ValidationError::new("prompt", format!("is {} bytes; at most {MAX_PROMPT_BYTES} are allowed", prompt.len())));
            }
        }
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ValidationError::new(format!("env.{k}"), "environment variable names must be non-empty and contain no `=` or NUL"));
        }
        if v.contains('\0') {
            return Err(ValidationError::new(format!("env.{k}"), "the value contains a NUL byte"));
        }
    }
    if let Some(r) = &spec.repo {
        if spec.cwd.is_some() {
            return Err(ValidationError::new("cwd", "a repository task works in its own worktree; give either `cwd` or `repo`, not both"));
        }
        if !r.path.starts_with('/') {
            return Err(ValidationError::new("repo.path", format!("`{}` must be an absolute path to a git repository", r.path)));
        }
        // Given to git as arguments: nothing that git could read as an option.
        let git_word = |field: &str, what: &str, v: &str| -> Result<(), ValidationError> {
            if v.is_empty() || v.starts_with('-') || v.chars().any(|c| c.is_whitespace() || c.is_control()) || v.contains("..") {
                return Err(ValidationError::new(field, format!("`{v}` is not a usable {what}: no leading `-`, spaces or `..`")));
            }
            Ok(())
        };
        if let Some(b) = &r.base {
            git_word("repo.base", "branch or commit", b)?;
        }
        if let Some(p) = &r.push {
            git_word("repo.push", "remote name", p)?;
        }
        if r.pr && r.push.is_none() {
            return Err(ValidationError::new(
                "repo.push",
                "a pull request needs the branch pushed: name the remote in `push` (the CLI's --pr pushes to origin)",
            ));
        }
        if let Some(g) = &r.github {
            if crate::coding::parse_issue_ref(&format!("{g}#1")).is_err() {
                return Err(ValidationError::new("repo.github", format!("`{g}` is not a GitHub repository; write it as owner/name")));
            }
        }
        if r.issue == Some(0) {
            return Err(ValidationError::new("repo.issue", "issue numbers start at 1"));
        }
    }
    check_name("group", "group", &spec.group)?;
    if spec.max_attempts == 0 || spec.max_attempts > MAX_ATTEMPTS_LIMIT {
        return Err(ValidationError::new(
            "max_attempts",
            format!("must be between 1 and {MAX_ATTEMPTS_LIMIT} (retries + 1); got {}", spec.max_attempts),
        ));
    }
    if let Some(t) = spec.timeout_ms {
        if t == 0 || t > MAX_TIMEOUT_MS {
            return Err(ValidationError::new("timeout", "must be more than 0 and at most 366 days, e.g. 30m"));
        }
    }
    if spec.depends_on.len() > MAX_DEPENDENCIES {
        return Err(ValidationError::new("after", format!("at most {MAX_DEPENDENCIES} dependencies per task")));
    }
    if spec.labels.len() > MAX_LABELS {
        return Err(ValidationError::new("labels", format!("at most {MAX_LABELS} labels per task")));
    }
    for (i, l) in spec.labels.iter().enumerate() {
        check_name(&format!("labels[{i}]"), "label", l)?;
    }
    if let Some(k) = &spec.idempotency_key {
        if k.is_empty() || k.len() > 256 {
            return Err(ValidationError::new("idempotency_key", "must be 1 to 256 characters"));
        }
    }
    let mut total = 0usize;
    for (i, input) in spec.inputs.iter().enumerate() {
        let f = &input.file;
        if f.is_empty() || f.len() > 128 || f.contains('/') || f.contains('\0') || f == "." || f == ".." {
            return Err(ValidationError::new(format!("inputs[{i}].file"), "must be a plain file name (no `/`), e.g. payload.json"));
        }
        if input.env.is_empty() || !input.env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ValidationError::new(format!("inputs[{i}].env"), "must be an environment variable name like OWL_PAYLOAD"));
        }
        total += input.content.len();
    }
    if total > MAX_INPUT_BYTES {
        return Err(ValidationError::new("inputs", format!("at most {MAX_INPUT_BYTES} bytes of input files per task")));
    }
    if let Some(c) = &spec.cwd {
        if !c.starts_with('/') {
            return Err(ValidationError::new("cwd", format!("`{c}` is not an absolute path; give the full path of the working directory")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec::new(Command::Argv(vec!["true".into()]))
    }

    #[test]
    fn a_plain_spec_is_valid() {
        check_spec(&spec()).unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(Box<dyn Fn(&mut TaskSpec)>, &str)> = vec![
            (Box::new(|s| s.command = Command::Argv(vec![])), "command"),
            (Box::new(|s| s.command = Command::Shell("  ".into())), "command.shell"),
            (Box::new(|s| s.group = "has space".into()), "group"),
            (Box::new(|s| s.max_attempts = 0), "max_attempts"),
            (Box::new(|s| s.timeout_ms = Some(0)), "timeout"),
            (Box::new(|s| s.labels = vec!["ok".into(), "".into()]), "labels[1]"),
            (Box::new(|s| s.idempotency_key = Some(String::new())), "idempotency_key"),
            (Box::new(|s| s.cwd = Some("rel/dir".into())), "cwd"),
            (Box::new(|s| drop(s.env.insert("A=B".into(), "x".into()))), "env.A=B"),
        ];
        for (mutate, field) in cases {
            let mut s = spec();
            mutate(&mut s);
            assert_eq!(check_spec(&s).unwrap_err().field, field);
        }
    }
}
