//! The backend conformance suite: one behavioural test per rule of the [`Store`] contract.
//!
//! A backend runs it with [`conformance_tests!`](crate::conformance_tests), giving an async
//! expression that builds a fresh store. The cases panic on a broken rule.

use crate::*;
use owl_core::lifecycle::RetryPolicy;
use owl_core::task::Status;
use owl_core::{Command, RunOutcome, TaskId, TaskSpec, TaskState, Timestamp, WaitReason};
use std::sync::Arc;
use std::time::Duration;

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an async expression
/// evaluating to `(Arc<dyn Store>, guard)`; the guard (e.g. a temp dir) lives for the test.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            submit_then_get_round_trips_the_spec,
            idempotency_key_returns_the_existing_task,
            a_batch_with_an_unknown_dependency_stores_nothing,
            batch_items_can_depend_on_each_other,
            claim_takes_highest_priority_then_oldest,
            claim_respects_group_parallel_limits,
            delayed_tasks_wait_until_due,
            dependents_wait_and_start_after_success,
            a_failed_dependency_fails_its_dependents_by_name,
            depending_on_an_already_failed_task_fails_at_once,
            cancel_before_start_cascades,
            cancel_of_a_running_task_is_a_request,
            a_stale_completion_is_refused,
            failures_retry_with_backoff_until_attempts_run_out,
            rescue_requeues_without_using_an_attempt,
            crash_rescues_are_capped,
            heartbeat_extends_leases_and_reports_lost_ones,
            retry_revives_dependents_that_failed_because_of_it,
            runs_record_every_attempt,
            list_filters_by_status_group_label_and_pages,
            concurrent_submits_are_all_stored,
            schedules_are_created_listed_and_names_are_unique,
            a_slot_fires_once_even_when_a_pass_is_replayed,
            a_queued_slot_is_claimed_once,
            history_shows_every_slot_with_its_task_status,
            a_trigger_source_fires_once_within_its_rate_limit,
            finished_tasks_are_walked_in_order_by_cursor,
            task_inputs_round_trip,
            transcripts_append_in_order_per_owner,
            an_approval_is_bound_to_its_call_decided_once_and_used_once,
            usage_sums_by_agent_and_model,
            chats_are_created_and_listed,
            repository_tasks_keep_their_git_record_until_retention
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

pub type DynStore = Arc<dyn Store>;

const T0: Timestamp = Timestamp(1_800_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

pub fn spec(cmd: &str) -> TaskSpec {
    TaskSpec::new(Command::Shell(cmd.into()))
}

async fn add(s: &DynStore, spec: TaskSpec) -> TaskId {
    s.submit(vec![NewTask::new(spec)], T0).await.unwrap()[0].id
}

async fn claim(s: &DynStore, now: Timestamp, limit: usize) -> Vec<ClaimedTask> {
    s.claim(Claim { node: "n1".into(), now, lease: LEASE, limit }).await.unwrap()
}

fn done(id: TaskId, attempt: u32, outcome: RunOutcome, now: Timestamp) -> Completion {
    Completion { id, attempt, outcome, exit_code: None, signal: None, now, policy: RetryPolicy::default(), jitter: 0.0 }
}

fn fail(id: TaskId, attempt: u32, now: Timestamp) -> Completion {
    Completion { exit_code: Some(1), ..done(id, attempt, RunOutcome::Failed { exit_code: Some(1), signal: None, error: None }, now) }
}

async fn status(s: &DynStore, id: TaskId) -> Status {
    s.get(id).await.unwrap().state.status()
}

pub async fn submit_then_get_round_trips_the_spec(s: DynStore) {
    let mut sp = spec("echo hi");
    sp.env.insert("A".into(), "1".into());
    sp.labels = vec!["build".into()];
    sp.priority = 5;
    sp.timeout_ms = Some(1000);
    let r = s.submit(vec![NewTask::new(sp.clone())], T0).await.unwrap();
    assert_eq!(r.len(), 1);
    assert!(r[0].created);
    assert_eq!(r[0].status, Status::Queued);
    let t = s.get(r[0].id).await.unwrap();
    assert_eq!(t.spec, sp);
    assert_eq!(t.state, TaskState::Queued);
    assert_eq!(t.created_at, T0);
    assert_eq!((t.attempts, t.failures), (0, 0));
    assert!(matches!(s.get(TaskId(999_999)).await, Err(StoreError::NotFound(_))));
}

pub async fn idempotency_key_returns_the_existing_task(s: DynStore) {
    let mut sp = spec("echo once");
    sp.idempotency_key = Some("k-1".into());
    let a = s.submit(vec![NewTask::new(sp.clone())], T0).await.unwrap()[0].clone();
    let b = s.submit(vec![NewTask::new(sp.clone())], T0).await.unwrap()[0].clone();
    assert!(a.created && !b.created);
    assert_eq!(a.id, b.id);
    assert_eq!(s.list(TaskFilter::default()).await.unwrap().len(), 1);
}

pub async fn a_batch_with_an_unknown_dependency_stores_nothing(s: DynStore) {
    let mut bad = spec("b");
    bad.depends_on = vec![TaskId(4242)];
    let err = s.submit(vec![NewTask::new(spec("a")), NewTask::new(bad)], T0).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownDependency { item: Some(1), id: TaskId(4242) }), "{err:?}");
    assert!(s.list(TaskFilter::default()).await.unwrap().is_empty());
}

