//! Starting, stopping and talking to a real daemon.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const OWL: &str = env!("CARGO_BIN_EXE_owl");

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Daemon {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub addr: String,
    pub token: String,
    pub env: Vec<(String, String)>,
    /// A command the daemon is started through (`owl` and its arguments follow it).
    pub wrap: Vec<String>,
}

impl Daemon {
    /// Starts a daemon on `dir` with a free port and waits until it answers.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_wrapped(dir, env, &[])
    }

    /// Like [`Daemon::start`], through `wrap` (say, `unshare` and its options), which must end
    /// by executing the program it is given, so that the daemon keeps the child's pid.
    pub fn start_wrapped(dir: &Path, env: &[(&str, &str)], wrap: &[&str]) -> Daemon {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let wrap = wrap.iter().map(|w| w.to_string()).collect();
        let mut d = Daemon { dir: dir.to_path_buf(), child: None, addr: String::new(), token: String::new(), env, wrap };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.with_extension("daemon.log")).unwrap();
        let mut cmd = match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(OWL);
                c
            }
            None => Command::new(OWL),
        };
        cmd.args(["--data-dir", self.dir.to_str().unwrap(), "daemon", "--listen", "127.0.0.1:0"])
            .env_remove("OWL_DATA_DIR")
            .env_remove("OWL_CONFIG")
            // The daemon sets its own malloc arena limit unless one is given (a test gives it).
            .env_remove("MALLOC_ARENA_MAX")
            .env_remove("GLIBC_TUNABLES")
            .env("XDG_CONFIG_HOME", xdg(&self.dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start owl daemon");
        let pid = child.id();
        self.child = Some(child);
        let info_path = self.dir.join("daemon.json");
        let info: serde_json::Value = wait_for("daemon.json of the new daemon", Duration::from_secs(20), || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "the daemon exited early with {st}; log: {}",
                        std::fs::read_to_string(self.dir.with_extension("daemon.log")).unwrap_or_default()
                    );
                }
            }
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&info_path).ok()?).ok()?;
            (v["pid"].as_u64() == Some(pid as u64)).then_some(v)
        });
        self.addr = info["listen"].as_str().unwrap().to_string();
        self.token = std::fs::read_to_string(self.dir.join("token")).unwrap().trim().to_string();
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon before restarting it");
        self.spawn();
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` and waits for the exit; returns the exit status.
    pub fn signal_and_wait(&mut self, sig: nix::sys::signal::Signal, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig).unwrap();
        wait_for("the daemon to exit", timeout, || c.try_wait().unwrap())
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Runs the CLI against this daemon's data dir.
    pub fn owl(&self, args: &[&str]) -> Output {
        owl_in(&self.dir, args)
    }

    /// Runs the CLI and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.owl(args);
        assert!(
            out.status.success(),
            "owl {args:?} failed with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn task(&self, id: i64) -> serde_json::Value {
        self.json(&["show", &id.to_string()])
    }

    pub fn wait_status(&self, id: i64, want: &str) -> serde_json::Value {
        wait_for(&format!("task {id} to be {want}"), Duration::from_secs(30), || {
            let t = self.task(id);
            (t["status"] == want).then_some(t)
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn owl_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(OWL)
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .env_remove("OWL_DATA_DIR")
        .env_remove("OWL_CONFIG")
        .env("XDG_CONFIG_HOME", xdg(dir))
        .stdin(Stdio::null())
        .output()
        .expect("run owl")
}

/// Submits `n` copies of a shell task in one batch through the API; returns their ids.
pub fn submit_shell_batch(d: &Daemon, rt: &tokio::runtime::Runtime, shell: &str, n: usize) -> Vec<i64> {
    let tasks: Vec<serde_json::Value> = (0..n).map(|_| serde_json::json!({ "shell": shell })).collect();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(d.url("/v1/tasks/batch"))
            .bearer_auth(&d.token)
            .json(&serde_json::json!({ "tasks": tasks }))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        v["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect()
    })
}

pub fn add(d: &Daemon, args: &[&str]) -> i64 {
    let mut a = vec!["add"];
    a.extend_from_slice(args);
    d.ok(&a).trim().parse().expect("owl add prints an id")
}

/// Each test's private XDG config home, so the machine's own config never leaks in.
pub fn xdg(dir: &Path) -> PathBuf {
    dir.with_extension("xdg")
}

/// Where the daemon and CLI of `dir` read their config file.
pub fn config_path(dir: &Path) -> PathBuf {
    let p = xdg(dir).join("owl/config.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    p
}

/// Serves `app` on a loopback port from a thread of its own, for as long as the test runs;
/// returns the port.
pub fn serve(app: axum::Router) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Says why a test cannot run here. Under `CI=true` that fails the test: `.ci/run` installs
/// everything the suite needs, so a skip in CI means a check silently did not run.
pub fn skip(why: impl std::fmt::Display) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("skipped under CI=true: {why}; .ci/run must provide what this test needs");
    }
    eprintln!("SKIPPED: {why}");
}
