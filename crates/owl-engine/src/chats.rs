//! Chat turns as engine jobs. The dispatch loop owns them as it owns runners: one turn per
//! chat at a time (two turns of one chat would interleave their transcripts), each holding a
//! worker slot, ended by `[agent] chat_timeout`, cancellable, and interrupted on shutdown. A
//! panicking turn ends with an error its client sees, and never wedges the loop.

use crate::host::EngineHost;
use crate::{Command, Engine, Shared};
use owl_agent::msg::Delta;
use owl_agent::{AgentEnd, Halt, Host, Job};
use owl_core::agent::Owner as CoreOwner;
use owl_store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What a client of a chat turn receives, in order: deltas, then one end.
#[derive(Debug)]
pub enum ChatUpdate {
    Delta(Delta),
    End(ChatEnd),
}

/// How a chat turn ended, in words a person reads.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatEnd {
    Answered(String),
    Failed(String),
}

/// Why a message could not start a turn.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("chat {0} is still answering the previous message; wait for it, or cancel it with POST /v1/chats/{0}/cancel")]
    Busy(i64),
    #[error("no turn of chat {0} is running")]
    NotRunning(i64),
    #[error("the daemon is shutting down; send the message again once it is back")]
    ShuttingDown,
    #[error("{0}")]
    NoSuchAgent(String),
}

/// A turn waiting for (or holding) a worker slot.
pub(crate) struct ChatJob {
    pub chat: i64,
    pub message: String,
    pub updates: mpsc::UnboundedSender<ChatUpdate>,
}

impl std::fmt::Debug for ChatJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatJob").field("chat", &self.chat).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts a turn of `chat` with the user's `message`; its deltas and end arrive on the
    /// returned channel. The turn belongs to the engine: a client that goes away does not
    /// stop it, and its transcript is kept either way.
    pub async fn chat_message(&self, chat: i64, message: String) -> Result<mpsc::UnboundedReceiver<ChatUpdate>, ChatError> {
        self.shared.store.get_chat(chat).await?;
        let (updates, rx) = mpsc::unbounded_channel();
        let (accepted, answer) = oneshot::channel();
        let job = ChatJob { chat, message, updates };
        self.shared.commands.send(Command::Chat(job, accepted)).map_err(|_| ChatError::ShuttingDown)?;
        answer.await.map_err(|_| ChatError::ShuttingDown)??;
        Ok(rx)
    }

    /// Starts a chat with `agent` (the first configured agent when none is named).
    pub async fn create_chat(&self, agent: Option<String>) -> Result<owl_store::ChatInfo, ChatError> {
        let rt = self.shared.agents().ok_or_else(|| ChatError::NoSuchAgent("no agents are configured; see `owl config init`".into()))?;
        let agent = match agent {
            Some(a) => a,
            None => rt.agents().first().map(|a| a.name.clone()).ok_or_else(|| ChatError::NoSuchAgent("no agents are configured".into()))?,
        };
        if rt.agent(&agent).is_none() {
            return Err(ChatError::NoSuchAgent(format!("there is no agent `{agent}`; see `owl agents`")));
        }
        Ok(self.shared.store.create_chat(&agent, self.shared.clock.now()).await?)
    }

    /// Cancels the running (or waiting) turn of `chat`.
    pub async fn cancel_chat_turn(&self, chat: i64) -> Result<(), ChatError> {
        self.shared.store.get_chat(chat).await?;
        let (reply, answer) = oneshot::channel();
        self.shared.commands.send(Command::CancelChat(chat, reply)).map_err(|_| ChatError::ShuttingDown)?;
        if answer.await.map_err(|_| ChatError::ShuttingDown)? {
            Ok(())
        } else {
            Err(ChatError::NotRunning(chat))
        }
    }
}

/// The words for an agent's end as a chat turn's end.
pub(crate) fn chat_end(end: AgentEnd, timeout: Duration) -> ChatEnd {
    match end {
        AgentEnd::Succeeded { answer } => ChatEnd::Answered(answer),
        AgentEnd::Failed { reason } => ChatEnd::Failed(format!("the agent failed: {reason}")),
        AgentEnd::TimedOut => ChatEnd::Failed(format!(
            "the turn took longer than [agent] chat_timeout ({}) and was stopped",
            owl_core::duration::format(timeout)
        )),
        AgentEnd::Cancelled { reason } => {
            ChatEnd::Failed(format!("the turn was cancelled{}", reason.map(|r| format!(": {r}")).unwrap_or_default()))
        }
        AgentEnd::Interrupted { reason } => ChatEnd::Failed(format!("the turn was interrupted: {reason}")),
        AgentEnd::Paused { reason, .. } => ChatEnd::Failed(format!("over budget: {reason}")),
    }
}

/// Runs one turn: appends the user's message, runs the loop, streams deltas, remembers the
/// exchange. Returns the end, which the dispatch loop sends once it has freed the chat, so a
/// client that sees the end may send the next message at once.
pub(crate) async fn run_chat_turn(s: Arc<Shared>, job: ChatJob, halt: watch::Receiver<Option<Halt>>, timeout: Duration) -> ChatEnd {
    let ChatJob { chat, message, updates } = job;
    // The engine's own tests inject a panic through the message.
    #[cfg(test)]
    if message == "owl-test:panic" {
        panic!("injected chat turn panic");
    }
    match turn(&s, chat, message, &updates, halt, timeout).await {
        Ok(end) => chat_end(end, timeout),
        Err(e) => {
            tracing::error!(chat, error = %e, "a chat turn could not be recorded");
            ChatEnd::Failed(format!("the turn could not be recorded: {e}"))
        }
    }
}

async fn turn(
    s: &Arc<Shared>,
    chat: i64,
    message: String,
    updates: &mpsc::UnboundedSender<ChatUpdate>,
    halt: watch::Receiver<Option<Halt>>,
    timeout: Duration,
) -> Result<AgentEnd, StoreError> {
    let info = s.store.get_chat(chat).await?;
    let Some(rt) = s.agents() else {
        return Ok(AgentEnd::Failed { reason: "no agents are configured; see `owl config init`".into() });
    };
    let title: String = message.lines().next().unwrap_or("").chars().take(60).collect();
    s.store.touch_chat(chat, Some(title), s.clock.now()).await?;
    let host: Arc<dyn Host> = Arc::new(EngineHost { shared: s.clone(), log: None });
    let mem = s.config().memory;
    let recalled = crate::memory::recall(s, &info.agent, &message, mem.recall_k, mem.recall_tokens, Some(&format!("chat:{chat}"))).await;
    let agent = info.agent.clone();
    let job = Job {
        owner: CoreOwner::Chat(chat),
        agent: info.agent,
        prompt: format!("{}{message}", recalled.block),
        workspace: s.layout.root().join("chats").join(chat.to_string()),
        attempt: 1,
        depth: 0,
        timeout: Some(timeout),
        env: std::env::vars().collect(),
        withheld_env: s.withheld_env.read().unwrap_or_else(|p| p.into_inner()).clone(),
        chat_turn: true,
        team: false,
    };
    let tx = updates.clone();
    let mut sink = move |d: Delta| {
        let _ = tx.send(ChatUpdate::Delta(d));
    };
    let end = owl_agent::run_job(&rt, job, host, halt, Some(&mut sink)).await;
    if mem.remember_chats {
        if let AgentEnd::Succeeded { answer } = &end {
            crate::memory::remember_chat_turn(s, chat, &agent, &message, answer, &recalled.texts).await;
        }
    }
    Ok(end)
}
