//! `owl daemon`: wires the concrete store, engine and server together and runs them until a
//! signal says stop. The shutdown sequence: stop claiming, let running tasks finish within
//! the grace, stop and requeue the rest, stop the API, remove daemon.json, release the lock.

use crate::cli::DaemonArgs;
use anyhow::{bail, Context, Result};
use owl_core::config::{LogFormat, Settings};
use owl_core::layout::DataLayout;
use owl_engine::{Engine, EngineConfig, SystemClock};
use owl_store_sqlite::{Durability, SqliteStore};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// What the daemon records in `<data-dir>/daemon.json` so clients can find it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DaemonInfo {
    pub pid: u32,
    pub listen: String,
    pub started_at: owl_core::Timestamp,
    pub version: String,
}

fn apply_flags(settings: &mut Settings, args: &DaemonArgs) -> Result<()> {
    if let Some(l) = &args.listen {
        settings.daemon.listen = l.clone();
    }
    if let Some(w) = args.workers {
        settings.daemon.workers = w;
    }
    if let Some(url) = &args.store {
        settings.store.url = Some(owl_core::config::Secret::new(url.clone()));
    }
    if let Some(n) = &args.node {
        settings.daemon.node = n.clone();
    }
    settings.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(f) = &args.log_format {
        settings.daemon.log_format = match f.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("--log-format: `{other}` is not a log format; use text or json"),
        };
    }
    Ok(())
}

fn init_tracing(settings: &Settings) {
    let filter = std::env::var("OWL_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| settings.daemon.log_level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.daemon.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// Logs every panic with where it happened and its backtrace, through the daemon's log, so
/// a supervised panic (a runner's or a loop's) leaves the evidence needed to fix it.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::error!(%thread, %location, panic = %message, %backtrace, "panic");
    }));
}

fn node_name(settings: &Settings) -> String {
    if !settings.daemon.node.is_empty() {
        return settings.daemon.node.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Holds the data dir's lock for as long as it lives.
struct DataDirLock {
    _file: File,
}

fn lock_data_dir(layout: &DataLayout) -> Result<DataDirLock> {
    let path = layout.lock_file();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let who = read_info(layout).map(|i| format!(" (pid {}, listening on {})", i.pid, i.listen)).unwrap_or_default();
            bail!(
                "another owl daemon is already using the data dir {}{who}; stop it first, or start this one with another --data-dir",
                layout.root().display()
            );
        }
        Err(TryLockError::Error(e)) => bail!("cannot lock {}: {e}", path.display()),
    }
    file.set_len(0).ok();
    let _ = writeln!(file, "{}", std::process::id());
    Ok(DataDirLock { _file: file })
}

