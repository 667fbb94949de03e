//! Daylight-saving golden files: the fires of four cron expressions around the 2026
//! transitions of America/New_York and Europe/Berlin, in local and UTC time. The expected
//! behaviour is cronie's: a fixed-time job in the skipped hour runs once right after the jump,
//! one in the repeated hour runs once (the first time), wildcard jobs follow the wall clock.
//!
//! `OWL_BLESS=1 cargo test -p owl-core --test dst` rewrites the files; review the diff.

use owl_core::schedule::{Compiled, When};
use owl_core::Timestamp;

const EXPRS: [&str; 4] = ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/15 * * * *"];

fn render(tz: &str, from: &str, to: &str) -> String {
    let from = Timestamp::parse_rfc3339(from).unwrap();
    let to = Timestamp::parse_rfc3339(to).unwrap();
    let mut out = format!("# {tz}: fires from {from} to {to}\n");
    for expr in EXPRS {
        let c = Compiled::new(When::Cron { expr: expr.into(), tz: tz.into() }).unwrap();
        out.push_str(&format!("\n[{expr}]\n"));
        let mut t = from;
        while let Some(next) = c.next_after(t) {
            if next > to {
                break;
            }
            out.push_str(&format!("{}  =  {}\n", c.local(next), next));
            t = next;
        }
    }
    out
}

fn check(name: &str, tz: &str, from: &str, to: &str) {
    let got = render(tz, from, to);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("OWL_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; run with OWL_BLESS=1 to create it", path.display()));
    assert_eq!(got, want, "{name} differs from its golden file");
}

#[test]
fn new_york_spring_forward_2026() {
    // 2026-03-08 02:00 EST becomes 03:00 EDT.
    check("new_york_spring_2026", "America/New_York", "2026-03-08T04:00:00Z", "2026-03-08T09:00:00Z");
}

#[test]
fn new_york_fall_back_2026() {
    // 2026-11-01 02:00 EDT becomes 01:00 EST: 01:00-02:00 happens twice.
    check("new_york_fall_2026", "America/New_York", "2026-11-01T03:00:00Z", "2026-11-01T09:00:00Z");
}

#[test]
fn berlin_spring_forward_2026() {
    // 2026-03-29 02:00 CET becomes 03:00 CEST.
    check("berlin_spring_2026", "Europe/Berlin", "2026-03-28T23:00:00Z", "2026-03-29T03:00:00Z");
}

#[test]
fn berlin_fall_back_2026() {
    // 2026-10-25 03:00 CEST becomes 02:00 CET: 02:00-03:00 happens twice.
    check("berlin_fall_2026", "Europe/Berlin", "2026-10-24T22:00:00Z", "2026-10-25T03:00:00Z");
}
