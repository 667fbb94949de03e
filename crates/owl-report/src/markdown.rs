//! The report as Markdown (GitHub-flavoured tables).

use crate::build::Report;
use crate::sections::{preamble, sections, Body, Cell, Table};

/// Makes text safe inside a table cell: one line, pipes escaped.
fn cell(c: &Cell) -> String {
    let one: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
    let one = if one.chars().count() > 120 { format!("{}...", one.chars().take(117).collect::<String>()) } else { one };
    let text = one.replace('|', "\\|").replace('<', "&lt;");
    match (&c.link, c.code, c.alarm) {
        (Some(l), _, _) => format!("[{text}]({l})"),
        (None, true, _) => format!("`{text}`"),
        (None, false, true) => format!("**{text}**"),
        _ => text,
    }
}

fn table(out: &mut String, t: &Table) {
    out.push_str(&format!("| {} |\n", t.head.join(" | ")));
    out.push_str(&format!("|{}\n", t.head.iter().map(|_| "---|").collect::<String>()));
    for r in &t.rows {
        out.push_str(&format!("| {} |\n", r.iter().map(cell).collect::<Vec<_>>().join(" | ")));
    }
    out.push('\n');
}

pub fn render_markdown(r: &Report) -> String {
    let mut out = format!("# {}\n\n", r.title);
    for p in preamble(r) {
        out.push_str(&format!("{p}\n\n"));
    }
    out.push_str(&format!("**{}.**\n\n", r.headline()));
    for s in sections(r) {
        out.push_str(&format!("## {}\n\n", s.title));
        for p in &s.paragraphs {
            out.push_str(&format!("{p}\n\n"));
        }
        match &s.body {
            Body::None => {}
            Body::Table(t) | Body::Charts(t) => table(&mut out, t),
            Body::Tables(ts) => {
                for (title, t) in ts {
                    out.push_str(&format!("### {title}\n\n"));
                    table(&mut out, t);
                }
            }
        }
    }
    out
}