pub fn read_info(layout: &DataLayout) -> Option<DaemonInfo> {
    let text = std::fs::read_to_string(layout.daemon_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Reads the API token, creating it (mode 0600) at first start.
fn ensure_token(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot read the API token {}: {e}", path.display()),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the API token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(token)
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub async fn run(data_dir: PathBuf, config: (PathBuf, bool), args: DaemonArgs) -> Result<()> {
    let mut settings = crate::settings::load(&config.0, config.1)?;
    apply_flags(&mut settings, &args)?;
    init_tracing(&settings);
    install_panic_hook();
    let started_at = owl_core::Timestamp::from_system(std::time::SystemTime::now());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let layout = DataLayout::new(&data_dir);
    let _lock = lock_data_dir(&layout)?;
    let token = match &settings.api.token {
        Some(t) if !t.expose().is_empty() => t.expose().to_string(),
        _ => ensure_token(&layout.token_file())?,
    };
    let (store, pg) = open_store(&settings, &layout).await?;
    let single_node = pg.is_none();
    let listener = tokio::net::TcpListener::bind(&settings.daemon.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; pick another address with --listen or [daemon] listen (port 0 picks a free one)",
            settings.daemon.listen
        )
    })?;
    let addr = listener.local_addr()?.to_string();
    let node = node_name(&settings);
    let mut engine_config = EngineConfig::from_settings(&settings, node.clone());
    // Sandboxed processes start through this binary's trampoline, and may not read owl's own
    // data (database, token) or config (secrets).
    engine_config.sandbox.exe = std::env::current_exe().ok();
    engine_config.sandbox.hidden = vec![layout.root().to_path_buf(), config.0.clone(), crate::agents_setup::secrets_file(&config.0)];
    engine_config.notify_secrets = notify_secrets(&config.0)?;
    // Templates' venvs live outside the data dir, which sandboxed tasks cannot read.
    engine_config.venv_dir = Some(crate::agents_setup::cache_dir().join("owl").join("venvs"));
    let clock: Arc<dyn owl_engine::Clock> = match &pg {
        Some(pg) => db_clock(pg.clone()).await,
        None => Arc::new(SystemClock),
    };
    let (engine, dispatch) = Engine::new(store, layout.clone(), engine_config, clock);
    if let (Some(pg), true) = (&pg, settings.store.notify) {
        let e = engine.clone();
        pg.listen(move || e.wake());
    }
    let mcp_hub = mcp_hub(&settings, &engine, &layout);
    engine.set_agents(crate::agents_setup::build(&settings, &config.0, sandbox_base(&engine), mcp_hub.clone())?);
    let shared_memory = pg.as_ref().and(settings.store.url.as_ref()).map(|u| u.expose().to_string());
    engine.set_memory(crate::memory_setup::open(&settings.memory, layout.root(), shared_memory.as_deref())?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = owl_server::AppState {
        engine: engine.clone(),
        token: token.into(),
        max_body_bytes: settings.api.max_body_bytes,
        listen: addr.clone(),
        started_at,
        shutdown: stop_rx,
        sessions: Default::default(),
        mcp_approvals: settings.mcp.allow_approvals,
        mcp_hub: mcp_hub.clone(),
    };
    // Coding CLI tasks with `owl_mcp` reach owl's MCP server through `owl mcp serve --socket`.
    match std::env::current_exe() {
        Ok(exe) => engine.set_task_mcp(owl_server::task_mcp(state.clone(), exe)),
        Err(e) => tracing::warn!(error = %e, "cannot find owl's own binary; coding CLI tasks cannot be given owl's MCP server"),
    }
    let mut server = tokio::spawn(owl_server::serve(listener, state));
    // Alone on its SQLite file (the data dir's lock proves it), the daemon requeues whatever
    // an earlier run left running; on a shared database other nodes hold live leases, so only
    // expired ones are requeued.
    let mut dispatch = tokio::spawn(dispatch.run(single_node));
    let info = DaemonInfo { pid: std::process::id(), listen: addr.clone(), started_at, version: env!("CARGO_PKG_VERSION").into() };
    write_atomically(&layout.daemon_file(), serde_json::to_string_pretty(&info)?.as_bytes())?;
    tracing::info!(listen = %addr, data_dir = %data_dir.display(), node = %node, workers = engine.config().workers, "owl daemon ready");
    // Under systemd (Type=notify): ready now, and watchdog pings only while every loop is live,
    // so a stalled daemon is restarted by systemd.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell the service manager the daemon is ready (NOTIFY_SOCKET)");
    }
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(engine.clone(), every));
    }
    let mut fatal = engine.fatal();
    let mut fatal_reason: Option<String> = None;

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = term.recv() => begin_stop(&engine, &mut stopping, "SIGTERM"),
            _ = int.recv() => begin_stop(&engine, &mut stopping, "SIGINT"),
            _ = hup.recv() => reload(&engine, &config, &args, &settings, &mcp_hub),
            r = &mut server => {
                // The API died on its own: stop the rest cleanly rather than run headless.
                tracing::error!(result = ?r, "the API server stopped unexpectedly; shutting down");
                begin_stop(&engine, &mut stopping, "API failure");
                let _ = (&mut dispatch).await;
                break;
            }
            _ = &mut dispatch => break,
            Ok(()) = fatal.changed(), if fatal_reason.is_none() => {
                if let Some(why) = fatal.borrow().clone() {
                    fatal_reason = Some(why);
                    begin_stop(&engine, &mut stopping, "an unrecoverable loop failure");
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    if !server.is_finished() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), mcp_hub.shutdown()).await;
    // The index file is saved so the next start loads it instead of rebuilding (a crash only
    // costs that rebuild: the database is the source of truth).
    if let Some(m) = engine.memory() {
        if let Err(e) = tokio::task::spawn_blocking(move || m.flush()).await.unwrap_or_else(|e| Err(e.to_string().into())) {
            tracing::warn!(error = %e, "cannot save the memory index; it will be rebuilt at the next start");
        }
    }
    let _ = std::fs::remove_file(layout.daemon_file());
    tracing::info!("owl daemon stopped");
    match fatal_reason {
        // Non-zero, so systemd (Restart=on-failure) starts a fresh daemon.
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}