pub async fn batch_items_can_depend_on_each_other(s: DynStore) {
    let first = NewTask { spec: spec("second"), batch_deps: vec![1] };
    let r = s.submit(vec![first, NewTask::new(spec("first"))], T0).await.unwrap();
    assert_eq!(r[0].status, Status::Waiting);
    assert_eq!(r[1].status, Status::Queued);
    let t = s.get(r[0].id).await.unwrap();
    assert_eq!(t.spec.depends_on, vec![r[1].id]);
    let cycle = vec![NewTask { spec: spec("x"), batch_deps: vec![1] }, NewTask { spec: spec("y"), batch_deps: vec![0] }];
    assert!(matches!(s.submit(cycle, T0).await, Err(StoreError::Invalid(_))));
}

pub async fn claim_takes_highest_priority_then_oldest(s: DynStore) {
    let low = add(&s, spec("low")).await;
    let mut hi = spec("high");
    hi.priority = 10;
    let high = add(&s, hi).await;
    let low2 = add(&s, spec("low2")).await;
    let got: Vec<TaskId> = claim(&s, T0, 10).await.into_iter().map(|c| c.id).collect();
    assert_eq!(got, vec![high, low, low2]);
    assert!(claim(&s, T0, 10).await.is_empty(), "claimed tasks are not claimed again");
    match s.get(high).await.unwrap().state {
        TaskState::Running { attempt, node, lease_until, .. } => {
            assert_eq!((attempt, node.as_str()), (1, "n1"));
            assert_eq!(lease_until, T0.plus(LEASE));
        }
        other => panic!("expected running, got {other:?}"),
    }
}

pub async fn claim_respects_group_parallel_limits(s: DynStore) {
    s.set_group("gpu", Some(1)).await.unwrap();
    let mut g = spec("train");
    g.group = "gpu".into();
    let g1 = add(&s, g.clone()).await;
    let g2 = add(&s, g).await;
    let other = add(&s, spec("other")).await;
    let got: Vec<TaskId> = claim(&s, T0, 10).await.into_iter().map(|c| c.id).collect();
    assert_eq!(got, vec![g1, other]);
    s.complete(done(g1, 1, RunOutcome::Succeeded, T0)).await.unwrap();
    let got: Vec<TaskId> = claim(&s, T0, 10).await.into_iter().map(|c| c.id).collect();
    assert_eq!(got, vec![g2]);
    let groups = s.groups().await.unwrap();
    let gpu = groups.iter().find(|g| g.name == "gpu").unwrap();
    assert_eq!((gpu.parallel, gpu.running), (Some(1), 1));
}

pub async fn delayed_tasks_wait_until_due(s: DynStore) {
    let mut d = spec("later");
    d.run_at = Some(T0.plus(Duration::from_secs(60)));
    let id = add(&s, d).await;
    assert_eq!(s.get(id).await.unwrap().state, TaskState::Waiting { reason: WaitReason::Time { until: T0.plus(Duration::from_secs(60)) } });
    assert_eq!(s.next_due().await.unwrap(), Some(T0.plus(Duration::from_secs(60))));
    assert!(s.promote_due(T0.plus(Duration::from_secs(59))).await.unwrap().is_empty());
    assert!(claim(&s, T0.plus(Duration::from_secs(59)), 1).await.is_empty());
    assert_eq!(s.promote_due(T0.plus(Duration::from_secs(60))).await.unwrap(), vec![id]);
    assert_eq!(s.next_due().await.unwrap(), None);
    assert_eq!(claim(&s, T0.plus(Duration::from_secs(60)), 1).await[0].id, id);
}

pub async fn dependents_wait_and_start_after_success(s: DynStore) {
    let a = add(&s, spec("a")).await;
    let b = add(&s, spec("b")).await;
    let mut c = spec("c");
    c.depends_on = vec![a, b];
    let c = add(&s, c).await;
    assert_eq!(s.get(c).await.unwrap().state, TaskState::Waiting { reason: WaitReason::Dependencies { pending: vec![a, b] } });
    assert_eq!(claim(&s, T0, 10).await.len(), 2);
    let ch = s.complete(done(a, 1, RunOutcome::Succeeded, T0)).await.unwrap();
    assert_eq!(ch.status_of(c), None, "c still waits on b");
    assert_eq!(s.get(c).await.unwrap().state, TaskState::Waiting { reason: WaitReason::Dependencies { pending: vec![b] } });
    let ch = s.complete(done(b, 1, RunOutcome::Succeeded, T0)).await.unwrap();
    assert_eq!(ch.status_of(c), Some(Status::Queued));
    assert_eq!(claim(&s, T0, 10).await[0].id, c);
}

