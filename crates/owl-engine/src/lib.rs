//! owl-engine: the daemon's heart.
//!
//! [`Engine`] is a cheap, cloneable handle used by the API; [`DispatchLoop`] is the one loop
//! that owns dispatch. The loop consumes a closed set of commands, sleeps until the next due
//! time (never polling), claims work within the worker limit, runs each claimed task on its
//! own tokio task, renews leases by heartbeat while anything runs, and on shutdown follows a
//! fixed sequence: stop claiming, let running tasks finish within the grace, then stop them
//! and put them back in the queue without using an attempt.

mod agents;
mod anomalies;
pub mod budget;
pub mod chats;
mod conditions;
mod delegate;
mod dispatch;
mod file_watch;
pub mod git;
pub mod github;
pub mod health;
mod host;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod reports;
mod runner;
pub mod sandboxing;
pub mod scheduler;
#[cfg(test)]
mod scheduler_tests;
mod schedules;
pub mod slack;
mod supervise;
pub mod team;
mod templates;
mod triggers;

pub use dispatch::DispatchLoop;
pub use owl_report as report;

use owl_core::layout::DataLayout;
use owl_core::lifecycle::RetryPolicy;
use owl_core::{Event, EventKind, TaskId, Timestamp};
use owl_store::{CancelReply, Changes, NewTask, Store, StoreError, Submitted};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// The settings the engine runs with; replaced as a whole on reload.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub node: String,
    pub workers: usize,
    pub lease: Duration,
    pub kill_grace: Duration,
    pub shutdown_grace: Duration,
    pub log_max_bytes: u64,
    pub retry: RetryPolicy,
    pub default_timeout: Option<Duration>,
    pub default_retries: u32,
    pub schedules: ScheduleDefaults,
    pub sandbox: sandboxing::SandboxDefaults,
    /// Coding CLI profiles configured in `[cli.NAME]` (the built-in ones are added at use).
    pub cli: owl_core::coding::CliProfiles,
    pub git: owl_core::config::GitSettings,
    pub memory: owl_core::config::MemorySettings,
    /// How long one chat turn may take (`[agent] chat_timeout`).
    pub chat_timeout: Duration,
    pub health: owl_core::config::HealthSettings,
    pub anomalies: owl_core::config::AnomalySettings,
    pub reports: owl_core::config::ReportSettings,
    pub notify: owl_core::config::NotifySettings,
    pub email: owl_core::config::EmailSettings,
    pub github: owl_core::config::GithubSettings,
    pub slack: owl_core::config::SlackSettings,
    /// The secrets file's entries (webhook signing secrets, the SMTP password).
    pub notify_secrets: notify::Secrets,
    /// `[budgets."SCOPE"]`.
    pub budgets: owl_core::budget::Budgets,
    /// `[templates.NAME]`.
    pub templates: owl_core::template::Templates,
    /// Where templates' virtual environments are kept (outside the data dir, which sandboxed
    /// tasks cannot read); `None`: `<data dir>/venvs`.
    pub venv_dir: Option<std::path::PathBuf>,
}

/// Defaults for schedules that do not say, and how long their history is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleDefaults {
    pub tz: String,
    pub misfire_cap: u32,
    pub max_lateness: Duration,
    pub history_retention: Duration,
}

impl Default for ScheduleDefaults {
    fn default() -> Self {
        ScheduleDefaults {
            tz: "UTC".into(),
            misfire_cap: 100,
            max_lateness: Duration::from_secs(60),
            history_retention: Duration::from_secs(30 * 86400),
        }
    }
}