/// Pings systemd's watchdog at half its interval while every loop is live; stops pinging (and
/// says why, once) while one is stalled or down.
async fn watchdog(engine: owl_engine::Engine, every: std::time::Duration) {
    let mut quiet = false;
    loop {
        tokio::time::sleep(every / 2).await;
        let bad: Vec<String> = engine.loops().into_iter().filter(|l| !l.ok).map(|l| format!("{}: {}", l.name, l.reason)).collect();
        if bad.is_empty() {
            quiet = false;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else if !quiet {
            quiet = true;
            tracing::error!(loops = %bad.join("; "), "withholding the watchdog ping: a loop is not live");
        }
    }
}

/// The store `[store] url` names (PostgreSQL, shared with other daemons), or SQLite in the
/// data dir; the PostgreSQL store again when it is one (this daemon is then not alone on it).
async fn open_store(
    settings: &Settings,
    layout: &DataLayout,
) -> Result<(Arc<dyn owl_store::Store>, Option<Arc<owl_store_postgres::PgStore>>)> {
    match settings.store.url.as_ref().map(|u| u.expose().to_string()).filter(|u| !u.is_empty()) {
        Some(url) => {
            let opts = owl_store_postgres::Options {
                pool_size: settings.store.pool_size,
                migrate: owl_store_postgres::Migrate::Check,
                notify: settings.store.notify,
            };
            let store = owl_store_postgres::PgStore::open(&url, opts).await.context("cannot open the PostgreSQL store (store.url)")?;
            tracing::info!(store = store.url(), "using the shared PostgreSQL store");
            let store = Arc::new(store);
            Ok((store.clone(), Some(store)))
        }
        None => {
            let store = SqliteStore::open(&layout.database(), Durability::Full)
                .with_context(|| format!("cannot open the database {}", layout.database().display()))?;
            store.set_wal_limit(settings.store.wal_checkpoint_mb.saturating_mul(1024 * 1024));
            Ok((Arc::new(store), None))
        }
    }
}

/// How often a node measures its clock against the database's.
const CLOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// On a shared store every node keeps time by the database's clock (its own, corrected by the
/// offset measured now and every half minute), so skewed nodes agree on slots and leases.
async fn db_clock(pg: Arc<owl_store_postgres::PgStore>) -> Arc<dyn owl_engine::Clock> {
    let clock = Arc::new(owl_engine::OffsetClock::new(Arc::new(SystemClock)));
    measure_clock(&pg, &clock).await;
    let (pg2, clock2) = (pg.clone(), clock.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CLOCK_CHECK).await;
            measure_clock(&pg2, &clock2).await;
        }
    });
    clock
}

async fn measure_clock(pg: &owl_store_postgres::PgStore, clock: &Arc<owl_engine::OffsetClock>) {
    let base = clock.clone();
    match pg.clock_offset(&move || base.base_now().0).await {
        Ok((offset, rtt)) => {
            if offset.abs() > 1000 {
                tracing::warn!(
                    offset_ms = offset,
                    rtt_ms = rtt,
                    "this node's clock is off the database's; owl keeps time by the database's"
                );
            }
            clock.set_offset(offset);
        }
        Err(e) => tracing::warn!(error = %e, "cannot compare this node's clock with the database's; keeping the last offset"),
    }
}

/// `owl migrate`: applies pending migrations to the PostgreSQL store, and with `--from` copies
/// a SQLite data dir's live work into it.
pub async fn migrate(config: (PathBuf, bool), store: Option<String>, from: Option<PathBuf>, json: bool) -> Result<()> {
    let settings = crate::settings::load(&config.0, config.1)?;
    let Some(url) = store.or_else(|| settings.store.url.as_ref().map(|u| u.expose().to_string())).filter(|u| !u.is_empty()) else {
        bail!("owl migrate needs a PostgreSQL store: pass --store postgres://... or set [store] url (SQLite data dirs migrate themselves at start)");
    };
    // The version before, to report what the migration did.
    let before = owl_store_postgres::schema_version_of(&url).await.unwrap_or(0);
    let apply = owl_store_postgres::Options { pool_size: 2, migrate: owl_store_postgres::Migrate::Apply, ..Default::default() };
    let store = owl_store_postgres::PgStore::open(&url, apply).await.context("cannot migrate the PostgreSQL store")?;
    let (now, newest) = store.schema_version().await?;
    let copied = match &from {
        Some(dir) => Some(copy_from_sqlite(dir, &store).await?),
        None => None,
    };
    if json {
        let mut v = serde_json::json!({"store": store.url(), "from": before, "to": now, "newest": newest});
        if let Some(c) = &copied {
            v["copied"] = serde_json::to_value(c)?;
        }
        println!("{v}");
        return Ok(());
    }
    if before == now {
        println!("{} is up to date (schema version {now})", store.url());
    } else {
        println!("{}: schema version {before} -> {now}", store.url());
    }
    if let Some(c) = copied {
        println!(
            "copied from {}: {} tasks, {} groups, {} schedules, {} triggers (finished tasks, logs and memory stay in the data dir)",
            from.as_deref().unwrap_or(Path::new("")).display(),
            c.tasks,
            c.groups,
            c.schedules,
            c.triggers
        );
    }
    Ok(())
}