pub async fn a_failed_dependency_fails_its_dependents_by_name(s: DynStore) {
    let a = add(&s, spec("a")).await;
    let mut b = spec("b");
    b.depends_on = vec![a];
    let b = add(&s, b).await;
    let mut c = spec("c");
    c.depends_on = vec![b];
    let c = add(&s, c).await;
    claim(&s, T0, 10).await;
    let ch = s.complete(fail(a, 1, T0)).await.unwrap();
    assert_eq!(ch.status_of(b), Some(Status::Failed));
    assert_eq!(ch.status_of(c), Some(Status::Failed));
    match s.get(c).await.unwrap().state {
        TaskState::Failed { reason, .. } => assert!(reason.contains(&format!("task {b}")), "{reason}"),
        other => panic!("{other:?}"),
    }
    match s.get(b).await.unwrap().state {
        TaskState::Failed { reason, .. } => assert!(reason.contains(&format!("task {a}")) && reason.contains("failed"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

pub async fn depending_on_an_already_failed_task_fails_at_once(s: DynStore) {
    let a = add(&s, spec("a")).await;
    s.cancel(a, None, T0).await.unwrap();
    let mut b = spec("b");
    b.depends_on = vec![a];
    let r = s.submit(vec![NewTask::new(b)], T0).await.unwrap();
    assert_eq!(r[0].status, Status::Failed);
    let ok = add(&s, spec("ok")).await;
    claim(&s, T0, 10).await;
    s.complete(done(ok, 1, RunOutcome::Succeeded, T0)).await.unwrap();
    let mut c = spec("c");
    c.depends_on = vec![ok];
    assert_eq!(s.submit(vec![NewTask::new(c)], T0).await.unwrap()[0].status, Status::Queued);
}

pub async fn cancel_before_start_cascades(s: DynStore) {
    let a = add(&s, spec("a")).await;
    let mut b = spec("b");
    b.depends_on = vec![a];
    let b = add(&s, b).await;
    match s.cancel(a, Some("not needed".into()), T0).await.unwrap() {
        CancelReply::Cancelled(ch) => {
            assert_eq!(ch.status_of(a), Some(Status::Cancelled));
            assert_eq!(ch.status_of(b), Some(Status::Failed));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get(a).await.unwrap().state, TaskState::Cancelled { finished_at: T0, reason: Some("not needed".into()) });
    assert!(matches!(s.cancel(a, None, T0).await, Err(StoreError::Conflict(_))));
    assert!(claim(&s, T0, 10).await.is_empty());
}

pub async fn cancel_of_a_running_task_is_a_request(s: DynStore) {
    let a = add(&s, spec("a")).await;
    claim(&s, T0, 1).await;
    assert_eq!(s.cancel(a, None, T0).await.unwrap(), CancelReply::Requested);
    let reply = s.heartbeat(Heartbeat { node: "n1".into(), leases: vec![(a, 1)], lease_until: T0.plus(LEASE) }).await.unwrap();
    assert_eq!(reply.cancel_requested, vec![a]);
    s.complete(done(a, 1, RunOutcome::Cancelled { reason: None }, T0)).await.unwrap();
    assert_eq!(status(&s, a).await, Status::Cancelled);
}

pub async fn a_stale_completion_is_refused(s: DynStore) {
    let a = add(&s, spec("a")).await;
    claim(&s, T0, 1).await;
    // The lease expires (the worker froze), the task is rescued and claimed again.
    let later = T0.plus(LEASE).plus(Duration::from_secs(1));
    s.rescue(later, false, RetryPolicy::default()).await.unwrap();
    let again = claim(&s, later, 1).await;
    assert_eq!(again[0].attempt, 2);
    let err = s.complete(done(a, 1, RunOutcome::Succeeded, later)).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleAttempt { attempt: 1, current: 2, .. }), "{err:?}");
    assert_eq!(status(&s, a).await, Status::Running);
    s.complete(done(a, 2, RunOutcome::Succeeded, later)).await.unwrap();
    assert_eq!(status(&s, a).await, Status::Succeeded);
    let err = s.complete(done(a, 2, RunOutcome::Succeeded, later)).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleAttempt { .. }), "a second completion of the same attempt is refused");
}

pub async fn failures_retry_with_backoff_until_attempts_run_out(s: DynStore) {
    let mut sp = spec("flaky");
    sp.max_attempts = 2;
    let a = add(&s, sp).await;
    claim(&s, T0, 1).await;
    s.complete(fail(a, 1, T0)).await.unwrap();
    let t = s.get(a).await.unwrap();
    let until = match t.state {
        TaskState::Waiting { reason: WaitReason::Retry { until, failed_attempts: 1 } } => until,
        other => panic!("{other:?}"),
    };
    assert!(until > T0);
    assert!(claim(&s, T0, 1).await.is_empty(), "no retry before the backoff ends");
    assert_eq!(s.next_due().await.unwrap(), Some(until));
    s.promote_due(until).await.unwrap();
    assert_eq!(claim(&s, until, 1).await[0].attempt, 2);
    s.complete(fail(a, 2, until)).await.unwrap();
    let t = s.get(a).await.unwrap();
    assert_eq!(t.failures, 2);
    assert!(matches!(t.state, TaskState::Failed { exit_code: Some(1), .. }), "{:?}", t.state);
}

pub async fn rescue_requeues_without_using_an_attempt(s: DynStore) {
    let a = add(&s, spec("a")).await;
    let b = add(&s, spec("b")).await;
    claim(&s, T0, 2).await;
    s.heartbeat(Heartbeat { node: "n1".into(), leases: vec![(b, 1)], lease_until: T0.plus(Duration::from_secs(300)) }).await.unwrap();
    let later = T0.plus(LEASE).plus(Duration::from_secs(1));
    let ch = s.rescue(later, false, RetryPolicy::default()).await.unwrap();
    assert_eq!(ch.0, vec![(a, Status::Queued)], "only the expired lease is rescued");
    let t = s.get(a).await.unwrap();
    assert_eq!((t.failures, t.interruptions, t.attempts), (0, 1, 1));
    let ch = s.rescue(later, true, RetryPolicy::default()).await.unwrap();
    assert_eq!(ch.0, vec![(b, Status::Queued)], "all=true rescues live leases too");
    let runs = s.runs(a).await.unwrap();
    assert!(matches!(runs[0].outcome, Some(RunOutcome::Interrupted { .. })));
}

pub async fn crash_rescues_are_capped(s: DynStore) {
    let a = add(&s, spec("poison")).await;
    let policy = RetryPolicy { max_crash_requeues: 2, ..Default::default() };
    for round in 0..3 {
        claim(&s, T0, 1).await;
        s.rescue(T0, true, policy).await.unwrap();
        let expect = if round < 2 { Status::Queued } else { Status::Failed };
        assert_eq!(status(&s, a).await, expect, "round {round}");
    }
}

pub async fn heartbeat_extends_leases_and_reports_lost_ones(s: DynStore) {
    let a = add(&s, spec("a")).await;
    claim(&s, T0, 1).await;
    let far = T0.plus(Duration::from_secs(600));
    let r = s.heartbeat(Heartbeat { node: "n1".into(), leases: vec![(a, 1), (TaskId(777), 1)], lease_until: far }).await.unwrap();
    assert_eq!(r.lost, vec![TaskId(777)]);
    match s.get(a).await.unwrap().state {
        TaskState::Running { lease_until, .. } => assert_eq!(lease_until, far),
        other => panic!("{other:?}"),
    }
    let r = s.heartbeat(Heartbeat { node: "n1".into(), leases: vec![(a, 2)], lease_until: far }).await.unwrap();
    assert_eq!(r.lost, vec![a], "a wrong attempt does not hold the lease");
}

pub async fn retry_revives_dependents_that_failed_because_of_it(s: DynStore) {
    let a = add(&s, spec("a")).await;
    let mut b = spec("b");
    b.depends_on = vec![a];
    let b = add(&s, b).await;
    claim(&s, T0, 1).await;
    s.complete(fail(a, 1, T0)).await.unwrap();
    assert_eq!(status(&s, b).await, Status::Failed);
    let ch = s.retry(a, T0).await.unwrap();
    assert_eq!(ch.status_of(a), Some(Status::Queued));
    assert_eq!(ch.status_of(b), Some(Status::Waiting));
    let t = s.get(a).await.unwrap();
    assert_eq!(t.failures, 0);
    let c = claim(&s, T0, 5).await;
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].id, c[0].attempt), (a, 2));
    s.complete(done(a, 2, RunOutcome::Succeeded, T0)).await.unwrap();
    assert_eq!(status(&s, b).await, Status::Queued);
    assert!(matches!(s.retry(a, T0).await, Err(StoreError::Conflict(_))), "a succeeded task is not retried");
}