impl EngineConfig {
    pub fn from_settings(s: &owl_core::config::Settings, node: String) -> Self {
        let workers = if s.daemon.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            s.daemon.workers as usize
        };
        EngineConfig {
            node,
            workers,
            lease: s.daemon.lease,
            kill_grace: s.daemon.kill_grace,
            shutdown_grace: s.daemon.shutdown_grace,
            log_max_bytes: s.tasks.log_max_bytes,
            retry: RetryPolicy { base: s.tasks.retry_base, max: s.tasks.retry_max, max_crash_requeues: s.tasks.max_crash_requeues },
            default_timeout: s.tasks.default_timeout,
            default_retries: s.tasks.default_retries,
            schedules: ScheduleDefaults {
                tz: s.scheduler.default_tz.clone(),
                misfire_cap: s.scheduler.misfire_cap,
                max_lateness: s.scheduler.max_lateness,
                history_retention: s.scheduler.history_retention,
            },
            sandbox: sandboxing::SandboxDefaults::from_settings(&s.sandbox),
            cli: s.cli.clone(),
            git: s.git.clone(),
            memory: s.memory.clone(),
            chat_timeout: s.agent.chat_timeout,
            health: s.health.clone(),
            anomalies: s.anomalies.clone(),
            reports: s.reports.clone(),
            notify: s.notify.clone(),
            email: s.email.clone(),
            github: s.github.clone(),
            slack: s.slack.clone(),
            notify_secrets: Default::default(),
            budgets: s.budgets.clone(),
            templates: s.templates.clone(),
            venv_dir: None,
        }
    }
}

/// Where the engine reads the time. Injected so tests can drive time themselves.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system(std::time::SystemTime::now())
    }
}

/// A clock corrected by an offset measured against a reference (the shared database's clock),
/// so nodes whose own clocks disagree still agree on what is due and when a lease ends.
pub struct OffsetClock {
    base: Arc<dyn Clock>,
    offset_ms: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn new(base: Arc<dyn Clock>) -> Self {
        OffsetClock { base, offset_ms: std::sync::atomic::AtomicI64::new(0) }
    }

    /// The base clock, uncorrected: what a measurement compares with the reference.
    pub fn base_now(&self) -> Timestamp {
        self.base.now()
    }

    /// Adopts a new offset (reference minus base, in ms). Changes under 20 ms are noise of the
    /// measurement and are ignored, so time does not wobble back and forth.
    pub fn set_offset(&self, ms: i64) {
        let old = self.offset_ms.load(std::sync::atomic::Ordering::Relaxed);
        if (ms - old).abs() >= 20 {
            self.offset_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.base.now().0.saturating_add(self.offset_ms()))
    }
}

/// Commands the dispatch loop consumes.
#[derive(Debug)]
pub(crate) enum Command {
    /// Something changed (a submit, a retry, a group limit): look for work.
    Wake,
    Cancel(TaskId, Option<String>),
    /// A running task now waits on a person (an approval): its worker slot may run other work
    /// meanwhile. The task stays running, its lease kept.
    Park(TaskId),
    /// A parked task wants a worker slot again; `ready` fires when it has one. Resuming tasks
    /// get freed slots before new tasks are claimed.
    Resume(TaskId, tokio::sync::oneshot::Sender<()>),
    /// A chat message: its turn starts when a worker slot is free (before new claims).
    /// `accepted` is refused while that chat has a turn running or the daemon is stopping.
    Chat(chats::ChatJob, tokio::sync::oneshot::Sender<Result<(), chats::ChatError>>),
    /// Cancel a chat's running or waiting turn; the answer says whether there was one.
    CancelChat(i64, tokio::sync::oneshot::Sender<bool>),
    Shutdown,
}

pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub layout: DataLayout,
    pub config: RwLock<EngineConfig>,
    pub clock: Arc<dyn Clock>,
    pub events: broadcast::Sender<Event>,
    pub seq: AtomicU64,
    pub commands: mpsc::UnboundedSender<Command>,
    /// Log length of each running attempt, for live following.
    pub logs: Mutex<HashMap<(TaskId, u32), watch::Receiver<u64>>>,
    pub running: AtomicU64,
    pub shutting_down: AtomicBool,
    /// Wakes the scheduler loop when a schedule is created, changed or removed.
    pub schedules_changed: tokio::sync::Notify,
    /// Wakes the trigger loop when a trigger is created, changed or removed.
    pub triggers_changed: tokio::sync::Notify,
    /// Wakes the file-watch loop to rebuild its watchers.
    pub watches_changed: tokio::sync::Notify,
    /// Wakes the condition loop to re-read its conditions.
    pub conditions_changed: tokio::sync::Notify,
    /// Wakes the notification loop (a test notice, a resumed channel, the daily report).
    pub notify_changed: tokio::sync::Notify,
    /// Environment variables of the daemon that no task may inherit: the webhook secrets
    /// triggers name, and the API token. Refreshed when triggers change.
    pub withheld_env: RwLock<Vec<String>>,
    /// Whether any task-event trigger exists; when none does, finished tasks cost the
    /// trigger loop nothing. Refreshed with `withheld_env`.
    pub has_task_event_triggers: AtomicBool,
    /// The agent runtime (providers and agents from the config); `None` until installed.
    pub agents: RwLock<Option<Arc<owl_agent::Runtime>>>,
    /// Long-term memory; `None` when disabled or not installed.
    pub memory: RwLock<Option<Arc<owl_memory::Memory>>>,
    /// owl's MCP server for coding CLI tasks with `owl_mcp`; `None` until installed.
    pub task_mcp: RwLock<Option<Arc<dyn TaskMcp>>>,
    pub metrics: Arc<metrics::Metrics>,
    pub loops: health::Loops,
    /// Whether the last look found the data dir's disk below `[health] min_free_disk_mb`.
    pub disk_low: AtomicBool,
    /// The last readiness answer and when it was made: probes answer from it for a moment, so
    /// a flood of unauthenticated probes cannot flood the store with writes.
    pub ready_cache: Mutex<Option<(std::time::Instant, Vec<health::Check>)>>,
    /// Judging a run and adding it to the baselines is one step per node, so two attempts that
    /// end together never judge against the same history (a streak said twice).
    pub judging: tokio::sync::Mutex<()>,
    /// Set when a loop used up its restart budget: the daemon must exit so its supervisor
    /// (systemd) starts a fresh one.
    pub fatal: watch::Sender<Option<String>>,
}

/// Serves owl's MCP server to one coding CLI task (`owl add --cli claude --owl-mcp`) on a Unix
/// socket in its workspace, scoped to that task. The daemon installs it (it has the router).
pub trait TaskMcp: Send + Sync {
    /// The owl binary the CLI starts as its MCP server (`owl mcp serve --socket PATH`).
    fn exe(&self) -> std::path::PathBuf;
    /// Starts serving task `task` on `socket`; serving stops when the guard is dropped.
    fn open(&self, task: TaskId, socket: &std::path::Path) -> Result<Box<dyn std::any::Any + Send>, String>;
}

