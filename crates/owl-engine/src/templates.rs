//! Setting a task's workspace up from its template before the agent (or coding CLI) starts:
//! directories, files filled in from the task, a shared Python virtual environment linked in
//! as `.venv` (built once per package list), and set-up commands run in the sandbox. A failure
//! fails the task before any model call, with the output in the attempt's log.

use crate::{EngineConfig, Shared};
use owl_core::template::{Fill, TemplateSettings};
use owl_exec::{Ended, ProcessSpec};
use owl_store::ClaimedTask;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One build of each venv at a time (two tasks wanting the same one wait for the first).
fn build_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner()).entry(key.to_string()).or_default().clone()
}

const READY: &str = ".owl-ready";

/// Sets the workspace up; the notes say what was done (for the log), the error what failed.
pub(crate) async fn apply(
    s: &Arc<Shared>,
    task: &ClaimedTask,
    cfg: &EngineConfig,
    name: &str,
    workspace: &Path,
    workdir: &Path,
    stop: &watch::Receiver<Option<owl_exec::Stop>>,
) -> Result<Vec<String>, String> {
    let Some(t) = cfg.templates.get(name) else {
        let known: Vec<&str> = cfg.templates.keys().map(String::as_str).collect();
        return Err(format!(
            "template `{name}` is not configured; add [templates.{name}]{}",
            if known.is_empty() { String::new() } else { format!(" or use one of: {}", known.join(", ")) }
        ));
    };
    let started = Instant::now();
    let mut notes = Vec::new();
    let (prompt, agent) = match &task.spec.command {
        owl_core::Command::Agent { prompt, agent, .. } => (prompt.as_str(), agent.as_str()),
        owl_core::Command::Cli { prompt, cli, .. } => (prompt.as_str(), cli.as_str()),
        _ => ("", ""),
    };
    let title = owl_core::template::title_of(prompt);
    let fill = Fill { title: &title, description: prompt, task_id: task.id, agent };
    for d in &t.dirs {
        std::fs::create_dir_all(workdir.join(d)).map_err(|e| format!("template {name}: cannot create {d}/: {e}"))?;
    }
    for (path, content) in &t.files {
        let dest = workdir.join(path);
        if dest.exists() {
            continue;
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("template {name}: cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&dest, owl_core::template::fill(content, &fill))
            .map_err(|e| format!("template {name}: cannot write {path}: {e}"))?;
    }
    if !t.dirs.is_empty() || !t.files.is_empty() {
        notes.push(format!("template {name}: {} directories, {} files", t.dirs.len(), t.files.len()));
    }
    let mut path_prefix = None;
    if let Some(packages) = &t.venv {
        let (venv, built) = venv(s, cfg, name, t, packages, task, stop).await?;
        let link = workdir.join(".venv");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(&venv, &link).map_err(|e| format!("template {name}: cannot link .venv: {e}"))?;
        }
        path_prefix = Some(venv.join("bin"));
        notes.push(if built {
            format!("template {name}: built the Python venv {} ({} packages)", venv.display(), packages.len())
        } else {
            format!("template {name}: reused the Python venv {}", venv.display())
        });
    }
    // Set-up commands run once per task: a resumed or retried attempt does not repeat them.
    let done = s.layout.root().join("template-setups").join(format!("{}-{name}", task.id));
    if done.exists() {
        if !t.setup.is_empty() {
            notes.push(format!("template {name}: set-up already done for this task"));
        }
        return Ok(notes);
    }
    for cmd in &t.setup {
        let left = t.setup_timeout.saturating_sub(started.elapsed());
        let sandboxed = cfg.sandbox.exe.is_some();
        let how = Run {
            writable: workspace,
            workdir,
            path_prefix: path_prefix.as_deref(),
            net: t.setup_net,
            sandboxed,
            timeout: left,
            task_env: true,
        };
        run(s, cfg, task, name, cmd, how, stop).await?;
        notes.push(format!("template {name}: ran `{cmd}`"));
    }
    if let Some(dir) = done.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&done, b"");
    Ok(notes)
}

