//! What a notice says: a plain-text body, an HTML body and the webhook payload, from one
//! notice so every channel tells the same story.

use owl_core::notify::Notice;

/// The plain-text body: what happened, why, and the one thing to do about it.
pub fn text(n: &Notice) -> String {
    let mut out = format!("{}\n\n", n.title);
    if !n.text.is_empty() {
        out.push_str(n.text.trim_end());
        out.push_str("\n\n");
    }
    if let Some(c) = &n.command {
        out.push_str(&format!("Next: {c}\n"));
    }
    if let Some(l) = &n.link {
        out.push_str(&format!("Open: {l}\n"));
    }
    out.push_str(&format!("\n-- \nowl, event {} at {}\n", n.event.as_str(), n.at.to_rfc3339()));
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML body: the same words, escaped, with the command in a code block and the link as
/// a link (http and https only).
pub fn html(n: &Notice) -> String {
    let mut out = String::from("<!doctype html><html><body style=\"font-family:sans-serif\">");
    out.push_str(&format!("<h2>{}</h2>", escape(&n.title)));
    if !n.text.is_empty() {
        out.push_str(&format!("<pre style=\"white-space:pre-wrap\">{}</pre>", escape(n.text.trim_end())));
    }
    if let Some(c) = &n.command {
        out.push_str(&format!("<p>Next: <code>{}</code></p>", escape(c)));
    }
    if let Some(l) = n.link.as_ref().filter(|l| l.starts_with("https://") || l.starts_with("http://")) {
        out.push_str(&format!("<p><a href=\"{}\">Open in owl</a></p>", escape(l)));
    }
    out.push_str(&format!(
        "<p style=\"color:#777;font-size:small\">owl, event {} at {}</p></body></html>",
        n.event.as_str(),
        escape(&n.at.to_rfc3339())
    ));
    out
}

/// The webhook body: `{"type", "timestamp", "data"}` as the Standard Webhooks spec suggests,
/// with the notice as `data`.
pub fn payload(n: &Notice, message_id: &str) -> String {
    serde_json::json!({
        "type": n.event.as_str(),
        "timestamp": n.at.to_rfc3339(),
        "id": message_id,
        "data": n,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_core::notify::EventName;
    use owl_core::Timestamp;

    fn notice() -> Notice {
        Notice {
            event: EventName::TaskFailed,
            key: "task_failed:4:1".into(),
            at: Timestamp(1_800_000_000_000),
            title: "task 4 failed: <script>".into(),
            text: "exit code 1\nlast line: boom & bust".into(),
            command: Some("owl logs 4".into()),
            link: Some("javascript:alert(1)".into()),
            task_id: Some(4),
            labels: vec![],
            group: None,
            schedule: None,
            agent: None,
            attachment: None,
        }
    }

    #[test]
    fn bodies_say_what_why_and_what_next_and_html_is_escaped() {
        let n = notice();
        let t = text(&n);
        assert!(t.starts_with("task 4 failed: <script>\n\nexit code 1\nlast line: boom & bust\n\nNext: owl logs 4\n"), "{t}");
        let h = html(&n);
        assert!(h.contains("task 4 failed: &lt;script&gt;") && h.contains("boom &amp; bust") && h.contains("<code>owl logs 4</code>"));
        assert!(!h.contains("javascript:"), "only http links become links: {h}");
        let p: serde_json::Value = serde_json::from_str(&payload(&n, "msg_1")).unwrap();
        assert_eq!((p["type"].as_str(), p["data"]["task_id"].as_i64()), (Some("task_failed"), Some(4)));
    }
}
