//! The conformance suite on PostgreSQL, and what only several nodes on one database can show:
//! claims, group limits, the finish log and schedule slots under concurrency; schema versions.

use super::*;
use owl_core::lifecycle::RetryPolicy;
use owl_core::task::Status;
use owl_core::{RunOutcome, TaskId, Timestamp};
use owl_store::conformance::{schedule_spec, spec};
use owl_store::prelude::*;
use owl_store::{ApplyFires, Claim, Completion, FireAction, FireDecision, NewTask, TaskFilter};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn make() -> (Arc<dyn owl_store::Store>, ()) {
    (Arc::new(testing::fresh_store().await) as Arc<dyn owl_store::Store>, ())
}

owl_store::conformance_tests!(make());

const T0: Timestamp = Timestamp(1_800_000_000_000);

/// Two stores on one schema: two nodes sharing one database.
async fn nodes(n: usize) -> Vec<Arc<PgStore>> {
    let url = testing::fresh_schema().await.unwrap();
    let mut out = vec![];
    for _ in 0..n {
        out.push(Arc::new(PgStore::open(&url, Options { pool_size: 4, migrate: Migrate::Apply, ..Default::default() }).await.unwrap()));
    }
    out
}

async fn submit_many(s: &PgStore, n: usize, group: &str) -> Vec<TaskId> {
    let batch = (0..n)
        .map(|i| {
            let mut t = spec(&format!("echo {i}"));
            t.group = group.into();
            NewTask::new(t)
        })
        .collect();
    s.submit(batch, T0).await.unwrap().into_iter().map(|s| s.id).collect()
}

fn success(id: TaskId, attempt: u32) -> Completion {
    Completion {
        id,
        attempt,
        outcome: RunOutcome::Succeeded,
        exit_code: Some(0),
        signal: None,
        now: T0,
        policy: RetryPolicy::default(),
        jitter: 0.0,
    }
}