#[derive(Serialize, Debug, Default)]
struct Copied {
    tasks: usize,
    groups: usize,
    schedules: usize,
    triggers: usize,
}

/// Copies what is still to happen in a SQLite data dir: queued, waiting and running tasks (as
/// new tasks with the same specs and dependencies among them; attempt counts start over),
/// group limits, schedules (with their next slot and state) and triggers. Refuses a data dir
/// whose daemon runs and a PostgreSQL store that already holds tasks or schedules.
async fn copy_from_sqlite(dir: &Path, pg: &owl_store_postgres::PgStore) -> Result<Copied> {
    use owl_core::task::Status;
    use owl_store::prelude::*;
    let layout = DataLayout::new(dir);
    if !layout.database().exists() {
        bail!("--from {}: there is no owl database in that data dir ({} is missing)", dir.display(), layout.database().display());
    }
    // Holding the data dir's lock for the copy proves no daemon is using it.
    let _lock = lock_data_dir(&layout).map_err(|e| anyhow::anyhow!("--from {}: {e:#}", dir.display()))?;
    let counts = pg.counts().await?;
    if counts.0.values().sum::<u64>() > 0 || !pg.list_schedules().await?.is_empty() || !pg.list_triggers().await?.is_empty() {
        bail!("--from copies into an empty store, and {} already holds tasks, schedules or triggers", pg.url());
    }
    // Its daemon is gone, but processes it started may outlive it: stopped, so no task runs
    // twice once another node takes it.
    let marker = format!("OWL_DATA_DIR={}", layout.root().display()).into_bytes();
    owl_exec::kill_orphans(|vars| vars.contains(&marker.as_slice()) && vars.iter().any(|v| v.starts_with(b"OWL_TASK_ID=")));
    let sqlite = SqliteStore::open(&layout.database(), Durability::Full)
        .with_context(|| format!("cannot open the database {}", layout.database().display()))?;
    let now = owl_core::Timestamp::from_system(std::time::SystemTime::now());
    let mut copied = Copied::default();
    let partial = |e: owl_store::StoreError, c: &Copied| {
        anyhow::anyhow!(
            "the copy stopped part-way ({e}); copied so far: {} groups, {} tasks, {} schedules, {} triggers. \
             To start over, empty the PostgreSQL store (drop and recreate its database or schema) and run owl migrate --from again",
            c.groups,
            c.tasks,
            c.schedules,
            c.triggers
        )
    };
    for g in sqlite.groups().await? {
        if let Some(p) = g.parallel {
            pg.set_group(&g.name, Some(p)).await.map_err(|e| partial(e, &copied))?;
            copied.groups += 1;
        }
    }
    let mut live = sqlite
        .list(owl_store::TaskFilter { statuses: vec![Status::Queued, Status::Waiting, Status::Running], ..Default::default() })
        .await?;
    live.sort_by_key(|t| t.id);
    let position: std::collections::HashMap<owl_core::TaskId, usize> = live.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    let mut batch = Vec::with_capacity(live.len());
    for t in &live {
        let mut spec = t.spec.clone();
        let mut item = owl_store::NewTask::new(spec.clone());
        // Dependencies on other live tasks come along; finished ones have succeeded (a task
        // whose dependency failed is finished itself).
        item.batch_deps = spec.depends_on.iter().filter_map(|d| position.get(d).copied()).collect();
        spec.depends_on.clear();
        item.spec = spec;
        batch.push(item);
    }
    if !batch.is_empty() {
        copied.tasks = pg.submit(batch, now).await.map_err(|e| partial(e, &copied))?.len();
    }
    for s in sqlite.list_schedules().await? {
        let created = pg.create_schedule(s.spec.clone(), s.next_fire_at, now).await.map_err(|e| partial(e, &copied))?;
        if s.state != created.state {
            pg.set_schedule_state(&s.spec.name, s.state, s.next_fire_at, now).await.map_err(|e| partial(e, &copied))?;
        }
        copied.schedules += 1;
    }
    for t in sqlite.list_triggers().await? {
        pg.create_trigger(t.spec.clone(), now).await.map_err(|e| partial(e, &copied))?;
        if !t.enabled {
            pg.set_trigger_enabled(&t.spec.name, false, now).await.map_err(|e| partial(e, &copied))?;
        }
        copied.triggers += 1;
    }
    Ok(copied)
}

