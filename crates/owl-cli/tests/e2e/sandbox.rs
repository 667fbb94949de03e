//! The sandbox on the real daemon: escapes refused with nothing changed outside, no network,
//! secrets removed, and a fork bomb and a memory hog stopped by the limits. Each test first
//! asks `owl sandbox check` and is skipped, saying why, where this kernel lacks a protection.

use crate::harness::*;
use std::process::Command;
use std::time::Duration;

/// None when the sandbox can run here; else the reason the test is skipped.
pub fn unavailable() -> Option<String> {
    let out = owl_in(std::path::Path::new("/tmp"), &["--json", "sandbox", "check"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sandbox check --json");
    let missing: Vec<String> = v["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["available"] == false)
        .map(|c| format!("{}: {}", c["name"].as_str().unwrap(), c["detail"].as_str().unwrap()))
        .collect();
    (!missing.is_empty()).then(|| missing.join("; "))
}

macro_rules! require_sandbox {
    () => {
        if let Some(why) = unavailable() {
            crate::harness::skip(format!("this kernel lacks a sandbox protection: {why}"));
            return;
        }
    };
}

fn finished(d: &Daemon, id: i64) -> serde_json::Value {
    wait_for(&format!("task {id} to finish"), Duration::from_secs(60), || {
        let t = d.task(id);
        matches!(t["status"].as_str(), Some("succeeded" | "failed" | "timed_out" | "cancelled")).then_some(t)
    })
}

fn log(d: &Daemon, id: i64) -> String {
    d.ok(&["logs", &id.to_string()])
}

#[test]
fn escapes_are_refused_and_nothing_outside_changes() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("repo/.git/hooks")).unwrap();
    std::fs::write(outside.join("victim.txt"), "original\n").unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let d = Daemon::start(&dir, &[("HOME", home.to_str().unwrap())]);
    let db_before = std::fs::read(dir.join("owl.db")).unwrap().len();
    let o = outside.display();
    let script = format!(
        "echo inside > ok.txt; \
         echo x > ../../owl.db && echo WROTE-DB; \
         cat ../../token && echo READ-TOKEN; \
         echo x > {o}/victim.txt && echo WROTE-ABS; \
         ln -s {o}/victim.txt link && echo x > link && echo WROTE-SYMLINK; \
         ln {o}/victim.txt hard && echo x >> hard && echo WROTE-HARDLINK; \
         echo 'rm -rf /' > {o}/repo/.git/hooks/pre-commit && echo WROTE-HOOK; \
         echo x > $HOME/.bashrc && echo WROTE-HOME; \
         mkdir {o}/new && echo MADE-DIR; \
         kill -0 {daemon} && echo SIGNALLED-DAEMON; \
         sleep 5 & kill $! && echo OWN-CHILD-SIGNALLED; \
         echo end",
        daemon = d.pid()
    );
    let id = add(&d, &["--sandbox", "--shell", "--", &script]);
    let t = finished(&d, id);
    let out = log(&d, id);
    assert_eq!(t["status"], "succeeded", "{t} {out}");
    assert!(out.contains("end"), "{out}");
    for marker in ["WROTE-DB", "READ-TOKEN", "WROTE-ABS", "WROTE-SYMLINK", "WROTE-HARDLINK", "WROTE-HOOK", "WROTE-HOME", "MADE-DIR"] {
        assert!(!out.contains(marker), "{marker} got through:\n{out}");
    }
    // Signals stay inside the sandbox (Landlock ABI 6 scoping): the task's own children, yes;
    // the daemon, which runs as the same user, no.
    assert!(out.contains("OWN-CHILD-SIGNALLED"), "{out}");
    if owl_sandbox::landlock_abi().unwrap_or(0) >= 6 {
        assert!(!out.contains("SIGNALLED-DAEMON"), "the task could signal the daemon:\n{out}");
    } else {
        crate::harness::skip("(part) Landlock below ABI 6 cannot scope signals; the daemon is not protected from its tasks' signals here");
    }
    assert_eq!(std::fs::read_to_string(outside.join("victim.txt")).unwrap(), "original\n");
    assert!(!outside.join("repo/.git/hooks/pre-commit").exists());
    assert!(!home.join(".bashrc").exists());
    assert!(!outside.join("new").exists());
    assert!(std::fs::read(dir.join("owl.db")).unwrap().len() >= db_before, "the database was not truncated");
    let ws = dir.join("workspaces").join(id.to_string());
    assert_eq!(std::fs::read_to_string(ws.join("ok.txt")).unwrap(), "inside\n", "the workspace stays writable");
    // The same script without the sandbox can write outside: the refusals above are the sandbox's.
    let free = add(&d, &["--shell", "--", &format!("echo changed > {o}/victim.txt")]);
    assert_eq!(finished(&d, free)["status"], "succeeded");
    assert_eq!(std::fs::read_to_string(outside.join("victim.txt")).unwrap(), "changed\n");
}

#[test]
fn no_network_unless_granted() {
    require_sandbox!();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = Daemon::start(&dir, &[]);
    let probe = format!("bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && echo CONNECTED; ip -o link 2>/dev/null | wc -l; echo end");
    let id = add(&d, &["--sandbox", "--shell", "--", &probe]);
    finished(&d, id);
    let out = log(&d, id);
    assert!(out.contains("end") && !out.contains("CONNECTED"), "{out}");
    assert!(listener.accept().is_err(), "no connection reached the listener");
    let id = add(&d, &["--sandbox", "--allow-net", "--shell", "--", &probe]);
    finished(&d, id);
    assert!(log(&d, id).contains("CONNECTED"), "--allow-net keeps the network");
}

/// The fallback for kernels without unprivileged network namespaces, chosen here by config:
/// a seccomp filter makes internet sockets fail while Unix sockets keep working.
#[test]
fn seccomp_network_isolation_denies_internet_sockets() {
    require_sandbox!();
    if !std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists() {
        crate::harness::skip("this kernel has no seccomp filters");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(config_path(&dir), "[sandbox]\nnetwork_isolation = \"seccomp\"\n").unwrap();
    let d = Daemon::start(&dir, &[]);
    internet_is_denied_and_the_allowlist_fails_closed(&d);
}

/// Runs its arguments as root in a user namespace of its own in which no further user
/// namespace can be made: a machine without unprivileged user namespaces, as far as owl can tell.
const NO_USERNS_ROOT: [&str; 5] = ["unshare", "-Ur", "sh", "-c", "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\""];

/// The same, as uid 1000: the helper (still outside) maps uids 0..65536 onto themselves for the
/// new namespace, which then forbids nested ones and drops to uid 1000 before executing its
/// arguments, so the process keeps its pid.
const NO_USERNS_USER: &str = r#"
import ctypes, os, sys
r, w = os.pipe()
helper = os.fork()
if helper == 0:
    os.close(w)
    os.read(r, 1)
    for f in ("uid_map", "gid_map"):
        with open(f"/proc/{os.getppid()}/{f}", "w") as m:
            m.write("0 0 65536")
    os._exit(0)
os.close(r)
if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
    sys.exit("unshare: " + os.strerror(ctypes.get_errno()))
os.write(w, b"x")
if os.waitpid(helper, 0)[1] != 0:
    sys.exit("the uid map could not be written")
with open("/proc/sys/user/max_user_namespaces", "w") as f:
    f.write("0")
os.setgroups([])
os.setresgid(1000, 1000, 1000)
os.setresuid(1000, 1000, 1000)
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// Whether `wrap` makes a place where no user namespace can be made; says why not otherwise.
fn no_userns_here(wrap: &[&str]) -> bool {
    match Command::new(wrap[0]).args(&wrap[1..]).args(["/usr/bin/unshare", "-Ur", "true"]).output() {
        Ok(out) if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unshare failed") => true,
        other => {
            crate::harness::skip(format!("cannot make a place without user namespaces here: {other:?}"));
            false
        }
    }
}

fn sandbox_check(wrap: &[&str]) -> serde_json::Value {
    let out = Command::new(wrap[0]).args(&wrap[1..]).args([OWL, "--json", "sandbox", "check"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sandbox check --json: {e}: {out:?}"))
}

fn capability(check: &serde_json::Value, name: &str) -> serde_json::Value {
    check["capabilities"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

/// Where unprivileged user namespaces are unavailable and owl runs as an ordinary user, the
/// sandbox falls back by itself to seccomp for the network and keeps Landlock; it says so.
#[test]
fn without_user_namespaces_an_ordinary_user_gets_the_seccomp_fallback_by_itself() {
    require_sandbox!();
    if !nix::unistd::getuid().is_root() {
        crate::harness::skip("making a namespace that maps uid 1000 needs root");
        return;
    }
    let wrap = ["/usr/bin/python3", "-c", NO_USERNS_USER];
    if !no_userns_here(&wrap) {
        return;
    }
    let check = sandbox_check(&wrap);
    let net = capability(&check, "network_isolation");
    assert_eq!(net["available"], true, "{net}");
    assert!(net["detail"].as_str().unwrap().contains("denied by seccomp"), "{net}");
    assert_eq!(capability(&check, "privilege_drop")["available"], true, "{check}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    assert!(Command::new("chown").args(["-R", "1000:1000"]).arg(tmp.path()).status().unwrap().success());
    let d = Daemon::start_wrapped(&dir, &[("HOME", home.to_str().unwrap())], &wrap);
    internet_is_denied_and_the_allowlist_fails_closed(&d);
    // Landlock still holds without the namespaces, for a home the user may otherwise write.
    let id = add(&d, &["--sandbox", "--shell", "--", "id -u; echo x > ../../escape.txt; echo x > \"$HOME/escape.txt\"; echo end"]);
    finished(&d, id);
    let out = log(&d, id);
    // stdout and stderr reach the log through separate pipes, so only each stream's own order holds.
    assert!(out.lines().any(|l| l == "1000") && out.contains("end"), "{out}");
    assert!(!dir.join("escape.txt").exists() && !home.join("escape.txt").exists());
}

/// Root where user namespaces are unavailable (a container's default): a sandboxed task gives
/// up every capability instead, and the seccomp network fallback and Landlock hold as well.
#[test]
fn without_user_namespaces_root_gives_up_every_capability() {
    require_sandbox!();
    if !no_userns_here(&NO_USERNS_ROOT) {
        return;
    }
    let drop = capability(&sandbox_check(&NO_USERNS_ROOT), "privilege_drop");
    assert_eq!(drop["available"], true, "{drop}");
    assert!(drop["detail"].as_str().unwrap().contains("gives up every capability"), "{drop}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let d = Daemon::start_wrapped(&dir, &[], &NO_USERNS_ROOT);
    let script = format!(
        "id -u; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; echo x > ../../escape.txt; \
         kill -0 {} && echo SIGNALLED-DAEMON; echo end",
        d.pid()
    );
    let id = add(&d, &["--sandbox", "--shell", "--", &script]);
    assert_eq!(finished(&d, id)["status"], "succeeded");
    let out = log(&d, id);
    assert!(out.lines().any(|l| l == "0") && out.contains("end"), "{out}");
    let caps: Vec<&str> = out.lines().filter(|l| l.starts_with("Cap")).collect();
    assert_eq!(caps.len(), 5, "{out}");
    assert!(caps.iter().all(|l| l.ends_with("0000000000000000")), "root keeps no capability: {out}");
    if owl_sandbox::landlock_abi().unwrap_or(0) >= 6 {
        assert!(!out.contains("SIGNALLED-DAEMON"), "uid 0 without capabilities still may not signal the daemon: {out}");
    }
    assert!(!dir.join("escape.txt").exists());
    internet_is_denied_and_the_allowlist_fails_closed(&d);
    // The daemon itself keeps its capabilities: it still runs unsandboxed tasks as root.
    let id = add(&d, &["--no-sandbox", "--shell", "--", "grep '^CapEff' /proc/self/status"]);
    assert_eq!(finished(&d, id)["status"], "succeeded");
    assert!(!log(&d, id).contains("0000000000000000"), "{}", log(&d, id));
}

/// Internet sockets fail (IPv4 and IPv6) while Unix sockets work; `--allow-host` refuses to
/// run, since its proxy needs a namespace; `--allow-net` keeps the network.
fn internet_is_denied_and_the_allowlist_fails_closed(d: &Daemon) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let probe = format!(
        "bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && echo CONNECTED; \
         /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)' 2>&1 | tail -1; \
         /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_UNIX); print(\"unix-ok\")'; \
         ls /sys/class/net | wc -l; echo end"
    );
    let id = add(d, &["--sandbox", "--shell", "--", &probe]);
    finished(d, id);
    let out = log(d, id);
    assert!(out.contains("end") && !out.contains("CONNECTED"), "{out}");
    assert!(out.contains("PermissionError"), "an IPv6 UDP socket is refused too: {out}");
    assert!(out.contains("unix-ok"), "{out}");
    assert!(listener.accept().is_err(), "no connection reached the listener");
    let allow = add(d, &["--sandbox", "--allow-host", "example.com", "--shell", "--", "echo ran"]);
    let t = finished(d, allow);
    assert_eq!(t["status"], "failed", "the allowlist needs a namespace; it fails closed here");
    assert!(log(d, allow).contains("the network allowlist is required but unavailable"), "{}", log(d, allow));
    let id = add(d, &["--sandbox", "--allow-net", "--shell", "--", &probe]);
    finished(d, id);
    assert!(log(d, id).contains("CONNECTED"), "--allow-net keeps the network");
}

#[test]
fn secrets_are_removed_unless_granted_and_the_opt_out_is_recorded() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = Daemon::start(&dir, &[("OWL_TEST_DEPLOY_TOKEN", "canary-5e1f"), ("OWL_TEST_PLAIN", "visible")]);
    let id = add(&d, &["--sandbox", "--shell", "--", "env"]);
    finished(&d, id);
    let out = log(&d, id);
    assert!(!out.contains("canary-5e1f"), "the canary reached a sandboxed task");
    assert!(out.contains("OWL_TEST_PLAIN=visible"), "ordinary variables stay");
    assert!(!out.contains(owl_sandbox::SPEC_VAR), "the spec is not left in the task's environment");
    let id = add(&d, &["--sandbox", "--grant-env", "OWL_TEST_DEPLOY_TOKEN", "--shell", "--", "echo $OWL_TEST_DEPLOY_TOKEN"]);
    finished(&d, id);
    assert_eq!(log(&d, id), "canary-5e1f\n", "a granted variable passes");
    let id = add(&d, &["--no-sandbox", "--shell", "--", "true"]);
    let t = finished(&d, id);
    let shown = serde_json::to_string(&t).unwrap();
    assert!(shown.contains("\"enabled\":false"), "the explicit opt-out is recorded on the task: {shown}");
}

#[test]
fn a_fork_bomb_and_a_memory_hog_are_stopped_by_the_limits() {
    require_sandbox!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(config_path(&dir), "[sandbox]\nprocesses = 40\nmemory_mb = 256\ncpu_seconds = 20\n").unwrap();
    let d = Daemon::start(&dir, &[]);
    let bomb = "for i in $(seq 1 200); do sleep 30 & done; echo loop-done";
    let id = add(&d, &["--sandbox", "--timeout", "20s", "--shell", "--", bomb]);
    let t = finished(&d, id);
    let out = log(&d, id);
    assert!(out.contains("fork") || out.contains("Resource temporarily unavailable"), "forks were refused: {t}\n{out}");
    let hog = "head -c 2000000000 /dev/zero | tail -c 1000000000 > /dev/null; echo exit=$?";
    let id = add(&d, &["--sandbox", "--timeout", "30s", "--shell", "--", hog]);
    let t = finished(&d, id);
    let out = log(&d, id);
    assert!(!out.contains("exit=0"), "the memory hog was stopped: {t}\n{out}");
    // The daemon is fine afterwards.
    let ok = add(&d, &["--shell", "--", "echo alive"]);
    assert_eq!(finished(&d, ok)["status"], "succeeded");
}

/// A Chat Completions server on loopback that asks for one shell call, then answers.
pub(crate) fn fake_model(command: &str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let command = command.to_string();
    let app = axum::Router::new().route(
                "/v1/chat/completions",
                axum::routing::post(move |body: String| {
                    let s = s.clone();
                    let command = command.clone();
                    async move {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let n = s.lock().unwrap().len();
                        s.lock().unwrap().push(v);
                        let reply = if n == 0 {
                            serde_json::json!({"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "shell", "arguments": serde_json::json!({"command": command}).to_string()}}]}}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                        } else {
                            serde_json::json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "done"}}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                        };
                        axum::Json(reply)
                    }
                }),
            );
    (format!("http://127.0.0.1:{}/v1", serve(app)), seen)
}

#[test]
fn agent_shell_calls_run_sandboxed_by_default() {
    require_sandbox!();
    let (url, seen) = fake_model("echo x > ../../owl.db && echo WROTE-DB; cat ../../token && echo READ-TOKEN; env; echo end");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(
        config_path(&dir),
        format!("[providers.fake]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\n\n[agents.worker]\nprovider = \"fake\"\nshell_default = \"allow\"\n"),
    )
    .unwrap();
    let d = Daemon::start(&dir, &[("OWL_TEST_DEPLOY_TOKEN", "canary-77aa")]);
    let id = add(&d, &["--agent", "worker", "do it"]);
    let t = finished(&d, id);
    assert_eq!(t["status"], "succeeded", "{t}");
    let reqs = seen.lock().unwrap().clone();
    let tool_result =
        reqs[1]["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap()["content"].as_str().unwrap().to_string();
    assert!(tool_result.contains("end"), "{tool_result}");
    assert!(!tool_result.contains("WROTE-DB") && !tool_result.contains("READ-TOKEN"), "{tool_result}");
    assert!(!tool_result.contains("canary-77aa"), "{tool_result}");
}
