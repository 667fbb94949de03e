//! owl-sandbox: what confines a task an AI drives (and any task run with `--sandbox`).
//!
//! The protections are applied by a trampoline: the daemon starts `owl __sandbox-exec`
//! with the [`Spec`] in `OWL_SANDBOX_SPEC`; that process, still single-threaded, enters a new
//! user and network namespace (no network at all, not even loopback) unless network is
//! granted, sets resource limits and `no_new_privs`, restricts itself with Landlock so that it
//! may write only the paths the spec names and may not read owl's own data and config, and
//! then executes the task's program, which inherits every restriction. Applying them in the
//! child this way keeps `unsafe` out of the workspace (no `pre_exec` hook).
//!
//! Fail closed: when a protection the spec requires cannot be applied, the trampoline exits
//! with [`EXIT_UNAVAILABLE`] and a message that names the protection and the opt-out.

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod netproxy;

/// The environment variable that carries the spec to the trampoline.
pub const SPEC_VAR: &str = "OWL_SANDBOX_SPEC";
/// The hidden subcommand of the `owl` binary that applies a spec and executes the task.
pub const SUBCOMMAND: &str = "__sandbox-exec";
/// The trampoline's exit code when a required protection is missing (the task never ran).
pub const EXIT_UNAVAILABLE: i32 = 126;

/// Resource limits; `None` leaves the limit as inherited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub cpu_seconds: Option<u64>,
    /// Address space, bytes.
    pub memory_bytes: Option<u64>,
    /// Processes (and threads) of this user inside the sandbox's user namespace.
    pub processes: Option<u64>,
    /// Largest file the task may write, bytes.
    pub file_size_bytes: Option<u64>,
    pub open_files: Option<u64>,
}

/// Everything the trampoline applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Paths the task may write (the workspace, its temp dir, a CLI's state directory).
    pub writable: Vec<PathBuf>,
    /// Paths the task may not even read (owl's data and config directories), except where
    /// they contain a writable path.
    pub hidden: Vec<PathBuf>,
    /// Keep the host's network. Without it the task gets an empty network namespace.
    pub network: bool,
    pub limits: Limits,
    /// A name for the process-count cgroup (unique per run); the caller removes it afterwards
    /// with [`remove_cgroup`].
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Without `network`: hosts the task may still reach through the allowlist proxy
    /// (`host`, `host:port`, `*.domain`). Empty means no network at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// Without `network`: deny internet sockets with a seccomp filter instead of entering a
    /// network namespace (also the automatic fallback where namespaces are not allowed).
    #[serde(default)]
    pub seccomp_net: bool,
}

/// Where pids cgroups can be made: cgroup v2 with the pids controller, or the v1 pids hierarchy.
fn pids_root() -> Option<PathBuf> {
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let b = Path::new(base);
        if std::fs::read_to_string(b.join("cgroup.controllers")).is_ok_and(|c| c.split_whitespace().any(|x| x == "pids")) {
            return Some(b.join("owl"));
        }
    }
    let v1 = Path::new("/sys/fs/cgroup/pids");
    v1.join("tasks").exists().then(|| v1.join("owl"))
}

/// Puts this process into a fresh pids cgroup limited to `max` (root is exempt from
/// RLIMIT_NPROC, so a cgroup is the limit that holds for everyone).
fn join_pids_cgroup(name: &str, max: u64) -> Result<(), String> {
    let root = pids_root().ok_or("no pids cgroup hierarchy")?;
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("pids.max"), max.to_string()).map_err(|e| format!("pids.max: {e}"))?;
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).map_err(|e| format!("cgroup.procs: {e}"))?;
    Ok(())
}

/// Removes a run's pids cgroup once its processes are gone (best effort).
pub fn remove_cgroup(name: &str) {
    if let Some(root) = pids_root() {
        let _ = std::fs::remove_dir(root.join(name));
    }
}

/// One protection and whether this machine can enforce it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

