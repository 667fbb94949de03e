//! One module per command group.

pub mod add;
pub mod agents;
pub mod budget;
pub mod config;
pub mod doctor;
pub mod groups;
pub mod logs;
pub mod mcp;
pub mod memory;
pub mod notify;
pub mod sandbox;
pub mod schedule;
pub mod tasks;
pub mod team;
pub mod trigger;
pub mod wait;