pub async fn runs_record_every_attempt(s: DynStore) {
    let mut sp = spec("x");
    sp.max_attempts = 3;
    let a = add(&s, sp).await;
    claim(&s, T0, 1).await;
    s.complete(Completion { exit_code: None, signal: Some(9), ..done(a, 1, RunOutcome::TimedOut, T0) }).await.unwrap();
    s.promote_due(T0.plus(Duration::from_secs(3600))).await.unwrap();
    claim(&s, T0.plus(Duration::from_secs(3600)), 1).await;
    s.complete(Completion { exit_code: Some(0), ..done(a, 2, RunOutcome::Succeeded, T0.plus(Duration::from_secs(3601))) }).await.unwrap();
    let runs = s.runs(a).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].attempt, runs[0].signal, runs[0].outcome.clone()), (1, Some(9), Some(RunOutcome::TimedOut)));
    assert_eq!((runs[1].attempt, runs[1].exit_code), (2, Some(0)));
    assert_eq!(runs[1].node, "n1");
    assert_eq!(runs[1].ended_at, Some(T0.plus(Duration::from_secs(3601))));
}

pub async fn list_filters_by_status_group_label_and_pages(s: DynStore) {
    let mut l = spec("labelled");
    l.labels = vec!["build".into(), "nightly".into()];
    l.group = "g2".into();
    let a = add(&s, l).await;
    let b = add(&s, spec("plain")).await;
    let c = add(&s, spec("plain2")).await;
    s.cancel(c, None, T0).await.unwrap();
    let ids = |v: Vec<owl_core::Task>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list(TaskFilter::default()).await.unwrap()), vec![c, b, a]);
    assert_eq!(ids(s.list(TaskFilter { label: Some("nightly".into()), ..Default::default() }).await.unwrap()), vec![a]);
    assert_eq!(ids(s.list(TaskFilter { group: Some("g2".into()), ..Default::default() }).await.unwrap()), vec![a]);
    assert_eq!(ids(s.list(TaskFilter { statuses: vec![Status::Cancelled], ..Default::default() }).await.unwrap()), vec![c]);
    assert_eq!(ids(s.list(TaskFilter { before: Some(c), limit: Some(1), ..Default::default() }).await.unwrap()), vec![b]);
    assert_eq!(ids(s.list(TaskFilter { ids: vec![a, c], ..Default::default() }).await.unwrap()), vec![c, a]);
    let counts = s.counts().await.unwrap();
    assert_eq!((counts.get(Status::Queued), counts.get(Status::Cancelled)), (2, 1));
}

pub async fn concurrent_submits_are_all_stored(s: DynStore) {
    let mut handles = vec![];
    for i in 0..16 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = vec![];
            for j in 0..25 {
                let mut sp = spec(&format!("t{i}-{j}"));
                if j % 5 == 0 {
                    sp.idempotency_key = Some(format!("k{i}"));
                }
                ids.push(s.submit(vec![NewTask::new(sp)], T0).await.unwrap()[0].id);
            }
            ids
        }));
    }
    let mut all = std::collections::BTreeSet::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    // 16 writers x 25 tasks, of which each writer's 5 keyed submits collapse into one task.
    assert_eq!(all.len(), 16 * 21);
    assert_eq!(s.list(TaskFilter { limit: Some(10_000), ..Default::default() }).await.unwrap().len(), 16 * 21);
}

