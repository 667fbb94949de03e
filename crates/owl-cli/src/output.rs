//! Text output helpers: tables, relative times, JSON printing.

use owl_core::Timestamp;
use serde::Serialize;

pub fn print_json(v: &impl Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// `3s ago`, `in 2m`.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let (d, future) = if t > now { (t.since(now), true) } else { (now.since(t), false) };
    let s = d.as_secs();
    // Two units at most: precise enough to plan by, short enough for a table.
    let text = if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        two(s / 60, "m", s % 60, "s")
    } else if s < 86400 {
        two(s / 3600, "h", (s % 3600) / 60, "m")
    } else {
        two(s / 86400, "d", (s % 86400) / 3600, "h")
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

fn two(a: u64, ua: &str, b: u64, ub: &str) -> String {
    if b == 0 {
        format!("{a}{ua}")
    } else {
        format!("{a}{ua}{b}{ub}")
    }
}

pub fn now() -> Timestamp {
    Timestamp::from_system(std::time::SystemTime::now())
}

/// Prints rows as aligned columns; the last column is not padded.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let s: Vec<String> =
            cells.into_iter().enumerate().map(|(i, c)| if i == last { c } else { format!("{c:<w$}", w = widths[i]) }).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}