/// Always withheld from tasks: a token in the environment would let any task drive the API,
/// and systemd's notification socket would let one feed the daemon's watchdog.
pub const ALWAYS_WITHHELD: &[&str] = &["OWL_API_TOKEN", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

impl Shared {
    /// Re-reads what the engine caches about triggers: which environment variables tasks must
    /// not inherit, and whether any task-event trigger exists.
    pub async fn refresh_withheld_env(&self) {
        let mut names: Vec<String> = ALWAYS_WITHHELD.iter().map(|s| s.to_string()).collect();
        let mut task_events = true; // if the list cannot be read, keep walking to be safe
        if let Ok(channels) = self.store.list_channels().await {
            for c in channels {
                if let owl_core::notify::Target::Webhook { secret_env: Some(v), .. } = c.spec.target {
                    names.push(v);
                }
            }
        }
        let cfg = self.config();
        for v in [cfg.email.password_env, cfg.slack.app_token_env, cfg.slack.bot_token_env, cfg.github.token_env] {
            if !v.is_empty() {
                names.push(v);
            }
        }
        if let Ok(triggers) = self.store.list_triggers().await {
            task_events = false;
            for t in triggers {
                match t.spec.on {
                    owl_core::trigger::On::Webhook { secret_env } => names.push(secret_env),
                    owl_core::trigger::On::TaskEvent { .. } if t.enabled => task_events = true,
                    _ => {}
                }
            }
        }
        self.has_task_event_triggers.store(task_events, Ordering::Relaxed);
        names.sort();
        names.dedup();
        *self.withheld_env.write().unwrap_or_else(|p| p.into_inner()) = names;
    }
}

impl Shared {
    pub fn publish(&self, kind: EventKind) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.events.send(Event { seq, at: self.clock.now(), kind });
    }
    pub fn publish_changes(&self, changes: &Changes) {
        for (id, status) in &changes.0 {
            self.publish(EventKind::TaskChanged { task_id: *id, status: *status });
        }
    }
    pub fn config(&self) -> EngineConfig {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A handle to the engine for the API and the CLI's daemon command.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// A snapshot for `owl status`.
#[derive(Clone, Debug)]
pub struct EngineStatus {
    pub node: String,
    pub workers: usize,
    pub running: u64,
    pub shutting_down: bool,
}

impl Engine {
    /// Makes the dispatch loop look for work now (a hint from another node that tasks are
    /// waiting; the loop's own polling finds them anyway).
    pub fn wake(&self) {
        let _ = self.shared.commands.send(Command::Wake);
    }

    /// Builds the engine and its dispatch loop; run the loop with [`DispatchLoop::run`].
    pub fn new(store: Arc<dyn Store>, layout: DataLayout, config: EngineConfig, clock: Arc<dyn Clock>) -> (Engine, DispatchLoop) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            store,
            layout,
            config: RwLock::new(config),
            clock,
            events,
            seq: AtomicU64::new(0),
            commands: tx,
            logs: Mutex::new(HashMap::new()),
            running: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            schedules_changed: tokio::sync::Notify::new(),
            triggers_changed: tokio::sync::Notify::new(),
            watches_changed: tokio::sync::Notify::new(),
            conditions_changed: tokio::sync::Notify::new(),
            notify_changed: tokio::sync::Notify::new(),
            withheld_env: RwLock::new(ALWAYS_WITHHELD.iter().map(|s| s.to_string()).collect()),
            has_task_event_triggers: AtomicBool::new(true),
            agents: RwLock::new(None),
            task_mcp: RwLock::new(None),
            memory: RwLock::new(None),
            metrics: Arc::new(metrics::Metrics::new()),
            loops: health::Loops::default(),
            disk_low: AtomicBool::new(false),
            ready_cache: Mutex::new(None),
            judging: tokio::sync::Mutex::new(()),
            fatal: watch::channel(None).0,
        });
        (Engine { shared: shared.clone() }, DispatchLoop::new(shared, rx))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }
    pub fn layout(&self) -> &DataLayout {
        &self.shared.layout
    }
    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }
    pub fn config(&self) -> EngineConfig {
        self.shared.config()
    }
    /// Each loop's liveness, judged against the configured stall limit.
    pub fn loops(&self) -> Vec<health::LoopHealth> {
        self.shared.loops.check(self.shared.config().health.loop_stall)
    }
    /// Becomes `Some(why)` when the daemon can no longer heal itself and must exit.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.shared.fatal.subscribe()
    }
    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.shared.metrics
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub async fn submit(&self, mut batch: Vec<NewTask>) -> Result<Vec<Submitted>, StoreError> {
        team::prepare(&self.shared, &mut batch).await?;
        let sources: Vec<&'static str> = batch.iter().map(|t| metrics::source_of(&t.spec)).collect();
        let out = self.shared.store.submit(batch, self.now()).await?;
        for (s, source) in out.iter().zip(sources).filter(|(s, _)| s.created) {
            self.shared.metrics.enqueued_from(source);
            self.shared.publish(EventKind::TaskSubmitted { task_id: s.id, status: s.status });
        }
        let _ = self.shared.commands.send(Command::Wake);
        Ok(out)
    }

    pub async fn cancel(&self, id: TaskId, reason: Option<String>) -> Result<CancelReply, StoreError> {
        let reply = self.shared.store.cancel(id, reason.clone(), self.now()).await?;
        match &reply {
            CancelReply::Cancelled(changes) => self.shared.publish_changes(changes),
            CancelReply::Requested => {
                let _ = self.shared.commands.send(Command::Cancel(id, reason));
            }
        }
        Ok(reply)
    }

    pub async fn retry(&self, id: TaskId) -> Result<Changes, StoreError> {
        let changes = self.shared.store.retry(id, self.now()).await?;
        self.shared.publish_changes(&changes);
        let _ = self.shared.commands.send(Command::Wake);
        Ok(changes)
    }

    pub async fn set_group(&self, name: &str, parallel: Option<u32>) -> Result<owl_core::GroupInfo, StoreError> {
        let g = self.shared.store.set_group(name, parallel).await?;
        self.shared.publish(EventKind::GroupChanged { group: g.name.clone(), parallel: g.parallel });
        let _ = self.shared.commands.send(Command::Wake);
        Ok(g)
    }

    /// Live log length of a running attempt; `None` once it has finished.
    pub fn log_progress(&self, id: TaskId, attempt: u32) -> Option<watch::Receiver<u64>> {
        self.shared.logs.lock().unwrap_or_else(|p| p.into_inner()).get(&(id, attempt)).cloned()
    }

    /// Applies new settings. The worker limit, grace periods, lease and defaults take effect
    /// at once; the node name is kept.
    pub fn reload(&self, mut config: EngineConfig) {
        {
            let mut c = self.shared.config.write().unwrap_or_else(|p| p.into_inner());
            config.node = c.node.clone();
            config.sandbox.exe = c.sandbox.exe.clone();
            config.sandbox.hidden = c.sandbox.hidden.clone();
            config.venv_dir = c.venv_dir.clone();
            *c = config;
        }
        self.shared.publish(EventKind::ConfigReloaded);
        let _ = self.shared.commands.send(Command::Wake);
        // A limit may have been raised: tasks waiting on budgets ask again.
        let s = self.shared.clone();
        tokio::spawn(async move { budget::wake(&s).await });
    }

    pub fn status(&self) -> EngineStatus {
        let c = self.shared.config();
        EngineStatus {
            node: c.node,
            workers: c.workers,
            running: self.shared.running.load(Ordering::Relaxed),
            shutting_down: self.shared.shutting_down.load(Ordering::Relaxed),
        }
    }

    /// Starts the shutdown sequence; [`DispatchLoop::run`] returns when it is complete.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.shared.commands.send(Command::Shutdown);
    }
}

