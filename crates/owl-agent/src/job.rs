//! The unit of agent work and how it ends: what the engine hands the loop, and gets back.

use crate::host::Owner;
use std::time::Duration;

/// Why a running job must stop early.
#[derive(Clone, Debug, PartialEq)]
pub enum Halt {
    Cancel(Option<String>),
    /// The daemon is stopping: the job ends where it is and resumes later.
    Interrupt(String),
}

/// One piece of agent work.
pub struct Job {
    pub owner: Owner,
    pub agent: String,
    /// The task's prompt, or the chat's new user message.
    pub prompt: String,
    pub workspace: std::path::PathBuf,
    pub attempt: u32,
    /// How deep in a chain of subtasks (0 = a person's).
    pub depth: u32,
    /// The task's own time limit, if any.
    pub timeout: Option<Duration>,
    /// The daemon's environment, the base of shell calls (scrubbed here).
    pub env: Vec<(String, String)>,
    /// Variables never passed to tools (webhook secrets, the API token).
    pub withheld_env: Vec<String>,
    /// A chat turn: the prompt is appended as a new user message even if a transcript exists.
    pub chat_turn: bool,
    /// A team run: the agent gets `delegate` and the message tools, and the roster.
    pub team: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AgentEnd {
    Succeeded {
        answer: String,
    },
    Failed {
        reason: String,
    },
    TimedOut,
    Cancelled {
        reason: Option<String>,
    },
    Interrupted {
        reason: String,
    },
    /// A budget had no room for the next model call: the work waits and resumes later.
    Paused {
        until: owl_core::Timestamp,
        scope: String,
        reason: String,
    },
}