fn schedule_spec(name: &str) -> owl_core::schedule::ScheduleSpec {
    owl_core::schedule::ScheduleSpec {
        name: name.into(),
        when: owl_core::schedule::When::Every { every_ms: 60_000, anchor: T0 },
        template: spec("echo tick"),
        misfire: Default::default(),
        misfire_cap: 10,
        overlap: owl_core::schedule::Overlap::Allow,
        max_lateness_ms: 60_000,
        jitter_ms: 0,
        end_at: None,
        max_runs: None,
    }
}

fn fire(slot: Timestamp) -> FireDecision {
    FireDecision { slot, action: FireAction::Fire(spec("echo tick")) }
}

pub async fn schedules_are_created_listed_and_names_are_unique(s: DynStore) {
    use owl_core::schedule::ScheduleState;
    let first = T0.plus(Duration::from_secs(60));
    let a = s.create_schedule(schedule_spec("nightly"), Some(first), T0).await.unwrap();
    assert_eq!((a.state, a.next_fire_at), (ScheduleState::Active, Some(first)));
    assert!(matches!(s.create_schedule(schedule_spec("nightly"), Some(first), T0).await, Err(StoreError::Conflict(_))));
    s.create_schedule(schedule_spec("another"), Some(first), T0).await.unwrap();
    let names: Vec<String> = s.list_schedules().await.unwrap().into_iter().map(|x| x.spec.name).collect();
    assert_eq!(names, vec!["another", "nightly"]);
    assert_eq!(s.next_schedule_due().await.unwrap(), Some(first));
    assert!(s.due_schedules(T0).await.unwrap().is_empty());
    assert_eq!(s.due_schedules(first).await.unwrap().len(), 2);
    let p = s.set_schedule_state("nightly", ScheduleState::Paused, None, T0).await.unwrap();
    assert_eq!(p.state, ScheduleState::Paused);
    assert_eq!(s.due_schedules(first).await.unwrap().len(), 1, "a paused schedule is not due");
    s.delete_schedule("another").await.unwrap();
    assert!(matches!(s.get_schedule("another").await, Err(StoreError::ScheduleNotFound(_))));
    assert!(matches!(s.delete_schedule("another").await, Err(StoreError::ScheduleNotFound(_))));
}

pub async fn a_slot_fires_once_even_when_a_pass_is_replayed(s: DynStore) {
    let slot = T0.plus(Duration::from_secs(60));
    let sch = s.create_schedule(schedule_spec("m"), Some(slot), T0).await.unwrap();
    let pass = ApplyFires {
        schedule_id: sch.id,
        expected_next: Some(slot),
        decisions: vec![fire(slot)],
        next_fire_at: Some(slot.plus(Duration::from_secs(60))),
        finished: false,
        pending_slot: None,
        now: slot,
    };
    let created = s.apply_fires(pass.clone()).await.unwrap();
    assert_eq!(created.len(), 1);
    // The same pass again (a restart that planned from stale state) is refused whole.
    assert!(matches!(s.apply_fires(pass.clone()).await, Err(StoreError::Conflict(_))));
    // A pass that plans the same slot again from current state creates nothing.
    let again = ApplyFires { expected_next: Some(slot.plus(Duration::from_secs(60))), ..pass };
    assert!(s.apply_fires(again).await.unwrap().is_empty());
    let tasks = s.list(TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.len(), 1, "exactly one task for the slot");
    let sch = s.get_schedule("m").await.unwrap();
    assert_eq!((sch.fired, sch.last_task_id), (1, Some(created[0].1)));
    // A pass planned before a pause is refused after it; a manual run is not.
    let next = slot.plus(Duration::from_secs(60));
    s.set_schedule_state("m", owl_core::schedule::ScheduleState::Paused, Some(next), next).await.unwrap();
    let late = ApplyFires {
        schedule_id: sch.id,
        expected_next: Some(next),
        decisions: vec![fire(next)],
        next_fire_at: Some(next.plus(Duration::from_secs(60))),
        finished: false,
        pending_slot: None,
        now: next,
    };
    assert!(matches!(s.apply_fires(late.clone()).await, Err(StoreError::Conflict(_))), "a paused schedule does not fire");
    let manual = ApplyFires {
        decisions: vec![FireDecision { slot: next, action: FireAction::Manual(spec("echo tick")) }],
        next_fire_at: Some(next),
        ..late
    };
    assert_eq!(s.apply_fires(manual).await.unwrap().len(), 1, "run-now works while paused");
}

pub async fn a_queued_slot_is_claimed_once(s: DynStore) {
    let slot = T0.plus(Duration::from_secs(60));
    let sch = s.create_schedule(schedule_spec("q"), Some(slot), T0).await.unwrap();
    let next = slot.plus(Duration::from_secs(60));
    let queue = ApplyFires {
        schedule_id: sch.id,
        expected_next: Some(slot),
        decisions: vec![FireDecision { slot, action: FireAction::Queued }],
        next_fire_at: Some(next),
        finished: false,
        pending_slot: Some(slot),
        now: slot,
    };
    assert!(s.apply_fires(queue).await.unwrap().is_empty());
    assert_eq!(s.get_schedule("q").await.unwrap().pending_slot, Some(slot));
    assert_eq!(s.due_schedules(T0).await.unwrap().len(), 1, "a buffered slot makes the schedule due");
    assert!(s.any_pending_slot().await.unwrap());
    let claim = ApplyFires {
        schedule_id: sch.id,
        expected_next: Some(next),
        decisions: vec![fire(slot)],
        next_fire_at: Some(next),
        finished: false,
        pending_slot: None,
        now: next,
    };
    assert_eq!(s.apply_fires(claim.clone()).await.unwrap().len(), 1);
    assert!(s.apply_fires(claim).await.unwrap().is_empty(), "the buffered slot fires once");
    assert!(!s.any_pending_slot().await.unwrap());
    let h = s.schedule_history("q", 10).await.unwrap();
    assert_eq!((h.len(), h[0].outcome.as_str()), (1, "fired"));
}

