//! The scheduler under a simulated clock, over the real SQLite store and the real PostgreSQL
//! store (where a racing pass comes from a second node with its own connections).

use crate::scheduler::Scheduler;
use owl_core::lifecycle::RetryPolicy;
use owl_core::schedule::{Misfire, Overlap, ScheduleSpec, When};
use owl_core::task::Status;
use owl_core::{Command, RunOutcome, TaskSpec, Timestamp};
use owl_store::{Claim, Completion, Store, TaskFilter};
use owl_store_sqlite::{Durability, SqliteStore};
use std::sync::Arc;
use std::time::Duration;

const START: &str = "2026-06-01T00:00:00Z";

fn t0() -> Timestamp {
    Timestamp::parse_rfc3339(START).unwrap()
}

fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    // NORMAL keeps a simulated day quick; durability is not what these tests are about.
    Arc::new(SqliteStore::open(&dir.path().join("owl.db"), Durability::Normal).unwrap())
}

/// Which store a test runs on: both backends pass the same simulated schedules.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store, and a second handle on the same database: another node's (SQLite: the same).
async fn stores(b: Backend) -> (Arc<dyn Store>, Arc<dyn Store>, Option<tempfile::TempDir>) {
    match b {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let s = store(&dir);
            (s.clone(), s, Some(dir))
        }
        Backend::Postgres => {
            let url = owl_store_postgres::testing::fresh_schema().await.unwrap();
            let open = || async {
                let opts = owl_store_postgres::Options { pool_size: 4, migrate: owl_store_postgres::Migrate::Apply, ..Default::default() };
                Arc::new(owl_store_postgres::PgStore::open(&url, opts).await.unwrap()) as Arc<dyn Store>
            };
            (open().await, open().await, None)
        }
    }
}

/// One test per backend, `sqlite` and `postgres`, in a module named after the case.
macro_rules! on_both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(super::Backend::Postgres).await
            }
        }
    };
}

fn minutely(name: &str, misfire: Misfire, overlap: Overlap) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        when: When::Cron { expr: "* * * * *".into(), tz: "Europe/Berlin".into() },
        template: TaskSpec::new(Command::Argv(vec!["true".into()])),
        misfire,
        misfire_cap: 50,
        overlap,
        max_lateness_ms: 60_000,
        jitter_ms: 0,
        end_at: None,
        max_runs: None,
        created_by: None,
    }
}

async fn create(s: &Arc<dyn Store>, spec: ScheduleSpec, now: Timestamp) -> i64 {
    let next = owl_core::schedule::Compiled::new(spec.when.clone()).unwrap().next_after(now);
    s.create_schedule(spec, next, now).await.unwrap().id
}

fn no_jitter() -> impl FnMut() -> f64 + Send {
    || 0.0
}

async fn fired_slots(s: &Arc<dyn Store>, name: &str) -> Vec<Timestamp> {
    let mut v: Vec<Timestamp> =
        s.schedule_history(name, 100_000).await.unwrap().into_iter().filter(|r| r.outcome == "fired").map(|r| r.scheduled_for).collect();
    v.sort();
    v
}

on_both!(a_minutely_schedule_fires_exactly_1440_times_in_a_simulated_day_across_restarts);
async fn a_minutely_schedule_fires_exactly_1440_times_in_a_simulated_day_across_restarts(b: Backend) {
    let (s, _other, _dir) = stores(b).await;
    create(&s, minutely("m", Misfire::Skip, Overlap::Allow), t0()).await;
    let end = t0().plus(Duration::from_secs(86_400));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut sched = Scheduler::new(s.clone());
    let mut j = no_jitter();
    let mut now = t0();
    let (mut restarts, mut ticks) = (0, 0);
    loop {
        // Wake like the real loop: at the next due time, a little late, sometimes twice.
        let next = s.next_schedule_due().await.unwrap().unwrap();
        if next > end {
            break;
        }
        now = now.max(next.plus(Duration::from_millis(rng.u64(0..900))));
        sched.tick(now, &mut j).await.unwrap();
        ticks += 1;
        if rng.u8(0..10) == 0 {
            sched.tick(now, &mut j).await.unwrap(); // a spurious second wake
        }
        if rng.u8(0..20) == 0 {
            // A restart: a new scheduler with no memory; sometimes down for up to 40 s.
            sched = Scheduler::new(s.clone());
            restarts += 1;
            now = now.plus(Duration::from_millis(rng.u64(0..40_000)));
            sched.tick(now, &mut j).await.unwrap();
        }
        if rng.u8(0..25) == 0 {
            // Two schedulers racing over the same store (a stale pass must be refused).
            let mut other = Scheduler::new(_other.clone());
            let (mut ja, mut jb) = (no_jitter(), no_jitter());
            let (a, b) = tokio::join!(sched.tick(now, &mut ja), other.tick(now, &mut jb));
            a.unwrap();
            b.unwrap();
        }
    }
    let slots = fired_slots(&s, "m").await;
    assert!(restarts > 20 && ticks > 1000, "the walk really restarted and ticked: restarts {restarts}, ticks {ticks}");
    assert_eq!(slots.len(), 1440, "one fire per minute of the day");
    for (i, slot) in slots.iter().enumerate() {
        assert_eq!(*slot, t0().plus(Duration::from_secs(60 * (i as u64 + 1))), "slot {i}");
    }
    let tasks = s.list(TaskFilter { label: Some("schedule:m".into()), limit: Some(10_000), ..Default::default() }).await.unwrap();
    assert_eq!(tasks.len(), 1440, "one task per fire");
    let sch = s.get_schedule("m").await.unwrap();
    assert_eq!((sch.fired, sch.missed, sch.skipped), (1440, 0, 0));
}