#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod team_tests;
#[cfg(test)]
mod tests;

/// Sleeps `d` for a housekeeping loop; false when the daemon is stopping instead.
pub(crate) async fn sleep_unless_stopped(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => return false,
    }
    !*stop.borrow()
}

#[cfg(test)]
pub(crate) fn tests_config() -> EngineConfig {
    EngineConfig {
        node: "test-node".into(),
        workers: 2,
        lease: Duration::from_secs(30),
        kill_grace: Duration::from_millis(300),
        shutdown_grace: Duration::from_millis(300),
        log_max_bytes: 1 << 20,
        retry: RetryPolicy { base: Duration::from_millis(50), max: Duration::from_millis(100), max_crash_requeues: 10 },
        default_timeout: None,
        default_retries: 0,
        schedules: Default::default(),
        sandbox: Default::default(),
        cli: Default::default(),
        git: Default::default(),
        memory: Default::default(),
        chat_timeout: Duration::from_secs(60),
        health: Default::default(),
        anomalies: Default::default(),
        reports: owl_core::config::ReportSettings { daily: false, ..Default::default() },
        notify: Default::default(),
        email: Default::default(),
        github: Default::default(),
        slack: Default::default(),
        notify_secrets: Default::default(),
        budgets: Default::default(),
        templates: Default::default(),
        venv_dir: None,
    }
}
