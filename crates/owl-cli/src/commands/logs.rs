//! `owl logs`: print or follow an attempt's output.

use crate::cli::LogsArgs;
use crate::client::Client;
use anyhow::Result;
use futures_util::StreamExt;
use owl_core::TaskId;
use std::io::Write;

pub async fn run(client: &Client, args: LogsArgs) -> Result<()> {
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
        if out.write_all(&chunk).and_then(|_| out.flush()).is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    Ok(())
}
