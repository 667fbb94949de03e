//! The CLI as a user types it.

use crate::harness::*;
use std::time::Duration;

#[test]
fn the_issue_walkthrough_works_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let script = tmp.path().join("backup.sh");
    std::fs::write(&script, "#!/bin/sh\necho backing up \"$@\"\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();

    let a = add(&d, &["--", script.to_str().unwrap(), "--full"]);
    let b = add(
        &d,
        &[
            "--group",
            "gpu",
            "--priority",
            "5",
            "--after",
            &a.to_string(),
            "--timeout",
            "30m",
            "--retries",
            "3",
            "--",
            "sh",
            "-c",
            "echo train",
        ],
    );
    let delayed = add(&d, &["--in", "2h", "--", "true"]);
    let at = add(&d, &["--at", "2099-12-01T09:00:00+01:00", "--", "true"]);
    let failing = add(&d, &["--shell", "echo", "oops", ";", "exit", "4"]);

    let out = d.owl(&["wait", &a.to_string(), &b.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(d.ok(&["logs", &a.to_string()]).contains("backing up --full"));
    let tb = d.task(b);
    assert_eq!(
        (tb["group"].as_str(), tb["priority"].as_i64(), tb["max_attempts"].as_u64(), tb["timeout_ms"].as_u64()),
        (Some("gpu"), Some(5), Some(4), Some(1_800_000))
    );
    assert_eq!(tb["depends_on"], serde_json::json!([a]));
    assert_eq!(d.task(delayed)["status"], "waiting");
    assert_eq!(d.task(at)["run_at"], "2099-12-01T08:00:00.000Z");

    let out = d.owl(&["wait", &failing.to_string()]);
    assert_eq!(out.status.code(), Some(1), "wait exits 1 when a task did not succeed");
    let tf = d.task(failing);
    assert_eq!(tf["status"], "failed");
    assert_eq!(tf["runs"][0]["exit_code"], 4);

    let listed = d.json(&["ls", "--status", "waiting"]);
    let ids: Vec<i64> = listed["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![at, delayed]);
    let text = d.ok(&["ls"]);
    assert!(text.starts_with("ID") && text.contains("failed") && text.contains("exited with code 4"), "{text}");
    assert!(d.ok(&["show", &b.to_string()]).contains("group      gpu"));

    assert!(d.ok(&["cancel", &delayed.to_string()]).contains("cancelled"));
    assert_eq!(d.task(delayed)["status"], "cancelled");
    d.ok(&["retry", &failing.to_string()]);
    let t = d.wait_status(failing, "failed");
    assert_eq!(t["runs"].as_array().unwrap().len(), 2, "retry ran a second attempt");

    assert!(d.ok(&["groups", "set", "gpu", "--parallel", "1"]).contains("parallel 1"));
    let groups = d.json(&["groups"]);
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "gpu" && g["parallel"] == 1));
    let st = d.json(&["status"]);
    assert_eq!(st["tasks"]["succeeded"], 2);
    assert!(d.ok(&["status"]).contains("running (pid"));
}

#[test]
fn without_a_daemon_the_cli_says_how_to_start_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = owl_in(tmp.path(), &["ls"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running") && err.contains("owl --data-dir") && err.contains("daemon"), "{err}");
    let out = owl_in(tmp.path(), &["--json", "status"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["error"]["code"], "daemon_not_running");
}

#[test]
fn bad_cli_input_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let cases: &[(&[&str], &str)] = &[
        (&["add", "--timeout", "30", "--", "true"], "30s"),
        (&["add", "--after", "x", "--", "true"], "not a task id"),
        (&["add", "--after", "999", "--", "true"], "does not exist"),
        (&["add", "--at", "tomorrow", "--", "true"], "RFC 3339"),
        (&["add", "--env", "NOEQUALS", "--", "true"], "KEY=VALUE"),
        (&["add", "--group", "has space", "--", "true"], "group"),
        (&["show", "abc"], "not a task id"),
        (&["show", "4242"], "does not exist"),
        (&["ls", "--status", "done"], "succeeded"),
        (&["cancel", "4242"], "does not exist"),
        (&["logs", "4242"], "does not exist"),
        (&["groups", "set", "g", "--parallel", "0"], "at least 1"),
        (&["chat", "--cancel", "4242"], "4242"),
    ];
    for (args, needle) in cases {
        let out = d.owl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Clap usage errors exit 2.
    assert_eq!(d.owl(&["add"]).status.code(), Some(2));
}

#[test]
fn config_show_init_and_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let cfg = config_path(&dir);
    let out = std::process::Command::new(OWL)
        .args(["--data-dir", dir.to_str().unwrap(), "config", "show"])
        .env_remove("OWL_CONFIG")
        .env("XDG_CONFIG_HOME", xdg(&dir))
        .env("OWL_API_TOKEN", "canary-secret-4711")
        .env("OWL_DAEMON_WORKERS", "3")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("workers = 3") && text.contains("<redacted>") && !text.contains("canary-secret-4711"), "{text}");
    let out = owl_in(&dir, &["config", "init"]);
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("[daemon]"));
    assert_eq!(owl_in(&dir, &["config", "init"]).status.code(), Some(1), "init refuses to overwrite");
    std::fs::write(&cfg, "[daemon]\nworkerz = 2\n").unwrap();
    let out = owl_in(&dir, &["config", "show"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("workerz"));
    let out = owl_in(&dir, &["completions", "bash"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("owl"));
}

#[test]
fn daemons_with_different_data_dirs_run_side_by_side_and_one_data_dir_has_one_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Daemon::start(&tmp.path().join("a"), &[]);
    let b = Daemon::start(&tmp.path().join("b"), &[]);
    assert_ne!(a.addr, b.addr);
    let ia = add(&a, &["--", "true"]);
    let ib = add(&b, &["--", "true"]);
    assert_eq!((ia, ib), (1, 1));
    assert_eq!(a.json(&["ls"])["tasks"].as_array().unwrap().len(), 1);
    let out = std::process::Command::new(OWL)
        .args(["--data-dir", tmp.path().join("a").to_str().unwrap(), "daemon", "--listen", "127.0.0.1:0"])
        .env_remove("OWL_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another owl daemon is already using"), "{err}");
    assert!(a.ok(&["status"]).contains("running"), "the first daemon is unaffected");
}