/// The shared venv for `packages`: built (in the sandbox when there is one, with the network
/// for pip) unless a finished one is there. Whether it was built now.
async fn venv(
    s: &Arc<Shared>,
    cfg: &EngineConfig,
    name: &str,
    t: &TemplateSettings,
    packages: &[String],
    task: &ClaimedTask,
    stop: &watch::Receiver<Option<owl_exec::Stop>>,
) -> Result<(PathBuf, bool), String> {
    let root = cfg.venv_dir.clone().unwrap_or_else(|| s.layout.root().join("venvs"));
    let key = owl_core::template::venv_key(packages);
    let dir = root.join(&key);
    let lock = build_lock(&key);
    let _held = lock.lock().await;
    if dir.join(READY).exists() {
        return Ok((dir, false));
    }
    // Other daemons of this user share the directory: one builds, the others wait for it.
    std::fs::create_dir_all(&root).map_err(|e| format!("template {name}: cannot create {}: {e}", root.display()))?;
    let lock_path = root.join(format!("{key}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("template {name}: cannot open {}: {e}", lock_path.display()))?;
    let file = tokio::task::spawn_blocking(move || file.lock().map(|_| file))
        .await
        .map_err(|e| format!("template {name}: {e}"))?
        .map_err(|e| format!("template {name}: cannot lock {}: {e}", lock_path.display()))?;
    let _file_lock = file;
    if dir.join(READY).exists() {
        return Ok((dir, false));
    }
    // A build that did not finish (a crash) is started over.
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.display().to_string();
    let mut script = format!("python3 -m venv '{d}'");
    if !packages.is_empty() {
        let quoted: Vec<String> = packages.iter().map(|p| format!("'{}'", p.trim())).collect();
        script.push_str(&format!(" && '{d}/bin/pip' install --disable-pip-version-check --no-input -q {}", quoted.join(" ")));
    }
    let sandboxed = cfg.sandbox.exe.is_some();
    // Shared by every task that names these packages: built from the package list alone, not
    // from any task's environment (a PIP_INDEX_URL of one submitter must not reach the others).
    let how =
        Run { writable: &root, workdir: &root, path_prefix: None, net: t.setup_net, sandboxed, timeout: t.setup_timeout, task_env: false };
    run(s, cfg, task, name, &script, how, stop).await?;
    std::fs::write(dir.join(READY), packages.join("\n")).map_err(|e| format!("template {name}: {e}"))?;
    Ok((dir, true))
}

/// How one set-up command runs.
struct Run<'a> {
    /// What the sandbox lets it write.
    writable: &'a Path,
    workdir: &'a Path,
    /// Put first on `PATH` (a venv's `bin`).
    path_prefix: Option<&'a Path>,
    net: bool,
    sandboxed: bool,
    timeout: Duration,
    /// Give it the task's own environment (not for a shared venv's build).
    task_env: bool,
}

/// Runs one set-up command with `sh -c` in `workdir`, its output appended to the attempt's log.
async fn run(
    s: &Arc<Shared>,
    cfg: &EngineConfig,
    task: &ClaimedTask,
    name: &str,
    cmd: &str,
    how: Run<'_>,
    stop: &watch::Receiver<Option<owl_exec::Stop>>,
) -> Result<(), String> {
    let Run { writable, workdir, path_prefix, net, sandboxed, timeout, task_env } = how;
    if timeout.is_zero() {
        return Err(format!("template {name}: set-up took longer than its setup_timeout"));
    }
    let mut env: Vec<(String, String)> =
        if task_env { task.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect() } else { vec![] };
    if let Some(p) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        env.push(("PATH".into(), format!("{}:{path}", p.display())));
        env.push(("VIRTUAL_ENV".into(), p.parent().unwrap_or(p).display().to_string()));
    }
    env.push(("OWL_TASK_ID".into(), task.id.to_string()));
    env.push(("OWL_ATTEMPT".into(), task.attempt.to_string()));
    env.push(("OWL_DATA_DIR".into(), s.layout.root().display().to_string()));
    let mut argv = vec!["/bin/sh".to_string(), "-c".to_string(), cmd.to_string()];
    let mut env_remove = s.withheld_env.read().unwrap_or_else(|p| p.into_inner()).clone();
    if !task_env {
        env_remove.extend(std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with("PIP_") || k == "PYTHONPATH"));
    }
    let cgroup = format!("task-{}-{}-setup-{}", task.id, task.attempt, std::process::id());
    if sandboxed {
        env_remove.extend(crate::sandboxing::secret_vars(&[]));
        let tmp = writable.join(".tmp");
        let _ = std::fs::create_dir_all(&tmp);
        env.push(("TMPDIR".into(), tmp.display().to_string()));
        let extra: Vec<PathBuf> = if workdir != writable { vec![workdir.to_path_buf()] } else { vec![] };
        let spec = cfg.sandbox.spec_for(writable, &extra, net, vec![], cgroup.clone());
        argv = cfg.sandbox.wrap(argv, &spec, &mut env).map_err(|e| format!("template {name}: {e}"))?;
    }
    let log_path = s.layout.log_file(task.id, task.attempt);
    let before = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let spec = ProcessSpec {
        argv,
        env,
        cwd: workdir.to_path_buf(),
        log_path: log_path.clone(),
        log_max_bytes: cfg.log_max_bytes,
        timeout: Some(timeout),
        kill_grace: cfg.kill_grace,
        env_remove,
        stdout_tap: None,
    };
    let (progress, _) = watch::channel(0u64);
    let out = owl_exec::run(spec, stop.clone(), progress).await;
    if sandboxed {
        owl_sandbox::remove_cgroup(&cgroup);
    }
    let output = || {
        let all = std::fs::read(&log_path).unwrap_or_default();
        let tail = String::from_utf8_lossy(&all[(before as usize).min(all.len())..]).to_string();
        let tail: String = tail.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        if tail.trim().is_empty() {
            String::new()
        } else {
            format!("; its output ends:\n{}", tail.trim_end())
        }
    };
    match out.ended {
        Ended::Exited if out.exit_code == Some(0) => Ok(()),
        Ended::Exited => Err(format!("template {name}: `{cmd}` exited with {}{}", out.exit_code.unwrap_or(-1), output())),
        Ended::TimedOut => Err(format!("template {name}: `{cmd}` ran past setup_timeout{}", output())),
        Ended::Stopped(_) => Err(format!("template {name}: set-up stopped")),
        Ended::SpawnFailed(m) => Err(format!("template {name}: `{cmd}` could not start: {m}")),
    }
}