pub async fn history_shows_every_slot_with_its_task_status(s: DynStore) {
    let t1 = T0.plus(Duration::from_secs(60));
    let t2 = t1.plus(Duration::from_secs(60));
    let t3 = t2.plus(Duration::from_secs(60));
    let sch = s.create_schedule(schedule_spec("h"), Some(t1), T0).await.unwrap();
    let pass = ApplyFires {
        schedule_id: sch.id,
        expected_next: Some(t1),
        decisions: vec![
            FireDecision { slot: t1, action: FireAction::Missed("down".into()) },
            FireDecision { slot: t2, action: FireAction::Skipped("busy".into()) },
            fire(t3),
        ],
        next_fire_at: None,
        finished: true,
        pending_slot: None,
        now: t3.plus(Duration::from_secs(5)),
    };
    s.apply_fires(pass).await.unwrap();
    let h = s.schedule_history("h", 10).await.unwrap();
    let outcomes: Vec<&str> = h.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["fired", "skipped", "missed"]);
    assert_eq!(h[0].task_status, Some(Status::Queued));
    assert_eq!(h[2].reason.as_deref(), Some("down"));
    let sch = s.get_schedule("h").await.unwrap();
    assert_eq!((sch.fired, sch.missed, sch.skipped, sch.late), (1, 1, 1, 1));
    assert_eq!(sch.state, owl_core::schedule::ScheduleState::Finished);
    assert_eq!(s.prune_history(t3.plus(Duration::from_secs(6))).await.unwrap(), 3);
}

fn trigger_spec(name: &str) -> owl_core::trigger::TriggerSpec {
    owl_core::trigger::TriggerSpec {
        name: name.into(),
        on: owl_core::trigger::On::Webhook { secret_env: "HOOK_SECRET".into() },
        template: spec("echo hook"),
        rate_limit: Some(owl_core::trigger::RateLimit { max: 2, per_ms: 60_000 }),
        max_chain_depth: 5,
    }
}

pub async fn a_trigger_source_fires_once_within_its_rate_limit(s: DynStore) {
    let t = s.create_trigger(trigger_spec("deploy"), T0).await.unwrap();
    assert!(matches!(s.create_trigger(trigger_spec("deploy"), T0).await, Err(StoreError::Conflict(_))));
    let offer = |source: &str, at: Timestamp| FireTrigger { trigger_id: t.id, source: source.into(), task: Ok(spec("echo hook")), now: at };
    let first = s.fire_trigger(offer("d-1", T0)).await.unwrap();
    assert!(matches!(first, TriggerFired::Fired(_)));
    assert_eq!(s.fire_trigger(offer("d-1", T0)).await.unwrap(), TriggerFired::Duplicate, "a delivery id fires once");
    assert!(matches!(s.fire_trigger(offer("d-2", T0)).await.unwrap(), TriggerFired::Fired(_)));
    assert_eq!(s.fire_trigger(offer("d-3", T0)).await.unwrap(), TriggerFired::RateLimited);
    let later = T0.plus(Duration::from_secs(61));
    assert!(matches!(s.fire_trigger(offer("d-4", later)).await.unwrap(), TriggerFired::Fired(_)), "the window moved on");
    let refused = FireTrigger { trigger_id: t.id, source: "task:9".into(), task: Err("chain too deep".into()), now: later };
    assert_eq!(s.fire_trigger(refused).await.unwrap(), TriggerFired::Refused("chain too deep".into()));
    s.set_trigger_enabled("deploy", false, later).await.unwrap();
    assert_eq!(s.fire_trigger(offer("d-5", later)).await.unwrap(), TriggerFired::Disabled);
    let t = s.get_trigger("deploy").await.unwrap();
    assert_eq!((t.fired, t.refused, t.enabled), (3, 2, false));
    let h = s.trigger_history("deploy", 10).await.unwrap();
    assert_eq!(h.len(), 5);
    assert_eq!(h.iter().filter(|r| r.outcome == "rate_limited").count(), 1);
    assert_eq!(s.prune_history(later).await.unwrap(), 3, "the three offers at T0 are history");
    assert_eq!(s.trigger_history("deploy", 10).await.unwrap().len(), 2);
    assert_eq!(s.list(TaskFilter::default()).await.unwrap().len(), 3, "one task per fire, none for refusals");
    s.delete_trigger("deploy").await.unwrap();
    assert!(matches!(s.get_trigger("deploy").await, Err(StoreError::TriggerNotFound(_))));
}

