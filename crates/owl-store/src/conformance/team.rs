//! Conformance cases of the team: messages between agents and agents' state.

use super::*;

fn msg(key: &str, to: &str, deliver_to: &[&str], content: &str) -> NewMessage {
    NewMessage {
        key: key.into(),
        thread: "task:1".into(),
        sender: "agent:planner".into(),
        sender_task: Some(TaskId(1)),
        recipient: to.into(),
        deliver_to: deliver_to.iter().map(|s| s.to_string()).collect(),
        kind: "note".into(),
        content: content.into(),
        reply_to: None,
        metadata: serde_json::json!({"round": 1}),
        attachments: vec![Attachment { name: "plan.md".into(), path: "/data/attachments/1/plan.md".into(), bytes: 12 }],
    }
}

pub async fn a_message_is_stored_once_per_key_and_delivered_once_to_each_recipient(s: DynStore) {
    let (m, created) = s.send_message(msg("k1", "all", &["agent:coder", "agent:tester"], "hello team"), T0).await.unwrap();
    assert!(created);
    assert_eq!(m.deliveries.len(), 2);
    assert_eq!(m.attachments[0].name, "plan.md");
    assert_eq!(m.metadata["round"], 1);
    // A replayed send stores nothing new.
    let (again, created) = s.send_message(msg("k1", "all", &["agent:coder", "agent:tester"], "hello team"), T0).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, m.id);
    let direct = s.send_message(msg("k2", "agent:coder", &["agent:coder"], "just you"), T0).await.unwrap().0;
    assert_eq!(s.unread_count("agent:coder").await.unwrap(), 2);

    // The coder's read takes both; reading again with the same claim gives the same two.
    let read = s.read_messages(vec!["agent:coder".into(), "task:7".into()], "task:7:call_a", 10, T0).await.unwrap();
    assert_eq!(read.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m.id, direct.id]);
    let replay = s.read_messages(vec!["agent:coder".into(), "task:7".into()], "task:7:call_a", 10, T0).await.unwrap();
    assert_eq!(replay.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m.id, direct.id]);
    // A new read finds nothing more for the coder; the tester still has its copy.
    assert!(s.read_messages(vec!["agent:coder".into()], "task:7:call_b", 10, T0).await.unwrap().is_empty());
    assert_eq!(s.unread_count("agent:coder").await.unwrap(), 0);
    assert_eq!(s.unread_count("agent:tester").await.unwrap(), 1);

    // Acknowledged by the claim's prefix (the task).
    // A task's later read acknowledges its earlier ones, not itself.
    assert_eq!(s.ack_messages("task:7:", Some("task:7:call_a"), T0).await.unwrap(), 0);
    assert_eq!(s.ack_messages("task:7:", None, T0.plus(Duration::from_secs(1))).await.unwrap(), 2);
    let all = s.messages(MessageFilter { thread: Some("task:1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 2);
    let coder = all[0].deliveries.iter().find(|d| d.to == "agent:coder").unwrap();
    assert_eq!(coder.claim.as_deref(), Some("task:7:call_a"));
    assert!(coder.acked_at.is_some());
    let tester = all[0].deliveries.iter().find(|d| d.to == "agent:tester").unwrap();
    assert_eq!((tester.delivered_at, tester.acked_at), (None, None));
    let sent = s.messages(MessageFilter { party: Some("task:1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(sent.len(), 2, "a task's filter holds what it sent");
    let mine = s.messages(MessageFilter { party: Some("agent:tester".into()), ..Default::default() }).await.unwrap();
    assert_eq!(mine.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m.id]);
    assert!(s.messages(MessageFilter { thread: Some("task:99".into()), ..Default::default() }).await.unwrap().is_empty());
}

pub async fn concurrent_reads_never_hand_one_delivery_out_twice(s: DynStore) {
    for i in 0..20 {
        s.send_message(msg(&format!("m{i}"), "agent:coder", &["agent:coder"], &format!("job {i}")), T0).await.unwrap();
    }
    let mut readers = Vec::new();
    for r in 0..5 {
        let s = s.clone();
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for round in 0..10 {
                let ms = s.read_messages(vec!["agent:coder".into()], &format!("task:{r}:c{round}"), 3, T0).await.unwrap();
                got.extend(ms.iter().map(|m| m.id));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, all.len(), "a delivery was handed to two reads");
    assert_eq!(n, 20, "every message was read");
}

pub async fn agent_state_is_versioned_and_a_stale_write_is_refused(s: DynStore) {
    let a = s.put_agent_state("coder", "style", "tabs", Some(0), T0).await.unwrap();
    assert_eq!(a.version, 1);
    let err = s.put_agent_state("coder", "style", "spaces", Some(0), T0).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("version 1")), "{err}");
    let b = s.put_agent_state("coder", "style", "spaces", Some(1), T0).await.unwrap();
    assert_eq!((b.version, b.value.as_str()), (2, "spaces"));
    assert!(matches!(s.put_agent_state("coder", "style", "x", Some(1), T0).await, Err(StoreError::Conflict(_))));
    // No version given: whatever it is at.
    assert_eq!(s.put_agent_state("coder", "style", "tabs", None, T0).await.unwrap().version, 3);
    assert_eq!(s.put_agent_state("coder", "notes", "uses tokio", None, T0).await.unwrap().version, 1);
    assert!(matches!(s.put_agent_state("coder", "missing", "x", Some(4), T0).await, Err(StoreError::Conflict(_))));
    assert!(matches!(s.put_agent_state("coder", "missing", "x", Some(u64::MAX), T0).await, Err(StoreError::Conflict(_))));
    assert!(s.agent_state("coder").await.unwrap().iter().all(|e| e.key != "missing"));
    let st = s.agent_state("coder").await.unwrap();
    assert_eq!(st.iter().map(|e| (e.key.as_str(), e.version)).collect::<Vec<_>>(), vec![("notes", 1), ("style", 3)]);
    assert!(s.agent_state("planner").await.unwrap().is_empty(), "each agent has its own state");

    // Ten writers at one version: exactly one wins.
    let mut writers = Vec::new();
    for i in 0..10 {
        let s = s.clone();
        writers.push(tokio::spawn(async move { s.put_agent_state("coder", "style", &format!("w{i}"), Some(3), T0).await.is_ok() }));
    }
    let mut won = 0;
    for w in writers {
        won += w.await.unwrap() as u32;
    }
    assert_eq!(won, 1);
    assert_eq!(s.agent_state("coder").await.unwrap().iter().find(|e| e.key == "style").unwrap().version, 4);

    assert!(matches!(s.delete_agent_state("coder", "style", Some(3)).await, Err(StoreError::Conflict(_))));
    assert!(s.delete_agent_state("coder", "style", Some(4)).await.unwrap());
    assert!(!s.delete_agent_state("coder", "style", None).await.unwrap());
}