/// What this kernel offers.
pub fn check() -> Vec<Capability> {
    let mut out = Vec::new();
    let landlock = landlock_abi();
    out.push(Capability {
        name: "landlock".into(),
        available: landlock.is_some(),
        detail: match landlock {
            Some(v) => format!("Landlock ABI {v}: writes confined to the workspace, owl's own files unreadable"),
            None => "Landlock is not available (kernel 5.13+ with Landlock enabled in the LSM list is needed)".into(),
        },
    });
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0)
        > 0
        && std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone").map(|s| s.trim() != "0").unwrap_or(true)
        && std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").map(|s| s.trim() != "1").unwrap_or(true);
    let seccomp = std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists();
    out.push(Capability {
        name: "network_isolation".into(),
        available: userns || seccomp,
        detail: match (userns, seccomp) {
            (true, _) => "unprivileged user and network namespaces: a task without --allow-net has no network at all; --allow-host works".into(),
            (false, true) => "no unprivileged namespaces (sysctl kernel.unprivileged_userns_clone or user.max_user_namespaces): internet sockets are denied by seccomp instead; --allow-host is unavailable".into(),
            (false, false) => "neither unprivileged network namespaces nor seccomp filters are available".into(),
        },
    });
    out.push(Capability {
        name: "resource_limits".into(),
        available: true,
        detail: "setrlimit: CPU time, address space, file size, open files".into(),
    });
    let pids = pids_root();
    let root = nix::unistd::getuid().is_root();
    out.push(Capability {
        name: "process_limit".into(),
        available: pids.is_some() || !root,
        detail: match (&pids, root) {
            (Some(p), _) => format!("a pids cgroup per run under {}", p.display()),
            (None, false) => "RLIMIT_NPROC (no pids cgroup hierarchy found)".into(),
            (None, true) => "running as root, which ignores RLIMIT_NPROC, and no pids cgroup hierarchy found".into(),
        },
    });
    out.push(Capability {
        name: "privilege_drop".into(),
        available: true,
        detail: match (userns, root) {
            (true, _) => "every sandboxed task runs in a user namespace of its own, holding no privileges outside it".into(),
            (false, false) => "owl runs as an ordinary user, which holds no privileges to drop".into(),
            (false, true) => "owl runs as root and user namespaces are not allowed: a sandboxed task gives up every \
                              capability instead (it keeps uid 0, so it reads what root may read; writes stay confined)"
                .into(),
        },
    });
    out.push(Capability { name: "no_new_privs".into(), available: true, detail: "setuid programs cannot raise privileges".into() });
    out
}

/// The Landlock ABI version the kernel supports, if any.
pub fn landlock_abi() -> Option<u32> {
    for (v, abi) in [(7, ABI::V7), (6, ABI::V6), (5, ABI::V5), (4, ABI::V4), (3, ABI::V3), (2, ABI::V2), (1, ABI::V1)] {
        let ok = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(|r| r.create())
            .is_ok();
        if ok {
            return Some(v);
        }
    }
    None
}

fn fail(protection: &str, why: impl std::fmt::Display, opt_out: &str) -> ! {
    eprintln!("owl sandbox: {protection} is required but unavailable: {why}. The task did not run. {opt_out}");
    std::process::exit(EXIT_UNAVAILABLE);
}

