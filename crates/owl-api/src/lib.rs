//! owl-api: the JSON wire types of the HTTP API, shared by the server and the CLI.
//!
//! Requests reject unknown fields. Replies are views built from owl-core types by explicit
//! conversions, so the domain can change without silently changing the wire format. One
//! module per area; everything is re-exported here.

pub mod agent;
pub mod anomaly;
pub mod budget;
pub mod common;
pub mod group;
pub mod mcp;
pub mod memory;
pub mod notify;
pub mod schedule;
pub mod task;
pub mod trigger;

pub use agent::*;
pub use anomaly::*;
pub use budget::*;
pub use common::*;
pub use group::*;
pub use mcp::*;
pub use memory::*;
pub use notify::*;
pub use task::*;
