//! The [`owl_agent::Host`] over the engine: transcript entries go to the store (and become
//! events and log lines), approvals wait on their store row, subtasks and schedules go through
//! the engine, memory through the shared memory.

use crate::{Engine, Shared};
use async_trait::async_trait;
use owl_agent::{
    ApprovalDecision, ApprovalRequest, Entry, Host, HostError, HostResult, NewAgentSchedule, Owner, TranscriptEntry, UsageRecord,
};
use owl_core::agent::Owner as CoreOwner;
use owl_core::schedule::{Misfire, Overlap, ScheduleSpec, When};
use owl_core::task::Origin;
use owl_core::{Command, Event, EventKind, TaskId, TaskSpec};
use owl_store::{Approval, ApprovalStatus, NewApproval, NewTask, StoreError};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

pub(crate) struct EngineHost {
    pub shared: Arc<Shared>,
    /// The attempt's log: one readable line per transcript entry.
    pub log: Option<Mutex<(std::fs::File, u64, watch::Sender<u64>)>>,
}

impl EngineHost {
    /// Waits until approval `id` is no longer pending (decided, or expired at its deadline).
    async fn decision(&self, id: i64, events: &mut broadcast::Receiver<Event>) -> HostResult<Approval> {
        loop {
            let a = self.shared.store.get_approval(id).await.map_err(host_err)?;
            if a.status != ApprovalStatus::Pending {
                return Ok(a);
            }
            let left = a.expires_at.since(self.shared.clock.now());
            if left.is_zero() {
                // Let the store mark it expired, then read it back.
                let _ = self.shared.store.list_approvals(true, self.shared.clock.now()).await;
                continue;
            }
            // Woken by a decision event; the periodic re-read covers a lagged subscription.
            let wait = left.min(Duration::from_secs(5)) + Duration::from_millis(5);
            let _ = tokio::time::timeout(wait, async {
                loop {
                    match events.recv().await {
                        Ok(e) if matches!(e.kind, EventKind::ApprovalDecided { approval_id, .. } if approval_id == id) => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(_) => std::future::pending::<()>().await,
                    }
                }
            })
            .await;
        }
    }
}

#[async_trait]
impl Host for EngineHost {
    async fn admit(&self, req: owl_agent::SpendRequest) -> HostResult<owl_agent::Admission> {
        use crate::budget::Verdict;
        let charge = crate::budget::charge_for(&self.shared, req.owner, Some(&req.agent))
            .await
            .map_err(|e| HostError::Unavailable(e.to_string()))?;
        let mut providers = vec![req.provider.clone()];
        providers.extend(req.fallbacks.iter().cloned());
        let v = crate::budget::reserve(&self.shared, &charge, &providers, &req.model, req.price.as_ref(), req.usd, req.tokens)
            .await
            .map_err(|e| HostError::Unavailable(e.to_string()))?;
        Ok(match v {
            Verdict::Go(key) => owl_agent::Admission::Go { key },
            Verdict::Wait { until, scope, reason } => owl_agent::Admission::Wait { until, scope, reason },
            Verdict::Refuse(reason) => owl_agent::Admission::Refuse { reason },
        })
    }

    async fn settle(&self, req: &owl_agent::SpendRequest, key: &str, provider: &str, usd: f64, tokens: u64) -> HostResult<()> {
        let charge = crate::budget::charge_for(&self.shared, req.owner, Some(&req.agent))
            .await
            .map_err(|e| HostError::Unavailable(e.to_string()))?;
        crate::budget::settle(&self.shared, &charge, key, provider, usd, tokens).await.map_err(host_err)
    }

    async fn append(&self, owner: Owner, attempt: u32, entries: Vec<Entry>) -> HostResult<Vec<u64>> {
        let now = self.shared.clock.now();
        let lines: Vec<(String, String)> = entries.iter().map(|e| (e.kind().to_string(), e.summary())).collect();
        self.shared.metrics.entries(&entries, |t| owl_agent::tools::spec(t).is_some());
        let seqs = self.shared.store.append_transcript(owner, attempt, entries, now).await.map_err(host_err)?;
        for (seq, (kind, line)) in seqs.iter().zip(&lines) {
            if let CoreOwner::Task(task_id) = owner {
                self.shared.publish(EventKind::AgentStep { task_id, seq: *seq, entry: kind.clone(), summary: line.clone() });
            }
            if let Some(log) = &self.log {
                let mut g = log.lock().unwrap_or_else(|p| p.into_inner());
                let text = format!("[{seq}] {line}\n");
                if g.0.write_all(text.as_bytes()).is_ok() {
                    g.1 += text.len() as u64;
                    let n = g.1;
                    let _ = g.2.send(n);
                }
            }
        }
        Ok(seqs)
    }