pub async fn finished_tasks_are_walked_in_order_by_cursor(s: DynStore) {
    let a = add(&s, spec("a")).await;
    let b = add(&s, spec("b")).await;
    let mut dep = spec("dep");
    dep.depends_on = vec![a];
    let d = add(&s, dep).await;
    claim(&s, T0, 2).await;
    assert_eq!(s.last_finish_before(Timestamp(i64::MAX)).await.unwrap(), 0);
    // b's completion was computed later but commits first: the log follows commit order.
    s.complete(done(b, 1, RunOutcome::Succeeded, T0.plus(Duration::from_secs(2)))).await.unwrap();
    s.complete(fail(a, 1, T0.plus(Duration::from_secs(1)))).await.unwrap();
    let walk = s.finished_after(0, 10).await.unwrap();
    let ids: Vec<TaskId> = walk.iter().map(|(_, t)| t.id).collect();
    assert_eq!(ids, vec![b, a, d], "commit order, with the dependent that failed because of a");
    let first = walk[0].0;
    let rest: Vec<TaskId> = s.finished_after(first, 10).await.unwrap().iter().map(|(_, t)| t.id).collect();
    assert_eq!(rest, vec![a, d]);
    assert_eq!(s.last_finish_before(Timestamp(i64::MAX)).await.unwrap(), walk[2].0);
    assert_eq!(
        s.last_finish_before(T0.plus(Duration::from_secs(2))).await.unwrap(),
        walk[1].0.max(walk[2].0),
        "stamped before 2 s: a and d"
    );
    assert_eq!(s.last_finish_before(T0).await.unwrap(), 0);
    s.retry(a, T0).await.unwrap();
    claim(&s, T0, 1).await;
    s.complete(done(a, 2, RunOutcome::Succeeded, T0)).await.unwrap();
    let again: Vec<TaskId> = s.finished_after(walk[2].0, 10).await.unwrap().iter().map(|(_, t)| t.id).collect();
    assert_eq!(again, vec![a], "a task that finishes again is a new finish");
    assert_eq!(s.failures_since(T0).await.unwrap(), 0, "a was retried and succeeded; d failed because of a dependency");
    assert_eq!(s.prune_history(T0.plus(Duration::from_secs(2))).await.unwrap(), 3, "a twice and d");
    let kept: Vec<TaskId> = s.finished_after(0, 10).await.unwrap().iter().map(|(_, t)| t.id).collect();
    assert_eq!(kept, vec![b]);
    assert_eq!(s.kv_get("cursor").await.unwrap(), None);
    s.kv_set("cursor", "1").await.unwrap();
    s.kv_set("cursor", "2").await.unwrap();
    assert_eq!(s.kv_get("cursor").await.unwrap().as_deref(), Some("2"));
}

pub async fn task_inputs_round_trip(s: DynStore) {
    let mut sp = spec("cat $OWL_PAYLOAD");
    sp.inputs = vec![owl_core::InputFile { env: "OWL_PAYLOAD".into(), file: "payload.json".into(), content: "{\"a\":1}".into() }];
    let id = add(&s, sp.clone()).await;
    assert_eq!(s.get(id).await.unwrap().spec.inputs, sp.inputs);
    let mut bad = spec("x");
    bad.inputs = vec![owl_core::InputFile { env: "P".into(), file: "../escape".into(), content: String::new() }];
    assert!(matches!(s.submit(vec![NewTask::new(bad)], T0).await, Err(StoreError::Invalid(_))));
}

pub async fn repository_tasks_keep_their_git_record_until_retention(s: DynStore) {
    let mut sp = TaskSpec::new(Command::Cli { cli: "claude".into(), prompt: "fix it".into() });
    sp.repo = Some(owl_core::RepoRequest { path: "/src/app".into(), base: Some("main".into()), push: Some("origin".into()) });
    let id = add(&s, sp.clone()).await;
    assert_eq!(s.get(id).await.unwrap().spec, sp, "the command and repository round-trip");
    let running = add(&s, spec("still running")).await;
    assert_eq!(s.task_git(id).await.unwrap(), None);
    let mut rec = owl_core::coding::GitRecord {
        repo: "/src/app".into(),
        worktree: "/data/worktrees/1".into(),
        branch: format!("owl/task-{id}"),
        base: "abc".into(),
        ..Default::default()
    };
    s.set_task_git(id, rec.clone()).await.unwrap();
    s.set_task_git(running, rec.clone()).await.unwrap();
    claim(&s, T0, 2).await;
    assert!(s.worktrees_to_remove(Timestamp(i64::MAX / 2)).await.unwrap().is_empty(), "running tasks keep their worktree");
    rec.commit = Some("def".into());
    rec.files_changed = vec!["a.rs".into()];
    s.set_task_git(id, rec.clone()).await.unwrap();
    assert_eq!(s.task_git(id).await.unwrap(), Some(rec.clone()), "the latest record replaces the first");
    let end = T0.plus(Duration::from_secs(10));
    s.complete(done(id, 1, RunOutcome::Succeeded, end)).await.unwrap();
    assert!(s.worktrees_to_remove(end.minus(Duration::from_secs(1))).await.unwrap().is_empty(), "not yet past retention");
    assert_eq!(s.worktrees_to_remove(end).await.unwrap(), vec![(id, rec.clone())]);
    rec.removed = true;
    s.set_task_git(id, rec).await.unwrap();
    assert!(s.worktrees_to_remove(Timestamp(i64::MAX / 2)).await.unwrap().is_empty(), "a removed worktree is not listed again");
    s.record_usage(UsageRow {
        owner: Owner::Task(id),
        agent: "cli:claude".into(),
        provider: "claude".into(),
        model: "m".into(),
        input: 10,
        output: 5,
        cached: 2,
        cost_usd: 0.5,
        at: end,
    })
    .await
    .unwrap();
    let u = s.owner_usage(Owner::Task(id)).await.unwrap();
    assert_eq!((u.calls, u.input, u.output, u.cached), (1, 10, 5, 2));
    assert_eq!(s.owner_usage(Owner::Task(running)).await.unwrap().calls, 0);
}