/// Workers on several nodes claim and complete until the queue is empty; returns every
/// (task, attempt) each claimed.
async fn drain(
    stores: &[Arc<PgStore>],
    workers_per_node: usize,
    limit: usize,
    check: impl Fn(&PgStore) -> bool + Send + Sync + Copy + 'static,
) -> Vec<(TaskId, u32)> {
    let seen = Arc::new(Mutex::new(vec![]));
    let mut handles = vec![];
    for (n, s) in stores.iter().enumerate() {
        for w in 0..workers_per_node {
            let (s, seen) = (s.clone(), seen.clone());
            handles.push(tokio::spawn(async move {
                let node = format!("node-{n}");
                let mut idle = 0;
                while idle < 3 {
                    let got = s.claim(Claim { node: node.clone(), now: T0, lease: Duration::from_secs(60), limit }).await.unwrap();
                    if got.is_empty() {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    idle = 0;
                    assert!(check(&s), "worker {w} of {node}");
                    for c in got {
                        seen.lock().unwrap().push((c.id, c.attempt));
                        s.complete(success(c.id, c.attempt)).await.unwrap();
                    }
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    let v = seen.lock().unwrap().clone();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_claiming_at_once_start_each_task_exactly_once() {
    let stores = nodes(3).await;
    let ids = submit_many(&stores[0], 300, "default").await;
    let claimed = drain(&stores, 2, 4, |_| true).await;
    let mut per_task: BTreeMap<TaskId, Vec<u32>> = BTreeMap::new();
    for (id, attempt) in claimed {
        per_task.entry(id).or_default().push(attempt);
    }
    assert_eq!(per_task.len(), ids.len(), "every task was claimed");
    assert!(per_task.values().all(|a| a == &[1]), "no task was claimed twice: {per_task:?}");
    let counts = stores[1].counts().await.unwrap();
    assert_eq!(counts.get(Status::Succeeded), 300);
    for id in ids.iter().step_by(50) {
        assert_eq!(stores[2].runs(*id).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_limit_holds_across_nodes() {
    let stores = nodes(2).await;
    stores[0].set_group("narrow", Some(2)).await.unwrap();
    submit_many(&stores[0], 60, "narrow").await;
    let over = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(0usize));
    let mut handles = vec![];
    for (n, s) in stores.iter().enumerate() {
        for _ in 0..3 {
            let (s, over, seen) = (s.clone(), over.clone(), seen.clone());
            handles.push(tokio::spawn(async move {
                let mut idle = 0;
                while idle < 5 {
                    let got = s.claim(Claim { node: format!("n{n}"), now: T0, lease: Duration::from_secs(60), limit: 3 }).await.unwrap();
                    if got.is_empty() {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    idle = 0;
                    let g = s.groups().await.unwrap().into_iter().find(|g| g.name == "narrow").unwrap();
                    if g.running > 2 {
                        over.store(true, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    for c in got {
                        *seen.lock().unwrap() += 1;
                        s.complete(success(c.id, c.attempt)).await.unwrap();
                    }
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    assert!(!over.load(Ordering::SeqCst), "more than 2 tasks of the group ran at once");
    assert_eq!(*seen.lock().unwrap(), 60);
}

/// A cursor over the finish log, read while two nodes complete tasks, sees every finish once:
/// numbers are handed out in commit order, so none is passed before its transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_finish_log_is_walked_without_a_gap_while_nodes_complete() {
    let stores = nodes(2).await;
    let ids: BTreeSet<TaskId> = submit_many(&stores[0], 400, "default").await.into_iter().collect();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, done) = (stores[1].clone(), done.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0i64, vec![]);
            loop {
                let last_round = done.load(Ordering::SeqCst);
                let page = s.finished_after(cursor, 37).await.unwrap();
                if page.is_empty() && last_round {
                    return seen;
                }
                for (pos, t) in page {
                    assert!(pos > cursor);
                    cursor = pos;
                    seen.push(t.id);
                }
            }
        })
    };
    drain(&stores, 3, 2, |_| true).await;
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let unique: BTreeSet<TaskId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a finish was seen twice");
    assert_eq!(unique, ids, "the cursor skipped a finish");
}

/// Two nodes applying the same slot at once: one fires it, the other is told the schedule moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_applying_one_slot_fire_it_once() {
    let stores = nodes(2).await;
    let slot = T0.plus(Duration::from_secs(60));
    let sched = stores[0].create_schedule(schedule_spec("tick"), Some(slot), T0).await.unwrap();
    let pass = ApplyFires {
        schedule_id: sched.id,
        expected_next: Some(slot),
        decisions: vec![FireDecision { slot, action: FireAction::Fire(spec("echo tick")) }],
        next_fire_at: Some(slot.plus(Duration::from_secs(60))),
        finished: false,
        pending_slot: None,
        now: slot,
    };
    let (a, b) = tokio::join!(stores[0].apply_fires(pass.clone()), stores[1].apply_fires(pass.clone()));
    let created: usize = [&a, &b].iter().map(|r| r.as_ref().map(|v| v.len()).unwrap_or(0)).sum();
    assert_eq!(created, 1, "{a:?} {b:?}");
    assert!(a.is_err() || b.is_err(), "the second pass saw the schedule already advanced: {a:?} {b:?}");
    assert_eq!(stores[1].list(TaskFilter::default()).await.unwrap().len(), 1);
    assert_eq!(stores[1].get_schedule("tick").await.unwrap().fired, 1);
}

#[tokio::test]
async fn an_empty_database_is_set_up_and_other_versions_need_an_explicit_step() {
    let url = testing::fresh_schema().await.unwrap();
    // A first start on an empty database creates the schema even in check mode.
    let s = PgStore::open(&url, Options::default()).await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), (schema::newest(), schema::newest()));
    drop(s);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)", &[]).await.unwrap();
    let err = PgStore::open(&url, Options::default()).await.err().unwrap().to_string();
    assert!(err.contains("newer owl") && err.contains("999"), "{err}");
    client.execute("DELETE FROM schema_migrations WHERE version = 999", &[]).await.unwrap();
    // A newer owl with one more migration, on this database: a daemon does not upgrade it
    // behind the back of nodes that still run this version; `owl migrate` does.
    let s = PgStore::open(&url, Options::default()).await.unwrap();
    let mut next = MIGRATIONS.to_vec();
    next.push((schema::newest() + 1, "a later change", "CREATE TABLE later (x BIGINT)"));
    let err = schema::migrate_list(&s, Migrate::Check, &next).await.err().unwrap().to_string();
    assert!(err.contains(&format!("version {}", schema::newest())) && err.contains("owl migrate"), "{err}");
    schema::migrate_list(&s, Migrate::Apply, &next).await.unwrap();
    client.execute("INSERT INTO later (x) VALUES (1)", &[]).await.unwrap();
    schema::migrate_list(&s, Migrate::Check, &next).await.unwrap();
}

#[tokio::test]
async fn a_bad_url_and_an_unreachable_server_are_named() {
    let err = PgStore::open("postgres://owl@127.0.0.1:notaport/x", Options::default()).await.err().unwrap().to_string();
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
    let err = PgStore::open("postgres://owl:hunter2@127.0.0.1:1/x", Options::default()).await.err().unwrap().to_string();
    assert!(err.contains("cannot connect") && err.contains("127.0.0.1:1") && !err.contains("hunter2"), "{err}");
    assert_eq!(redact("postgres://u:secret@h:5/db"), "postgres://u:***@h:5/db");
    assert_eq!(redact("postgres://h/db?user=owl&password=secret&sslmode=require"), "postgres://h/db?user=owl&password=***&sslmode=require");
    assert_eq!(redact("host=h user=owl password=secret"), "host=h user=owl password=***");
    let err = PgStore::open("postgres://127.0.0.1:1/x?user=owl&password=hunter2", Options::default()).await.err().unwrap().to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

/// A node whose clock runs a minute ahead learns the database's time within a round trip.
#[tokio::test]
async fn a_skewed_node_measures_its_offset_from_the_database_clock() {
    let s = testing::fresh_store().await;
    let ahead = || Timestamp::from_system(std::time::SystemTime::now()).0 + 60_000;
    let (offset, rtt) = s.clock_offset(&ahead).await.unwrap();
    assert!(rtt < 1000, "{rtt}");
    assert!((offset + 60_000).abs() <= rtt as i64 + 50, "offset {offset} rtt {rtt}");
}

async fn uses_tls(s: &PgStore) -> bool {
    let c = s.client().await.map_err(Fail::into_store).unwrap();
    c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

/// `sslmode=require` connects over TLS and verifies the server against the CA in
/// `sslrootcert`; without that CA the connection is refused; without `sslmode`, plain TCP.
#[tokio::test]
async fn tls_is_verified_against_the_given_ca_and_plain_tcp_is_the_default() {
    let (cluster, ca) = tokio::task::spawn_blocking(testing::Cluster::start_tls).await.unwrap().unwrap();
    let opts = || Options { pool_size: 1, migrate: Migrate::Apply, ..Default::default() };
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url, ca.display());
    let s = PgStore::open(&url, opts()).await.unwrap();
    assert!(uses_tls(&s).await);
    assert!(s.url().contains("sslrootcert"), "the URL shown keeps what was given: {}", s.url());
    let unknown = PgStore::open(&format!("{}?sslmode=require", cluster.url), opts()).await.err().unwrap().to_string();
    assert!(unknown.contains("cannot connect") && unknown.to_lowercase().contains("certificate"), "{unknown}");
    let plain = PgStore::open(&cluster.url, opts()).await.unwrap();
    assert!(!uses_tls(&plain).await);
    let missing = PgStore::open(&format!("{}?sslmode=require&sslrootcert=/nonexistent.pem", cluster.url), opts()).await.err().unwrap();
    assert!(missing.to_string().contains("sslrootcert=/nonexistent.pem"), "{missing}");
}

/// A node listening for the hint hears of work another node queued; a store with hints off
/// sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_nodes_hear_of_new_work_and_hints_can_be_turned_off() {
    use std::sync::atomic::AtomicUsize;
    let url = testing::fresh_schema().await.unwrap();
    let open = |notify| PgStore::open(&url, Options { pool_size: 2, migrate: Migrate::Apply, notify });
    let (listener, quiet, loud) = (open(true).await.unwrap(), open(false).await.unwrap(), open(true).await.unwrap());
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    let _task = listener.listen(move || {
        w.fetch_add(1, Ordering::SeqCst);
    });
    let heard_within = |ms: u64, since: usize| {
        let wakes = wakes.clone();
        async move {
            for _ in 0..ms / 10 {
                if wakes.load(Ordering::SeqCst) > since {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    // LISTEN is in place once a hint sent after it arrives; send until one does.
    let mut first = false;
    for _ in 0..50 {
        submit_many(&loud, 1, "default").await;
        if heard_within(200, 0).await {
            first = true;
            break;
        }
    }
    assert!(first, "a listening node hears of queued work");
    tokio::time::sleep(Duration::from_millis(300)).await; // stragglers of the loop above
    let before = wakes.load(Ordering::SeqCst);
    submit_many(&quiet, 5, "default").await;
    assert!(!heard_within(700, before).await, "hints off: nothing is sent");
    submit_many(&loud, 10, "default").await;
    assert!(heard_within(5000, before).await, "the hint for a batch");
}
