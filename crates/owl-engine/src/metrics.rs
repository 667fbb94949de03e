//! Prometheus metrics: what this process did (counters and histograms, raised where the work
//! happens) and what the store holds (gauges read at scrape time by [`Metrics::scrape`]).
//!
//! One explicit registry per engine, no global recorder. Names follow Prometheus practice:
//! base units (seconds, dollars), `_total` counters, and no task ids as labels; a schedule's
//! name is a label because schedules are few and named by people.

use owl_core::transcript::{Entry, UsageRecord};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// A fire later than this after its slot counts as late (the store's `late` counter agrees).
pub const LATE_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// api, schedule, trigger or agent.
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// command, agent or cli.
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FireLabels {
    pub schedule: String,
    /// on_time, late, missed, skipped_overlap or skipped_paused.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    pub schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    pub provider: String,
    pub model: String,
    /// ok or error.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    /// input, output or cache_read.
    #[prometheus(flatten)]
    pub kind: TokenType,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenType {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub tool: String,
    /// ok or error.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabels {
    pub r#loop: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyLabels {
    /// schedule, agent or kind.
    pub scope: &'static str,
    /// duration_seconds, tokens, cost_usd or failures.
    pub metric: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// email or webhook.
    pub channel_kind: &'static str,
    /// sent, retry, gone or refused.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric owl exports, registered once in [`Metrics::new`].
pub struct Metrics {
    registry: Registry,
    pub tasks_enqueued: Family<SourceLabels, Counter>,
    pub task_runs: Family<RunLabels, Counter>,
    pub task_run_duration: Family<KindLabels, Histogram>,
    pub task_queue_wait: Family<KindLabels, Histogram>,
    pub queue_depth: Family<StateLabels, Gauge>,
    pub schedule_fires: Family<FireLabels, Counter>,
    pub schedule_lateness: Histogram,
    pub schedule_last_success: Family<ScheduleLabels, FloatGauge>,
    pub schedule_next_fire: Family<ScheduleLabels, FloatGauge>,
    pub schedules_overdue: Gauge,
    pub llm_requests: Family<LlmLabels, Counter>,
    pub llm_tokens: Family<TokenLabels, Counter>,
    pub llm_cost: Family<CostLabels, Counter<f64, AtomicU64>>,
    pub tool_calls: Family<ToolLabels, Counter>,
    pub loop_heartbeat: Family<LoopLabels, FloatGauge>,
    pub loop_restarts: Family<LoopLabels, Counter>,
    pub anomalies: Family<AnomalyLabels, Counter>,
    pub notify_queued: Counter,
    pub notify_attempts: Family<NotifyLabels, Counter>,
    pub notify_duration: Histogram,
    /// Serialises scrapes: each rewrites the scrape-time gauges before encoding.
    pub(crate) scrape_lock: tokio::sync::Mutex<()>,
}

/// Run durations: 0.1 s to 4 hours (coding agents run long).
const RUN_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0];
/// Queue waits: 10 ms to an hour.
const WAIT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

fn run_histogram() -> Histogram {
    Histogram::new(RUN_BUCKETS.iter().copied())
}

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS.iter().copied())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn notify_queued(&self, n: u64) {
        self.notify_queued.inc_by(n);
    }

    pub fn notify_sent(&self, channel_kind: &'static str, outcome: &owl_notify::Outcome, took: Duration) {
        let outcome = match outcome {
            owl_notify::Outcome::Sent(_) => "sent",
            owl_notify::Outcome::Retry(_) => "retry",
            owl_notify::Outcome::Gone(_) => "gone",
            owl_notify::Outcome::Refused(_) => "refused",
        };
        self.notify_attempts.get_or_create(&NotifyLabels { channel_kind, outcome }).inc();
        self.notify_duration.observe(took.as_secs_f64());
    }

    pub fn new() -> Self {
        let mut r = Registry::default();
        let tasks_enqueued = Family::default();
        r.register("owl_tasks_enqueued", "Tasks created, by where they came from", tasks_enqueued.clone());
        let task_runs = Family::default();
        r.register("owl_task_runs", "Attempts that ended, by kind of task and outcome", task_runs.clone());
        let task_run_duration = Family::<KindLabels, Histogram>::new_with_constructor(run_histogram as fn() -> Histogram);
        r.register_with_unit("owl_task_run_duration", "How long attempts ran", Unit::Seconds, task_run_duration.clone());
        let task_queue_wait = Family::<KindLabels, Histogram>::new_with_constructor(wait_histogram as fn() -> Histogram);
        r.register_with_unit("owl_task_queue_wait", "From queued to started", Unit::Seconds, task_queue_wait.clone());
        let queue_depth = Family::default();
        r.register("owl_queue_depth", "Tasks in the store by state", queue_depth.clone());
        let schedule_fires = Family::default();
        r.register("owl_schedule_fires", "Schedule slots by what happened to them", schedule_fires.clone());
        // Kubernetes' CronJob skew buckets: 1 s to 512 s.
        let schedule_lateness = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10));
        r.register_with_unit("owl_schedule_fire_lateness", "From a slot to its fire", Unit::Seconds, schedule_lateness.clone());
        let schedule_last_success = Family::default();
        r.register_with_unit(
            "owl_schedule_last_success_timestamp",
            "When a schedule's run last succeeded (Unix time)",
            Unit::Seconds,
            schedule_last_success.clone(),
        );
        let schedule_next_fire = Family::default();
        r.register_with_unit(
            "owl_schedule_next_fire_timestamp",
            "A schedule's next slot (Unix time)",
            Unit::Seconds,
            schedule_next_fire.clone(),
        );
        let schedules_overdue = Gauge::default();
        r.register("owl_schedules_overdue", "Active schedules that have not succeeded when they should have", schedules_overdue.clone());
        let llm_requests = Family::default();
        r.register("owl_llm_requests", "Model calls by provider, model and outcome", llm_requests.clone());
        let llm_tokens = Family::default();
        r.register("owl_llm_tokens", "Tokens by provider, model and type", llm_tokens.clone());
        let llm_cost = Family::default();
        r.register("owl_llm_cost_usd", "What model calls cost, in US dollars", llm_cost.clone());
        let tool_calls = Family::default();
        r.register("owl_tool_calls", "Agent tool calls by tool and outcome", tool_calls.clone());
        let loop_heartbeat = Family::default();
        r.register_with_unit(
            "owl_loop_heartbeat_timestamp",
            "The last moment each of the daemon's loops was known responsive (Unix time)",
            Unit::Seconds,
            loop_heartbeat.clone(),
        );
        let loop_restarts = Family::default();
        r.register("owl_loop_restarts", "Loops restarted after a panic or a stall", loop_restarts.clone());
        let anomalies = Family::default();
        r.register("owl_anomalies", "Runs found far from usual, and failure streaks, by scope and metric", anomalies.clone());
        let notify_queued = Counter::default();
        r.register("owl_notifications_queued", "Deliveries written to the outbox", notify_queued.clone());
        let notify_attempts = Family::default();
        r.register("owl_notification_attempts", "Delivery attempts by channel kind and outcome", notify_attempts.clone());
        let notify_duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.01, 4.0, 8));
        r.register_with_unit("owl_notification_send_duration", "How long one send took", Unit::Seconds, notify_duration.clone());
        r.register("owl_build", "The running owl", Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION") }));
        Metrics {
            registry: r,
            tasks_enqueued,
            task_runs,
            task_run_duration,
            task_queue_wait,
            queue_depth,
            schedule_fires,
            schedule_lateness,
            schedule_last_success,
            schedule_next_fire,
            schedules_overdue,
            llm_requests,
            llm_tokens,
            llm_cost,
            tool_calls,
            loop_heartbeat,
            loop_restarts,
            anomalies,
            notify_queued,
            notify_attempts,
            notify_duration,
            scrape_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn enqueued_from(&self, source: &'static str) {
        self.tasks_enqueued.get_or_create(&SourceLabels { source }).inc();
    }

    pub(crate) fn run_ended(&self, spec: &owl_core::TaskSpec, outcome: &owl_core::RunOutcome, ran: Duration) {
        let kind = kind_of(spec);
        self.task_runs.get_or_create(&RunLabels { kind, outcome: outcome.name() }).inc();
        self.task_run_duration.get_or_create(&KindLabels { kind }).observe(ran.as_secs_f64());
    }

    pub(crate) fn started(&self, spec: &owl_core::TaskSpec, waited: Duration) {
        self.task_queue_wait.get_or_create(&KindLabels { kind: kind_of(spec) }).observe(waited.as_secs_f64());
    }

    /// A fire of `schedule` `late_by` after its slot.
    pub(crate) fn fired(&self, schedule: &str, late_by: Duration) {
        let outcome = if late_by > LATE_AFTER { "late" } else { "on_time" };
        self.schedule_fires.get_or_create(&FireLabels { schedule: schedule.into(), outcome }).inc();
        self.schedule_lateness.observe(late_by.as_secs_f64());
    }

    pub(crate) fn slot_passed(&self, schedule: &str, outcome: &'static str, n: u64) {
        if n > 0 {
            self.schedule_fires.get_or_create(&FireLabels { schedule: schedule.into(), outcome }).inc_by(n);
        }
    }

    pub(crate) fn usage(&self, u: &UsageRecord) {
        self.llm_requests.get_or_create(&LlmLabels { provider: u.provider.clone(), model: u.model.clone(), outcome: "ok" }).inc();
        let cached = u.usage.cached.min(u.usage.input);
        for (t, n) in [("input", u.usage.input - cached), ("cache_read", cached), ("output", u.usage.output)] {
            if n > 0 {
                let labels = TokenLabels { provider: u.provider.clone(), model: u.model.clone(), kind: TokenType { r#type: t } };
                self.llm_tokens.get_or_create(&labels).inc_by(n);
            }
        }
        if u.cost_usd > 0.0 && u.cost_usd.is_finite() {
            self.llm_cost.get_or_create(&CostLabels { provider: u.provider.clone(), model: u.model.clone() }).inc_by(u.cost_usd);
        }
    }

    /// Tool results and failed model calls in transcript entries. `known` keeps the label
    /// set bounded: a tool name it refuses (one a model made up) is counted as `unknown`.
    pub(crate) fn entries(&self, entries: &[Entry], known: fn(&str) -> bool) {
        let failed = |f: &owl_core::transcript::ProviderFailure| {
            // A provider skipped by its circuit breaker was not called.
            if !f.error.contains(": skipped for ") {
                let labels = LlmLabels { provider: f.provider.clone(), model: f.model.clone(), outcome: "error" };
                self.llm_requests.get_or_create(&labels).inc();
            }
        };
        for e in entries {
            match e {
                Entry::Tool { name, is_error, .. } => {
                    let outcome = if *is_error { "error" } else { "ok" };
                    let tool = if known(name) { name.clone() } else { "unknown".into() };
                    self.tool_calls.get_or_create(&ToolLabels { tool, outcome }).inc();
                }
                Entry::Note { failures, .. } => failures.iter().for_each(failed),
                Entry::Assistant(r) => r.failed_before.iter().for_each(failed),
                _ => {}
            }
        }
    }

    /// The registry as text: Prometheus' format 0.0.4, or OpenMetrics when asked.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        r.expect("writing to a String cannot fail");
        out
    }
}

/// The `kind` label of a task.
pub fn kind_of(spec: &owl_core::TaskSpec) -> &'static str {
    match spec.command {
        owl_core::Command::Agent { .. } => "agent",
        owl_core::Command::Cli { .. } => "cli",
        _ => "command",
    }
}

pub(crate) fn source_of(spec: &owl_core::TaskSpec) -> &'static str {
    use owl_core::task::Origin;
    match spec.origin {
        None => "api",
        Some(Origin::Schedule { .. }) => "schedule",
        Some(Origin::Trigger { .. }) => "trigger",
        Some(_) => "agent",
    }
}

