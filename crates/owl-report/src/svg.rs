//! Bar charts as standalone SVG: the same drawing goes into the HTML report (inline) and the
//! PDF (as an image), so they agree.

/// Escapes text for XML and HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A bar chart of `points` (label, value) titled `title`, values shown by `fmt`.
pub fn bar_chart(title: &str, points: &[(String, f64)], fmt: fn(f64) -> String) -> String {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 40.0;
    let plot_w = W - LEFT - 10.0;
    let plot_h = H - TOP - BOTTOM;
    let max = points.iter().map(|p| p.1).filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { plot_h / max } else { 0.0 };
    let n = points.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.8).max(1.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, sans-serif" font-size="11" role="img" aria-label="{t}">"#,
        t = escape(title)
    );
    s.push_str(&format!(r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##));
    s.push_str(&format!(r##"<text x="{LEFT}" y="18" font-size="13" font-weight="bold" fill="#222">{}</text>"##, escape(title)));
    let base = TOP + plot_h;
    s.push_str(&format!(r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#888"/>"##, W - 10.0));
    s.push_str(&format!(r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##, LEFT - 6.0, TOP + 4.0, escape(&fmt(max))));
    s.push_str(&format!(r##"<text x="{}" y="{base}" text-anchor="end" fill="#555">{}</text>"##, LEFT - 6.0, escape(&fmt(0.0))));
    let every = (points.len() / 12).max(1);
    for (i, (label, v)) in points.iter().enumerate() {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        let h = v * scale;
        let x = LEFT + i as f64 * slot + (slot - bar) / 2.0;
        s.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" fill="#3b6ea5"><title>{}: {}</title></rect>"##,
            base - h,
            escape(label),
            escape(&fmt(v))
        ));
        if i % every == 0 {
            s.push_str(&format!(
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                x + bar / 2.0,
                base + 14.0,
                escape(label)
            ));
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_well_formed_scaled_and_escaped() {
        let pts = vec![("a<b".to_string(), 2.0), ("c".to_string(), 4.0), ("d".to_string(), f64::NAN)];
        let svg = bar_chart("Cost & time", &pts, |v| format!("{v:.0}"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Cost &amp; time") && svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert_eq!(svg.matches("<rect x=").count(), 3, "one bar per point");
        // The tallest bar fills the plot (150 px); the half-height one is half as tall.
        assert!(svg.contains(r#"height="150.0""#) && svg.contains(r#"height="75.0""#), "{svg}");
        let empty = bar_chart("none", &[], |v| format!("{v}"));
        assert!(empty.ends_with("</svg>"));
    }
}
