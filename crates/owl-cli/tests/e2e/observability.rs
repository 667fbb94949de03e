//! Metrics, health probes, systemd notifications and schedule health, on a real daemon:
//! scraped by a real Prometheus server and checked by `promtool`.

use crate::harness::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn scrape(d: &Daemon) -> String {
    rt().block_on(async {
        let r = reqwest::Client::new().get(d.url("/metrics")).bearer_auth(&d.token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        r.text().await.unwrap()
    })
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn metrics_are_exported_in_prometheus_naming_and_scraped_by_a_real_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let ok = add(&d, &["--", "true"]);
    let bad = add(&d, &["--", "false"]);
    d.wait_status(ok, "succeeded");
    d.wait_status(bad, "failed");
    d.ok(&["schedule", "add", "tick", "--every", "1s", "--", "true"]);
    wait_for("a successful fire of the schedule", Duration::from_secs(20), || {
        let list = d.json(&["schedule", "ls"]);
        list["schedules"][0]["last_success_at"].as_str().map(|_| ())
    });

    // Without the token: refused.
    rt().block_on(async {
        let r = reqwest::Client::new().get(d.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    });
    let m = scrape(&d);
    assert!(value(&m, "owl_tasks_enqueued_total{source=\"api\"}") == Some(2.0), "{m}");
    assert!(value(&m, "owl_tasks_enqueued_total{source=\"schedule\"}").is_some_and(|v| v >= 1.0), "{m}");
    assert_eq!(value(&m, "owl_task_runs_total{kind=\"command\",outcome=\"failed\"}"), Some(1.0), "{m}");
    assert!(value(&m, "owl_task_runs_total{kind=\"command\",outcome=\"succeeded\"}").is_some_and(|v| v >= 2.0), "{m}");
    assert!(m.contains("owl_task_run_duration_seconds_bucket{kind=\"command\",le=\"14400\"}"), "buckets reach 4 hours: {m}");
    assert!(m.contains("owl_task_queue_wait_seconds_count{kind=\"command\"}"), "{m}");
    assert_eq!(value(&m, "owl_queue_depth{state=\"failed\"}"), Some(1.0), "{m}");
    assert!(value(&m, "owl_schedule_fires_total{schedule=\"tick\",outcome=\"on_time\"}").is_some_and(|v| v >= 1.0), "{m}");
    assert!(m.contains("owl_schedule_fire_lateness_seconds_bucket"), "{m}");
    let last_ok = value(&m, "owl_schedule_last_success_timestamp_seconds{schedule=\"tick\"}").expect("a last success");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last_ok).abs() < 60.0, "a Unix time in seconds: {last_ok}");
    for l in ["dispatch", "scheduler", "triggers"] {
        let beat = value(&m, &format!("owl_loop_heartbeat_timestamp_seconds{{loop=\"{l}\"}}")).unwrap_or_else(|| panic!("{l}: {m}"));
        assert!(now - beat < 60.0, "{l} beat {beat}");
    }
    assert!(m.contains(&format!("owl_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{m}");
    assert_eq!(value(&m, "owl_schedules_overdue"), Some(0.0));
    // Only bounded labels: never a task id.
    let allowed = ["source", "kind", "outcome", "state", "schedule", "provider", "model", "type", "tool", "loop", "version", "le"];
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        if let Some(labels) = line.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(l, _)| l) {
            for pair in labels.split(',') {
                let key = pair.split('=').next().unwrap();
                assert!(allowed.contains(&key), "label {key} in {line}");
            }
        }
    }

    // promtool's lint of the exposition.
    match Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Err(e) => skip(format!("promtool is not installed ({e}); apt-get install prometheus")),
        Ok(mut p) => {
            p.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // A real Prometheus scrapes it with the token and can query what it stored.
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, &d.token).unwrap();
    let port = free_port();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: owl\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{}']\n",
            token_file.display(),
            d.addr
        ),
    )
    .unwrap();
    let prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tmp.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("prometheus.log")).unwrap())
        .spawn();
    let mut prom = match prom {
        Err(e) => return skip(format!("prometheus is not installed ({e}); apt-get install prometheus")),
        Ok(p) => p,
    };
    let query = |q: &str| -> Option<f64> {
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
        let v: serde_json::Value = rt().block_on(async { reqwest::get(url).await.ok()?.json().await.ok() })?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let up = wait_for("Prometheus to scrape owl", Duration::from_secs(60), || query("up%7Bjob%3D%22owl%22%7D"));
    let enqueued = wait_for("the stored series", Duration::from_secs(30), || query("sum(owl_tasks_enqueued_total)"));
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(up, 1.0, "the scrape succeeded: {}", std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default());
    assert!(enqueued >= 3.0, "{enqueued}");
}

