//! Schedules on the real daemon.

use crate::harness::*;
use std::time::Duration;

#[test]
fn a_cron_schedule_on_the_real_daemon_runs_a_shell_task() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let ledger = tmp.path().join("ledger");
    // Every second (6 fields, seconds first), in a named time zone.
    let out = d.ok(&[
        "schedule",
        "add",
        "tick",
        "--cron",
        "* * * * * *",
        "--tz",
        "Europe/Berlin",
        "--overlap",
        "allow",
        "--label",
        "e2e",
        "--shell",
        "--",
        &format!("echo \"$OWL_SCHEDULE $OWL_SCHEDULED_FOR\" >> {}", ledger.display()),
    ]);
    assert!(out.contains("schedule tick created") && out.contains("Europe/Berlin"), "{out}");
    let lines = wait_for("three scheduled runs", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&ledger).ok()?;
        (text.lines().count() >= 3).then_some(text)
    });
    assert!(lines.lines().all(|l| l.starts_with("tick 20")), "{lines}");
    let v = d.json(&["schedule", "show", "tick"]);
    assert_eq!(v["state"], "active");
    assert!(v["fired"].as_u64().unwrap() >= 3);
    assert_eq!(v["upcoming"].as_array().unwrap().len(), 5);
    let h = d.json(&["schedule", "history", "tick"]);
    let first = &h["history"][0];
    assert_eq!(first["outcome"], "fired");
    assert!(first["lateness_ms"].as_u64().unwrap() < 1000, "fires on time: {first}");
    let tasks = d.json(&["ls", "--label", "schedule:tick"]);
    assert!(tasks["tasks"].as_array().unwrap().len() >= 3);

    d.ok(&["schedule", "pause", "tick"]);
    let fired = d.json(&["schedule", "show", "tick"])["fired"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(d.json(&["schedule", "show", "tick"])["fired"].as_u64().unwrap(), fired, "a paused schedule does not fire");
    let id: i64 = d.ok(&["schedule", "run-now", "tick"]).trim().parse().unwrap();
    d.wait_status(id, "succeeded");
    assert_eq!(d.json(&["schedule", "history", "tick"])["history"][0]["outcome"], "manual");
    d.ok(&["schedule", "resume", "tick"]);
    wait_for("fires after resume", Duration::from_secs(10), || {
        (d.json(&["schedule", "show", "tick"])["fired"].as_u64().unwrap() > fired + 1).then_some(())
    });
    let ls = d.ok(&["schedule", "ls"]);
    assert!(ls.starts_with("NAME") && ls.contains("tick") && ls.contains("active"), "{ls}");
    d.ok(&["schedule", "rm", "tick"]);
    let out = d.owl(&["schedule", "show", "tick"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no schedule named `tick`"));
}

#[test]
fn interval_and_one_time_schedules_and_their_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &[]);
    let at = owl_core::Timestamp::from_system(std::time::SystemTime::now()).plus(Duration::from_secs(2)).to_rfc3339();
    d.ok(&["schedule", "add", "once", "--at", &at, "--", "true"]);
    d.ok(&["schedule", "add", "poll", "--every", "1s", "--jitter", "100ms", "--max-runs", "2", "--", "true"]);
    wait_for("both to finish", Duration::from_secs(20), || {
        let list = d.json(&["schedule", "ls"]);
        list["schedules"].as_array().unwrap().iter().all(|s| s["state"] == "finished").then_some(())
    });
    assert_eq!(d.json(&["schedule", "show", "once"])["fired"], 1);
    assert_eq!(d.json(&["schedule", "show", "poll"])["fired"], 2);
    let cases: &[(&[&str], &str)] = &[
        (&["schedule", "add", "x", "--cron", "61 * * * *", "--", "true"], "minute field `61`"),
        (&["schedule", "add", "x", "--cron", "0 2 * * *", "--tz", "Mars/Base", "--", "true"], "not a known time zone"),
        (&["schedule", "add", "x", "--every", "soon", "--", "true"], "every"),
        (&["schedule", "add", "x", "--at", "2001-01-01T00:00:00Z", "--", "true"], "no future slot"),
        (&["schedule", "add", "once", "--every", "1m", "--", "true"], "already exists"),
        (&["schedule", "add", "x", "--every", "1m", "--overlap", "sometimes", "--", "true"], "overlap policy"),
    ];
    for (args, needle) in cases {
        let out = d.owl(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Usage errors (no when, two whens) are caught by the CLI itself.
    assert_eq!(d.owl(&["schedule", "add", "x", "--", "true"]).status.code(), Some(2));
    assert_eq!(d.owl(&["schedule", "add", "x", "--cron", "@daily", "--every", "1m", "--", "true"]).status.code(), Some(2));
}

#[test]
fn cron_next_previews_without_a_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let out = owl_in(
        tmp.path(),
        &["--json", "cron", "next", "0 30 2 * * *", "--tz", "America/New_York", "--after", "2026-03-07T00:00:00Z", "-n", "3"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let utc: Vec<&str> = v["next"].as_array().unwrap().iter().map(|n| n["utc"].as_str().unwrap()).collect();
    // The 8th has no 02:30 (spring forward): it runs right after the jump, at 03:00 EDT.
    assert_eq!(utc, vec!["2026-03-07T07:30:00.000Z", "2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"]);
    let out = owl_in(tmp.path(), &["cron", "next", "0 25 * * *"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("^^"), "the error points at the field");
}
