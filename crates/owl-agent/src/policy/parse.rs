//! The shell parser: a command line split into every simple command it contains, the way a
//! POSIX shell would split it, with a nesting limit.

use super::Word;

/// How deeply subshells, substitutions and backticks may nest in one command line. The
/// parser recurses once per level; a model (or a resumed transcript) must not be able to
/// overflow the daemon's stack with `((((((...`.
const MAX_NESTING: u32 = 32;
/// The longest command line the policy reads; a longer one is denied, not parsed.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

/// Splits a command string into simple commands (nested substitutions become their own).
pub(super) fn parse(src: &str) -> Result<Vec<Vec<Word>>, String> {
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
