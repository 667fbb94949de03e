//! The report as one standalone HTML page: inline CSS, inline SVG charts, no script.

use crate::build::{seconds, Report};
use crate::sections::{preamble, sections, Body, Cell, Table};
use crate::svg::{bar_chart, escape};

const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #eee;vertical-align:top}\
th{background:#f6f6f6}.bad{color:#b00020;font-weight:bold}code{font-size:.9em}.charts svg{max-width:100%;height:auto}\
@media (max-width:600px){table{font-size:.8em}}";

fn cell(c: &Cell) -> String {
    let text = escape(&c.text);
    match (&c.link, c.code, c.alarm) {
        (Some(l), _, _) => format!("<a href=\"{}\">{text}</a>", escape(l)),
        (None, true, _) => format!("<code>{text}</code>"),
        (None, false, true) => format!("<span class=\"bad\">{text}</span>"),
        _ => text,
    }
}

fn table(out: &mut String, t: &Table) {
    out.push_str("<table><thead><tr>");
    for h in &t.head {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{}</td>", cell(c)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

pub fn render_html(r: &Report) -> String {
    let mut o = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>",
        t = escape(&r.title)
    );
    for p in preamble(r) {
        o.push_str(&format!("<p>{}</p>", escape(&p)));
    }
    o.push_str(&format!("<p><strong>{}.</strong></p>", escape(&r.headline())));
    for s in sections(r) {
        o.push_str(&format!("<h2 id=\"{}\">{}</h2>", s.id, escape(&s.title)));
        for p in &s.paragraphs {
            o.push_str(&format!("<p>{}</p>", escape(p)));
        }
        match &s.body {
            Body::None => {}
            Body::Table(t) => table(&mut o, t),
            Body::Tables(ts) => {
                for (title, t) in ts {
                    o.push_str(&format!("<h3>{}</h3>", escape(title)));
                    table(&mut o, t);
                }
            }
            Body::Charts(_) => {
                o.push_str("<div class=\"charts\">");
                for chart in charts(r) {
                    o.push_str(&chart);
                }
                o.push_str("</div>");
            }
        }
    }
    o.push_str("</body></html>\n");
    o
}

/// The report's two charts: run time and cost per bucket.
pub fn charts(r: &Report) -> [String; 2] {
    let time: Vec<(String, f64)> = r.buckets.iter().map(|b| (b.label.clone(), b.run_seconds)).collect();
    let cost: Vec<(String, f64)> = r.buckets.iter().map(|b| (b.label.clone(), b.cost_usd)).collect();
    [
        bar_chart(&format!("Run time per {}", r.bucket), &time, seconds),
        bar_chart(&format!("Cost per {} (USD)", r.bucket), &cost, |v| format!("${v:.2}")),
    ]
}
