//! The `owl` binary: daemon and client in one. The only crate that picks concrete types.
//!
//! Exit codes: 0 success; 1 error (or, for `wait`, a task that did not succeed); 2 usage;
//! 3 the daemon is not running; 124 `wait --timeout` ran out.

mod agents_setup;
mod cli;
mod client;
mod commands;
mod daemon;
mod memory_setup;
mod output;
mod paths;
mod settings;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};

fn main() {
    // The sandbox trampoline runs first, before any thread exists: `owl __sandbox-exec -- argv`.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(owl_sandbox::SUBCOMMAND) {
        sandbox_exec(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some(owl_sandbox::netproxy::SUBCOMMAND) {
        owl_sandbox::netproxy::serve();
    }
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let data_dir = paths::data_dir(cli.data_dir.clone());
    let config = paths::config_file(cli.config.clone());
    let json = cli.json;
    let Some(command) = cli.command else {
        print!("{}", intro());
        std::process::exit(0);
    };
    let code = match command {
        Command::Sandbox { action: cli::SandboxAction::Check } => report(commands::sandbox::check(json).map(|_| 0), json),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "owl", &mut std::io::stdout());
            0
        }
        Command::Doctor => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            report(rt.block_on(commands::doctor::run(config, &data_dir, json)), json)
        }
        Command::Mcp { action: cli::McpAction::Serve { socket: Some(socket), .. } } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            report(rt.block_on(commands::mcp::bridge(&socket)).map(|_| 0), json)
        }
        Command::Mcp { action: cli::McpAction::Serve { approvals, socket: None } } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            report(rt.block_on(commands::mcp::serve(config, &data_dir, approvals)).map(|_| 0), json)
        }
        // Trying a server given on the command line needs no daemon.
        Command::Mcp { action } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            report(rt.block_on(commands::mcp::run(action, &data_dir, json)), json)
        }
        Command::Migrate { store, from } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            report(rt.block_on(daemon::migrate(config, store, from, json)).map(|_| 0), json)
        }
        Command::Config { action } => report(commands::config::run(action, config, &data_dir, json).map(|_| 0), json),
        Command::Cron { action: cli::CronAction::Next(a) } => report(
            settings::load(&config.0, config.1).and_then(|s| commands::schedule::cron_next(a, &s.scheduler.default_tz, json)).map(|_| 0),
            json,
        ),
        Command::Daemon(mut args) => {
            few_malloc_arenas();
            // `owl --json daemon` means machine-readable logs.
            if json && args.log_format.is_none() {
                args.log_format = Some("json".into());
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .thread_name("owl-worker")
                .build()
                .expect("tokio runtime");
            report(rt.block_on(daemon::run(data_dir, config, args)).map(|_| 0), json)
        }
        other => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            report(rt.block_on(client_command(other, &data_dir, json)), json)
        }
    };
    std::process::exit(code);
}

async fn client_command(cmd: Command, data_dir: &std::path::Path, json: bool) -> anyhow::Result<i32> {
    let client = client::Client::connect(data_dir)?;
    match cmd {
        Command::Add(a) => commands::add::run(&client, a, json).await?,
        Command::Ls(a) => commands::tasks::ls(&client, a, json).await?,
        Command::Show { id } => commands::tasks::show(&client, &id, json).await?,
        Command::Logs(a) => commands::logs::run(&client, a, json).await?,
        Command::Wait(a) => return commands::wait::run(&client, a, json).await,
        Command::Cancel { ids, reason } => commands::tasks::cancel(&client, &ids, reason, json).await?,
        Command::Retry { ids } => commands::tasks::retry(&client, &ids, json).await?,
        Command::Groups { action } => commands::groups::run(&client, action, json).await?,
        Command::Status => commands::tasks::status(&client, json).await?,
        Command::Nodes => commands::tasks::nodes(&client, json).await?,
        Command::Health => return commands::tasks::health(&client, json).await,
        Command::Schedule { action } => commands::schedule::run(&client, action, json).await?,
        Command::Trigger { action } => commands::trigger::run(&client, action, json).await?,
        Command::Agents { status, action: None } => commands::agents::agents(&client, status, json).await?,
        Command::Agents { action: Some(a), .. } => commands::team::agents_action(&client, a, json).await?,
        Command::Messages { agent, task, thread, limit, action } => {
            commands::team::messages(&client, agent, task, thread, limit, action, json).await?
        }
        Command::Transcript { id, full } => commands::agents::transcript(&client, &id, full, json).await?,
        Command::Chat { cancel: Some(id), .. } => commands::agents::cancel_chat(&client, id, json).await?,
        Command::Chat { agent, resume, list, message, cancel: None } => {
            commands::agents::chat(&client, agent, resume, list, message, json).await?
        }
        Command::Approvals { all } => commands::agents::approvals(&client, all, json).await?,
        Command::Approve { id } => commands::agents::decide(&client, &id, true, None, json).await?,
        Command::Deny { id, reason } => commands::agents::decide(&client, &id, false, reason, json).await?,
        Command::Budget { action } => commands::budget::run(&client, action, json).await?,
        Command::Usage { by, since } => commands::agents::usage(&client, &by, &since, json).await?,
        Command::Dashboard { url } => commands::agents::dashboard(&client, url, json).await?,
        Command::Report { action } => commands::agents::report(&client, action, json).await?,
        Command::Anomalies { since, scope, subject, task, limit } => {
            commands::agents::anomalies(&client, commands::agents::AnomalyArgs { since, scope, subject, task, limit }, json).await?
        }
        Command::Memory { action } => commands::memory::run(&client, action, json).await?,
        Command::Notify { action } => return commands::notify::run(&client, action, json).await,
        Command::Daemon(_)
        | Command::Config { .. }
        | Command::Completions { .. }
        | Command::Migrate { .. }
        | Command::Mcp { .. }
        | Command::Cron { .. }
        | Command::Sandbox { .. }
        | Command::Doctor => {
            unreachable!("handled in main")
        }
    }
    Ok(0)
}