/// The trampoline: applies `spec` to this process, then executes `argv`. Never returns.
/// Must run before any thread is started (a user namespace needs a single-threaded process).
pub fn exec(spec: &Spec, argv: &[String]) -> ! {
    use std::os::unix::process::CommandExt;
    if argv.is_empty() {
        fail("a command", "none was given", "");
    }
    // Always a user namespace (entered above): a daemon running as root does not lend its
    // capabilities to the task. A network namespace too, unless network is granted.
    // Join the cgroup before the user namespace: afterwards the cgroup files are not ours.
    let mut limits = spec.limits.clone();
    // The allowlist proxy starts first, outside the cgroup and the namespaces: it is owl's
    // own code and must keep the host's network.
    let proxy = if !spec.network && !spec.allow_hosts.is_empty() {
        match netproxy::spawn(&spec.allow_hosts) {
            Ok(p) => Some(p),
            Err(e) => fail("the network allowlist proxy", e, "Grant full network with --allow-net, or run with --no-sandbox."),
        }
    } else {
        None
    };
    if let (Some(name), Some(max)) = (&spec.cgroup, spec.limits.processes) {
        match join_pids_cgroup(name, max) {
            Ok(()) => {}
            Err(e) if nix::unistd::getuid().is_root() => fail(
                "a process limit",
                format!("root ignores RLIMIT_NPROC and no pids cgroup could be made ({e})"),
                "Run with --no-sandbox.",
            ),
            Err(_) => {} // RLIMIT_NPROC below holds for other users
        }
    }
    if nix::unistd::getuid().is_root() {
        limits.processes = None;
    }
    let mut seccomp_net = !spec.network && spec.seccomp_net;
    if let Err(e) = enter_namespaces(!spec.network && !seccomp_net) {
        // Where namespaces are not allowed: internet sockets denied by seccomp instead, and
        // for a user who is not root, no user namespace is needed to hold no privileges.
        let root = nix::unistd::getuid().is_root();
        if !spec.network && !seccomp_net && enter_namespaces(false).is_ok() {
            seccomp_net = true;
        } else if !root {
            seccomp_net = !spec.network;
        } else {
            // Root outside a user namespace: give up root's capabilities for good instead.
            if let Err(drop) = drop_capabilities() {
                fail(
                    "dropping root's privileges",
                    format!("no user namespace ({e}) and {drop}"),
                    "Run the daemon as an ordinary user, allow unprivileged user namespaces, or run the task with --no-sandbox.",
                );
            }
            seccomp_net = !spec.network;
        }
    }
    if seccomp_net && proxy.is_some() {
        fail(
            "the network allowlist",
            "it needs a network namespace, which this kernel does not allow unprivileged (or [sandbox] network_isolation = \"seccomp\")",
            "Grant full network with --allow-net, or run with --no-sandbox.",
        );
    }
    let mut proxy_port = None;
    if let Some((_child, channel)) = &proxy {
        match netproxy::hand_over(channel) {
            Ok(port) => proxy_port = Some(port),
            Err(e) => fail("the network allowlist proxy", e, "Grant full network with --allow-net, or run with --no-sandbox."),
        }
    }
    if let Err(e) = set_limits(&limits) {
        fail("resource limits", e, "Lower the configured [sandbox] limits, or run with --no-sandbox.");
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail("no_new_privs", e, "Run with --no-sandbox.");
    }
    if seccomp_net {
        if let Err(e) = deny_inet_sockets() {
            fail("network isolation (seccomp)", e, "Grant network with --allow-net, or run with --no-sandbox.");
        }
    }
    if let Err(e) = restrict_files(spec, proxy_port) {
        fail("write confinement (Landlock)", e, "Run with --no-sandbox to opt out explicitly.");
    }
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some(port) = proxy_port {
        let url = format!("http://127.0.0.1:{port}");
        for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env(k, &url);
        }
        cmd.env("NO_PROXY", "").env("no_proxy", "");
    }
    let err = cmd.exec();
    eprintln!("owl sandbox: cannot start {}: {err}", argv[0]);
    std::process::exit(127);
}

fn enter_namespaces(network_off: bool) -> Result<(), String> {
    use nix::sched::{unshare, CloneFlags};
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if network_off {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}"))?;
    // Keep the same ids inside, so files keep their owner.
    std::fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")).map_err(|e| format!("uid_map: {e}"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")).map_err(|e| format!("gid_map: {e}"))?;
    Ok(())
}

/// For root where no user namespace can be made: every capability leaves the bounding,
/// ambient, inheritable, permitted and effective sets, and (locked) securebits stop uid 0 from
/// getting any back on exec or on a uid change. The process keeps uid 0 but no privilege.
fn drop_capabilities() -> Result<(), String> {
    use rustix::thread::{
        clear_ambient_capability_set, remove_capability_from_bounding_set, set_capabilities, set_capabilities_secure_bits,
        CapabilitiesSecureBits as Bits, CapabilitySet, CapabilitySets,
    };
    for cap in 0..64 {
        match remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(rustix::io::Errno::INVAL) if cap > 0 => break,
            Err(e) => return Err(format!("the capability bounding set cannot be emptied: {e}")),
        }
    }
    let bits = Bits::NO_ROOT | Bits::NO_ROOT_LOCKED | Bits::NO_SETUID_FIXUP | Bits::NO_SETUID_FIXUP_LOCKED | Bits::KEEP_CAPS_LOCKED;
    set_capabilities_secure_bits(bits).map_err(|e| format!("securebits cannot be set: {e}"))?;
    clear_ambient_capability_set().map_err(|e| format!("the ambient capabilities cannot be cleared: {e}"))?;
    let none = CapabilitySet::empty();
    set_capabilities(None, CapabilitySets { effective: none, permitted: none, inheritable: none })
        .map_err(|e| format!("capabilities cannot be dropped: {e}"))
}

/// A seccomp filter: `socket()` for IPv4, IPv6 and raw packets fails with EACCES, and io_uring
/// (which can open sockets without `socket()`) is unavailable. Unix sockets still work.
fn deny_inet_sockets() -> Result<(), String> {
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("{e:?}"))?;
    let domain = |d: i32| -> Result<SeccompRule, String> {
        let c = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, d as u64).map_err(|e| e.to_string())?;
        SeccompRule::new(vec![c]).map_err(|e| e.to_string())
    };
    let socket_rules = vec![domain(libc::AF_INET)?, domain(libc::AF_INET6)?, domain(libc::AF_PACKET)?];
    let rules = std::collections::BTreeMap::from([(libc::SYS_socket, socket_rules), (libc::SYS_io_uring_setup, vec![])]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EACCES as u32), arch).map_err(|e| e.to_string())?;
    let program: seccompiler::BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

