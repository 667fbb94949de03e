//! Long-term memory in the engine: the handle the daemon installs, recall into an agent's
//! prompt, and what agents leave behind (a memory per finished task, per chat turn).
//!
//! Memory work (embedding, index) is CPU-bound and synchronous, so it runs on the blocking pool.

use crate::{Engine, Shared};
use owl_memory::{Filter, Memory, NewMemory, Query, RECALL_MARKER};
use std::sync::Arc;

impl Shared {
    pub(crate) fn memory(&self) -> Option<Arc<Memory>> {
        self.memory.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Engine {
    /// Installs long-term memory (`None` turns it off).
    pub fn set_memory(&self, m: Option<Arc<Memory>>) {
        *self.shared.memory.write().unwrap_or_else(|p| p.into_inner()) = m;
    }

    pub fn memory(&self) -> Option<Arc<Memory>> {
        self.shared.memory()
    }
}

/// Runs memory work off the async threads.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<String> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| E::from(format!("memory work panicked: {e}")))?
}

/// What was recalled for a prompt: the block to put before it, and the recalled items' texts
/// (kept so they are not stored back as part of a task memory).
#[derive(Default)]
pub(crate) struct Recall {
    pub block: String,
    pub ids: Vec<i64>,
    pub texts: Vec<String>,
}

/// The memories most relevant to `prompt` for `agent`, within the configured count and token
/// budget, each cited by id. Items from `skip_source` (the chat being continued, whose turns
/// are already in its history) are left out.
pub(crate) async fn recall(s: &Shared, agent: &str, prompt: &str, k: usize, token_budget: usize, skip_source: Option<&str>) -> Recall {
    let Some(m) = s.memory() else { return Recall::default() };
    if k == 0 || token_budget == 0 {
        return Recall::default();
    }
    let q = Query {
        text: prompt.chars().take(2000).collect(),
        k,
        filter: Filter { agent: Some(agent.to_string()), ..Default::default() },
        ..Default::default()
    };
    let hits = match blocking(move || m.search(&q)).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "memory recall failed; the agent runs without it");
            return Recall::default();
        }
    };
    let mut r = Recall::default();
    let mut used = 0usize;
    for h in hits.into_iter().filter(|h| skip_source.is_none() || h.item.source.as_deref() != skip_source) {
        let line = format!("{RECALL_MARKER}{}] ({}) {}\n", h.item.id, h.item.kind, h.item.text.replace('\n', " "));
        // About four characters per token.
        let cost = line.len() / 4 + 1;
        if used + cost > token_budget {
            break;
        }
        used += cost;
        r.block.push_str(&line);
        r.ids.push(h.item.id);
        r.texts.push(h.item.text);
    }
    if !r.block.is_empty() {
        r.block = format!(
            "Memories that may be relevant (from earlier work; they can be outdated). Cite one as [memory N] when you rely on it.\n{}\n",
            r.block
        );
    }
    r
}

/// Removes recalled material from text about to be remembered: lines carrying the recall
/// marker, and verbatim copies of what was recalled.
pub(crate) fn strip_recalled(text: &str, recalled: &[String]) -> String {
    let mut out: String = text.lines().filter(|l| !l.contains(RECALL_MARKER)).collect::<Vec<_>>().join("\n");
    for r in recalled {
        if r.len() >= 12 {
            out = out.replace(r.as_str(), "(recalled memory)");
        }
    }
    out
}

fn clip(s: &str, n: usize) -> String {
    let t: String = s.chars().take(n).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// A finished agent task: what was asked, what was done, tools used, outcome.
pub(crate) struct FinishedTask<'a> {
    pub id: owl_core::TaskId,
    pub agent: &'a str,
    pub prompt: &'a str,
    pub outcome: &'a str,
    pub result: Option<&'a str>,
    pub tools: &'a [String],
}

/// A finished agent task, remembered (what `recalled` brought in is cut out).
pub(crate) async fn remember_task(s: &Shared, t: FinishedTask<'_>, recalled: &[String]) {
    let FinishedTask { id: task_id, agent, prompt, outcome, result, tools } = t;
    let Some(m) = s.memory() else { return };
    let answer = strip_recalled(result.unwrap_or(""), recalled);
    let tools = if tools.is_empty() { "none".to_string() } else { tools.join(", ") };
    let text = format!(
        "Task {task_id} ({outcome}): asked: {}\nDone: {}\nTools used: {tools}",
        clip(&strip_recalled(prompt, recalled), 600),
        clip(answer.trim(), 1500),
    );
    let item = NewMemory {
        text,
        kind: "task".into(),
        tags: vec![format!("agent:{agent}"), outcome.to_string()],
        source: Some(format!("task:{task_id}")),
        agent: Some(agent.to_string()),
        user: None,
    };
    if let Err(e) = blocking(move || m.add(item)).await {
        tracing::warn!(task = %task_id, error = %e, "cannot remember the finished task");
    }
}

/// One chat turn, remembered as conversation.
pub(crate) async fn remember_chat_turn(s: &Shared, chat: i64, agent: &str, user_text: &str, reply: &str, recalled: &[String]) {
    let Some(m) = s.memory() else { return };
    let text = format!(
        "In chat {chat} the user said: {}\nThe agent answered: {}",
        clip(user_text, 1000),
        clip(&strip_recalled(reply, recalled), 1500)
    );
    let item = NewMemory {
        text,
        kind: "conversation".into(),
        tags: vec![format!("agent:{agent}")],
        source: Some(format!("chat:{chat}")),
        agent: Some(agent.to_string()),
        user: None,
    };
    if let Err(e) = blocking(move || m.add(item)).await {
        tracing::warn!(chat, error = %e, "cannot remember the chat turn");
    }
}

/// Deletes memories past their kind's retention: hourly, or at half the shortest retention.
pub(crate) async fn retention_loop(s: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let retention = s.config().memory.retention.clone();
        let every = retention
            .values()
            .min()
            .map(|d| (*d / 2).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(3600)))
            .unwrap_or(std::time::Duration::from_secs(3600));
        if let Some(m) = s.memory() {
            let now = s.clock.now().millis();
            for (kind, keep) in retention {
                let before = now - keep.as_millis() as i64;
                let m = m.clone();
                match blocking(move || m.db().expire(&kind, before).map(|n| (kind, n))).await {
                    Ok((kind, n)) if n > 0 => tracing::info!(kind = %kind, items = n, "expired memories past their retention"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "memory retention failed"),
                }
            }
        }
        if !crate::sleep_unless_stopped(every, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_recalled;

    #[test]
    fn recalled_material_is_cut_from_what_is_remembered() {
        let recalled = vec!["The user prefers concise answers without emoji.".to_string()];
        let answer = "[recalled memory #3] (preference) The user prefers concise answers without emoji.\nDone. Per memory: The user prefers concise answers without emoji.";
        let out = strip_recalled(answer, &recalled);
        assert!(!out.contains("without emoji"), "{out}");
        assert!(out.contains("Done."));
    }
}