pub async fn transcripts_append_in_order_per_owner(s: DynStore) {
    let id = add(&s, spec("x")).await;
    let a = Owner::Task(id);
    let b = Owner::Chat(1);
    let seqs =
        s.append_transcript(a, 1, vec![serde_json::json!({"type": "user"}), serde_json::json!({"type": "assistant"})], T0).await.unwrap();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(s.append_transcript(b, 1, vec![serde_json::json!({"n": 1})], T0).await.unwrap(), vec![1], "each owner counts from 1");
    assert_eq!(s.append_transcript(a, 2, vec![serde_json::json!({"type": "tool"})], T0).await.unwrap(), vec![3]);
    let all = s.transcript(a, 0).await.unwrap();
    assert_eq!(all.iter().map(|e| e.body["type"].as_str().unwrap()).collect::<Vec<_>>(), vec!["user", "assistant", "tool"]);
    assert_eq!(all[2].attempt, 2);
    assert_eq!(s.transcript(a, 2).await.unwrap().len(), 1);
    assert_eq!(s.task_result(id).await.unwrap(), None);
    s.set_task_result(id, "done").await.unwrap();
    assert_eq!(s.task_result(id).await.unwrap().as_deref(), Some("done"));
}

pub async fn an_approval_is_bound_to_its_call_decided_once_and_used_once(s: DynStore) {
    let id = add(&s, spec("x")).await;
    let req = |call: &str, expires: Timestamp| NewApproval {
        owner: Owner::Task(id),
        agent: "a".into(),
        call_id: call.into(),
        tool: "shell".into(),
        arguments: serde_json::json!({"command": "make deploy"}),
        reason: "no rule".into(),
        expires_at: expires,
    };
    let later = T0.plus(Duration::from_secs(60));
    let first = s.request_approval(req("c1", later), T0).await.unwrap();
    assert_eq!(first.status, ApprovalStatus::Pending);
    let again = s.request_approval(req("c1", later), T0).await.unwrap();
    assert_eq!(again.id, first.id, "asking again for the same call returns the same request");
    let other = s.request_approval(req("c2", later), T0).await.unwrap();
    assert_ne!(other.id, first.id);
    assert!(!s.consume_approval(first.id, T0).await.unwrap(), "a pending request cannot be used");
    let decided = s.decide_approval(first.id, true, None, T0).await.unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    assert!(
        matches!(s.decide_approval(first.id, false, Some("no".into()), T0).await, Err(StoreError::Conflict(m)) if m.contains("approved"))
    );
    assert!(s.consume_approval(first.id, T0).await.unwrap());
    assert!(!s.consume_approval(first.id, T0).await.unwrap(), "used once");
    // Expiry: an undecided request past its time counts as expired and cannot be approved.
    let pending = s.list_approvals(true, T0).await.unwrap();
    assert_eq!(pending.iter().map(|a| a.id).collect::<Vec<_>>(), vec![other.id]);
    assert!(s.list_approvals(true, later).await.unwrap().is_empty());
    assert_eq!(s.get_approval(other.id).await.unwrap().status, ApprovalStatus::Expired);
    assert!(s.decide_approval(other.id, true, None, later).await.is_err());
    let denied = s.request_approval(req("c3", later.plus(Duration::from_secs(60))), later).await.unwrap();
    let d = s.decide_approval(denied.id, false, Some("not on prod".into()), later).await.unwrap();
    assert_eq!((d.status, d.decision_reason.as_deref()), (ApprovalStatus::Denied, Some("not on prod")));
}

pub async fn usage_sums_by_agent_and_model(s: DynStore) {
    let row = |agent: &str, model: &str, input: u64, cost: f64, at: Timestamp| UsageRow {
        owner: Owner::Chat(1),
        agent: agent.into(),
        provider: "p".into(),
        model: model.into(),
        input,
        output: 10,
        cached: 1,
        cost_usd: cost,
        at,
    };
    s.record_usage(row("a", "m1", 100, 0.5, T0)).await.unwrap();
    s.record_usage(row("a", "m2", 50, 0.25, T0)).await.unwrap();
    s.record_usage(row("b", "m1", 7, 0.0, T0)).await.unwrap();
    s.record_usage(row("b", "m1", 1000, 9.0, T0.minus(Duration::from_secs(3600)))).await.unwrap();
    let by_agent = s.usage_summary(T0, UsageBy::Agent).await.unwrap();
    assert_eq!(by_agent.len(), 2);
    assert_eq!((by_agent[0].key.as_str(), by_agent[0].calls, by_agent[0].input, by_agent[0].output), ("a", 2, 150, 20));
    assert!((by_agent[0].cost_usd - 0.75).abs() < 1e-9);
    assert_eq!((by_agent[1].key.as_str(), by_agent[1].input), ("b", 7), "older rows are outside the window");
    let by_model = s.usage_summary(Timestamp(0), UsageBy::Model).await.unwrap();
    assert_eq!(by_model.iter().map(|r| (r.key.as_str(), r.calls)).collect::<Vec<_>>(), vec![("m1", 3), ("m2", 1)]);
}

pub async fn chats_are_created_and_listed(s: DynStore) {
    let c = s.create_chat("assistant", T0).await.unwrap();
    s.touch_chat(c.id, Some("first words".into()), T0.plus(Duration::from_secs(1))).await.unwrap();
    s.touch_chat(c.id, Some("later words".into()), T0.plus(Duration::from_secs(2))).await.unwrap();
    let got = s.get_chat(c.id).await.unwrap();
    assert_eq!((got.agent.as_str(), got.title.as_str()), ("assistant", "first words"));
    assert_eq!(s.list_chats().await.unwrap().len(), 1);
    assert!(s.get_chat(c.id + 1).await.is_err());
}
