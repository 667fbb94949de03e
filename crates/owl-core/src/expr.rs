//! The condition language: a small, safe expression language over named facts.
//!
//! `disk_free_percent < 10 and queue_depth > 100`, `not (failures_last_hour >= 3)`.
//! Numbers, `true`/`false`, the facts in [`FACTS`], `+ - * /`, comparisons, `and`/`or`/`not`
//! (also `&& || !`) and parentheses. There are no functions, strings, assignments or loops,
//! so an expression can only compute a value from the facts it is given. Parsing checks
//! names and types and reports errors with the column they start at.

use std::collections::HashMap;
use std::fmt;

/// The facts an expression may use, with what they mean.
pub const FACTS: &[(&str, &str)] = &[
    ("queue_depth", "tasks queued or waiting"),
    ("running", "tasks running"),
    ("failures_last_hour", "tasks that failed or timed out in the last hour"),
    ("disk_free_percent", "free space on the data dir's filesystem, 0-100"),
    ("memory_free_percent", "available memory, 0-100"),
    ("load_average", "the 1-minute load average"),
];

#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    pub column: usize,
    pub message: String,
    pub source: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (column {})\n  {}\n  {}^", self.message, self.column + 1, self.source, " ".repeat(self.column))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    End,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Num(f64),
    Bool(bool),
    Fact(String),
    Neg(Box<Node>),
    Not(Box<Node>),
    Bin(&'static str, Box<Node>, Box<Node>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Num,
    Bool,
}