#[test]
fn logs_follow_a_running_task_live() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let gate = tmp.path().join("gate");
    let id = add(&d, &["--shell", &format!("echo first; while [ ! -f {} ]; do sleep 0.02; done; echo second", gate.display())]);
    let mut follower = std::process::Command::new(OWL)
        .args(["--data-dir", d.dir.to_str().unwrap(), "logs", "-f", &id.to_string()])
        .env_remove("OWL_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follower.stdout.take().unwrap();
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    // "first" arrives while the task is still blocked on the gate: that is live following.
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the follower ended before the first line");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(d.task(id)["status"], "running");
    std::fs::write(&gate, "").unwrap();
    stdout.read_to_end(&mut got).unwrap();
    let st = follower.wait().unwrap();
    assert!(st.success());
    assert_eq!(String::from_utf8_lossy(&got), "first\nsecond\n");
    // Following a queued task waits for it to start.
    d.ok(&["groups", "set", "held", "--parallel", "1"]);
    let blocker = add(&d, &["--group", "held", "--shell", &format!("while [ ! -f {}.2 ]; do sleep 0.02; done", gate.display())]);
    let queued = add(&d, &["--group", "held", "--", "echo", "later"]);
    let follower = std::process::Command::new(OWL)
        .args(["--data-dir", d.dir.to_str().unwrap(), "logs", "-f", &queued.to_string()])
        .env_remove("OWL_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.task(queued)["status"], "queued");
    std::fs::write(format!("{}.2", gate.display()), "").unwrap();
    let out = follower.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "later\n");
    d.wait_status(blocker, "succeeded");
}