on_both!(a_clock_stepped_backwards_never_fires_a_slot_twice);
async fn a_clock_stepped_backwards_never_fires_a_slot_twice(b: Backend) {
    let (s, _other, _dir) = stores(b).await;
    create(&s, minutely("b", Misfire::Skip, Overlap::Allow), t0()).await;
    let mut sched = Scheduler::new(s.clone());
    let mut j = no_jitter();
    for m in 1..=30 {
        sched.tick(t0().plus(Duration::from_secs(60 * m)), &mut j).await.unwrap();
    }
    assert_eq!(fired_slots(&s, "b").await.len(), 30);
    // The clock steps back 20 minutes and runs forward again.
    for m in 10..=30 {
        sched.tick(t0().plus(Duration::from_secs(60 * m + 5)), &mut j).await.unwrap();
    }
    assert_eq!(fired_slots(&s, "b").await.len(), 30, "no slot fired again");
    sched.tick(t0().plus(Duration::from_secs(60 * 31)), &mut j).await.unwrap();
    assert_eq!(fired_slots(&s, "b").await.len(), 31, "and the next new slot still fires");
}

on_both!(each_misfire_policy_after_three_hours_down);
async fn each_misfire_policy_after_three_hours_down(b: Backend) {
    for (policy, expected) in [(Misfire::Skip, 0usize), (Misfire::Once, 1), (Misfire::All, 50)] {
        let (s, _other, _dir) = stores(b).await;
        let name = format!("{policy:?}").to_lowercase();
        create(&s, minutely(&name, policy, Overlap::Allow), t0()).await;
        let mut sched = Scheduler::new(s.clone());
        let mut j = no_jitter();
        sched.tick(t0().plus(Duration::from_secs(60)), &mut j).await.unwrap();
        // Down from 00:01:30 to 03:01:30: the slots 00:02 .. 03:00 are missed (179 of them);
        // 03:01 is within the allowed lateness and fires normally.
        let back = t0().plus(Duration::from_secs(3 * 3600 + 90));
        sched.tick(back, &mut j).await.unwrap();
        let down_from = t0().plus(Duration::from_secs(90));
        let down_to = t0().plus(Duration::from_secs(3 * 3600 + 30));
        let fired: Vec<Timestamp> = fired_slots(&s, &name).await.into_iter().filter(|t| *t > down_from && *t < down_to).collect();
        assert_eq!(fired.len(), expected, "{policy:?}");
        let hist = s.schedule_history(&name, 10_000).await.unwrap();
        let missed = hist.iter().filter(|r| r.outcome == "missed").count();
        assert_eq!(missed, 179 - expected, "{policy:?}: every slot not run is in the history as missed");
        assert!(hist.iter().filter(|r| r.outcome == "missed").all(|r| r.reason.as_deref().unwrap_or("").contains("missed")));
        assert!(
            fired_slots(&s, &name).await.contains(&t0().plus(Duration::from_secs(3 * 3600 + 60))),
            "{policy:?}: the on-time slot fires"
        );
    }
}

/// Simulates tasks that each run `job` seconds, for `minutes` minutes of a 60 s schedule,
/// one second at a time. Returns (fires, peak concurrency).
async fn overlap_run(b: Backend, policy: Overlap, job: u64, minutes: u64) -> (usize, usize) {
    let (s, _other, _dir) = stores(b).await;
    let mut spec = minutely("o", Misfire::Skip, policy);
    spec.when = When::Every { every_ms: 60_000, anchor: t0() };
    create(&s, spec, t0().minus(Duration::from_millis(1))).await;
    let mut sched = Scheduler::new(s.clone());
    let mut j = no_jitter();
    let mut running: Vec<(owl_core::TaskId, u32, Timestamp)> = vec![];
    let mut peak = 0;
    for sec in 0..=minutes * 60 {
        let now = t0().plus(Duration::from_secs(sec));
        // Jobs that reached their end succeed.
        let (done, still): (Vec<_>, Vec<_>) = running.into_iter().partition(|(_, _, end)| *end <= now);
        running = still;
        for (id, attempt, _) in done {
            complete(&s, id, attempt, RunOutcome::Succeeded, now).await;
        }
        let report = sched.tick(now, &mut j).await.unwrap();
        for (id, _) in report.cancel {
            // What the engine does for `replace`: stop the running task.
            if let Some(pos) = running.iter().position(|r| r.0 == id) {
                let (id, attempt, _) = running.remove(pos);
                s.cancel(id, None, now).await.unwrap();
                complete(&s, id, attempt, RunOutcome::Cancelled { reason: None }, now).await;
            }
        }
        for c in s.claim(Claim { node: "sim".into(), now, lease: Duration::from_secs(3600), limit: 100 }).await.unwrap() {
            running.push((c.id, c.attempt, now.plus(Duration::from_secs(job))));
        }
        peak = peak.max(running.len());
    }
    (fired_slots(&s, "o").await.len(), peak)
}

