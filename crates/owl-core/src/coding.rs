//! Coding CLIs (Claude Code, Codex, Gemini CLI, aider, custom commands): their profiles, and
//! turning a profile and a prompt into an argv with no shell in between.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a CLI reports its work on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CliFormat {
    /// Claude Code's `--output-format stream-json`: `system`, `assistant`, `user`, `result` lines.
    ClaudeStreamJson,
    /// `codex exec --json`: `thread.started`, `item.*`, `turn.completed` lines.
    CodexJson,
    /// Gemini CLI's `--output-format stream-json`: `init`, `message`, `tool_use`, `tool_result`, `result`.
    GeminiStreamJson,
    /// Unstructured output: kept in the log only.
    #[default]
    Raw,
}

/// `[cli.NAME]`: how to run one coding CLI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliProfile {
    /// The argv; `{prompt}` and `{workspace}` are replaced inside arguments (never through a
    /// shell). The prompt must appear somewhere.
    pub command: Vec<String>,
    /// The argv when the task runs with `--no-sandbox`, if it should differ: inside owl's
    /// sandbox a CLI may be let run commands freely (the sandbox confines them), and its own
    /// sandbox may be unable to start there; outside it, the CLI should confine itself.
    #[serde(default)]
    pub unsandboxed_command: Option<Vec<String>>,
    #[serde(default)]
    pub format: CliFormat,
    /// More paths the CLI may write inside the sandbox (its own state directory); `~/` is the
    /// daemon user's home.
    #[serde(default)]
    pub writable: Vec<String>,
    /// Secret-looking variables the CLI needs (its API key), passed into the sandbox.
    #[serde(default)]
    pub grant_env: Vec<String>,
    /// Hosts the CLI reaches through the sandbox's allowlist proxy (its API).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// More environment for the CLI.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Address-space limit in MiB for this CLI instead of `[sandbox] memory_mb`; 0 lifts it
    /// (Node.js reserves far more address space than it uses).
    #[serde(default)]
    pub memory_mb: Option<u64>,
}

pub type CliProfiles = BTreeMap<String, CliProfile>;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn strings_with(base: &[&str], more: &[&str]) -> Vec<String> {
    base.iter().chain(more).map(|s| s.to_string()).collect()
}

