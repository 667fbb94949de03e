//! `owl add`: queue a task.

use crate::cli::{AddArgs, TaskArgs, TaskTagArgs};
use crate::client::Client;
use anyhow::{bail, Result};
use owl_api::{SubmitTask, Submitted};
use std::collections::BTreeMap;

/// The task part, shared with `owl schedule add`.
pub fn build_task(args: TaskArgs, tags: TaskTagArgs) -> Result<SubmitTask> {
    let mut env = BTreeMap::new();
    for e in &args.env {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => bail!("--env: `{e}` is not KEY=VALUE"),
        }
    }
    let cwd = match args.cwd {
        Some(c) => {
            let abs = if c.is_absolute() { c } else { std::env::current_dir()?.join(c) };
            if !abs.is_dir() {
                bail!("--cwd: {} is not a directory", abs.display());
            }
            Some(abs.display().to_string())
        }
        None => None,
    };
    let mut sandbox = None;
    if args.sandbox
        || args.no_sandbox
        || args.allow_net
        || !args.allow_host.is_empty()
        || !args.grant_env.is_empty()
        || !args.writable.is_empty()
    {
        let mut writable = Vec::new();
        for w in &args.writable {
            if !w.is_absolute() {
                bail!("--writable: {} must be an absolute path", w.display());
            }
            writable.push(w.display().to_string());
        }
        sandbox = Some(owl_core::SandboxRequest {
            enabled: if args.no_sandbox {
                Some(false)
            } else if args.sandbox {
                Some(true)
            } else {
                None
            },
            allow_net: args.allow_net,
            allow_hosts: args.allow_host.clone(),
            grant_env: args.grant_env.clone(),
            writable,
        });
    }
    let issue =
        args.from_issue.as_deref().map(owl_core::coding::parse_issue_ref).transpose().map_err(|m| anyhow::anyhow!("--from-issue: {m}"))?;
    if issue.is_some() && args.cli.is_none() && args.agent.is_none() {
        bail!("--from-issue: an issue is worked by an agent or a coding CLI; add --cli NAME or --agent NAME");
    }
    if args.repo.is_none() && issue.is_none() && (args.pr || args.github.is_some()) {
        bail!("--pr and --github need --repo PATH (the repository's clone)");
    }
    let repo_path = args.repo.clone().or_else(|| issue.as_ref().map(|_| std::path::PathBuf::from(".")));
    let repo = match &repo_path {
        Some(r) => {
            let abs = std::path::absolute(r)?;
            if !abs.is_dir() {
                bail!("--repo: {} is not a directory", abs.display());
            }
            let abs = abs.canonicalize().unwrap_or(abs);
            Some(owl_core::RepoRequest {
                path: abs.display().to_string(),
                base: args.base.clone(),
                push: (args.push || args.pr).then(|| args.remote.clone()),
                pr: args.pr,
                github: args.github.clone().or_else(|| issue.as_ref().map(|(slug, _)| slug.clone())),
                issue: issue.as_ref().map(|(_, n)| *n),
            })
        }
        None => None,
    };
    let routed = !args.needs.is_empty() || args.complexity.is_some();
    if args.max_cost.is_some() && args.cli.is_none() && args.agent.is_none() && !routed {
        bail!("--max-cost caps what an agent or a coding CLI spends; add --agent NAME or --cli NAME");
    }
    if args.template.is_some() && args.agent.is_none() && args.cli.is_none() && !routed {
        bail!("--template sets up an agent's or a coding CLI's workspace; add --agent NAME or --cli NAME");
    }
    if args.team && args.agent.is_none() && !routed {
        bail!("--team is a team run led by an agent; add --agent NAME (the planner) or --needs CAPS");
    }
    // A prompt for a coding CLI or an agent (clap lets only one of them through).
    if args.cli.is_some() || args.agent.is_some() || routed {
        return Ok(SubmitTask {
            cli: args.cli,
            owl_mcp: args.owl_mcp,
            max_cost_usd: args.max_cost,
            agent: args.agent,
            needs: args.needs,
            complexity: args.complexity,
            team: args.team,
            template: args.template,
            prompt: Some(args.command.join(" ")),
            env,
            priority: args.priority,
            group: tags.group,
            timeout: args.timeout,
            retries: args.retries,
            labels: tags.label,
            cwd,
            sandbox,
            repo,
            ..Default::default()
        });
    }
    let (command, shell) = if args.shell {
        (None, Some(args.command.join(" ")))
    } else {
        let mut argv = args.command;
        // The task runs in its own workspace, so a program given relative to where the user
        // typed the command (`./backup.sh`) is made absolute here.
        if argv[0].starts_with("./") || argv[0].starts_with("../") {
            argv[0] = std::path::absolute(&argv[0])?.display().to_string();
        }
        (Some(argv), None)
    };
    Ok(SubmitTask {
        command,
        shell,
        env,
        priority: args.priority,
        group: tags.group,
        run_at: None,
        delay: None,
        timeout: args.timeout,
        retries: args.retries,
        after: vec![],
        after_items: vec![],
        idempotency_key: None,
        labels: tags.label,
        cwd,
        agent: None,
        prompt: None,
        sandbox,
        cli: None,
        repo,
        owl_mcp: false,
        max_cost_usd: None,
        needs: vec![],
        complexity: None,
        team: false,
        template: None,
    })
}

pub fn build(args: AddArgs) -> Result<SubmitTask> {
    let after = args
        .after
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| a.parse().map_err(|m: String| anyhow::anyhow!("--after: {m}")))
        .collect::<Result<Vec<_>>>()?;
    let mut t = build_task(args.task, args.tags)?;
    t.after = after;
    t.run_at = args.at;
    t.delay = args.delay;
    t.idempotency_key = args.key;
    Ok(t)
}

pub async fn run(client: &Client, args: AddArgs, json: bool) -> Result<()> {
    let req = build(args)?;
    let out: Submitted = client.post("/v1/tasks", &req).await?;
    if json {
        crate::output::print_json(&out);
    } else {
        if !out.created {
            eprintln!("a task with this idempotency key already exists: task {} ({})", out.id, out.status);
        }
        println!("{}", out.id);
    }
    Ok(())
}
