//! Which tasks run sandboxed, and how a sandboxed process is started: through the `owl`
//! binary's `__sandbox-exec` trampoline (owl-sandbox), with a scrubbed environment.

use owl_core::TaskSpec;
use std::path::{Path, PathBuf};

/// Sandbox settings the engine applies; replaced with the rest of the config on reload
/// (except `exe` and `hidden`, which the daemon sets once).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SandboxDefaults {
    pub shell_default: bool,
    pub groups: Vec<String>,
    pub writable: Vec<PathBuf>,
    pub limits: owl_sandbox::Limits,
    /// `[sandbox] network_isolation = "seccomp"`.
    pub seccomp_net: bool,
    /// The `owl` binary that applies a sandbox; `None` means sandboxed tasks cannot run here.
    pub exe: Option<PathBuf>,
    /// What sandboxed tasks may not read: owl's data and config directories.
    pub hidden: Vec<PathBuf>,
}

impl SandboxDefaults {
    pub fn from_settings(s: &owl_core::config::SandboxSettings) -> Self {
        let mb = |v: u64| (v > 0).then_some(v * 1024 * 1024);
        let some = |v: u64| (v > 0).then_some(v);
        SandboxDefaults {
            shell_default: s.shell_default,
            groups: s.groups.clone(),
            writable: s.writable.iter().map(PathBuf::from).collect(),
            limits: owl_sandbox::Limits {
                cpu_seconds: some(s.cpu_seconds),
                memory_bytes: mb(s.memory_mb),
                processes: some(s.processes),
                file_size_bytes: mb(s.file_size_mb),
                open_files: some(s.open_files),
            },
            seccomp_net: s.network_isolation == owl_core::config::NetworkIsolation::Seccomp,
            exe: None,
            hidden: vec![],
        }
    }

    /// The sandbox spec for a process of a task whose workspace is `workspace`.
    pub fn spec_for(
        &self,
        workspace: &Path,
        extra_writable: &[PathBuf],
        network: bool,
        allow_hosts: Vec<String>,
        cgroup: String,
    ) -> owl_sandbox::Spec {
        let mut writable = vec![workspace.to_path_buf()];
        writable.extend(extra_writable.iter().cloned());
        writable.extend(self.writable.iter().cloned());
        owl_sandbox::Spec {
            writable,
            hidden: self.hidden.clone(),
            network,
            limits: self.limits.clone(),
            cgroup: Some(cgroup),
            allow_hosts,
            seccomp_net: self.seccomp_net,
        }
    }

    /// Wraps `argv` so that it runs under `spec`, or says why it cannot.
    pub fn wrap(&self, argv: Vec<String>, spec: &owl_sandbox::Spec, env: &mut Vec<(String, String)>) -> Result<Vec<String>, String> {
        let Some(exe) = &self.exe else {
            return Err(
                "the sandbox is required but this process cannot start `owl __sandbox-exec`; run the task with --no-sandbox to opt out"
                    .into(),
            );
        };
        env.push((owl_sandbox::SPEC_VAR.into(), serde_json::to_string(spec).expect("spec serializes")));
        let mut out = vec![exe.display().to_string(), owl_sandbox::SUBCOMMAND.into(), "--".into()];
        out.extend(argv);
        Ok(out)
    }
}

/// Whether a plain task runs sandboxed: its explicit choice, else the group and default.
pub fn wanted(spec: &TaskSpec, d: &SandboxDefaults) -> bool {
    match spec.sandbox.as_ref().and_then(|s| s.enabled) {
        Some(b) => b,
        None => d.shell_default || d.groups.contains(&spec.group),
    }
}

/// Names in the daemon's environment that look like credentials and were not granted.
pub fn secret_vars(granted: &[String]) -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| owl_core::config::looks_secret(k) && !granted.contains(k))
        .collect()
}
