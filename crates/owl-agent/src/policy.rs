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
}

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
        Ok(Policy { allow: rules(allow, "allow")?, deny: rules(deny, "deny")?, default })
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

const MAX_DEPTH: u32 = 16;

/// Peels wrappers off one simple command and adds what really runs (and anything nested).
fn unwrap_into(mut argv: Vec<Word>, out: &mut Vec<Vec<Word>>, depth: u32) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("the command nests too deeply to check".into());
    }
    // Leading assignments (FOO=bar cmd) and the grouping words of `{ ...; }`, `!` and `time`
    // are not programs. Drained at once: removing one by one is quadratic on a long line.
    let lead = argv.iter().take_while(|w| is_assignment(&w.text)).count();
    argv.drain(..lead);
    let lead = argv.iter().take_while(|w| matches!(w.text.as_str(), "{" | "}" | "!" | "time")).count();
    argv.drain(..lead);
    let Some(first) = argv.first() else { return Ok(()) };
    if first.dynamic {
        out.push(argv);
        return Ok(());
    }
    let prog = first.text.rsplit('/').next().unwrap_or(&first.text).to_string();
    let rest = |skip: usize| argv[skip.min(argv.len())..].to_vec();
    // Skips options of a wrapper; `with_value` are options that take the next word.
    let after_options = |start: usize, with_value: &[&str]| -> usize {
        let mut i = start;
        while i < argv.len() {
            let t = &argv[i].text;
            if t == "--" {
                return i + 1;
            }
            if !t.starts_with('-') || t == "-" {
                break;
            }
            i += if with_value.contains(&t.as_str()) { 2 } else { 1 };
        }
        i
    };
    match prog.as_str() {
        "env" => {
            let mut i = after_options(1, &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"]);
            if let Some(pos) = argv.iter().position(|w| w.text == "-S" || w.text == "--split-string") {
                // env -S "cmd args" runs a split string: check it as a script.
                if let Some(s) = argv.get(pos + 1) {
                    for c in parse(&s.text)? {
                        unwrap_into(c, out, depth + 1)?;
                    }
                }
            }
            while i < argv.len() && is_assignment(&argv[i].text) {
                i += 1;
            }
            unwrap_into(rest(i), out, depth + 1)
        }
        "sudo" | "doas" => unwrap_into(rest(after_options(1, &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"])), out, depth + 1),
        "nice" => unwrap_into(rest(after_options(1, &["-n", "--adjustment"])), out, depth + 1),
        "ionice" => unwrap_into(rest(after_options(1, &["-c", "-n", "-p", "-P", "-u"])), out, depth + 1),
        "nohup" | "command" | "builtin" | "exec" | "setsid" | "stdbuf" | "unbuffer" | "chronic" => {
            unwrap_into(rest(after_options(1, &["-o", "-e", "-i", "-a"])), out, depth + 1)
        }
        "timeout" => {
            let i = after_options(1, &["-s", "--signal", "-k", "--kill-after"]);
            unwrap_into(rest(i + 1), out, depth + 1) // the duration
        }
        "xargs" => unwrap_into(
            rest(after_options(1, &["-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--delimiter", "--max-args", "--max-procs"])),
            out,
            depth + 1,
        ),
        "busybox" => unwrap_into(rest(1), out, depth + 1),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "mksh" | "fish" => {
            // `sh -c SCRIPT`: the script is what runs. Options may be bundled: -ec, -lc.
            let c_at = argv.iter().skip(1).position(|w| w.text.starts_with('-') && !w.text.starts_with("--") && w.text.contains('c'));
            match c_at {
                Some(p) => {
                    let script = argv.get(p + 2).ok_or_else(|| format!("`{prog} -c` without a script"))?;
                    if script.dynamic {
                        out.push(vec![Word { text: prog.clone(), dynamic: false }, Word { text: "-c".into(), dynamic: true }]);
                        out.push(vec![Word { text: script.text.clone(), dynamic: true }]);
                        return Ok(());
                    }
                    out.push(argv[..p + 2].to_vec());
                    for c in parse(&script.text)? {
                        unwrap_into(c, out, depth + 1)?;
                    }
                    Ok(())
                }
                None => {
                    out.push(argv);
                    Ok(())
                }
            }
        }
        "eval" => {
            let script = argv[1..].iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
            if argv[1..].iter().any(|w| w.dynamic) {
                out.push(vec![Word { text: "eval".into(), dynamic: true }]);
                return Ok(());
            }
            out.push(vec![argv[0].clone()]);
            for c in parse(&script)? {
                unwrap_into(c, out, depth + 1)?;
            }
            Ok(())
        }
        "find" => {
            // find ... -exec CMD ... ; runs CMD for each file.
            let mut i = 1;
            let mut own = vec![argv[0].clone()];
            while i < argv.len() {
                let t = argv[i].text.as_str();
                if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
                    let end = argv[i + 1..].iter().position(|w| w.text == ";" || w.text == "+").map(|p| i + 1 + p).unwrap_or(argv.len());
                    own.push(argv[i].clone());
                    unwrap_into(argv[i + 1..end].to_vec(), out, depth + 1)?;
                    i = end + 1;
                } else {
                    own.push(argv[i].clone());
                    i += 1;
                }
            }
            out.push(own);
            Ok(())
        }
        _ => {
            out.push(argv);
            Ok(())
        }
    }
}

fn is_assignment(t: &str) -> bool {
    match t.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// How deeply subshells, substitutions and backticks may nest in one command line. The
/// parser recurses once per level; a model (or a resumed transcript) must not be able to
/// overflow the daemon's stack with `((((((...`.
const MAX_NESTING: u32 = 32;
/// The longest command line the policy reads; a longer one is denied, not parsed.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

/// Splits a command string into simple commands (nested substitutions become their own).
fn parse(src: &str) -> Result<Vec<Vec<Word>>, String> {
    parse_nested(src, 0)
}

fn parse_nested(src: &str, nesting: u32) -> Result<Vec<Vec<Word>>, String> {
    if src.len() > MAX_COMMAND_LEN {
        return Err(format!("the command is {} bytes long; at most {MAX_COMMAND_LEN} are checked", src.len()));
    }
    let mut p = Parser { chars: src.chars().collect(), pos: 0, out: Vec::new(), nesting };
    p.script(None)?;
    Ok(p.out)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    out: Vec<Vec<Word>>,
    nesting: u32,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    /// Parses a nested script up to `close`, one level deeper.
    fn nested(&mut self, close: char) -> Result<(), String> {
        if self.nesting >= MAX_NESTING {
            return Err(format!("the command nests more than {MAX_NESTING} levels deep"));
        }
        self.nesting += 1;
        let r = self.script(Some(close));
        self.nesting -= 1;
        r
    }
    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    /// Reads commands until `close` (or the end). Each finished simple command goes to `out`.
    fn script(&mut self, close: Option<char>) -> Result<(), String> {
        let mut cmd: Vec<Word> = Vec::new();
        let mut skip_next_word = false; // the target of a redirection
        loop {
            let Some(c) = self.peek() else {
                if let Some(cl) = close {
                    return Err(format!("missing a closing `{cl}`"));
                }
                break;
            };
            if Some(c) == close {
                self.pos += 1;
                break;
            }
            match c {
                ' ' | '\t' => self.pos += 1,
                '\\' if self.peek2() == Some('\n') => self.pos += 2,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                ';' | '&' | '|' | '\n' | '(' | ')' => {
                    if c == ')' {
                        return Err("an unmatched `)`".into());
                    }
                    if c == '(' {
                        // A subshell: its commands are commands like any other.
                        self.pos += 1;
                        self.finish(&mut cmd);
                        self.nested(')')?;
                        continue;
                    }
                    if c == '&' && self.peek2() == Some('>') {
                        self.pos += 2;
                        if self.peek() == Some('>') {
                            self.pos += 1;
                        }
                        skip_next_word = true;
                        continue;
                    }
                    self.pos += 1;
                    self.finish(&mut cmd);
                }
                '<' | '>' => {
                    if self.peek2() == Some('(') {
                        // Process substitution <(cmd) / >(cmd).
                        self.pos += 2;
                        let saved = std::mem::take(&mut cmd);
                        self.nested(')')?;
                        cmd = saved;
                        cmd.push(Word { text: "<(..)".into(), dynamic: true });
                        continue;
                    }
                    // A redirection; a file-descriptor number before it is not an argument.
                    if cmd.last().is_some_and(|w| {
                        !w.dynamic
                            && w.text.chars().all(|d| d.is_ascii_digit())
                            && self.pos > 0
                            && self.chars[self.pos - 1].is_ascii_digit()
                    }) {
                        cmd.pop();
                    }
                    self.pos += 1;
                    while matches!(self.peek(), Some('<' | '>' | '&' | '|')) {
                        self.pos += 1;
                    }
                    skip_next_word = true;
                }
                _ => {
                    let w = self.word()?;
                    if skip_next_word {
                        skip_next_word = false;
                    } else {
                        cmd.push(w);
                    }
                }
            }
        }
        self.finish(&mut cmd);
        Ok(())
    }

    fn finish(&mut self, cmd: &mut Vec<Word>) {
        if !cmd.is_empty() {
            self.out.push(std::mem::take(cmd));
        }
    }

    /// One word, with quotes removed and substitutions parsed out as their own commands.
    fn word(&mut self) -> Result<Word, String> {
        let mut w = Word { text: String::new(), dynamic: false };
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => break,
                '\'' => {
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => return Err("an unterminated single quote".into()),
                            Some('\'') => {
                                self.pos += 1;
                                break;
                            }
                            Some(c) => {
                                w.text.push(c);
                                self.pos += 1;
                            }
                        }
                    }
                }
                '"' => {
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => return Err("an unterminated double quote".into()),
                            Some('"') => {
                                self.pos += 1;
                                break;
                            }
                            Some('\\') => {
                                if let Some(n) = self.peek2() {
                                    if !"\"\\$`\n".contains(n) {
                                        w.text.push('\\');
                                    }
                                    w.text.push(n);
                                }
                                self.pos += 2;
                            }
                            Some('$') | Some('`') => self.dollar_or_backtick(&mut w)?,
                            Some(c) => {
                                w.text.push(c);
                                self.pos += 1;
                            }
                        }
                    }
                }
                '\\' => {
                    if let Some(n) = self.peek2() {
                        w.text.push(n);
                    }
                    self.pos += 2;
                }
                '$' | '`' => self.dollar_or_backtick(&mut w)?,
                _ => {
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
        Ok(w)
    }

    fn dollar_or_backtick(&mut self, w: &mut Word) -> Result<(), String> {
        let c = self.peek().expect("called on $ or `");
        if c == '`' {
            self.pos += 1;
            let start = self.pos;
            while self.peek().is_some_and(|c| c != '`') {
                self.pos += 1;
            }
            if self.peek().is_none() {
                return Err("an unterminated backtick".into());
            }
            let inner: String = self.chars[start..self.pos].iter().collect();
            self.pos += 1;
            if self.nesting >= MAX_NESTING {
                return Err(format!("the command nests more than {MAX_NESTING} levels deep"));
            }
            self.out.extend(parse_nested(&inner, self.nesting + 1)?);
            w.text.push_str("`..`");
            w.dynamic = true;
            return Ok(());
        }
        match self.peek2() {
            Some('(') => {
                self.pos += 2;
                if self.peek() == Some('(') {
                    // $(( arithmetic )): no command runs, but its value is unknown.
                    let mut depth = 0;
                    while let Some(c) = self.peek() {
                        self.pos += 1;
                        if c == '(' {
                            depth += 1;
                        } else if c == ')' {
                            if depth == 0 {
                                break;
                            }
                            depth -= 1;
                        }
                    }
                    if self.peek() == Some(')') {
                        self.pos += 1;
                    }
                } else {
                    let saved = std::mem::take(&mut self.out);
                    self.nested(')')?;
                    let inner = std::mem::replace(&mut self.out, saved);
                    self.out.extend(inner);
                }
                w.text.push_str("$(..)");
                w.dynamic = true;
            }
            Some('{') => {
                self.pos += 2;
                while self.peek().is_some_and(|c| c != '}') {
                    self.pos += 1;
                }
                if self.peek().is_none() {
                    return Err("an unterminated ${".into());
                }
                self.pos += 1;
                w.text.push_str("${..}");
                w.dynamic = true;
            }
            Some(n) if n.is_ascii_alphanumeric() || "_?$!#@*-".contains(n) => {
                self.pos += 1;
                if n.is_ascii_alphabetic() || n == '_' {
                    while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        self.pos += 1;
                    }
                } else {
                    self.pos += 1;
                }
                w.text.push_str("$..");
                w.dynamic = true;
            }
            _ => {
                w.text.push('$');
                self.pos += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(default: PolicyDefault) -> Policy {
        Policy::new(
            &["ls".into(), "cat".into(), "echo".into(), "git status".into(), "grep".into(), "true".into()],
            &["rm".into(), "git push".into(), "curl".into()],
            default,
        )
        .unwrap()
    }

    fn denied(v: Verdict) -> bool {
        matches!(v, Verdict::Deny(_))
    }

    #[test]
    fn plain_allowed_commands_pass() {
        let p = policy(PolicyDefault::Deny);
        for c in ["ls -la", "git status -s", "cat a.txt | grep x > out.txt", "echo 'a; rm -rf /'", "ls && echo done", "/bin/ls"] {
            assert_eq!(p.check(c), Verdict::Allow, "{c}");
        }
    }

    #[test]
    fn denied_commands_cannot_be_smuggled() {
        let p = policy(PolicyDefault::Allow);
        for c in [
            "rm -rf /",
            "/bin/rm x",
            "ls; rm x",
            "ls && rm x",
            "ls || rm x",
            "ls | rm x",
            "ls & rm x",
            "ls\nrm x",
            "echo $(rm x)",
            "echo \"$(rm x)\"",
            "echo `rm x`",
            "cat <(rm x)",
            "(rm x)",
            "{ rm x; }",
            "env rm x",
            "env -i FOO=1 rm x",
            "FOO=1 rm x",
            "sudo -u root rm x",
            "nice -n 5 rm x",
            "timeout 5 rm x",
            "nohup rm x",
            "xargs rm",
            "bash -c 'rm x'",
            "sh -ec \"ls; rm x\"",
            "env bash -c 'env sh -c \"rm x\"'",
            "eval rm x",
            "find . -exec rm {} ;",
            "git push origin main",
            "command rm x",
            "exec rm x",
            "r\\m x",
            "'rm' x",
            "\"r\"m x",
            "busybox rm x",
            "ls > /dev/null; curl http://x",
        ] {
            assert!(denied(p.check(c)), "`{c}` got through: {:?}", p.check(c));
        }
    }

    #[test]
    fn programs_computed_at_run_time_are_never_allowed_by_a_rule() {
        let p = policy(PolicyDefault::Allow);
        assert!(matches!(p.check("$CMD x"), Verdict::Ask(_)));
        assert!(matches!(p.check("$(echo rm) x"), Verdict::Ask(_)));
        assert!(matches!(p.check("bash -c \"$SCRIPT\""), Verdict::Ask(_)));
        assert!(denied(policy(PolicyDefault::Deny).check("${X} y")));
    }

    #[test]
    fn unmatched_commands_follow_the_default() {
        assert_eq!(policy(PolicyDefault::Allow).check("make test"), Verdict::Allow);
        assert!(denied(policy(PolicyDefault::Deny).check("make test")));
        assert!(matches!(policy(PolicyDefault::Ask).check("ls; make test"), Verdict::Ask(_)));
        // A deny elsewhere in the line wins over an ask.
        assert!(denied(policy(PolicyDefault::Ask).check("make test; rm x")));
    }

    #[test]
    fn unparseable_commands_are_denied() {
        let p = policy(PolicyDefault::Allow);
        for c in ["echo 'oops", "echo \"oops", "echo $(ls", "ls )", "echo `x"] {
            assert!(denied(p.check(c)), "{c}");
        }
    }

    #[test]
    fn redirection_targets_are_not_arguments_and_fd_numbers_are_dropped() {
        let p = Policy::new(&["echo hi".into()], &[], PolicyDefault::Deny).unwrap();
        assert_eq!(p.check("echo hi 2>/dev/null >out.txt"), Verdict::Allow);
        assert_eq!(p.check("echo hi &>log"), Verdict::Allow);
    }

    #[test]
    fn bad_rules_are_reported() {
        assert!(Policy::new(&["ls; rm".into()], &[], PolicyDefault::Ask).unwrap_err().contains("shell_allow"));
    }

    #[test]
    fn deep_nesting_is_denied_not_a_stack_overflow() {
        let p = policy(PolicyDefault::Allow);
        for (open, close) in [("(", ")"), ("$(", ")"), ("<(", ")"), ("$(echo $(", "))")] {
            let deep = format!("{}true{}", open.repeat(5_000), close.repeat(5_000));
            match p.check(&deep) {
                Verdict::Deny(why) => assert!(why.contains("levels deep"), "{open}: {why}"),
                v => panic!("{open}: {v:?}"),
            }
        }
        // Backticks nest through escapes: each level is parsed again.
        let mut cmd = "true".to_string();
        for _ in 0..200 {
            cmd = format!("echo `{}`", cmd.replace('\\', "\\\\").replace('`', "\\`"));
            if cmd.len() > 60_000 {
                break;
            }
        }
        assert!(denied(p.check(&cmd)), "deep backticks");
        // `sh -c` inside `sh -c` is bounded by the wrapper depth.
        let mut cmd = "rm -rf x".to_string();
        for _ in 0..100 {
            cmd = format!("sh -c '{}'", cmd.replace('\'', "'\\''"));
            if cmd.len() > 60_000 {
                break;
            }
        }
        assert!(denied(p.check(&cmd)));
        assert!(denied(p.check(&"a".repeat(MAX_COMMAND_LEN + 1))));
        // Ordinary nesting is still read through.
        assert!(denied(p.check("echo $( (cat $(rm x)) )")));
        assert_eq!(p.check("echo $( (cat $(ls)) )"), Verdict::Allow);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever a model writes, the policy answers; it never panics.
        #[test]
        fn any_command_line_gets_a_verdict(src in prop_oneof![
            any::<String>(),
            "[()$`'\"\\;&|<>{}!#= a-z\n\x00]{0,400}",
            (1usize..3000).prop_map(|n| format!("{}ls", "sudo env nice ".repeat(n))),
            (1usize..3000).prop_map(|n| format!("{}ls", "A=1 ".repeat(n))),
        ]) {
            for default in [PolicyDefault::Allow, PolicyDefault::Ask, PolicyDefault::Deny] {
                let _ = policy(default).check(&src);
            }
            let _ = Policy::new(std::slice::from_ref(&src), &[], PolicyDefault::Deny);
        }
    }
}
