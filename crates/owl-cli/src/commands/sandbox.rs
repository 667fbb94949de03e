//! `owl sandbox check`: what isolation this machine supports, and what is enforced.

use crate::output::print_json;
use anyhow::Result;

pub fn check(json: bool) -> Result<()> {
    let caps = owl_sandbox::check();
    if json {
        print_json(&serde_json::json!({
            "capabilities": caps,
            "enforced_for": {
                "agent_shell_calls": "always, unless the agent sets sandbox = false",
                "coding_cli_tasks": "always, unless the task says --no-sandbox",
                "plain_shell_tasks": "with --sandbox, in [sandbox] groups, or all when [sandbox] shell_default = true",
            },
        }));
        return Ok(());
    }
    for c in &caps {
        println!("{:<18} {:<4} {}", c.name, if c.available { "yes" } else { "NO" }, c.detail);
    }
    println!();
    println!("Enforced for agent shell calls (unless the agent sets sandbox = false), coding CLI tasks (unless");
    println!("--no-sandbox), and plain shell tasks run with --sandbox, in a [sandbox] group, or everywhere with");
    println!("[sandbox] shell_default = true.");
    if caps.iter().any(|c| !c.available) {
        println!("A sandboxed task that needs a missing protection does not run; --no-sandbox opts out explicitly.");
    }
    Ok(())
}
