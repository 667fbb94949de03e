//! Conformance cases. What tasks and agents leave behind: inputs, git records, transcripts, approvals, usage, chats.

use super::*;

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
    let mut sp =
        TaskSpec::new(Command::Cli { cli: "claude".into(), prompt: "fix it".into(), owl_mcp: false, max_cost_usd: None, template: None });
    sp.repo = Some(owl_core::RepoRequest {
        path: "/src/app".into(),
        base: Some("main".into()),
        push: Some("origin".into()),
        pr: true,
        github: Some("acme/app".into()),
        issue: Some(42),
    });
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
    let usage = Usage { input: 10, output: 5, cached: 2 };
    s.record_usage(
        UsageRecord {
            owner: Owner::Task(id),
            agent: "cli:claude".into(),
            provider: "claude".into(),
            model: "m".into(),
            usage,
            cost_usd: 0.5,
            price: "reported by the CLI".into(),
        },
        end,
    )
    .await
    .unwrap();
    let u = s.owner_usage(Owner::Task(id)).await.unwrap();
    assert_eq!((u.calls, u.input, u.output, u.cached), (1, 10, 5, 2));
    assert_eq!(u.price, "reported by the CLI", "the price each row was charged at is kept");
    assert_eq!(s.owner_usage(Owner::Task(running)).await.unwrap().calls, 0);
}

pub async fn transcripts_append_in_order_per_owner(s: DynStore) {
    let id = add(&s, spec("x")).await;
    let a = Owner::Task(id);
    let b = Owner::Chat(1);
    let seqs = s.append_transcript(a, 1, vec![Entry::user("go"), Entry::assistant("ok", vec![])], T0).await.unwrap();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(s.append_transcript(b, 1, vec![Entry::note("n")], T0).await.unwrap(), vec![1], "each owner counts from 1");
    let tool = Entry::tool("c1", "shell", "a \"quoted\" \\ line\n", true);
    assert_eq!(s.append_transcript(a, 2, vec![tool.clone()], T0).await.unwrap(), vec![3]);
    let all = s.transcript(a, 0).await.unwrap();
    assert_eq!(all.iter().map(|e| e.body.kind()).collect::<Vec<_>>(), vec!["user", "assistant", "tool"]);
    assert_eq!(all[2].body, tool, "an entry reads back as it was written");
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
    let row = |agent: &str, model: &str, input: u64, cost: f64, at: Timestamp| {
        let usage = Usage { input, output: 10, cached: 1 };
        (
            UsageRecord {
                owner: Owner::Chat(1),
                agent: agent.into(),
                provider: "p".into(),
                model: model.into(),
                usage,
                cost_usd: cost,
                price: format!("[prices.\"{model}\"]"),
            },
            at,
        )
    };
    for (u, at) in [
        row("a", "m1", 100, 0.5, T0),
        row("a", "m2", 50, 0.25, T0),
        row("b", "m1", 7, 0.0, T0),
        row("b", "m1", 1000, 9.0, T0.minus(Duration::from_secs(3600))),
    ] {
        s.record_usage(u, at).await.unwrap();
    }
    let end = T0.plus(Duration::from_secs(1));
    let by_agent = s.usage_summary(T0, end, UsageBy::Agent).await.unwrap();
    assert_eq!(by_agent.len(), 2);
    assert_eq!((by_agent[0].key.as_str(), by_agent[0].calls, by_agent[0].input, by_agent[0].output), ("a", 2, 150, 20));
    assert!((by_agent[0].cost_usd - 0.75).abs() < 1e-9);
    assert_eq!((by_agent[1].key.as_str(), by_agent[1].input), ("b", 7), "older rows are outside the window");
    let by_model = s.usage_summary(Timestamp(0), end, UsageBy::Model).await.unwrap();
    assert_eq!(by_model.iter().map(|r| (r.key.as_str(), r.calls)).collect::<Vec<_>>(), vec![("m1", 3), ("m2", 1)]);
    assert_eq!(by_model[0].price, "[prices.\"m1\"]");
    let before = s.usage_summary(Timestamp(0), T0, UsageBy::Model).await.unwrap();
    assert_eq!(before.iter().map(|r| (r.key.as_str(), r.calls)).collect::<Vec<_>>(), vec![("m1", 1)], "the end is excluded");
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