#[test]
fn metrics_can_be_opened_to_loopback_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(config_path(&dir), "[health]\nmetrics_open_on_loopback = true\n").unwrap();
    let d = Daemon::start(&dir, &[]);
    rt().block_on(async {
        let r = reqwest::Client::new().get(d.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200, "no token needed from loopback");
        let r = reqwest::Client::new()
            .get(d.url("/metrics"))
            .header("accept", "application/openmetrics-text; version=1.0.0")
            .send()
            .await
            .unwrap();
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
        assert!(r.text().await.unwrap().ends_with("# EOF\n"));
        assert_eq!(reqwest::Client::new().get(d.url("/v1/tasks")).send().await.unwrap().status(), 401, "the API still needs it");
    });
}

#[test]
fn health_probes_and_systemd_readiness_and_watchdog() {
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")]);
    let mut got = vec![];
    let mut buf = [0u8; 256];
    while !(got.iter().any(|m: &String| m.contains("READY=1")) && got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2) {
        let n = sock.recv(&mut buf).expect("a notification from the daemon");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(got[0].contains("READY=1"), "ready first, then watchdog pings: {got:?}");

    rt().block_on(async {
        let http = reqwest::Client::new();
        for probe in ["live", "ready"] {
            let r = http.get(d.url(&format!("/v1/health/{probe}"))).send().await.unwrap();
            assert_eq!(r.status(), 200, "{probe} needs no token");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["status"], "ok", "{v}");
        }
    });
    let out = d.owl(&["health"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for check in ["loop:dispatch", "loop:scheduler", "store", "disk", "memory"] {
        assert!(text.contains(check), "{check}: {text}");
    }
    let v = d.json(&["health"]);
    assert_eq!(v["status"], "ok");
    assert!(v["ready"]["checks"].as_array().unwrap().iter().any(|c| c["name"] == "store" && c["ok"] == true), "{v}");
}

#[test]
fn a_nearly_full_disk_pauses_new_work_and_readiness_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let cfg = config_path(&dir);
    // More free space than any disk has: the data dir's disk counts as full.
    std::fs::write(&cfg, "[health]\nmin_free_disk_mb = 1000000000000\n").unwrap();
    let mut d = Daemon::start(&dir, &[]);
    let id = add(&d, &["--", "true"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.task(id)["status"], "queued", "the task waits rather than fails");
    let out = d.owl(&["health"]);
    assert_eq!(out.status.code(), Some(1), "unhealthy exits 1");
    let v: serde_json::Value = serde_json::from_slice(&d.owl(&["--json", "health"]).stdout).unwrap();
    let disk = v["ready"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "disk").unwrap().clone();
    assert_eq!(disk["ok"], false);
    assert!(disk["reason"].as_str().unwrap().contains("min_free_disk_mb"), "names the setting: {disk}");
    // Space "freed": the config is lowered and reloaded; the waiting task runs.
    std::fs::write(&cfg, "[health]\nmin_free_disk_mb = 1\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_status(id, "succeeded");
    std::thread::sleep(Duration::from_millis(1100)); // readiness answers are reused for a second
    assert_eq!(d.json(&["health"])["status"], "ok");
    d.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
}

#[test]
fn schedule_health_shows_the_last_success_flags_overdue_schedules_and_records_paused_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(config_path(&dir), "[health]\nschedule_grace = \"1s\"\n").unwrap();
    let d = Daemon::start(&dir, &[]);
    d.ok(&["schedule", "add", "good", "--every", "1s", "--", "true"]);
    d.ok(&["schedule", "add", "broken", "--every", "1s", "--", "false"]);
    let find = |name: &str| -> serde_json::Value {
        d.json(&["schedule", "ls"])["schedules"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone()
    };
    let broken = wait_for("the failing schedule to be flagged", Duration::from_secs(30), || {
        let b = find("broken");
        (b["overdue"] == true).then_some(b)
    });
    assert_eq!(broken["last_success_at"], serde_json::Value::Null);
    assert_ne!(broken["last_status"], "succeeded", "{broken}");
    let good = find("good");
    assert_eq!(good["overdue"], false, "{good}");
    assert!(good["last_success_at"].is_string() && good["success_due_by"].is_string(), "{good}");
    assert!(good["on_time"].as_u64().unwrap() >= 1, "{good}");
    let table = d.ok(&["schedule", "ls"]);
    assert!(table.contains("OVERDUE") && table.contains("LAST OK"), "{table}");
    let shown = d.ok(&["schedule", "show", "broken"]);
    assert!(shown.contains("OVERDUE: no success since"), "{shown}");
    let m = scrape(&d);
    assert_eq!(value(&m, "owl_schedules_overdue"), Some(1.0), "{m}");

    // Slots that pass while paused are recorded as skipped, and counted so.
    d.ok(&["schedule", "pause", "good"]);
    std::thread::sleep(Duration::from_millis(3500));
    d.ok(&["schedule", "resume", "good"]);
    let h = d.json(&["schedule", "history", "good", "--limit", "50"]);
    let paused = h["history"].as_array().unwrap().iter().filter(|f| f["reason"] == "skipped: the schedule was paused").count();
    assert!(paused >= 2, "{h}");
    let resumed = find("good");
    assert_eq!(resumed["state"], "active");
    assert_eq!(resumed["overdue"], false, "a pause owes nothing: it is due from its resume on: {resumed}");
    let m = scrape(&d);
    assert!(value(&m, "owl_schedule_fires_total{schedule=\"good\",outcome=\"skipped_paused\"}").is_some_and(|v| v >= 2.0), "{m}");
}

#[test]
fn a_run_far_slower_than_usual_is_an_anomaly_in_owl_anomalies_and_the_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(config_path(&dir), "[anomalies]\nduration_floor = \"300ms\"\nbaseline_runs = 20\n").unwrap();
    let d = Daemon::start(&dir, &[]);
    // The usual: ten quick runs.
    let quick: Vec<i64> = (0..10).map(|_| add(&d, &["--", "true"])).collect();
    for id in &quick {
        d.wait_status(*id, "succeeded");
    }
    assert_eq!(d.json(&["anomalies"])["anomalies"], serde_json::json!([]), "nothing unusual yet");
    let slow = add(&d, &["--", "sleep", "1.5"]);
    d.wait_status(slow, "succeeded");
    let list = wait_for("the anomaly", Duration::from_secs(10), || {
        let v = d.json(&["anomalies"]);
        (!v["anomalies"].as_array().unwrap().is_empty()).then_some(v)
    });
    let a = &list["anomalies"][0];
    assert_eq!((a["task_id"].as_i64(), a["scope"].as_str(), a["subject"].as_str()), (Some(slow), Some("kind"), Some("command")), "{a}");
    assert_eq!(a["metric"], "duration_seconds");
    assert!(a["value"].as_f64().unwrap() >= 1.5 && a["median"].as_f64().unwrap() < 0.5 && a["samples"].as_u64() == Some(10), "{a}");
    let text = d.ok(&["anomalies"]);
    assert!(text.contains("kind command: this run took") && text.contains(&format!("{slow} (attempt 1)")), "{text}");
    assert_eq!(d.json(&["anomalies", "--scope", "schedule"])["anomalies"], serde_json::json!([]));
    assert_eq!(d.json(&["anomalies", "--task", &slow.to_string()])["anomalies"].as_array().unwrap().len(), 1);
    let bad = d.owl(&["anomalies", "--since", "soon"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("since"), "{bad:?}");
    let m = scrape(&d);
    assert_eq!(value(&m, "owl_anomalies_total{scope=\"kind\",metric=\"duration_seconds\"}"), Some(1.0), "{m}");
}

#[test]
fn reports_say_what_ran_and_failed_in_every_format_and_the_daily_one_is_written_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let formats = if cfg!(feature = "pdf") { r#"["md", "html", "pdf"]"# } else { r#"["md", "html"]"# };
    std::fs::write(config_path(&dir), format!("[reports]\ndaily_at = \"00:00\"\nformats = {formats}\n")).unwrap();
    let d = Daemon::start(&dir, &[]);
    // The morning's report of yesterday is written at start (its time has passed).
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let md_file = dir.join(format!("reports/daily-{yesterday}.md"));
    // The formats are written one after the other; wait for each.
    for ext in ["md", "html"].into_iter().chain(cfg!(feature = "pdf").then_some("pdf")) {
        let f = dir.join(format!("reports/daily-{yesterday}.{ext}"));
        wait_for("the daily report files", Duration::from_secs(20), || f.exists().then_some(()));
    }
    assert!(std::fs::read_to_string(&md_file).unwrap().contains(&format!("owl daily report: {}", yesterday_title(&yesterday))));
    let ok = add(&d, &["--", "true"]);
    let bad = add(&d, &["--", "sh", "-c", "echo boom; exit 3"]);
    d.wait_status(ok, "succeeded");
    d.wait_status(bad, "failed");
    // The samples are recorded just after the completion.
    let md = wait_for("both runs in the report", Duration::from_secs(10), || {
        let md = d.ok(&["report", "daily"]);
        md.contains("2 runs of 2 tasks").then_some(md)
    });
    for want in ["## Failed (1)", "exited with code 3", &format!("`owl show {bad}`"), "## Schedules", "## Per hour"] {
        assert!(md.contains(want), "lacks {want:?}:\n{md}");
    }
    let html = tmp.path().join("r.html");
    d.ok(&["report", "daily", "--date", "today", "--format", "html", "--out", html.to_str().unwrap()]);
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.matches("<svg").count() == 2, "{html}");
    let week: serde_json::Value = serde_json::from_str(&d.ok(&["report", "performance", "--since", "2d", "--format", "json"])).unwrap();
    assert_eq!(week["totals"]["runs"], 2, "{week}");
    assert_eq!(week["kind"], "performance");
    assert!(week["buckets"].as_array().unwrap().len() >= 2, "one bar per day");
    let bad_date = d.owl(&["report", "daily", "--date", "12/01/2026"]);
    assert!(String::from_utf8_lossy(&bad_date.stderr).contains("is not a date"), "{bad_date:?}");
    if cfg!(feature = "pdf") {
        let pdf = tmp.path().join("r.pdf");
        d.ok(&["report", "daily", "--format", "pdf", "--out", pdf.to_str().unwrap()]);
        let text = Command::new("pdftotext").arg(&pdf).arg("-").output().expect("pdftotext (poppler-utils) reads the PDF");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("owl daily report") && text.contains("exited with code 3") && text.contains("Failed (1)"), "{text}");
    } else {
        let out = d.owl(&["report", "daily", "--format", "pdf", "--out", "/dev/null"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("--features pdf"), "{out:?}");
    }
}

/// `Tuesday 2026-12-01` for `2026-12-01`.
fn yesterday_title(date: &str) -> String {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap().format("%A %Y-%m-%d").to_string()
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn filling_a_real_small_disk_pauses_new_work_until_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"]).arg(&mnt).status().is_ok_and(|s| s.success());
    if !mounted {
        skip("cannot mount a tmpfs (needs root)");
        return;
    }
    let disk = SmallDisk(mnt.clone());
    let dir = mnt.join("data");
    std::fs::write(config_path(&dir), "[health]\nmin_free_disk_mb = 16\n").unwrap();
    let mut d = Daemon::start(&dir, &[]);
    let first = add(&d, &["--", "true"]);
    d.wait_status(first, "succeeded");
    // Fill the disk until less than the threshold is free.
    let filler = mnt.join("filler");
    let dd = Command::new("dd").args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=1M", "count=40"]).output().unwrap();
    assert!(dd.status.success(), "{dd:?}");
    std::thread::sleep(Duration::from_millis(2500)); // the dispatch loop rechecks the disk every 2 s
    let waiting = add(&d, &["--", "true"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.task(waiting)["status"], "queued", "new work waits on a full disk, nothing fails");
    let v: serde_json::Value = serde_json::from_slice(&d.owl(&["--json", "health"]).stdout).unwrap();
    let check = v["ready"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "disk").unwrap().clone();
    assert_eq!(check["ok"], false, "{v}");
    assert!(check["reason"].as_str().unwrap().contains("min_free_disk_mb"), "{check}");
    // Space freed: the waiting task runs by itself.
    std::fs::remove_file(&filler).unwrap();
    d.wait_status(waiting, "succeeded");
    d.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    drop(d);
    drop(disk);
}