fn begin_stop(engine: &Engine, stopping: &mut bool, why: &str) {
    if *stopping {
        tracing::info!(signal = why, "already shutting down; running tasks are being given their grace");
        return;
    }
    *stopping = true;
    tracing::info!(signal = why, grace = ?engine.config().shutdown_grace, "shutdown requested");
    engine.shutdown();
}

/// The secrets file's entries for notification channels (webhook signing secrets, the SMTP
/// password).
fn notify_secrets(config: &std::path::Path) -> anyhow::Result<owl_engine::notify::Secrets> {
    let map = crate::agents_setup::load_secrets(&crate::agents_setup::secrets_file(config))?;
    Ok(owl_engine::notify::Secrets(Arc::new(map)))
}

fn reload(engine: &Engine, config: &(PathBuf, bool), args: &DaemonArgs, running: &Settings, mcp_hub: &Arc<owl_mcp::Hub>) {
    let loaded = crate::settings::load(&config.0, config.1).and_then(|mut s| {
        apply_flags(&mut s, args)?;
        Ok(s)
    });
    match loaded {
        Ok(s) => {
            if s.daemon.listen != running.daemon.listen {
                tracing::warn!(old = %running.daemon.listen, new = %s.daemon.listen, "the listen address changes only at restart");
            }
            if s.mcp.servers != running.mcp.servers {
                tracing::warn!("[mcp.servers] changes only at restart; agents keep the servers read at start");
            }
            match crate::agents_setup::build(&s, &config.0, sandbox_base(engine), mcp_hub.clone()) {
                Ok(rt) => engine.set_agents(rt),
                Err(e) => tracing::error!(error = format!("{e:#}"), "agents not reloaded; keeping the running ones"),
            }
            let mut cfg = EngineConfig::from_settings(&s, String::new());
            match notify_secrets(&config.0) {
                Ok(secrets) => cfg.notify_secrets = secrets,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "secrets.toml not reloaded; notifications keep the secrets read before");
                    cfg.notify_secrets = engine.config().notify_secrets;
                }
            }
            tracing::info!(workers = cfg.workers, "configuration reloaded");
            engine.reload(cfg);
        }
        Err(e) => tracing::error!(error = format!("{e:#}"), "configuration reload failed; keeping the running configuration"),
    }
}

/// The MCP servers of `[mcp.servers]`, their definition pins in the store; each stdio
/// server works in `<data>/mcp/NAME`.
fn mcp_hub(settings: &Settings, engine: &Engine, layout: &DataLayout) -> Arc<owl_mcp::Hub> {
    let sandbox = sandbox_base(engine);
    let pins = Arc::new(StorePins(engine.store().clone()));
    Arc::new(owl_mcp::Hub::new(&settings.mcp, std::env::vars().collect(), pins, sandbox, layout.root().join("mcp")))
}

struct StorePins(Arc<dyn owl_store::Store>);

#[async_trait::async_trait]
impl owl_mcp::client::Pins for StorePins {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.0.kv_get(key).await.map_err(|e| format!("the store: {e}"))
    }
    async fn set(&self, key: &str, value: &str) -> Result<(), String> {
        self.0.kv_set(key, value).await.map_err(|e| format!("the store: {e}"))
    }
}

/// The agent runtime's sandbox, from the engine's (the trampoline and hidden paths are the daemon's).
fn sandbox_base(engine: &Engine) -> Option<owl_agent::runtime::SandboxBase> {
    let c = engine.config().sandbox;
    c.exe.map(|exe| owl_agent::runtime::SandboxBase {
        exe,
        hidden: c.hidden,
        writable: c.writable,
        limits: c.limits,
        seccomp_net: c.seccomp_net,
    })
}
