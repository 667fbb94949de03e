//! The budget ledger: reservations checked and written at once, settled once, and tasks that
//! wait on a budget.

use super::*;

fn limit(scope: &str, usd: Option<f64>, tokens: Option<u64>) -> ScopeLimit {
    ScopeLimit { scope: scope.into(), since: T0.minus(Duration::from_secs(3600)), usd, tokens }
}

fn res(key: &str, usd: f64, tokens: u64, limits: Vec<ScopeLimit>) -> Reserve {
    Reserve { key: key.into(), task: None, scopes: vec!["global".into(), "agent.a".into()], limits, usd, tokens, now: T0 }
}

pub async fn a_reservation_fits_every_limit_or_is_not_written(s: DynStore) {
    let limits = || vec![limit("global", Some(1.0), None), limit("agent.a", None, Some(1000))];
    assert_eq!(s.reserve(res("r1", 0.4, 400, limits())).await.unwrap(), Reserved::Granted);
    assert_eq!(s.reserve(res("r2", 0.4, 400, limits())).await.unwrap(), Reserved::Granted);
    // Tokens: 800 held of 1000, so 400 more does not fit; nothing of r3 is written.
    match s.reserve(res("r3", 0.1, 400, limits())).await.unwrap() {
        Reserved::NoRoom(short) => {
            assert_eq!(short.len(), 1);
            assert_eq!((short[0].scope.as_str(), short[0].reserved_tokens, short[0].entries), ("agent.a", 800, 2));
        }
        other => panic!("expected no room, got {other:?}"),
    }
    let spend = s.spend(vec!["global".into(), "agent.a".into()], vec![Timestamp(0), Timestamp(0)]).await.unwrap();
    assert_eq!((spend[0].entries, spend[1].entries), (2, 2), "the refused reservation left no row");
    assert!((spend[0].reserved_usd - 0.8).abs() < 1e-9 && spend[0].usd == 0.0);
    // Settling r1 to its real cost frees what it held beyond that.
    let settle = |key: &str, usd: f64, tokens: u64| Settle {
        key: key.into(),
        scopes: vec!["global".into(), "agent.a".into()],
        usd,
        tokens,
        now: T0,
    };
    s.settle(settle("r1", 0.1, 100)).await.unwrap();
    assert_eq!(s.reserve(res("r3", 0.1, 400, limits())).await.unwrap(), Reserved::Granted);
    let spend = s.spend(vec!["global".into()], vec![Timestamp(0)]).await.unwrap();
    assert!((spend[0].usd - 0.1).abs() < 1e-9 && (spend[0].reserved_usd - 0.5).abs() < 1e-9, "{spend:?}");
    // A second settle, or one of a key never reserved, charges nothing and is refused.
    assert!(matches!(s.settle(settle("r1", 5.0, 1)).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.settle(settle("nope", 5.0, 1)).await, Err(StoreError::Conflict(_))));
    // Settled spend before a limit's period does not count against it; what is held does.
    let fresh = ScopeLimit { since: T0.plus(Duration::from_secs(1)), ..limit("global", Some(0.75), None) };
    assert_eq!(
        s.reserve(Reserve { now: T0.plus(Duration::from_secs(2)), ..res("r4", 0.2, 1, vec![fresh]) }).await.unwrap(),
        Reserved::Granted
    );
}

pub async fn a_settle_may_charge_other_scopes_than_were_reserved(s: DynStore) {
    let r = Reserve { scopes: vec!["global".into(), "provider.a".into()], ..res("k", 0.5, 10, vec![]) };
    s.reserve(r).await.unwrap();
    let to = Settle { key: "k".into(), scopes: vec!["global".into(), "provider.b".into()], usd: 0.2, tokens: 5, now: T0 };
    s.settle(to).await.unwrap();
    let spend = s.spend(vec!["provider.a".into(), "provider.b".into()], vec![Timestamp(0), Timestamp(0)]).await.unwrap();
    assert_eq!((spend[0].entries, spend[1].entries), (0, 1), "the fallback provider that answered is charged");
    let all = s.spend_by_scope(Timestamp(0), T0.plus(Duration::from_secs(1))).await.unwrap();
    assert_eq!(all.iter().map(|x| x.scope.as_str()).collect::<Vec<_>>(), vec!["global", "provider.b"]);
}

pub async fn concurrent_reservations_never_pass_a_limit(s: DynStore) {
    // 20 reservations of $0.10 race for $1.00: exactly 10 are granted.
    let mut joins = vec![];
    for i in 0..20 {
        let s = s.clone();
        joins.push(tokio::spawn(async move {
            s.reserve(Reserve { key: format!("c{i}"), ..res("", 0.1, 1, vec![limit("global", Some(1.0), None)]) }).await.unwrap()
        }));
    }
    let mut granted = 0;
    for j in joins {
        if j.await.unwrap() == Reserved::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, 10);
    let spend = s.spend(vec!["global".into()], vec![Timestamp(0)]).await.unwrap();
    assert!((spend[0].reserved_usd - 1.0).abs() < 1e-9, "{spend:?}");
}