    async fn transcript(&self, owner: Owner) -> HostResult<Vec<TranscriptEntry>> {
        self.shared.store.transcript(owner, 0).await.map_err(host_err)
    }

    async fn record_usage(&self, u: UsageRecord) -> HostResult<()> {
        self.shared.metrics.usage(&u);
        self.shared.store.record_usage(u, self.shared.clock.now()).await.map_err(host_err)
    }

    async fn approve(&self, req: ApprovalRequest) -> HostResult<ApprovalDecision> {
        let timeout = self.shared.agent_defaults().approval_timeout;
        let now = self.shared.clock.now();
        let mut events = self.shared.events.subscribe();
        let a = self
            .shared
            .store
            .request_approval(
                NewApproval {
                    owner: req.owner,
                    agent: req.agent,
                    call_id: req.call_id,
                    tool: req.tool.clone(),
                    arguments: req.arguments,
                    reason: req.reason,
                    expires_at: now.plus(timeout),
                },
                now,
            )
            .await
            .map_err(host_err)?;
        // While a person decides, the task's worker slot runs other work; it takes a slot
        // back before the call runs.
        let parked = match (a.status, a.owner.task()) {
            (ApprovalStatus::Pending, Some(task)) => self.shared.commands.send(crate::Command::Park(task)).is_ok().then_some(task),
            _ => None,
        };
        if a.status == ApprovalStatus::Pending {
            self.shared.publish(EventKind::ApprovalRequested { approval_id: a.id, task_id: a.owner.task(), tool: a.tool.clone() });
        }
        let a = self.decision(a.id, &mut events).await?;
        if let Some(task) = parked {
            let (ready, slot) = tokio::sync::oneshot::channel();
            if self.shared.commands.send(crate::Command::Resume(task, ready)).is_ok() {
                // An error means dispatch is gone (shutting down): nothing left to wait for.
                let _ = slot.await;
            }
        }
        match a.status {
            ApprovalStatus::Approved => {
                // Used once: if two runs raced for it, only one gets to run the call.
                if self.shared.store.consume_approval(a.id, self.shared.clock.now()).await.map_err(host_err)? {
                    Ok(ApprovalDecision::Approved)
                } else {
                    Ok(ApprovalDecision::Denied { reason: format!("approval {} was already used", a.id) })
                }
            }
            ApprovalStatus::Used => Ok(ApprovalDecision::Denied {
                reason: format!("approval {} was already used for this call, which may have run before a restart", a.id),
            }),
            ApprovalStatus::Denied => {
                Ok(ApprovalDecision::Denied { reason: a.decision_reason.unwrap_or_else(|| "no reason given".into()) })
            }
            ApprovalStatus::Expired | ApprovalStatus::Pending => Ok(ApprovalDecision::Denied {
                reason: format!("nobody decided within {} (agent.approval_timeout)", owl_core::duration::format(timeout)),
            }),
        }
    }

    async fn create_task(&self, parent: Owner, agent: &str, prompt: &str, depth: u32) -> HostResult<TaskId> {
        let mut spec = TaskSpec::new(Command::agent(agent, prompt));
        spec.origin = Some(Origin::Agent { parent, depth });
        owl_core::validate::check_spec(&spec).map_err(host_err)?;
        let out = Engine { shared: self.shared.clone() }.submit(vec![NewTask::new(spec)]).await.map_err(host_err)?;
        Ok(out[0].id)
    }

    async fn task_result(&self, id: TaskId) -> HostResult<Value> {
        let t = self.shared.store.get(id).await.map_err(host_err)?;
        let result = self.shared.store.task_result(id).await.map_err(host_err)?;
        Ok(json!({"task_id": id, "status": t.state.status(), "result": result}))
    }

    async fn delegate(&self, req: owl_agent::DelegateRequest) -> HostResult<Value> {
        crate::delegate::delegate(&self.shared, req).await
    }

