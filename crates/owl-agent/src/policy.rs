//! The shell command policy: allow and deny rules matched on parsed argv.
//!
//! A command string is parsed the way a POSIX shell would split it: sequences (`;`, `&&`,
//! `||`, `&`, newlines), pipelines, subshells, command substitutions (`$(..)`, backticks,
//! `<(..)`), redirections, quoting and escapes. Each simple command found anywhere, nested
//! ones included, is unwrapped (`env`, `sudo`, `nice`, `timeout`, `xargs`, `sh -c`,
//! `eval`, `find -exec`...) down to the program that really runs, and that argv is matched
//! against the rules. A deny anywhere denies the whole command; a command whose program
//! cannot be known (`$CMD args`) is never allowed by a rule.

use owl_core::agent::PolicyDefault;

mod parse;
#[cfg(test)]
mod tests;
mod unwrap;

use parse::parse;
pub use parse::MAX_COMMAND_LEN;
use unwrap::unwrap_into;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(String),
    Ask(String),
}

/// A word of a parsed command: its text, and whether expansion makes it unknowable.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Word {
    text: String,
    dynamic: bool,
}

#[derive(Clone, Debug)]
pub struct Policy {
    allow: Vec<Vec<String>>,
    deny: Vec<Vec<String>>,
    default: PolicyDefault,
    /// With `PolicyDefault::Sandboxed`: the sandbox gives the calls the network.
    net: bool,
}

/// Programs that reach the network: under `sandboxed` they are asked unless the agent has it.
const NEEDS_NET: &[&str] =
    &["curl", "wget", "ssh", "scp", "sftp", "rsync", "nc", "ncat", "netcat", "telnet", "ftp", "socat", "dig", "nslookup", "ping"];
/// Programs and subcommands that install software or need privileges the sandbox withholds:
/// under `sandboxed` they are always asked.
const NEEDS_MORE: &[&[&str]] = &[
    &["sudo"],
    &["su"],
    &["doas"],
    &["mount"],
    &["umount"],
    &["chroot"],
    &["docker"],
    &["podman"],
    &["systemctl"],
    &["apt"],
    &["apt-get"],
    &["dnf"],
    &["yum"],
    &["brew"],
    &["pip", "install"],
    &["pip3", "install"],
    &["npm", "install"],
    &["npm", "i"],
    &["npx"],
    &["yarn", "add"],
    &["pnpm", "add"],
    &["cargo", "install"],
    &["gem", "install"],
    &["go", "install"],
    &["git", "push"],
    &["git", "pull"],
    &["git", "fetch"],
    &["git", "clone"],
];

impl Policy {
    pub fn new(allow: &[String], deny: &[String], default: PolicyDefault) -> Result<Policy, String> {
        let rules = |list: &[String], what: &str| -> Result<Vec<Vec<String>>, String> {
            list.iter()
                .map(|r| {
                    let cmds = parse(r).map_err(|e| format!("shell_{what} rule `{r}`: {e}"))?;
                    match cmds.as_slice() {
                        [one] if !one.is_empty() => Ok(one.iter().map(|w| w.text.clone()).collect()),
                        _ => Err(format!("shell_{what} rule `{r}` must be one simple command such as `git push`")),
                    }
                })
                .collect()
        };
        Ok(Policy { allow: rules(allow, "allow")?, deny: rules(deny, "deny")?, default, net: false })
    }

    /// The policy as it applies to calls that do (`Some(net)`, with or without the network)
    /// or do not (`None`) run in the sandbox: `sandboxed` without a sandbox is `ask`.
    pub fn for_calls(mut self, sandbox: Option<bool>) -> Policy {
        match (self.default, sandbox) {
            (PolicyDefault::Sandboxed, None) => self.default = PolicyDefault::Ask,
            (PolicyDefault::Sandboxed, Some(net)) => self.net = net,
            _ => {}
        }
        self
    }

    /// The verdict on a whole command string.
    pub fn check(&self, command: &str) -> Verdict {
        let cmds = match parse(command) {
            Ok(c) => c,
            Err(e) => return Verdict::Deny(format!("the command cannot be parsed safely: {e}")),
        };
        let mut simple = Vec::new();
        for c in cmds {
            if let Err(e) = unwrap_into(c, &mut simple, 0) {
                return Verdict::Deny(e);
            }
        }
        let mut ask: Option<String> = None;
        for argv in &simple {
            if argv.is_empty() {
                continue;
            }
            let shown = argv.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
            if argv[0].dynamic {
                let why = format!("`{shown}`: the program is computed at run time, so no rule can vouch for it");
                match self.default {
                    PolicyDefault::Deny => return Verdict::Deny(why),
                    _ => {
                        ask.get_or_insert(why);
                        continue;
                    }
                }
            }
            if let Some(rule) = self.deny.iter().find(|r| matches(r, argv)) {
                return Verdict::Deny(format!("`{shown}` is denied by the rule `{}`", rule.join(" ")));
            }
            if self.allow.iter().any(|r| matches(r, argv)) {
                continue;
            }
            match self.default {
                PolicyDefault::Allow => {}
                PolicyDefault::Deny => return Verdict::Deny(format!("`{shown}` matches no allow rule and the default is deny")),
                PolicyDefault::Ask => {
                    ask.get_or_insert(format!("`{shown}` matches no allow rule"));
                }
                PolicyDefault::Sandboxed => {
                    let program = argv[0].text.rsplit('/').next().unwrap_or(&argv[0].text);
                    if !self.net && NEEDS_NET.contains(&program) {
                        ask.get_or_insert(format!("`{shown}` needs the network, which the sandbox does not give this agent"));
                    } else if let Some(r) = NEEDS_MORE.iter().find(|r| {
                        let rule: Vec<String> = r.iter().map(|w| w.to_string()).collect();
                        matches(&rule, argv)
                    }) {
                        ask.get_or_insert(format!("`{shown}`: `{}` needs more than the sandbox gives", r.join(" ")));
                    }
                }
            }
        }
        match ask {
            Some(why) => Verdict::Ask(why),
            None => Verdict::Allow,
        }
    }
}

/// A rule matches when its words are a prefix of the argv; the program is compared by its
/// file name (`/bin/rm` is `rm`); `*` matches any one word and a trailing `*` a word prefix.
fn matches(rule: &[String], argv: &[Word]) -> bool {
    if rule.len() > argv.len() {
        return false;
    }
    rule.iter().zip(argv).enumerate().all(|(i, (r, w))| {
        if w.dynamic && r != "*" {
            return false;
        }
        let text = if i == 0 { w.text.rsplit('/').next().unwrap_or(&w.text) } else { w.text.as_str() };
        let r = if i == 0 { r.rsplit('/').next().unwrap_or(r) } else { r.as_str() };
        r == "*" || r == text || (r.ends_with('*') && text.starts_with(&r[..r.len() - 1]))
    })
}