/// A parsed, type-checked boolean expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    root: Node,
    pub source: String,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let err = |col: usize, m: String| ExprError { column: col, message: m, source: src.to_string() };
    let b = src.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == '.' && i + 1 < b.len() && (b[i + 1] as char).is_ascii_digit()) {
            while i < b.len() && ((b[i] as char).is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let text = &src[start..i];
            let n: f64 = text.parse().map_err(|_| err(start, format!("`{text}` is not a number")))?;
            out.push((Tok::Num(n), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &src[start..i];
            out.push((
                match word {
                    "and" => Tok::Op("and"),
                    "or" => Tok::Op("or"),
                    "not" => Tok::Op("not"),
                    _ => Tok::Ident(word.to_string()),
                },
                start,
            ));
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        let op: Option<&'static str> = match two {
            "<=" => Some("<="),
            ">=" => Some(">="),
            "==" => Some("=="),
            "!=" => Some("!="),
            "&&" => Some("and"),
            "||" => Some("or"),
            _ => None,
        };
        if let Some(op) = op {
            out.push((Tok::Op(op), start));
            i += 2;
            continue;
        }
        let tok = match c {
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '!' => Tok::Op("not"),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '=' => return Err(err(start, "`=` is not an operator; compare with `==`".into())),
            _ => {
                let other = src.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                return Err(err(start, format!("unexpected `{other}`")));
            }
        };
        out.push((tok, start));
        i += 1;
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// The longest expression accepted, in bytes: far more than any real condition needs, and
/// small enough that an error quoting it stays readable.
pub const MAX_LEN: usize = 1024;
/// How deeply parentheses, `not` and unary `-` may nest. The parser recurses once per level,
/// so without a limit a hostile expression could overflow the daemon's stack.
pub const MAX_NESTING: usize = 32;

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    src: &'a str,
    nesting: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn col(&self) -> usize {
        self.toks[self.pos].1
    }
    fn err(&self, col: usize, m: impl Into<String>) -> ExprError {
        ExprError { column: col, message: m.into(), source: self.src.to_string() }
    }
    /// Enters one level of nesting at `col`, refusing to go past [`MAX_NESTING`].
    fn enter(&mut self, col: usize) -> Result<(), ExprError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.err(col, format!("the expression nests more than {MAX_NESTING} levels deep; simplify it")));
        }
        Ok(())
    }
    fn eat_op(&mut self, ops: &[&'static str]) -> Option<&'static str> {
        if let Tok::Op(o) = self.peek() {
            if ops.contains(o) {
                let o = *o;
                self.pos += 1;
                return Some(o);
            }
        }
        None
    }
    fn binary(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut Self) -> Result<(Node, Ty, usize), ExprError>,
        want: Ty,
        out: Ty,
    ) -> Result<(Node, Ty, usize), ExprError> {
        let (mut left, mut lt, lc) = next(self)?;
        loop {
            let op_col = self.col();
            let Some(op) = self.eat_op(ops) else { return Ok((left, lt, lc)) };
            let (right, rt, rc) = next(self)?;
            if lt != want {
                return Err(self.err(lc, format!("`{op}` needs {} on its left", name(want))));
            }
            if rt != want {
                return Err(self.err(rc, format!("`{op}` needs {} on its right", name(want))));
            }
            let _ = op_col;
            left = Node::Bin(op, Box::new(left), Box::new(right));
            lt = out;
        }
    }
    fn or(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        self.binary(&["or"], Self::and, Ty::Bool, Ty::Bool)
    }
    fn and(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        self.binary(&["and"], Self::not, Ty::Bool, Ty::Bool)
    }
    fn not(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        let col = self.col();
        if self.eat_op(&["not"]).is_some() {
            self.enter(col)?;
            let (n, t, c) = self.not()?;
            self.nesting -= 1;
            if t != Ty::Bool {
                return Err(self.err(c, "`not` needs a true/false value"));
            }
            return Ok((Node::Not(Box::new(n)), Ty::Bool, col));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        let (left, lt, lc) = self.sum()?;
        let Some(op) = self.eat_op(&["<", "<=", ">", ">=", "==", "!="]) else { return Ok((left, lt, lc)) };
        let (right, rt, rc) = self.sum()?;
        if (op == "==" || op == "!=") && lt == rt {
            return Ok((Node::Bin(op, Box::new(left), Box::new(right)), Ty::Bool, lc));
        }
        if lt != Ty::Num {
            return Err(self.err(lc, format!("`{op}` compares numbers; the left side is true/false")));
        }
        if rt != Ty::Num {
            return Err(self.err(rc, format!("`{op}` compares numbers; the right side is true/false")));
        }
        if matches!(self.peek(), Tok::Op("<" | "<=" | ">" | ">=" | "==" | "!=")) {
            return Err(self.err(self.col(), "comparisons do not chain; join them with `and`"));
        }
        Ok((Node::Bin(op, Box::new(left), Box::new(right)), Ty::Bool, lc))
    }
    fn sum(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        self.binary(&["+", "-"], Self::prod, Ty::Num, Ty::Num)
    }
    fn prod(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        self.binary(&["*", "/"], Self::unary, Ty::Num, Ty::Num)
    }
    fn unary(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        let col = self.col();
        if self.eat_op(&["-"]).is_some() {
            self.enter(col)?;
            let (n, t, c) = self.unary()?;
            self.nesting -= 1;
            if t != Ty::Num {
                return Err(self.err(c, "`-` needs a number"));
            }
            return Ok((Node::Neg(Box::new(n)), Ty::Num, col));
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<(Node, Ty, usize), ExprError> {
        let col = self.col();
        let tok = self.peek().clone();
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok((Node::Num(n), Ty::Num, col)),
            Tok::Ident(w) if w == "true" => Ok((Node::Bool(true), Ty::Bool, col)),
            Tok::Ident(w) if w == "false" => Ok((Node::Bool(false), Ty::Bool, col)),
            Tok::Ident(w) => {
                if FACTS.iter().any(|(f, _)| *f == w) {
                    Ok((Node::Fact(w), Ty::Num, col))
                } else {
                    let known: Vec<&str> = FACTS.iter().map(|(f, _)| *f).collect();
                    Err(self.err(col, format!("unknown name `{w}`; known facts: {}", known.join(", "))))
                }
            }
            Tok::LParen => {
                self.enter(col)?;
                let inner = self.or()?;
                self.nesting -= 1;
                if *self.peek() != Tok::RParen {
                    return Err(self.err(self.col(), "expected `)` to close the `(`"));
                }
                self.pos += 1;
                Ok((inner.0, inner.1, col))
            }
            Tok::End => Err(self.err(col, "the expression ends too soon")),
            Tok::RParen => Err(self.err(col, "unexpected `)`")),
            Tok::Op(o) => Err(self.err(col, format!("unexpected `{o}`; expected a number, a fact or `(`"))),
        }
    }
}

fn name(t: Ty) -> &'static str {
    match t {
        Ty::Num => "a number",
        Ty::Bool => "a true/false value",
    }
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.len() > MAX_LEN {
            let head: String = src.chars().take(40).collect();
            return Err(ExprError {
                column: 0,
                message: format!("the expression is {} bytes long; at most {MAX_LEN} are accepted", src.len()),
                source: format!("{head}…"),
            });
        }
        let mut p = Parser { toks: lex(src)?, pos: 0, src, nesting: 0 };
        let (root, ty, col) = p.or()?;
        if *p.peek() != Tok::End {
            return Err(p.err(p.col(), "unexpected text after the end of the expression; join conditions with `and` or `or`"));
        }
        if ty != Ty::Bool {
            return Err(p.err(col, "the condition must be true or false, e.g. `disk_free_percent < 10`"));
        }
        Ok(Expr { root, source: src.to_string() })
    }

    /// Evaluates with the given facts (a missing fact counts as 0).
    pub fn eval(&self, facts: &HashMap<String, f64>) -> bool {
        fn num(n: &Node, f: &HashMap<String, f64>) -> f64 {
            match n {
                Node::Num(v) => *v,
                Node::Fact(k) => f.get(k).copied().unwrap_or(0.0),
                Node::Neg(x) => -num(x, f),
                Node::Bin(op, a, b) => {
                    let (a, b) = (num(a, f), num(b, f));
                    match *op {
                        "+" => a + b,
                        "-" => a - b,
                        "*" => a * b,
                        _ => a / b,
                    }
                }
                _ => f64::NAN,
            }
        }
        fn boolean(n: &Node, f: &HashMap<String, f64>) -> bool {
            match n {
                Node::Bool(b) => *b,
                Node::Not(x) => !boolean(x, f),
                Node::Bin("and", a, b) => boolean(a, f) && boolean(b, f),
                Node::Bin("or", a, b) => boolean(a, f) || boolean(b, f),
                Node::Bin(op @ ("==" | "!="), a, b) if matches!(**a, Node::Bool(_) | Node::Not(_)) || is_bool(a) => {
                    (boolean(a, f) == boolean(b, f)) == (*op == "==")
                }
                Node::Bin(op, a, b) => {
                    let (a, b) = (num(a, f), num(b, f));
                    match *op {
                        "<" => a < b,
                        "<=" => a <= b,
                        ">" => a > b,
                        ">=" => a >= b,
                        "==" => a == b,
                        _ => a != b,
                    }
                }
                _ => false,
            }
        }
        fn is_bool(n: &Node) -> bool {
            match n {
                Node::Bool(_) | Node::Not(_) => true,
                Node::Bin(op, _, _) => matches!(*op, "and" | "or" | "<" | "<=" | ">" | ">=" | "==" | "!="),
                _ => false,
            }
        }
        boolean(&self.root, facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn evaluates_with_precedence_and_parentheses() {
        let f = facts(&[("disk_free_percent", 8.0), ("queue_depth", 150.0), ("failures_last_hour", 1.0)]);
        assert!(Expr::parse("disk_free_percent < 10").unwrap().eval(&f));
        assert!(Expr::parse("disk_free_percent < 10 and queue_depth > 100").unwrap().eval(&f));
        assert!(!Expr::parse("disk_free_percent < 10 and not (queue_depth > 100)").unwrap().eval(&f));
        assert!(Expr::parse("failures_last_hour >= 3 || queue_depth / 2 > 70").unwrap().eval(&f));
        assert!(Expr::parse("-disk_free_percent + 20 == 12").unwrap().eval(&f));
        assert!(Expr::parse("(queue_depth > 1) == true").unwrap().eval(&f));
        assert!(!Expr::parse("running > 0").unwrap().eval(&f), "a missing fact is 0");
    }

    #[test]
    fn errors_point_at_the_column() {
        let cases = [
            ("disk_free < 10", 0, "unknown name `disk_free`"),
            ("queue_depth > ", 14, "ends too soon"),
            ("queue_depth = 3", 12, "`==`"),
            ("queue_depth", 0, "must be true or false"),
            ("1 < 2 < 3", 6, "do not chain"),
            ("(running > 1", 12, "expected `)`"),
            ("running > 1 running", 12, "after the end"),
            ("not running", 4, "`not` needs"),
            ("true + 1 > 0", 0, "needs a number on its left"),
            ("running $ 1", 8, "unexpected `$`"),
        ];
        for (src, col, needle) in cases {
            let e = Expr::parse(src).unwrap_err();
            assert_eq!(e.column, col, "{src}: {e}");
            assert!(e.message.contains(needle), "{src}: {e}");
            assert!(e.to_string().contains(&format!("\n  {}^", " ".repeat(col))), "{e}");
        }
    }
}
