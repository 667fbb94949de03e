//! Conformance cases. Notifications: channels, rules and the outbox of deliveries.

use super::*;
use owl_core::notify::{ChannelSpec, DeliveryStatus, EventName, Notice, RuleSpec, Target};

fn email(name: &str) -> ChannelSpec {
    ChannelSpec { name: name.into(), target: Target::Email { to: vec![format!("{name}@example.com")] } }
}

pub fn notice(event: EventName, key: &str, task: Option<i64>) -> Notice {
    Notice {
        event,
        key: key.into(),
        at: T0,
        title: format!("{key} happened"),
        text: "why".into(),
        command: Some("owl ls".into()),
        link: None,
        task_id: task,
        labels: vec!["nightly".into()],
        group: None,
        schedule: Some("backup".into()),
        agent: None,
        attachment: None,
    }
}

fn new(channel: &str, key: &str, batch: Option<&str>, at: Timestamp) -> NewDelivery {
    NewDelivery {
        channel: channel.into(),
        rule_id: Some(1),
        notice: notice(EventName::TaskFailed, key, Some(7)),
        batch: batch.map(Into::into),
        not_before: at,
    }
}

fn secs(n: u64) -> Timestamp {
    T0.plus(Duration::from_secs(n))
}

pub async fn notification_channels_and_rules_are_checked_stored_and_removed(s: DynStore) {
    let ops = s.create_channel(email("ops"), T0).await.unwrap();
    assert_eq!((ops.paused.clone(), ops.failures, ops.created_at), (None, 0, T0));
    assert!(matches!(s.create_channel(email("ops"), T0).await, Err(StoreError::Conflict(_))));
    let bad = ChannelSpec { name: "hooks".into(), target: Target::Email { to: vec!["nobody".into()] } };
    assert!(matches!(s.create_channel(bad, T0).await, Err(StoreError::Invalid(v)) if v.field == "to"));
    let hook = ChannelSpec {
        name: "hooks".into(),
        target: Target::Webhook { url: "https://example.com/h".into(), secret_env: Some("S".into()), secret: None, allow_private: true },
    };
    s.create_channel(hook.clone(), T0).await.unwrap();
    assert_eq!(s.get_channel("hooks").await.unwrap().spec, hook);
    let moved = ChannelSpec { name: "hooks".into(), target: Target::Slack { channel: "C0123ABCD".into() } };
    assert_eq!(s.update_channel(moved.clone()).await.unwrap().spec, moved);
    assert!(matches!(s.update_channel(email("nope")).await, Err(StoreError::Missing(_))));
    s.update_channel(hook.clone()).await.unwrap();
    let names: Vec<String> = s.list_channels().await.unwrap().into_iter().map(|c| c.spec.name).collect();
    assert_eq!(names, ["hooks", "ops"]);
    assert!(matches!(s.get_channel("nope").await, Err(StoreError::Missing(m)) if m.contains("owl notify ls")));

    let rule = RuleSpec {
        on: vec![EventName::TaskFailed, EventName::ScheduleMissed],
        to: vec!["ops".into()],
        schedule: Some("nightly".into()),
        ..Default::default()
    };
    let r = s.create_rule(rule.clone(), T0).await.unwrap();
    assert_eq!(s.list_rules().await.unwrap(), vec![r.clone()]);
    assert_eq!(r.spec, rule);
    let to_missing = RuleSpec { to: vec!["pager".into()], ..rule.clone() };
    assert!(matches!(s.create_rule(to_missing, T0).await, Err(StoreError::Invalid(v)) if v.field == "to"));
    assert!(matches!(s.create_rule(RuleSpec { on: vec![], ..rule }, T0).await, Err(StoreError::Invalid(v)) if v.field == "on"));

    // A channel a rule sends to stays until the rule goes.
    assert!(matches!(s.delete_channel("ops").await, Err(StoreError::Conflict(m)) if m.contains(&format!("rule {}", r.id))));
    s.delete_rule(r.id).await.unwrap();
    assert!(matches!(s.delete_rule(r.id).await, Err(StoreError::Missing(_))));
    s.delete_channel("ops").await.unwrap();
    assert!(matches!(s.delete_channel("ops").await, Err(StoreError::Missing(_))));
}

