//! One module per resource.

pub mod agents;
pub mod anomalies;
pub mod budgets;
pub mod events;
pub mod groups;
pub mod health;
pub mod logs;
pub mod mcp_servers;
pub mod memory;
pub mod notify;
pub mod reports;
pub mod schedules;
pub mod status;
pub mod tasks;
pub mod team;
pub mod triggers;
