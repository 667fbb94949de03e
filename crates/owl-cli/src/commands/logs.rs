//! `owl logs`: print or follow an attempt's output.

use crate::cli::LogsArgs;
use crate::client::Client;
use anyhow::Result;
use futures_util::StreamExt;
use owl_core::TaskId;
use std::io::Write;

/// With `json`, each chunk of output becomes one line `{"task":..,"attempt":..,"text":".."}`.
pub async fn run(client: &Client, args: LogsArgs, json: bool) -> Result<()> {
    let id: TaskId = args.id.parse().map_err(|m: String| anyhow::anyhow!(m))?;
    let mut q = vec![];
    if args.follow {
        q.push("follow=true".to_string());
    }
    if let Some(a) = args.attempt {
        q.push(format!("attempt={a}"));
    }
    let path = format!("/v1/tasks/{id}/logs{}{}", if q.is_empty() { "" } else { "?" }, q.join("&"));
    let resp = client.request(reqwest::Method::GET, &path, None::<&()>).await?;
    let mut stream = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| anyhow::anyhow!("the log stream broke off: {e}"))?;
        let written = if json {
            let line = serde_json::json!({"task": id, "attempt": args.attempt, "text": String::from_utf8_lossy(&chunk)});
            writeln!(out, "{line}").and_then(|_| out.flush())
        } else {
            out.write_all(&chunk).and_then(|_| out.flush())
        };
        if written.is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    Ok(())
}
