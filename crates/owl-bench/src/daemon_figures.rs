//! Figures of the real `owl daemon` process: start to ready, idle memory and CPU, and the
//! footprint with both local models loaded (`owl-bench footprint`).

use crate::{percentile, round2};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn owl_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let owl = exe.with_file_name("owl");
    assert!(owl.exists(), "build the owl binary next to owl-bench first: cargo build --release -p owl-cli -p owl-bench");
    owl
}

/// Runs the owl CLI against the daemon of `dir`: whether it succeeded, and its stdout.
pub fn owl_cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let out =
        Command::new(owl_binary()).arg("--data-dir").arg(dir).args(args).env("XDG_CONFIG_HOME", dir.join("xdg")).output().expect("run owl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

pub fn start(dir: &Path, port: u16) -> (Child, Duration) {
    let t = Instant::now();
    let child = Command::new(owl_binary())
        .args(["--data-dir", dir.to_str().unwrap(), "daemon", "--listen", &format!("127.0.0.1:{port}")])
        .env("OWL_LOG", "warn")
        .env_remove("OWL_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start owl daemon");
    while !healthy(port) {
        assert!(t.elapsed() < Duration::from_secs(20), "the daemon did not become ready");
        std::thread::sleep(Duration::from_micros(500));
    }
    (child, t.elapsed())
}

pub fn stop(mut c: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    let _ = c.wait();
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// The daemon with no configuration (the default agent on the local model, memory on the
/// local embedder): RSS idle, after one agent task and a memory search (both models loaded),
/// and the peak (VmHWM); once with the f32 embedder (the default) and once with
/// `[memory] precision = "int8"`.
pub fn footprint() -> Vec<(String, Value)> {
    vec![
        ("footprint_local_models".into(), footprint_with(None)),
        ("footprint_local_models_int8_embedder".into(), footprint_with(Some("[memory]\nprecision = \"int8\"\n"))),
    ]
}

fn footprint_with(config: Option<&str>) -> Value {
    let dir = crate::temp_dir();
    if let Some(c) = config {
        std::fs::create_dir_all(dir.join("xdg/owl")).expect("config dir");
        std::fs::write(dir.join("xdg/owl/config.toml"), c).expect("config");
    }
    let port = free_port();
    let (c, _) = start(&dir, port);
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kb(c.id());
    let owl = |args: &[&str]| -> String {
        let (ok, out) = owl_cli(&dir, args);
        assert!(ok, "owl {args:?} failed");
        out
    };
    // The embedder first (a memory and a search), then the agent's model.
    let _ = owl(&["memory", "add", "The build host is called tern."]);
    let _ = owl(&["memory", "search", "what is the build host called"]);
    std::thread::sleep(Duration::from_millis(500));
    let embedder = rss_kb(c.id());
    let embedder_peak = status_kb(c.id(), "VmHWM:");
    let t0 = Instant::now();
    let id = owl(&["add", "--agent", "default", "List the files in the workspace"]);
    let _ = Command::new(owl_binary()).arg("--data-dir").arg(&dir).args(["wait", &id, "--timeout", "300s"]).output();
    let task_s = t0.elapsed().as_secs_f64();
    let status = owl(&["--json", "show", &id]);
    let status: Value = serde_json::from_str(&status).unwrap_or_default();
    let _ = owl(&["memory", "search", "files in the workspace"]);
    std::thread::sleep(Duration::from_millis(500));
    let loaded = rss_kb(c.id());
    let peak = status_kb(c.id(), "VmHWM:");
    // Mapped model files count in RSS as much as the heap does; both are shown.
    let (anon, file) = (status_kb(c.id(), "RssAnon:"), status_kb(c.id(), "RssFile:"));
    stop(c);
    json!({
        "idle_rss_mb": round2(idle as f64 / 1024.0),
        "embedder_loaded_rss_mb": round2(embedder as f64 / 1024.0),
        "embedder_loaded_peak_rss_mb": round2(embedder_peak as f64 / 1024.0),
        "loaded_rss_mb": round2(loaded as f64 / 1024.0),
        "peak_rss_mb": round2(peak as f64 / 1024.0),
        "loaded_rss_anon_mb": round2(anon as f64 / 1024.0),
        "loaded_rss_file_mb": round2(file as f64 / 1024.0),
        "agent_task_s": round2(task_s),
        "agent_task_status": status["status"],
    })
}

fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn run(quick: bool, skip_idle: bool) -> Vec<(String, Value)> {
    let mut out = vec![];
    let mut fresh = vec![];
    let mut warm = vec![];
    for _ in 0..if quick { 3 } else { 7 } {
        let dir = crate::temp_dir();
        let port = free_port();
        let (c, d) = start(&dir, port);
        fresh.push(d.as_secs_f64() * 1000.0);
        stop(c);
        let (c, d) = start(&dir, port);
        warm.push(d.as_secs_f64() * 1000.0);
        stop(c);
    }
    fresh.sort_by(|a, b| a.partial_cmp(b).unwrap());
    warm.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out.push((
        "start_to_ready_ms".into(),
        json!({"new_data_dir_p50": round2(percentile(&fresh, 0.5)), "existing_data_dir_p50": round2(percentile(&warm, 0.5))}),
    ));
    if !skip_idle {
        let dir = crate::temp_dir();
        let (c, _) = start(&dir, free_port());
        std::thread::sleep(Duration::from_secs(1));
        let window = Duration::from_secs(10);
        let t0 = cpu_ticks(c.id());
        std::thread::sleep(window);
        let ticks = cpu_ticks(c.id()) - t0;
        let rss = rss_kb(c.id());
        let cpu_pct = ticks as f64 / clock_ticks_per_s() / window.as_secs_f64() * 100.0;
        out.push(("idle_rss_mb".into(), json!(round2(rss as f64 / 1024.0))));
        out.push(("idle_cpu_percent_10s".into(), json!(round2(cpu_pct))));
        stop(c);
    }
    out
}
