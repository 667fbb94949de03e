//! `owl wait`: block until tasks finish. Exit 0 if all succeeded, 1 if any did not, 124 on timeout.

use crate::cli::WaitArgs;
use crate::client::Client;
use anyhow::Result;
use owl_api::WaitReply;
use owl_core::task::Status;
use std::time::{Duration, Instant};

pub async fn run(client: &Client, args: WaitArgs, json: bool) -> Result<i32> {
    let ids = crate::commands::tasks::parse_ids(&args.ids)?;
    let limit = args.timeout.as_deref().map(owl_core::duration::parse).transpose().map_err(|m| anyhow::anyhow!("--timeout: {m}"))?;
    let start = Instant::now();
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    loop {
        let chunk = match limit {
            Some(l) => l.saturating_sub(start.elapsed()).min(Duration::from_secs(60)),
            None => Duration::from_secs(60),
        };
        let reply: WaitReply = client.get(&format!("/v1/wait?ids={list}&timeout={}ms", chunk.as_millis().max(1))).await?;
        let timed_out = !reply.done && limit.is_some_and(|l| start.elapsed() >= l);
        if reply.done || timed_out {
            if json {
                crate::output::print_json(&reply);
            } else {
                for t in &reply.tasks {
                    println!("task {}: {}", t.id, t.status);
                }
            }
            if timed_out {
                eprintln!("gave up waiting after {}", owl_core::duration::format(limit.unwrap_or_default()));
                return Ok(124);
            }
            return Ok(if reply.tasks.iter().all(|t| t.status == Status::Succeeded) { 0 } else { 1 });
        }
    }
}