pub async fn a_notice_is_written_once_per_channel_and_claimed_by_one_sender(s: DynStore) {
    s.create_channel(email("ops"), T0).await.unwrap();
    s.create_channel(email("dev"), T0).await.unwrap();
    let n = s.enqueue(vec![new("ops", "task_failed:7:1", None, T0), new("dev", "task_failed:7:1", None, T0)], T0).await.unwrap();
    assert_eq!(n, 2);
    // The same happening written again (a replayed source, another node) adds nothing.
    assert_eq!(s.enqueue(vec![new("ops", "task_failed:7:1", None, T0)], secs(1)).await.unwrap(), 0);
    let later = new("ops", "task_failed:8:1", None, secs(100));
    assert_eq!(s.enqueue(vec![later], T0).await.unwrap(), 1);

    let claimed = s.claim_deliveries(secs(2), secs(32), 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "the two due deliveries, each alone; the later one waits");
    assert!(claimed.iter().all(|g| g.len() == 1 && g[0].status == DeliveryStatus::Sending && g[0].attempts == 1));
    assert!(s.claim_deliveries(secs(3), secs(33), 10).await.unwrap().is_empty(), "leased sends are not claimed twice");

    // A sender that died: its lease runs out and the send is claimed again, as attempt 2.
    let again = s.claim_deliveries(secs(40), secs(70), 10).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|g| g[0].attempts == 2));
    let first = &again[0][0];
    // The first sender's late answer is refused (its attempt is stale).
    s.finish_delivery(DeliveryDone { ids: vec![first.id], attempt: 1, ok: true, answer: "250 ok".into(), retry_at: None, now: secs(41) })
        .await
        .unwrap();
    assert_eq!(s.get_delivery(first.id).await.unwrap().status, DeliveryStatus::Sending);
    s.finish_delivery(DeliveryDone { ids: vec![first.id], attempt: 2, ok: true, answer: "250 ok".into(), retry_at: None, now: secs(42) })
        .await
        .unwrap();
    let d = s.get_delivery(first.id).await.unwrap();
    assert_eq!((d.status, d.attempts, d.log.len()), (DeliveryStatus::Delivered, 2, 1));
    assert_eq!((d.log[0].n, d.log[0].ok, d.log[0].answer.as_str()), (2, true, "250 ok"));
    assert_eq!(d.notice.key, "task_failed:7:1");
    assert!(d.message_id().starts_with("msg_"));
}

