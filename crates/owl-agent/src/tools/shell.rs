//! The `shell` tool: `sh -c` in the workspace under the command policy, with a timeout,
//! capped output, its own process group and a scrubbed environment.

use super::{args, cap, ToolCtx, ToolOutcome};
use crate::policy::Verdict;
use serde::Deserialize;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use tokio::io::AsyncReadExt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    command: String,
}

pub(super) async fn run(ctx: &ToolCtx, arguments: &Value, approved: bool) -> ToolOutcome {
    let a: Args = match args("shell", arguments) {
        Ok(a) => a,
        Err(e) => return ToolOutcome::Err(e),
    };
    match ctx.policy.check(&a.command) {
        Verdict::Allow => {}
        Verdict::Deny(why) => return ToolOutcome::Err(format!("refused by the command policy: {why}")),
        Verdict::Ask(why) if !approved => return ToolOutcome::NeedsApproval(why),
        Verdict::Ask(_) => {}
    }
    let mut argv = vec!["/bin/sh".to_string(), "-c".to_string(), a.command.clone()];
    let mut env = ctx.env.clone();
    let mut cgroup = None;
    if ctx.agent.sandbox {
        let Some(base) = &ctx.sandbox else {
            return ToolOutcome::Err(format!(
                "refused: shell calls of this agent run sandboxed and no sandbox is available here (set agents.{}.sandbox = false to opt out)",
                ctx.agent_name
            ));
        };
        let tmp = ctx.ws.root().join(".tmp");
        let _ = std::fs::create_dir_all(&tmp);
        env.push(("TMPDIR".into(), tmp.display().to_string()));
        let mut writable = vec![ctx.ws.root().to_path_buf()];
        writable.extend(base.writable.iter().cloned());
        cgroup = Some(format!("call-{}-{}", std::process::id(), fastrand::u64(..)));
        let spec = owl_sandbox::Spec {
            writable,
            hidden: base.hidden.clone(),
            network: ctx.agent.allow_net,
            limits: base.limits.clone(),
            cgroup: cgroup.clone(),
            allow_hosts: ctx.agent.allow_hosts.clone(),
            seccomp_net: base.seccomp_net,
        };
        env.push((owl_sandbox::SPEC_VAR.into(), serde_json::to_string(&spec).expect("spec serializes")));
        let mut wrapped = vec![base.exe.display().to_string(), owl_sandbox::SUBCOMMAND.into(), "--".into()];
        wrapped.extend(argv);
        argv = wrapped;
    }
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(ctx.ws.root())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ToolOutcome::Err(format!("cannot start the shell: {e}")),
    };
    let pid = child.id();
    let max = ctx.output_max;
    let out = tokio::spawn(read_capped(child.stdout.take().expect("piped"), max));
    let err = tokio::spawn(read_capped(child.stderr.take().expect("piped"), max));
    let status = match tokio::time::timeout(ctx.shell_timeout, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.wait().await;
            let (o, e) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
            return ToolOutcome::Err(format!(
                "the command was killed after {}s (agent.shell_timeout)\n--- stdout ---\n{o}--- stderr ---\n{e}",
                ctx.shell_timeout.as_secs()
            ));
        }
    };
    // Stragglers in the group (a backgrounded `sleep &`) go with the call.
    if let Some(pid) = pid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    let (o, e) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
    if let Some(c) = &cgroup {
        owl_sandbox::remove_cgroup(c);
    }
    let code = match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".into(),
        },
        None => "ended (status unknown)".into(),
    };
    let text = cap(format!("{code}\n--- stdout ---\n{o}--- stderr ---\n{e}"), max * 2);
    if status.is_some_and(|s| s.success()) {
        ToolOutcome::Ok(text)
    } else {
        ToolOutcome::Err(text)
    }
}

/// Reads a pipe to its end, keeping at most `max` bytes (the rest is drained and counted).
async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin, max: usize) -> String {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped += n.saturating_sub(room);
            }
        }
    }
    let mut s = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        s.push_str(&format!("\n[... {dropped} more bytes not shown]\n"));
    }
    s
}
