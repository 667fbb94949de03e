//! Conformance cases. Schedules: unique names, exactly one fire per slot, history.

use super::*;

pub fn schedule_spec(name: &str) -> owl_core::schedule::ScheduleSpec {
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
        created_by: None,
    }
}

fn fire(slot: Timestamp) -> FireDecision {
    FireDecision { slot, action: FireAction::Fire(spec("echo tick")) }
}

pub async fn a_task_keeps_its_origin_and_a_schedule_its_maker(s: DynStore) {
    use owl_core::agent::Owner;
    use owl_core::task::Origin;
    let origins = [
        Origin::Agent { parent: Owner::Chat(3), depth: 2 },
        Origin::Schedule { name: "nightly".into(), slot: T0 },
        Origin::Trigger { name: "on-push".into(), depth: 1 },
    ];
    for o in origins {
        let mut t = spec("echo");
        t.origin = Some(o.clone());
        let id = s.submit(vec![NewTask::new(t)], T0).await.unwrap()[0].id;
        assert_eq!(s.get(id).await.unwrap().spec.origin, Some(o));
    }
    let plain = s.submit(vec![NewTask::new(spec("echo"))], T0).await.unwrap()[0].id;
    assert_eq!(s.get(plain).await.unwrap().spec.origin, None);
    let mut made = schedule_spec("agent-made");
    made.created_by = Some(Owner::Task(TaskId(7)));
    s.create_schedule(made, None, T0).await.unwrap();
    assert_eq!(s.get_schedule("agent-made").await.unwrap().spec.created_by, Some(Owner::Task(TaskId(7))));
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

pub async fn a_schedule_remembers_its_last_success(s: DynStore) {
    use owl_core::task::Origin;
    let slot = T0.plus(Duration::from_secs(60));
    let sch = s.create_schedule(schedule_spec("nightly"), Some(slot), T0).await.unwrap();
    s.create_schedule(schedule_spec("other"), Some(slot), T0).await.unwrap();
    assert_eq!((sch.last_success_at, sch.last_success_ms), (None, None));
    let run = |slot: Timestamp, name: &str| {
        let mut t = spec("echo tick");
        t.origin = Some(Origin::Schedule { name: name.into(), slot });
        t
    };
    let mut next = slot;
    let mut fire_and_end = |outcome: RunOutcome, started: Timestamp, ended: Timestamp| {
        let s = s.clone();
        let this = next;
        next = next.plus(Duration::from_secs(60));
        let (id, following) = (sch.id, next);
        let task = run(this, "nightly");
        async move {
            let pass = ApplyFires {
                schedule_id: id,
                expected_next: Some(this),
                decisions: vec![FireDecision { slot: this, action: FireAction::Fire(task) }],
                next_fire_at: Some(following),
                finished: false,
                pending_slot: None,
                now: this,
            };
            s.apply_fires(pass).await.unwrap();
            let c = claim(&s, started, 1).await.remove(0);
            s.complete(done(c.id, c.attempt, outcome, ended)).await.unwrap();
            s.get_schedule("nightly").await.unwrap()
        }
    };
    let t1 = slot.plus(Duration::from_secs(1));
    let after = fire_and_end(RunOutcome::Succeeded, t1, t1.plus(Duration::from_secs(30))).await;
    assert_eq!(after.last_success_at, Some(t1.plus(Duration::from_secs(30))));
    assert_eq!(after.last_success_ms, Some(30_000), "how long the successful run took");
    let t2 = t1.plus(Duration::from_secs(60));
    let failed = RunOutcome::Failed { exit_code: Some(1), signal: None, error: None };
    let after = fire_and_end(failed, t2, t2.plus(Duration::from_secs(5))).await;
    assert_eq!(after.last_success_at, Some(t1.plus(Duration::from_secs(30))), "a failed run leaves the last success as it was");
    let other = s.get_schedule("other").await.unwrap();
    assert_eq!(other.last_success_at, None, "another schedule's runs do not count");
    // A task that only claims the schedule's name in a label is not its run.
    let mut plain = spec("echo");
    plain.labels.push("schedule:other".into());
    add(&s, plain).await;
    let c = claim(&s, t2.plus(Duration::from_secs(10)), 1).await.remove(0);
    s.complete(done(c.id, c.attempt, RunOutcome::Succeeded, t2.plus(Duration::from_secs(11)))).await.unwrap();
    assert_eq!(s.get_schedule("other").await.unwrap().last_success_at, None);
}

pub async fn a_schedule_remembers_when_it_was_resumed(s: DynStore) {
    use owl_core::schedule::ScheduleState;
    let slot = T0.plus(Duration::from_secs(60));
    let sch = s.create_schedule(schedule_spec("nightly"), Some(slot), T0).await.unwrap();
    assert_eq!(sch.active_since, None, "active since its creation");
    let at = |secs| T0.plus(Duration::from_secs(secs));
    s.set_schedule_state("nightly", ScheduleState::Paused, None, at(10)).await.unwrap();
    assert_eq!(s.get_schedule("nightly").await.unwrap().active_since, None, "a pause changes nothing");
    let resumed = s.set_schedule_state("nightly", ScheduleState::Active, Some(at(120)), at(100)).await.unwrap();
    assert_eq!(resumed.active_since, Some(at(100)));
    let again = s.set_schedule_state("nightly", ScheduleState::Active, Some(at(180)), at(150)).await.unwrap();
    assert_eq!(again.active_since, Some(at(100)), "setting an active schedule active is not a resume");
}