pub async fn open_reservations_of_a_task_settle_at_their_estimate(s: DynStore) {
    let id = add(&s, spec("true")).await;
    s.reserve(Reserve { task: Some(id), ..res("t1", 0.3, 30, vec![]) }).await.unwrap();
    s.reserve(Reserve { task: Some(id), ..res("t2", 0.2, 20, vec![]) }).await.unwrap();
    assert_eq!(s.settle_open(id, T0).await.unwrap(), 4, "two reservations on two scopes");
    let spend = s.spend(vec!["global".into()], vec![Timestamp(0)]).await.unwrap();
    assert!((spend[0].usd - 0.5).abs() < 1e-9 && spend[0].reserved_usd == 0.0);
    assert!(s.settle(Settle { key: "t1".into(), scopes: vec![], usd: 0.0, tokens: 0, now: T0 }).await.is_err(), "settled already");
    assert_eq!(s.prune_ledger(T0.plus(Duration::from_secs(1))).await.unwrap(), 4);
}

pub async fn a_paused_task_waits_on_its_budget_and_wakes_when_raised(s: DynStore) {
    let id = add(&s, spec("true")).await;
    let c = claim(&s, T0, 1).await;
    let until = T0.plus(Duration::from_secs(3600));
    let paused = RunOutcome::Paused { until, scope: "global".into(), reason: "global: spent $5.00 of $5.00 this day".into() };
    let changes = s.complete(done(id, c[0].attempt, paused, T0)).await.unwrap();
    assert_eq!(changes.status_of(id), Some(Status::Waiting));
    let t = s.get(id).await.unwrap();
    assert_eq!(
        t.state,
        TaskState::Waiting {
            reason: WaitReason::Budget { until, scope: "global".into(), reason: "global: spent $5.00 of $5.00 this day".into() }
        }
    );
    assert_eq!(t.failures, 0, "a pause uses no attempt");
    assert!(s.promote_due(T0.plus(Duration::from_secs(60))).await.unwrap().is_empty());
    assert_eq!(s.next_due().await.unwrap(), Some(until));
    // Raising the limit wakes it at once; an ordinary delayed task is left alone.
    let later = add(&s, TaskSpec { run_at: Some(until), ..spec("true") }).await;
    assert_eq!(s.wake_budget_waits(T0.plus(Duration::from_secs(61))).await.unwrap(), vec![id]);
    assert_eq!(status(&s, id).await, Status::Queued);
    assert_eq!(status(&s, later).await, Status::Waiting);
    // And it resumes with its next attempt number.
    let c2 = claim(&s, T0.plus(Duration::from_secs(62)), 1).await;
    assert_eq!((c2[0].id, c2[0].attempt), (id, 2));
}

pub async fn reservations_nothing_will_settle_are_settled_and_open_ones_always_count(s: DynStore) {
    let ended = add(&s, spec("true")).await;
    let running = add(&s, spec("true")).await;
    let c = claim(&s, T0, 2).await;
    let attempt = c.iter().find(|t| t.id == ended).unwrap().attempt;
    s.complete(done(ended, attempt, RunOutcome::Succeeded, T0)).await.unwrap();
    s.reserve(Reserve { task: Some(ended), ..res("e", 0.1, 1, vec![]) }).await.unwrap();
    s.reserve(Reserve { task: Some(running), ..res("r", 0.2, 1, vec![]) }).await.unwrap();
    s.reserve(Reserve { task: None, now: T0.minus(Duration::from_secs(3600)), ..res("old-chat", 0.3, 1, vec![]) }).await.unwrap();
    s.reserve(Reserve { task: None, ..res("new-chat", 0.4, 1, vec![]) }).await.unwrap();
    // An open reservation made long before a limit's period still holds room in it.
    let later = T0.plus(Duration::from_secs(86_400));
    let fresh = ScopeLimit { since: later.minus(Duration::from_secs(60)), ..limit("global", Some(1.05), None) };
    match s.reserve(Reserve { now: later, ..res("x", 0.1, 1, vec![fresh.clone()]) }).await.unwrap() {
        Reserved::NoRoom(short) => assert!((short[0].reserved_usd - 1.0).abs() < 1e-9, "{short:?}"),
        other => panic!("held room must count: {other:?}"),
    }
    // The ended task's and the old chat's are settled; the running task's and the new chat's stay.
    assert_eq!(s.settle_orphans(T0.minus(Duration::from_secs(900))).await.unwrap(), 4, "two reservations on two scopes");
    let spend = s.spend(vec!["global".into()], vec![Timestamp(0)]).await.unwrap();
    assert!((spend[0].usd - 0.4).abs() < 1e-9 && (spend[0].reserved_usd - 0.6).abs() < 1e-9, "{spend:?}");
    assert_eq!(s.reserve(Reserve { now: later, ..res("y", 0.1, 1, vec![fresh]) }).await.unwrap(), Reserved::Granted);
}