fn set_limits(l: &Limits) -> Result<(), String> {
    use nix::sys::resource::{setrlimit, Resource};
    let pairs = [
        (Resource::RLIMIT_CPU, l.cpu_seconds, "cpu_seconds"),
        (Resource::RLIMIT_AS, l.memory_bytes, "memory"),
        (Resource::RLIMIT_NPROC, l.processes, "processes"),
        (Resource::RLIMIT_FSIZE, l.file_size_bytes, "file_size"),
        (Resource::RLIMIT_NOFILE, l.open_files, "open_files"),
    ];
    for (res, v, name) in pairs {
        if let Some(v) = v {
            setrlimit(res, v, v).map_err(|e| format!("{name} = {v}: {e}"))?;
        }
    }
    Ok(())
}

/// Read access to everything except the hidden paths (their siblings are listed one by one
/// on the way down), full access to the writable paths and the usual device files.
fn restrict_files(spec: &Spec, proxy_port: Option<u16>) -> Result<(), String> {
    let abi = ABI::V7;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let readable = readable_roots(&spec.hidden);
    let mut ruleset = Ruleset::default().handle_access(all).map_err(|e| e.to_string())?;
    if !spec.network {
        // Defence in depth on kernels with Landlock network rules: no TCP at all.
        ruleset = ruleset.set_compatibility(CompatLevel::BestEffort).handle_access(AccessNet::from_all(abi)).map_err(|e| e.to_string())?;
    }
    // Landlock ABI 6: no signals to processes outside the sandbox (the daemon, other tasks,
    // the user's programs: the same uid would otherwise allow it) and no abstract Unix sockets
    // bound outside it.
    ruleset = ruleset
        .set_compatibility(CompatLevel::BestEffort)
        .scope(landlock::Scope::Signal | landlock::Scope::AbstractUnixSocket)
        .map_err(|e| e.to_string())?;
    let devices = ["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/urandom", "/dev/random"];
    let status = ruleset
        .create()
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(&readable, read))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(spec.writable.iter().filter(|p| p.exists()), all))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(devices.iter().filter(|p| Path::new(p).exists()), AccessFs::from_read(abi) | AccessFs::WriteFile))
        .map_err(|e| e.to_string())?
        .add_rules(proxy_port.map(|p| Ok::<_, landlock::RulesetError>(landlock::NetPort::new(p, AccessNet::ConnectTcp))))
        .map_err(|e| e.to_string())?
        .restrict_self()
        .map_err(|e| e.to_string())?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("this kernel does not enforce Landlock".into());
    }
    Ok(())
}

/// The directories to grant read access to: `/`, unless a hidden path lies under it, in
/// which case its children are considered instead, recursively; hidden paths themselves are
/// left out (a writable path inside one is granted separately).
pub fn readable_roots(hidden: &[PathBuf]) -> Vec<PathBuf> {
    let hidden: Vec<PathBuf> = hidden.iter().map(|h| h.canonicalize().unwrap_or_else(|_| h.clone())).collect();
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/")];
    while let Some(dir) = stack.pop() {
        if hidden.contains(&dir) {
            continue;
        }
        if !hidden.iter().any(|h| h.starts_with(&dir)) {
            out.push(dir);
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            // A symlink child is granted by what it points to, if at all.
            if e.file_type().map(|t| t.is_symlink()).unwrap_or(true) {
                continue;
            }
            stack.push(p);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_paths_are_carved_out_of_the_readable_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for p in ["data/workspaces/1", "data/logs", "config/owl", "other"] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        std::fs::write(root.join("data/owl.db"), "").unwrap();
        let r = readable_roots(&[root.join("data"), root.join("config/owl")]);
        assert!(r.contains(&root.join("other")), "{r:?}");
        assert!(!r.iter().any(|p| p.starts_with(root.join("data"))), "nothing under the data dir is readable: {r:?}");
        assert!(!r.iter().any(|p| p.starts_with(root.join("config/owl"))), "{r:?}");
        assert!(!r.contains(&PathBuf::from("/")), "the root itself is not granted whole");
        assert!(r.contains(&PathBuf::from("/usr")), "unrelated trees stay readable: {r:?}");
    }
}
