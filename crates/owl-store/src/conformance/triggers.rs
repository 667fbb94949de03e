//! Conformance cases. Triggers and the finished-task log.

use super::*;

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
    // b is stamped at 2 s but committed first: a consumer that cares about finishes from 2 s on
    // must start before it (it filters the earlier ones out by time).
    assert!(s.last_finish_before(T0.plus(Duration::from_secs(2))).await.unwrap() < walk[0].0, "b is not skipped");
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
    assert_eq!(s.kv_swap("edge", "true").await.unwrap(), None);
    // Of swaps racing on one key, exactly one sees the value before them all.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.kv_swap("edge", "false").await.unwrap() })
        })
        .collect();
    let mut saw_true = 0;
    for r in racers {
        if r.await.unwrap().as_deref() == Some("true") {
            saw_true += 1;
        }
    }
    assert_eq!(saw_true, 1);
    assert_eq!(s.kv_get("edge").await.unwrap().as_deref(), Some("false"));
}