#[test]
fn logs_and_the_daemon_speak_json_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut d = Daemon::start(&dir, &[]);
    let id = add(&d, &["--", "echo", "hello"]);
    d.wait_status(id, "succeeded");
    let out = d.ok(&["--json", "logs", &id.to_string()]);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((v["task"].as_i64(), v["text"].as_str()), (Some(id), Some("hello\n")));
    d.signal_and_wait(nix::sys::signal::Signal::SIGTERM, std::time::Duration::from_secs(10));
    // Restart with --json: every log line the daemon writes is a JSON object.
    let log = dir.with_extension("json.log");
    let mut child = std::process::Command::new(OWL)
        .args(["--json", "--data-dir", dir.to_str().unwrap(), "daemon", "--listen", "127.0.0.1:0"])
        .env_remove("OWL_DATA_DIR")
        .env("XDG_CONFIG_HOME", xdg(&dir))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the ready line", std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&log).ok().filter(|s| s.contains("owl daemon ready"))
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(text.contains("owl daemon ready") && text.contains("owl daemon stopped"), "{text}");
}

#[test]
fn owl_alone_says_where_to_start_and_doctor_checks_the_set_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = owl_in(&dir, &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for c in ["owl daemon", "owl add --agent default", "owl ls", "owl schedule add", "owl doctor"] {
        assert!(text.contains(c), "{c}: {text}");
    }
    // The intro's schedule line is a command that really parses: it gets as far as the
    // missing daemon (exit 3), not a usage error (exit 2).
    let parsed = owl_in(&dir, &["schedule", "add", "nightly", "--cron", "0 2 * * *", "--agent", "default", "Summarise today's logs"]);
    assert_eq!(parsed.status.code(), Some(3), "{}", String::from_utf8_lossy(&parsed.stderr));

    // No daemon yet: a warning that says how to start one, not a failure.
    let doc = |args: &[&str]| -> (i32, serde_json::Value) {
        let mut a = vec!["--json", "doctor"];
        a.extend_from_slice(args);
        let out = owl_in(&dir, &a);
        (out.status.code().unwrap(), serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}")))
    };
    let by_name = |v: &serde_json::Value, n: &str| v["checks"].as_array().unwrap().iter().find(|c| c["name"] == n).cloned().unwrap();
    let (code, v) = doc(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(by_name(&v, "daemon")["level"], "warn", "{v}");
    assert!(by_name(&v, "daemon")["fix"].as_str().unwrap().contains("owl daemon"), "{v}");
    for n in ["config", "sandbox", "disk"] {
        assert_ne!(by_name(&v, n)["level"], "fail", "{n}: {v}");
    }
    let d = Daemon::start(&dir, &[]);
    let (_, v) = doc(&[]);
    assert_eq!(by_name(&v, "daemon")["level"], "ok", "{v}");
    drop(d);

    // A provider that cannot be reached fails, with its address and the cause, and the exit code says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        config_path(&dir),
        format!("[providers.gateway]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n\n[agents.a]\nprovider = \"gateway\"\nmodel = \"m\"\n"),
    )
    .unwrap();
    let (code, v) = doc(&[]);
    assert_eq!(code, 1, "{v}");
    let p = by_name(&v, "provider gateway");
    assert_eq!(p["level"], "fail", "{v}");
    assert!(p["detail"].as_str().unwrap().contains(&format!("cannot connect to http://127.0.0.1:{port}/")), "{p}");
    // A broken config is named.
    std::fs::write(config_path(&dir), "[daemon]\nworkers = \"many\"\n").unwrap();
    let (code, v) = doc(&[]);
    assert_eq!(code, 1);
    assert_eq!(by_name(&v, "config")["level"], "fail", "{v}");
}