// The built-in CLIs' arguments, before what differs inside and outside owl's sandbox.
const CLAUDE: &[&str] = &["claude", "-p", "{prompt}", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"];
const CODEX: &[&str] = &["codex", "exec", "--json"];
const GEMINI: &[&str] = &["gemini", "-p", "{prompt}", "--output-format", "stream-json"];
const AIDER: &[&str] = &["aider", "--yes-always", "--no-auto-commits", "--no-check-update", "--no-pretty"];

/// The profiles owl knows out of the box; `[cli.NAME]` in the config replaces one by name.
pub fn builtin_profiles() -> CliProfiles {
    let mut m = BTreeMap::new();
    m.insert(
        "claude".into(),
        CliProfile {
            // In owl's sandbox: edits and shell commands (tests, builds) without asking, since the
            // sandbox is what confines them. Without it: edits only; commands are refused.
            command: strings_with(CLAUDE, &["--allowedTools", "Bash"]),
            unsandboxed_command: Some(strings(CLAUDE)),
            format: CliFormat::ClaudeStreamJson,
            writable: strings(&["~/.claude", "~/.claude.json", "~/.cache/claude"]),
            grant_env: strings(&["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"]),
            allow_hosts: strings(&["api.anthropic.com", "statsig.anthropic.com"]),
            env: BTreeMap::new(),
            memory_mb: Some(0),
        },
    );
    m.insert(
        "codex".into(),
        CliProfile {
            // Codex's own sandbox (bubblewrap) cannot start inside owl's user namespace; its
            // flag for running inside an outer sandbox is this one. Without owl's sandbox, Codex
            // confines itself to the worktree.
            command: strings_with(CODEX, &["--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check", "{prompt}"]),
            unsandboxed_command: Some(strings_with(CODEX, &["--sandbox", "workspace-write", "--skip-git-repo-check", "{prompt}"])),
            format: CliFormat::CodexJson,
            writable: strings(&["~/.codex"]),
            grant_env: strings(&["OPENAI_API_KEY", "CODEX_API_KEY"]),
            allow_hosts: strings(&["api.openai.com", "chatgpt.com"]),
            env: BTreeMap::new(),
            memory_mb: None,
        },
    );
    m.insert(
        "gemini".into(),
        CliProfile {
            command: strings_with(GEMINI, &["--yolo"]),
            unsandboxed_command: Some(strings_with(GEMINI, &["--approval-mode", "auto_edit"])),
            format: CliFormat::GeminiStreamJson,
            writable: strings(&["~/.gemini"]),
            grant_env: strings(&["GEMINI_API_KEY", "GOOGLE_API_KEY"]),
            allow_hosts: strings(&["generativelanguage.googleapis.com", "oauth2.googleapis.com"]),
            // Headless runs in a folder it has not seen would otherwise fall back to asking.
            env: BTreeMap::from([("GEMINI_CLI_TRUST_WORKSPACE".to_string(), "true".to_string())]),
            memory_mb: Some(0),
        },
    );
    m.insert(
        "aider".into(),
        CliProfile {
            command: strings_with(AIDER, &["--message", "{prompt}"]),
            // --yes-always would also run the shell commands aider suggests.
            unsandboxed_command: Some(strings_with(AIDER, &["--no-suggest-shell-commands", "--message", "{prompt}"])),
            format: CliFormat::Raw,
            writable: strings(&["~/.aider", "~/.cache"]),
            grant_env: strings(&["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY"]),
            allow_hosts: strings(&[
                "api.openai.com",
                "api.anthropic.com",
                "generativelanguage.googleapis.com",
                "api.deepseek.com",
                "openrouter.ai",
            ]),
            env: BTreeMap::new(),
            memory_mb: None,
        },
    );
    m
}

/// The profile a task names: `custom:TEMPLATE`, else a configured one, else a built-in.
pub fn resolve(name: &str, configured: &CliProfiles) -> Result<CliProfile, String> {
    if let Some(template) = name.strip_prefix("custom:") {
        let command = split_template(template)?;
        check_command(&command)?;
        return Ok(CliProfile {
            command,
            unsandboxed_command: None,
            format: CliFormat::Raw,
            writable: vec![],
            grant_env: vec![],
            allow_hosts: vec![],
            env: BTreeMap::new(),
            memory_mb: None,
        });
    }
    if let Some(p) = configured.get(name) {
        check_command(&p.command).map_err(|e| format!("[cli.{name}] command: {e}"))?;
        if let Some(u) = &p.unsandboxed_command {
            check_command(u).map_err(|e| format!("[cli.{name}] unsandboxed_command: {e}"))?;
        }
        return Ok(p.clone());
    }
    if let Some(p) = builtin_profiles().remove(name) {
        return Ok(p);
    }
    let mut known: Vec<String> = builtin_profiles().into_keys().collect();
    known.extend(configured.keys().cloned());
    known.sort();
    known.dedup();
    Err(format!(
        "no coding CLI profile named `{name}`; use one of {} or custom:'COMMAND {{prompt}}', or define [cli.{name}] in the config",
        known.join(", ")
    ))
}

fn check_command(command: &[String]) -> Result<(), String> {
    if command.is_empty() || command[0].trim().is_empty() {
        return Err("the command is empty".into());
    }
    if !command.iter().any(|a| a.contains("{prompt}")) {
        return Err("the command must contain {prompt} where the prompt goes".into());
    }
    Ok(())
}

impl CliProfile {
    /// The argv template for a run inside owl's sandbox or outside it.
    pub fn command_for(&self, sandboxed: bool) -> &[String] {
        match (&self.unsandboxed_command, sandboxed) {
            (Some(u), false) => u,
            _ => &self.command,
        }
    }
}

/// The argv for one run: placeholders replaced inside each argument. The prompt stays one
/// argument (or part of one), whatever it contains: no shell ever sees it.
pub fn render(command: &[String], prompt: &str, workspace: &str) -> Vec<String> {
    command.iter().map(|a| a.replace("{workspace}", workspace).replace("{prompt}", prompt)).collect()
}

/// Splits a custom command template into words the way a shell would split a simple
/// command: whitespace separates, `'…'` and `"…"` quote, `\` escapes. Nothing is expanded.
pub fn split_template(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote in the command template".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated \" quote in the command template".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote in the command template".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("the command template ends with a lone \\".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// What owl did in git for a repository task: its worktree, branch and commit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GitRecord {
    pub repo: String,
    pub worktree: String,
    pub branch: String,
    /// The commit the branch started from.
    pub base: String,
    /// The commit owl made when the task succeeded; `None` before, or when nothing changed.
    #[serde(default)]
    pub commit: Option<String>,
    /// Paths changed by the commit, relative to the repository.
    #[serde(default)]
    pub files_changed: Vec<String>,
    /// The remote the branch was pushed to.
    #[serde(default)]
    pub pushed: Option<String>,
    /// The worktree was removed by the retention policy (the branch stays).
    #[serde(default)]
    pub removed: bool,
    /// The pull request opened (or updated) for the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    /// The comment left on the task's issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_comment: Option<String>,
}

/// `owner/name` from a git remote URL (`git@github.com:owner/name.git`,
/// `https://github.example.com/owner/name`, a path ending in `owner/name.git`).
pub fn repo_slug(remote_url: &str) -> Option<String> {
    let u = remote_url.trim().trim_end_matches('/');
    let u = u.strip_suffix(".git").unwrap_or(u);
    let path = match u.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => u.rsplit_once(':').map(|(_, p)| p).unwrap_or(u),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let [.., owner, name] = parts.as_slice() else { return None };
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (ok(owner) && ok(name)).then(|| format!("{owner}/{name}"))
}

/// The host of a git remote URL (`git@github.com:a/b.git`, `https://github.com/a/b`); `None`
/// for a local path.
pub fn remote_host(remote_url: &str) -> Option<String> {
    let u = remote_url.trim();
    let rest = match u.split_once("://") {
        Some((scheme, rest)) if scheme != "file" => rest,
        Some(_) => return None,
        None if u.starts_with('/') || u.starts_with('.') => return None,
        None => u,
    };
    let host_part = rest.split(['/', ':']).next().unwrap_or_default();
    let host = host_part.rsplit('@').next().unwrap_or_default().to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The web host of a GitHub API root: `api.github.com` is `github.com`; an Enterprise root
/// (`https://HOST/api/v3`) is `HOST`.
pub fn github_host(api_url: &str) -> Option<String> {
    let rest = api_url.split_once("://")?.1;
    let host = rest.split(['/', ':']).next()?.to_ascii_lowercase();
    Some(host.strip_prefix("api.").map(str::to_string).unwrap_or(host))
}

/// `owner/name#42` as (`owner/name`, 42).
pub fn parse_issue_ref(s: &str) -> Result<(String, u64), String> {
    let bad = || format!("`{s}` is not an issue; write it as owner/repo#42");
    let (slug, n) = s.split_once('#').ok_or_else(bad)?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let (owner, name) = slug.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !(ok(owner) && ok(name)) {
        return Err(bad());
    }
    Ok((slug.to_string(), n))
}

/// Expands a leading `~/` with `home`.
pub fn expand_home(path: &str, home: Option<&str>) -> String {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => format!("{}/{rest}", h.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_slugs_come_from_remote_urls_and_issue_refs() {
        for (url, want) in [
            ("git@github.com:acme/app.git", Some("acme/app")),
            ("https://github.com/acme/app", Some("acme/app")),
            ("https://ghe.corp.example/acme/app.git/", Some("acme/app")),
            ("ssh://git@github.com/acme/app.git", Some("acme/app")),
            ("/srv/git/acme/app.git", Some("acme/app")),
            ("app", None),
        ] {
            assert_eq!(repo_slug(url).as_deref(), want, "{url}");
        }
        assert_eq!(parse_issue_ref("acme/app#42"), Ok(("acme/app".to_string(), 42)));
        assert_eq!(remote_host("git@github.com:acme/app.git").as_deref(), Some("github.com"));
        assert_eq!(remote_host("https://user@GHE.corp.example/acme/app").as_deref(), Some("ghe.corp.example"));
        assert_eq!(remote_host("/srv/git/acme/app.git"), None);
        assert_eq!(github_host("https://api.github.com").as_deref(), Some("github.com"));
        assert_eq!(github_host("https://ghe.corp.example/api/v3").as_deref(), Some("ghe.corp.example"));
        for bad in ["acme/app", "acme#4", "acme/app#0", "a b/c#1", "acme/app#x"] {
            assert!(parse_issue_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_split_like_a_simple_shell_command_without_expanding() {
        assert_eq!(split_template("aider --yes --message {prompt}").unwrap(), vec!["aider", "--yes", "--message", "{prompt}"]);
        assert_eq!(split_template(r#"tool 'a b' "c \"d\" $HOME" e\ f ''"#).unwrap(), vec!["tool", "a b", "c \"d\" $HOME", "e f", ""]);
        assert!(split_template("tool 'open").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn the_prompt_stays_one_argument_whatever_it_holds() {
        let cmd = split_template("run --msg {prompt} --in {workspace}").unwrap();
        let nasty = "x'; rm -rf / #\n$(reboot) `id` && echo";
        let argv = render(&cmd, nasty, "/w");
        assert_eq!(argv, vec!["run", "--msg", nasty, "--in", "/w"]);
    }

    #[test]
    fn profiles_resolve_custom_then_configured_then_builtin() {
        let mut configured = CliProfiles::new();
        let mut mine = builtin_profiles()["claude"].clone();
        mine.command = vec!["my-claude".into(), "{prompt}".into()];
        configured.insert("claude".into(), mine);
        assert_eq!(resolve("claude", &configured).unwrap().command[0], "my-claude");
        assert_eq!(resolve("codex", &configured).unwrap().format, CliFormat::CodexJson);
        let c = resolve("custom:aider --message {prompt}", &configured).unwrap();
        assert_eq!(c.format, CliFormat::Raw);
        assert!(resolve("custom:aider --yes", &configured).unwrap_err().contains("{prompt}"));
        let e = resolve("cursor", &configured).unwrap_err();
        assert!(e.contains("claude, codex") && e.contains("[cli.cursor]"), "{e}");
    }

    #[test]
    fn a_profile_may_run_differently_outside_the_sandbox() {
        let p = builtin_profiles();
        let codex = &p["codex"];
        assert!(codex.command_for(true).iter().any(|a| a == "--dangerously-bypass-approvals-and-sandbox"));
        let outside = codex.command_for(false).join(" ");
        assert!(outside.contains("--sandbox workspace-write") && !outside.contains("dangerously"), "{outside}");
        assert!(p["claude"].command_for(true).iter().any(|a| a == "Bash"));
        assert!(!p["claude"].command_for(false).iter().any(|a| a == "Bash"), "no free shell without owl's sandbox");
        let custom = resolve("custom:aider --message {prompt}", &CliProfiles::new()).unwrap();
        assert_eq!(custom.command_for(false), custom.command_for(true));
        for (name, prof) in &p {
            for sandboxed in [true, false] {
                check_command(prof.command_for(sandboxed)).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let mut bad = p["claude"].clone();
        bad.unsandboxed_command = Some(vec!["claude".into()]);
        let e = resolve("claude", &CliProfiles::from([("claude".to_string(), bad)])).unwrap_err();
        assert!(e.contains("[cli.claude] unsandboxed_command") && e.contains("{prompt}"), "{e}");
    }

    #[test]
    fn home_is_expanded_only_at_the_start() {
        assert_eq!(expand_home("~/.claude", Some("/home/u/")), "/home/u/.claude");
        assert_eq!(expand_home("/x/~/y", Some("/home/u")), "/x/~/y");
        assert_eq!(expand_home("~/.claude", None), "~/.claude");
    }
}
