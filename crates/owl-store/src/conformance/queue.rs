//! Conformance cases. Tasks: submitting, claiming, dependencies, cancels, retries, fencing, rescue.

use super::*;

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

pub async fn a_batch_round_trips_every_field_of_each_item(s: DynStore) {
    let mut rich = spec("echo rich");
    rich.env.insert("B".into(), "2".into());
    rich.cwd = Some("/tmp".into());
    rich.group = "g".into();
    rich.labels = vec!["x".into(), "y".into()];
    rich.priority = -3;
    rich.max_attempts = 4;
    rich.run_at = Some(T0.plus(Duration::from_secs(60)));
    rich.inputs = vec![owl_core::task::InputFile { env: "IN".into(), file: "in.json".into(), content: "{}".into() }];
    rich.sandbox = Some(owl_core::task::SandboxRequest { enabled: Some(true), allow_net: true, ..Default::default() });
    rich.origin = Some(owl_core::task::Origin::Trigger { name: "t".into(), depth: 2 });
    let batch = vec![NewTask::new(spec("echo plain")), NewTask::new(rich.clone()), NewTask::new(spec("echo last"))];
    let r = s.submit(batch.clone(), T0).await.unwrap();
    assert_eq!(r.iter().map(|x| x.status).collect::<Vec<_>>(), [Status::Queued, Status::Waiting, Status::Queued]);
    assert!(r[0].id < r[1].id && r[1].id < r[2].id, "ids follow the batch order: {r:?}");
    for (item, sub) in batch.iter().zip(&r) {
        assert_eq!(s.get(sub.id).await.unwrap().spec, item.spec);
    }
    assert_eq!(claim(&s, T0, 10).await.iter().map(|c| c.id).collect::<Vec<_>>(), [r[0].id, r[2].id]);
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

/// A cancel requested while the task's node was gone is honoured when the task is rescued: it
/// ends cancelled (with its dependents failed), and never runs again.
pub async fn a_cancel_requested_of_a_lost_attempt_is_honoured_at_rescue(s: DynStore) {
    let a = add(&s, spec("a")).await;
    let mut after = spec("after");
    after.depends_on = vec![a];
    let b = add(&s, after).await;
    claim(&s, T0, 1).await;
    assert_eq!(s.cancel(a, Some("not needed".into()), T0).await.unwrap(), CancelReply::Requested);
    let ch = s.rescue(T0.plus(LEASE).plus(Duration::from_secs(1)), false, RetryPolicy::default()).await.unwrap();
    assert_eq!(ch.status_of(a), Some(Status::Cancelled), "{ch:?}");
    assert_eq!(ch.status_of(b), Some(Status::Failed), "{ch:?}");
    assert!(matches!(s.get(a).await.unwrap().state, TaskState::Cancelled { reason: Some(ref r), .. } if r == "not needed"));
    assert!(matches!(s.runs(a).await.unwrap()[0].outcome, Some(RunOutcome::Cancelled { .. })));
    assert!(claim(&s, T0.plus(Duration::from_secs(60)), 5).await.is_empty());
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

pub async fn list_filters_by_kind_schedule_and_creation_time(s: DynStore) {
    use owl_core::task::Origin;
    let shell = add(&s, spec("echo")).await;
    let agent = add(&s, TaskSpec::new(Command::agent("a", "p"))).await;
    let cli = add(
        &s,
        TaskSpec::new(Command::Cli { cli: "claude".into(), prompt: "p".into(), owl_mcp: false, max_cost_usd: None, template: None }),
    )
    .await;
    let mut fired = spec("nightly job");
    fired.origin = Some(Origin::Schedule { name: "nightly".into(), slot: T0 });
    let nightly = add(&s, fired).await;
    let mut other = spec("other job");
    other.origin = Some(Origin::Schedule { name: "hourly".into(), slot: T0 });
    let later = s.submit(vec![NewTask::new(other)], T0.plus(Duration::from_secs(60))).await.unwrap()[0].id;
    let ids = |f: TaskFilter| {
        let s = s.clone();
        async move { s.list(f).await.unwrap().into_iter().map(|t| t.id).collect::<Vec<_>>() }
    };
    let kind = |k: &str| TaskFilter { kind: Some(k.into()), ..Default::default() };
    assert_eq!(ids(kind("agent")).await, vec![agent]);
    assert_eq!(ids(kind("cli")).await, vec![cli]);
    assert_eq!(ids(kind("command")).await, vec![later, nightly, shell]);
    assert_eq!(ids(TaskFilter { schedule: Some("nightly".into()), ..Default::default() }).await, vec![nightly]);
    assert_eq!(ids(TaskFilter { schedule: Some("none".into()), ..Default::default() }).await, Vec::<TaskId>::new());
    let since = TaskFilter { created_since: Some(T0.plus(Duration::from_secs(1))), ..Default::default() };
    assert_eq!(ids(since).await, vec![later]);
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

pub async fn nodes_keep_their_last_report_and_count_their_running_tasks(s: DynStore) {
    let beat =
        |node: &str, at: Timestamp| NodeBeat { node: node.into(), version: "1.2.3".into(), pid: 42, started_at: T0, workers: 4, now: at };
    assert!(s.nodes().await.unwrap().is_empty());
    s.beat_node(beat("n1", T0)).await.unwrap();
    s.beat_node(beat("n2", T0)).await.unwrap();
    let id = add(&s, spec("echo")).await;
    assert_eq!(claim(&s, T0, 5).await[0].id, id);
    let later = T0.plus(Duration::from_secs(10));
    s.beat_node(NodeBeat { pid: 43, ..beat("n1", later) }).await.unwrap();
    let nodes = s.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
    assert_eq!((nodes[0].last_seen, nodes[0].pid, nodes[0].running, nodes[0].workers), (later, 43, 1, 4));
    assert_eq!((nodes[1].last_seen, nodes[1].running), (T0, 0));
    assert_eq!(nodes[0].version, "1.2.3");
    let h = s.health().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&h.backend.as_str()), "{h:?}");
    assert!(h.schema_version > 0 && h.facts.get("database_bytes").is_some_and(|b| *b > 0), "{h:?}");
}