/// Set on the daemon's own re-execution (see [`few_malloc_arenas`]); never seen by tasks.
const ARENAS_SET_VAR: &str = "OWL_MALLOC_ARENAS_SET";
/// How many malloc arenas the daemon runs with, unless `MALLOC_ARENA_MAX` says otherwise.
const MALLOC_ARENAS: &str = "2";

/// Runs the daemon with at most [`MALLOC_ARENAS`] glibc malloc arenas. glibc gives every
/// thread that allocates its own arena, up to eight per core, and each keeps its freed memory:
/// a daemon whose agent ran on a blocking thread, and whose embedder ran on another, holds
/// tens of megabytes it no longer uses (BENCHMARKS.md, footprint). glibc reads the limit from
/// the environment only when a process starts, so the daemon starts itself once more with it
/// set. A limit the user chose (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in
/// `GLIBC_TUNABLES`) is kept; when the re-execution fails the daemon
/// goes on as it is. Runs before any thread exists, so changing the environment is sound.
fn few_malloc_arenas() {
    if std::env::var_os(ARENAS_SET_VAR).is_some() {
        // The limit is read; the tasks the daemon starts get the environment as it was.
        std::env::remove_var(ARENAS_SET_VAR);
        std::env::remove_var("MALLOC_ARENA_MAX");
        return;
    }
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os("MALLOC_ARENA_MAX").is_some() || tuned {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(exe)
        .arg0(std::env::args_os().next().unwrap_or_default())
        .args(std::env::args_os().skip(1))
        .env("MALLOC_ARENA_MAX", MALLOC_ARENAS)
        .env(ARENAS_SET_VAR, "1")
        .exec();
    // Logging is not set up yet.
    eprintln!("owl daemon: cannot start again with MALLOC_ARENA_MAX={MALLOC_ARENAS} ({err}); going on with glibc's default");
}

/// What `owl` alone prints: what it is, and the commands to start with.
fn intro() -> String {
    format!(
        "owl {}: an always-on runtime for tasks and agents that work while you sleep.

Start here:
  owl daemon                                   start the daemon (scripts/start also fetches the local models)
  owl add --agent default \"Tidy notes.md\"      hand the built-in agent a task in its own workspace
  owl add -- ./backup.sh --full                queue a command: run, retried, logged
  owl ls                                       what is queued, running and done (owl show ID, owl logs ID -f)
  owl schedule add nightly --cron \"0 2 * * *\" --agent default \"Summarise today's logs\"
                                               run it every night; read the result in the morning
  owl doctor                                   check the set-up and say how to fix what is wrong

`owl help` lists every command; `owl help COMMAND` explains one.
",
        env!("CARGO_PKG_VERSION")
    )
}

fn report(r: anyhow::Result<i32>, json: bool) -> i32 {
    match r {
        Ok(code) => code,
        Err(e) => {
            let not_running = e.downcast_ref::<client::NotRunning>().is_some();
            if json {
                let code = if not_running { "daemon_not_running" } else { "error" };
                eprintln!("{}", serde_json::json!({"error": {"code": code, "message": format!("{e:#}")}}));
            } else {
                eprintln!("owl: {e:#}");
            }
            if not_running {
                3
            } else {
                1
            }
        }
    }
}

/// Applies the spec in `OWL_SANDBOX_SPEC` to this process and executes the command after `--`.
fn sandbox_exec(rest: &[String]) -> ! {
    let argv: Vec<String> = match rest.first().map(String::as_str) {
        Some("--") => rest[1..].to_vec(),
        _ => rest.to_vec(),
    };
    let spec: owl_sandbox::Spec = match std::env::var(owl_sandbox::SPEC_VAR).ok().map(|j| serde_json::from_str(&j)) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("owl sandbox: {} is not a valid spec: {e}", owl_sandbox::SPEC_VAR);
            std::process::exit(owl_sandbox::EXIT_UNAVAILABLE)
        }
        None => {
            eprintln!("owl sandbox: {} is missing; this subcommand is started by the daemon", owl_sandbox::SPEC_VAR);
            std::process::exit(owl_sandbox::EXIT_UNAVAILABLE)
        }
    };
    // The spec is for this process only; the task does not see it.
    std::env::remove_var(owl_sandbox::SPEC_VAR);
    owl_sandbox::exec(&spec, &argv)
}

/// `owl ls | head` closes the pipe early: the print that fails then ends the process quietly
/// (exit 141, as a shell reports SIGPIPE) instead of with a panic's message.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.starts_with("failed printing to std") && m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default(info);
    }));
}