async fn complete(s: &Arc<dyn Store>, id: owl_core::TaskId, attempt: u32, outcome: RunOutcome, now: Timestamp) {
    s.complete(Completion { id, attempt, outcome, exit_code: Some(0), signal: None, now, policy: RetryPolicy::default(), jitter: 0.0 })
        .await
        .unwrap();
}

on_both!(each_overlap_policy_with_a_150s_job_on_a_60s_schedule);
async fn each_overlap_policy_with_a_150s_job_on_a_60s_schedule(b: Backend) {
    // Slots at 0, 60, ..., 600 s: 11 slots in 10 minutes.
    let (fires, peak) = overlap_run(b, Overlap::Allow, 150, 10).await;
    assert_eq!((fires, peak), (11, 3), "allow: every slot runs, up to three at once");
    let (fires, peak) = overlap_run(b, Overlap::Skip, 150, 10).await;
    assert_eq!((fires, peak), (4, 1), "skip: 0, 180, 360, 540");
    let (fires, peak) = overlap_run(b, Overlap::Queue, 150, 10).await;
    assert_eq!((fires, peak), (5, 1), "queue: 0, then buffered 60 at 150, 180 at 300, 360 at 450, 480 at 600");
    let (fires, peak) = overlap_run(b, Overlap::Replace, 150, 10).await;
    assert_eq!((fires, peak), (11, 1), "replace: every slot runs, cancelling the previous one");
}

on_both!(end_dates_max_runs_and_one_time_schedules_finish);
async fn end_dates_max_runs_and_one_time_schedules_finish(b: Backend) {
    let (s, _other, _dir) = stores(b).await;
    let mut capped = minutely("capped", Misfire::Skip, Overlap::Allow);
    capped.max_runs = Some(3);
    create(&s, capped, t0()).await;
    let mut ended = minutely("ended", Misfire::Skip, Overlap::Allow);
    ended.end_at = Some(t0().plus(Duration::from_secs(150)));
    create(&s, ended, t0()).await;
    let mut once = minutely("once", Misfire::Skip, Overlap::Allow);
    once.when = When::Once { at: t0().plus(Duration::from_secs(90)) };
    create(&s, once, t0()).await;
    let mut sched = Scheduler::new(s.clone());
    let mut j = no_jitter();
    for sec in (0..=600).step_by(10) {
        sched.tick(t0().plus(Duration::from_secs(sec)), &mut j).await.unwrap();
    }
    assert_eq!(fired_slots(&s, "capped").await.len(), 3);
    assert_eq!(fired_slots(&s, "ended").await.len(), 2);
    assert_eq!(fired_slots(&s, "once").await, vec![t0().plus(Duration::from_secs(90))]);
    for name in ["capped", "ended", "once"] {
        let sch = s.get_schedule(name).await.unwrap();
        assert_eq!(sch.state, owl_core::schedule::ScheduleState::Finished, "{name}");
        assert_eq!(sch.next_fire_at, None, "{name}");
    }
    assert_eq!(s.next_schedule_due().await.unwrap(), None, "nothing left to wake for");
}

on_both!(fired_tasks_carry_the_schedule_and_jitter_delays_them);
async fn fired_tasks_carry_the_schedule_and_jitter_delays_them(b: Backend) {
    let (s, _other, _dir) = stores(b).await;
    let mut spec = minutely("j", Misfire::Skip, Overlap::Allow);
    spec.jitter_ms = 10_000;
    create(&s, spec, t0()).await;
    let mut sched = Scheduler::new(s.clone());
    let slot = t0().plus(Duration::from_secs(60));
    let report = sched.tick(slot, &mut || 0.5).await.unwrap();
    let task = s.get(report.created[0].2).await.unwrap();
    assert_eq!(task.spec.env.get("OWL_SCHEDULE").map(String::as_str), Some("j"));
    assert_eq!(task.spec.env.get("OWL_SCHEDULED_FOR"), Some(&slot.to_rfc3339()));
    assert!(task.spec.labels.contains(&"schedule:j".to_string()));
    assert_eq!(task.spec.run_at, Some(slot.plus(Duration::from_secs(5))));
    assert_eq!(task.state.status(), Status::Waiting);
}