    async fn send_message(&self, m: owl_agent::OutgoingMessage) -> HostResult<Value> {
        let s = &self.shared;
        let (recipient, deliver_to) = crate::team::recipients(s, &m.to, &m.sender).await.map_err(HostError::Refused)?;
        if deliver_to.is_empty() {
            return Err(HostError::refused("there is no other agent to send to"));
        }
        if m.content.trim().is_empty() || m.content.len() > 256 * 1024 {
            return Err(HostError::refused("a message needs content, at most 256 KiB of it"));
        }
        let attachments = crate::team::copy_attachments(s, &m.key, &m.workspace, &m.attachments).map_err(HostError::Refused)?;
        let task = m.owner.task();
        let thread = match task {
            Some(t) => crate::delegate::thread_of(s, t).await,
            None => m.owner.key(),
        };
        let new = owl_store::NewMessage {
            key: m.key,
            thread,
            sender: format!("agent:{}", m.sender),
            sender_task: task,
            recipient,
            deliver_to,
            kind: m.kind,
            content: m.content,
            reply_to: m.reply_to,
            metadata: json!({}),
            attachments,
        };
        let (msg, _) = crate::team::send(s, new).await.map_err(host_err)?;
        Ok(
            json!({"message_id": msg.id, "to": msg.recipient, "delivered_to": msg.deliveries.iter().map(|d| d.to.clone()).collect::<Vec<_>>(), "thread": msg.thread}),
        )
    }

    async fn read_messages(&self, owner: Owner, agent: &str, call_id: &str, limit: u32, workspace: &std::path::Path) -> HostResult<Value> {
        let s = &self.shared;
        let now = s.clock.now();
        let mut to = vec![format!("agent:{agent}")];
        if let Some(t) = owner.task() {
            to.push(format!("task:{t}"));
        }
        let claim = format!("{}:{call_id}", owner.key());
        let msgs = s.store.read_messages(to, &claim, limit, now).await.map_err(host_err)?;
        // Reading again means the earlier reads' results were recorded: they are acknowledged
        // (this read's own messages are, at the next read or when the task ends).
        let _ = s.store.ack_messages(&format!("{}:", owner.key()), Some(&claim), now).await;
        let list: Vec<Value> = msgs.iter().map(|m| crate::team::for_reader(m, Some(workspace))).collect();
        if list.is_empty() {
            return Ok(json!({"messages": [], "note": "no new messages"}));
        }
        Ok(json!({"messages": list}))
    }

    async fn state_get(&self, agent: &str, key: Option<&str>) -> HostResult<Value> {
        let all = self.shared.store.agent_state(agent).await.map_err(host_err)?;
        Ok(match key {
            Some(k) => match all.iter().find(|e| e.key == k) {
                Some(e) => json!({"key": e.key, "value": e.value, "version": e.version}),
                None => json!({"key": k, "value": null, "version": 0}),
            },
            None => json!({"state": all.iter().map(|e| json!({"key": e.key, "value": e.value, "version": e.version})).collect::<Vec<_>>()}),
        })
    }

    async fn state_set(&self, agent: &str, key: &str, value: &str, version: Option<u64>) -> HostResult<Value> {
        let s = &self.shared;
        crate::team::check_state_write(s, agent, key, value).await.map_err(HostError::Refused)?;
        let e = s.store.put_agent_state(agent, key, value, version, s.clock.now()).await.map_err(host_err)?;
        Ok(json!({"key": e.key, "version": e.version}))
    }

    async fn schedules_created_by(&self, owner: Owner) -> HostResult<u32> {
        let all = self.shared.store.list_schedules().await.map_err(host_err)?;
        Ok(all.iter().filter(|s| s.spec.created_by == Some(owner)).count() as u32)
    }

    async fn create_schedule(&self, owner: Owner, s: NewAgentSchedule) -> HostResult<Value> {
        let cfg = self.shared.config();
        let now = self.shared.clock.now();
        let when = match (s.cron, s.every, s.at) {
            (Some(expr), None, None) => When::Cron { expr, tz: cfg.schedules.tz.clone() },
            (None, Some(every), None) => {
                let d = owl_core::duration::parse(&every).map_err(HostError::Refused)?;
                When::Every { every_ms: d.as_millis() as u64, anchor: now }
            }
            (None, None, Some(at)) => When::Once { at: owl_core::Timestamp::parse_rfc3339(&at).map_err(HostError::Refused)? },
            _ => return Err(HostError::refused("give exactly one of cron, every or at")),
        };
        let template = TaskSpec::new(Command::agent(s.agent, s.prompt));
        let spec = ScheduleSpec {
            name: s.name,
            when,
            template,
            misfire: Misfire::Once,
            misfire_cap: cfg.schedules.misfire_cap,
            overlap: Overlap::Skip,
            max_lateness_ms: cfg.schedules.max_lateness.as_millis() as u64,
            jitter_ms: 0,
            end_at: None,
            max_runs: s.max_runs.map(u64::from),
            created_by: Some(owner),
        };
        owl_core::validate::check_name("name", "schedule", &spec.name).map_err(host_err)?;
        let made = Engine { shared: self.shared.clone() }.create_schedule(spec).await.map_err(host_err)?;
        Ok(json!({"schedule": made.spec.name, "next_fire_at": made.next_fire_at.map(|t| t.to_rfc3339())}))
    }

