//! owl-core: the domain of owl as pure data and pure functions.
//!
//! Task specs and their lifecycle, retry and backoff math, dependency checks, validation,
//! events, settings and the data-directory layout. **Nothing here does IO**: no files, no
//! sockets, no clocks (time is always passed in), no async runtime. Every other crate builds
//! on these types, so they change rarely and carefully.

pub mod agent;
pub mod anomaly;
pub mod budget;
pub mod coding;
pub mod config;
pub mod deps;
pub mod duration;
pub mod event;
pub mod expr;
pub mod fields;
pub mod layout;
pub mod lifecycle;
pub mod mcp;
pub mod net;
pub mod notify;
pub mod routing;
pub mod schedule;
pub mod task;
pub mod template;
pub mod time;
pub mod transcript;
pub mod trigger;
pub mod validate;

pub use event::{Event, EventKind};
pub use task::{
    Command, GroupInfo, InputFile, RepoRequest, Run, RunOutcome, SandboxRequest, Task, TaskId, TaskSpec, TaskState, WaitReason,
};
pub use time::Timestamp;
pub use validate::ValidationError;