fn unix_seconds(t: owl_core::Timestamp) -> f64 {
    t.0 as f64 / 1000.0
}

impl crate::Engine {
    /// Reads what the store holds into the scrape-time gauges, then encodes every metric.
    pub async fn scrape_metrics(&self, openmetrics: bool) -> Result<String, owl_store::StoreError> {
        let m = self.metrics().clone();
        let _one_at_a_time = m.scrape_lock.lock().await;
        let counts = self.store().counts().await?;
        for st in owl_core::task::Status::ALL {
            m.queue_depth.get_or_create(&StateLabels { state: st.as_str() }).set(counts.get(st) as i64);
        }
        let schedules = self.store().list_schedules().await?;
        let health = self.schedule_health(&schedules).await?;
        m.schedule_last_success.clear();
        m.schedule_next_fire.clear();
        let mut overdue = 0;
        for (s, h) in schedules.iter().zip(&health) {
            let labels = ScheduleLabels { schedule: s.spec.name.clone() };
            if let Some(t) = s.last_success_at {
                m.schedule_last_success.get_or_create(&labels).set(unix_seconds(t));
            }
            if let Some(t) = s.next_fire_at {
                m.schedule_next_fire.get_or_create(&labels).set(unix_seconds(t));
            }
            overdue += h.overdue as i64;
        }
        m.schedules_overdue.set(overdue);
        m.loop_heartbeat.clear();
        for l in self.loops() {
            m.loop_heartbeat.get_or_create(&LoopLabels { r#loop: l.name }).set(l.heartbeat);
        }
        Ok(m.encode(openmetrics))
    }
}
