//! End-to-end tests: the real `owl` binary, started as a daemon in a temp dir and driven
//! through its CLI and its HTTP API. One test binary, many modules.

mod agents;
mod api;
mod budget;
mod cli;
mod coding;
mod crash;
mod dashboard;
mod fuzz;
mod harness;
mod lifecycle;
mod mcp;
mod memory;
mod notify;
mod observability;
mod real_cli;
mod sandbox;
mod scale_out;
mod schedules;
mod team;
mod triggers;
