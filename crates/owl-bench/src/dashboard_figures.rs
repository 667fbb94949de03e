//! The dashboard with a million finished tasks: time to first paint and to data of the
//! overview and tasks pages in headless Chromium (through chromedriver), and the daemon's RSS
//! with the dashboard open (`owl-bench dashboard`).

use crate::daemon_figures::{free_port, owl_cli, rss_kb, start, stop};
use crate::{percentile, round2};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Fills the store with `n` finished tasks: one real task run to success through the store,
/// then copied row by row in SQL (every column, whatever the schema holds).
fn fill(db: &Path, n: u64) -> f64 {
    let t = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use owl_store::prelude::*;
        let s = owl_store_sqlite::SqliteStore::open(db, owl_store_sqlite::Durability::Full).unwrap();
        let now = owl_core::Timestamp::from_system(std::time::SystemTime::now());
        let spec = owl_core::TaskSpec::new(owl_core::Command::Shell("make report".into()));
        s.submit(vec![owl_store::NewTask::new(spec)], now).await.unwrap();
        let c = s.claim(owl_store::Claim { node: "bench".into(), now, lease: Duration::from_secs(30), limit: 1 }).await.unwrap().remove(0);
        let done = owl_store::Completion {
            id: c.id,
            attempt: c.attempt,
            outcome: owl_core::RunOutcome::Succeeded,
            exit_code: Some(0),
            signal: None,
            now,
            policy: Default::default(),
            jitter: 0.0,
        };
        s.complete(done).await.unwrap();
    });
    let conn = rusqlite::Connection::open(db).unwrap();
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('tasks') WHERE name <> 'id' AND name <> 'idempotency_key'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let list = cols.join(", ");
    conn.execute_batch(&format!(
        "BEGIN; WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {})
         INSERT INTO tasks ({list}) SELECT {list} FROM tasks, k WHERE tasks.id = 1; COMMIT;",
        n - 1
    ))
    .unwrap();
    t.elapsed().as_secs_f64()
}

struct Driver {
    child: std::process::Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Driver {
    fn start() -> Result<Driver, String> {
        let port = free_port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("chromedriver: {e} (Debian: chromium-driver)"))?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::new();
        let t = Instant::now();
        while http.get(format!("{base}/status")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            if t.elapsed() > Duration::from_secs(20) {
                return Err("chromedriver did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]}}}});
        let v: Value =
            http.post(format!("{base}/session")).json(&caps).send().map_err(|e| e.to_string())?.json().map_err(|e| e.to_string())?;
        let session = v["value"]["sessionId"].as_str().ok_or(format!("no browser session: {v}"))?.to_string();
        Ok(Driver { child, base, session, http })
    }

    fn cmd(&self, path: &str, body: Value) -> Value {
        let v: Value = self.http.post(format!("{}/session/{}{path}", self.base, self.session)).json(&body).send().unwrap().json().unwrap();
        v["value"].clone()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd("/execute/sync", json!({"script": script, "args": []}))
    }

    /// Loads `url` fresh and returns (first contentful paint, first data on screen) in ms from
    /// the navigation's start.
    fn load(&self, url: &str) -> (f64, f64) {
        self.cmd("/url", json!({"url": "about:blank"}));
        self.cmd("/url", json!({ "url": url }));
        let t = Instant::now();
        loop {
            let v = self.js(
                "const p = performance.getEntriesByName('first-contentful-paint')[0]; const d = performance.getEntriesByName('owl:data')[0]; \
                 return p && d ? [p.startTime, d.startTime] : null",
            );
            if let Some(a) = v.as_array() {
                return (a[0].as_f64().unwrap_or(f64::NAN), a[1].as_f64().unwrap_or(f64::NAN));
            }
            assert!(t.elapsed() < Duration::from_secs(60), "the page never showed its data");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(quick: bool) -> Vec<(String, Value)> {
    let n: u64 = if quick { 100_000 } else { 1_000_000 };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let fill_s = fill(&owl_core::layout::DataLayout::new(&dir).database(), n);
    let port = free_port();
    let (daemon, _) = start(&dir, port);
    let pid = daemon.id();
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_kb(pid);
    let driver = match Driver::start() {
        Ok(d) => d,
        Err(e) => {
            stop(daemon);
            return vec![("dashboard".into(), json!({ "skipped": e }))];
        }
    };
    let (ok, link) = owl_cli(&dir, &["dashboard", "--url"]);
    assert!(ok, "owl dashboard: {link}");
    driver.cmd("/url", json!({ "url": link }));
    let base = format!("http://127.0.0.1:{port}/ui/");
    let mut figures = serde_json::Map::new();
    for (name, page) in [("overview", ""), ("tasks", "#/tasks")] {
        let (mut paint, mut data) = (vec![], vec![]);
        for _ in 0..if quick { 3 } else { 7 } {
            let (p, d) = driver.load(&format!("{base}{page}"));
            paint.push(p);
            data.push(d);
        }
        paint.sort_by(f64::total_cmp);
        data.sort_by(f64::total_cmp);
        figures.insert(
            name.into(),
            json!({"first_paint_ms_p50": round2(percentile(&paint, 0.5)), "data_ms_p50": round2(percentile(&data, 0.5)),
                   "data_ms_max": round2(*data.last().unwrap())}),
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_open = rss_kb(pid);
    drop(driver);
    stop(daemon);
    figures.insert("finished_tasks".into(), json!(n));
    figures.insert("fill_s".into(), json!(round2(fill_s)));
    figures.insert("daemon_rss_mb_before_sign_in".into(), json!(round2(rss_before as f64 / 1024.0)));
    figures.insert("daemon_rss_mb_with_dashboard_open".into(), json!(round2(rss_open as f64 / 1024.0)));
    vec![("dashboard".into(), Value::Object(figures))]
}