    async fn memory_search(&self, agent: &str, query: &str, k: usize) -> HostResult<String> {
        let m = self.shared.memory().ok_or(HostError::refused("long-term memory is off ([memory] enabled = false)"))?;
        let q = owl_memory::Query {
            text: query.to_string(),
            k,
            filter: owl_memory::Filter { agent: Some(agent.to_string()), ..Default::default() },
            ..Default::default()
        };
        let hits = crate::memory::blocking(move || m.search(&q)).await.map_err(memory_err)?;
        if hits.is_empty() {
            return Ok("no memories match".into());
        }
        Ok(hits
            .iter()
            .map(|h| format!("{}{}] ({}) {}", owl_memory::RECALL_MARKER, h.item.id, h.item.kind, h.item.text.replace('\n', " ")))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    async fn memory_add(&self, owner: Owner, agent: &str, text: &str, kind: &str, tags: Vec<String>) -> HostResult<String> {
        let m = self.shared.memory().ok_or(HostError::refused("long-term memory is off ([memory] enabled = false)"))?;
        let item = owl_memory::NewMemory {
            text: text.to_string(),
            kind: kind.to_string(),
            tags,
            source: Some(owner.key()),
            agent: Some(agent.to_string()),
            user: None,
        };
        match crate::memory::blocking(move || m.add(item)).await.map_err(memory_err)? {
            owl_memory::Added::Created { id } => Ok(format!("remembered as memory {id}")),
            owl_memory::Added::Merged { id } => Ok(format!("already known: merged into memory {id}")),
        }
    }

    async fn github_issue(&self, _owner: Owner, repo: &str, title: &str, body: &str) -> HostResult<Value> {
        let gh = crate::github::client(&self.shared).map_err(HostError::Refused)?;
        let issue = gh.create_issue(repo, title, body).await.map_err(HostError::Refused)?;
        Ok(json!({"repo": repo, "number": issue.number, "url": issue.url}))
    }

    async fn github_comment(&self, _owner: Owner, repo: &str, number: u64, body: &str) -> HostResult<Value> {
        let gh = crate::github::client(&self.shared).map_err(HostError::Refused)?;
        let url = gh.comment(repo, number, body).await.map_err(HostError::Refused)?;
        Ok(json!({"repo": repo, "number": number, "comment": url}))
    }

    async fn manage_schedule(&self, name: &str, action: &str) -> HostResult<Value> {
        let engine = Engine { shared: self.shared.clone() };
        let s = self.shared.store.get_schedule(name).await.map_err(host_err)?;
        if s.spec.created_by.is_none() {
            return Err(HostError::Refused(format!(
                "schedule `{name}` was made by a person; agents may only manage schedules agents created"
            )));
        }
        match action {
            "pause" => engine.pause_schedule(name).await.map(|_| json!({"schedule": name, "state": "paused"})),
            "resume" => engine.resume_schedule(name).await.map(|_| json!({"schedule": name, "state": "active"})),
            "cancel" => engine.delete_schedule(name).await.map(|_| json!({"schedule": name, "state": "deleted"})),
            _ => return Err(HostError::Refused(format!("unknown action `{action}`"))),
        }
        .map_err(host_err)
    }
}

/// A store error as the agent runtime sees it: storage trouble may pass, the rest will not.
fn host_err(e: impl Into<StoreError>) -> HostError {
    match e.into() {
        StoreError::Backend(m) => HostError::Unavailable(m),
        other => HostError::Refused(other.to_string()),
    }
}

fn memory_err(e: owl_memory::MemoryError) -> HostError {
    match e {
        owl_memory::MemoryError::Failed(m) => HostError::Unavailable(m),
        other => HostError::Refused(other.to_string()),
    }
}