pub async fn failed_deliveries_retry_then_become_dead_letters(s: DynStore) {
    s.create_channel(email("ops"), T0).await.unwrap();
    s.enqueue(vec![new("ops", "k1", None, T0)], T0).await.unwrap();
    let g = s.claim_deliveries(secs(1), secs(31), 10).await.unwrap().remove(0);
    let id = g[0].id;
    let retry =
        DeliveryDone { ids: vec![id], attempt: 1, ok: false, answer: "451 try later".into(), retry_at: Some(secs(60)), now: secs(2) };
    s.finish_delivery(retry).await.unwrap();
    let d = s.get_delivery(id).await.unwrap();
    assert_eq!((d.status, d.next_at), (DeliveryStatus::Pending, secs(60)));
    assert!(s.claim_deliveries(secs(30), secs(60), 10).await.unwrap().is_empty(), "not before its retry time");
    let g = s.claim_deliveries(secs(61), secs(91), 10).await.unwrap().remove(0);
    assert_eq!(g[0].attempts, 2);
    s.finish_delivery(DeliveryDone {
        ids: vec![id],
        attempt: 2,
        ok: false,
        answer: "550 no such user".into(),
        retry_at: None,
        now: secs(62),
    })
    .await
    .unwrap();
    let d = s.get_delivery(id).await.unwrap();
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert_eq!(d.log.iter().map(|a| a.answer.as_str()).collect::<Vec<_>>(), ["451 try later", "550 no such user"]);
    assert!(s.claim_deliveries(secs(10_000), secs(10_030), 10).await.unwrap().is_empty(), "a dead letter is not sent again");

    s.enqueue(vec![new("ops", "k2", None, T0)], T0).await.unwrap();
    let failed = s.deliveries(DeliveryFilter { failed: true, limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(failed.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
    let all = s.deliveries(DeliveryFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].id > all[1].id, "newest first");
    let page = s.deliveries(DeliveryFilter { before: Some(all[0].id), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
    let dead = s.deliveries(DeliveryFilter { status: Some(DeliveryStatus::Dead), task_id: Some(7), limit: 10, ..Default::default() });
    assert_eq!(dead.await.unwrap().len(), 1);
    // Finished deliveries are pruned with history; pending ones stay.
    assert_eq!(s.prune_deliveries(secs(100)).await.unwrap(), 1);
    assert_eq!(s.deliveries(DeliveryFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 1);
}

pub async fn a_paused_channel_holds_its_deliveries_until_resumed(s: DynStore) {
    s.create_channel(email("ops"), T0).await.unwrap();
    let c = s.channel_result("ops", false, Some("connection refused".into()), None, secs(1)).await.unwrap();
    assert_eq!((c.failures, c.paused.as_deref()), (1, None));
    let c = s.channel_result("ops", false, Some("410 Gone".into()), Some("the endpoint answered 410 Gone".into()), secs(2)).await.unwrap();
    assert_eq!((c.failures, c.paused.as_deref(), c.last_error.as_deref()), (2, Some("the endpoint answered 410 Gone"), Some("410 Gone")));
    s.enqueue(vec![new("ops", "k1", None, T0)], T0).await.unwrap();
    assert!(s.claim_deliveries(secs(3), secs(33), 10).await.unwrap().is_empty(), "a paused channel sends nothing");
    let c = s.resume_channel("ops", secs(4)).await.unwrap();
    assert_eq!((c.failures, c.paused), (0, None));
    assert_eq!(s.claim_deliveries(secs(5), secs(35), 10).await.unwrap().len(), 1);
    let c = s.channel_result("ops", true, None, None, secs(6)).await.unwrap();
    assert_eq!((c.failures, c.last_ok_at, c.last_error), (0, Some(secs(6)), None), "a success clears the last error");
    assert!(matches!(s.resume_channel("nope", secs(7)).await, Err(StoreError::Missing(_))));
}

pub async fn a_digest_is_claimed_as_one_batch_and_counted_apart(s: DynStore) {
    s.create_channel(email("ops"), T0).await.unwrap();
    let end = secs(3600);
    let batch = vec![new("ops", "a", Some("r1:0"), end), new("ops", "b", Some("r1:0"), end), new("ops", "c", Some("r1:0"), end)];
    s.enqueue(batch, T0).await.unwrap();
    s.enqueue(vec![new("ops", "alone", None, T0)], T0).await.unwrap();
    assert_eq!(s.deliveries_since(1, "ops", T0).await.unwrap(), 1, "digest members do not count against the hourly limit");
    assert_eq!(s.deliveries_since(2, "ops", T0).await.unwrap(), 0);
    let now = s.claim_deliveries(secs(10), secs(40), 10).await.unwrap();
    assert_eq!(now.len(), 1, "the digest waits for its window's end");
    let alone = DeliveryDone { ids: vec![now[0][0].id], attempt: 1, ok: true, answer: "250".into(), retry_at: None, now: secs(11) };
    s.finish_delivery(alone).await.unwrap();
    let at_end = s.claim_deliveries(end, end.plus(LEASE), 10).await.unwrap();
    assert_eq!(at_end.len(), 1);
    let keys: Vec<&str> = at_end[0].iter().map(|d| d.notice.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    let ids: Vec<i64> = at_end[0].iter().map(|d| d.id).collect();
    let attempt = at_end[0][0].attempts;
    s.finish_delivery(DeliveryDone { ids, attempt, ok: true, answer: "250".into(), retry_at: None, now: end }).await.unwrap();
    let delivered = s.deliveries(DeliveryFilter { status: Some(DeliveryStatus::Delivered), limit: 10, ..Default::default() });
    assert_eq!(delivered.await.unwrap().len(), 4);
}
