//! owl-store-postgres: the PostgreSQL backend of [`owl_store::Store`], for several owl daemons
//! sharing one database.
//!
//! **No transaction outlives a statement batch.** Every store call is one short transaction on
//! a pooled connection, committed before the call returns; nothing is held while a task runs.
//! Rows that decide a rule are locked for the transaction (the task being completed, the
//! schedule whose slots are applied, the trigger being fired, the dependencies of a task being
//! submitted), so two nodes never both act on one fact. Claims use `FOR UPDATE SKIP LOCKED`.
//! A transaction that loses a deadlock or a serialization check is run again from the start.
//!
//! **The finish log is in commit order.** A sequence hands out numbers when rows are written,
//! not when they commit, so a cursor could pass a number whose transaction commits a moment
//! later. So writers leave a finish's position empty, and readers number the committed rows
//! that have none, one reader at a time (an advisory lock held to the reader's commit): a row
//! committed late gets a position after every one read before it, and completions on
//! different nodes never wait for each other.

mod budget;
mod insights;
mod notify;
mod queue;
mod records;
mod rows;
mod schedules;
mod schema;
mod team;
pub mod testing;
mod tls;
mod triggers;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use owl_store::StoreError;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use schema::MIGRATIONS;

/// What opening does about the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migrate {
    /// Apply every pending migration (`owl migrate`, and a daemon on an empty database).
    Apply,
    /// Refuse a schema that is older or newer than this owl's: other nodes may still run the
    /// version the database is at, so upgrading it is an explicit step.
    Check,
}

/// A store on one PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    /// The URL with any password removed, for messages.
    shown: String,
    /// How to open the listening connection of [`PgStore::listen`].
    cfg: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// Send the `owl_work` hint when work becomes claimable.
    pub(crate) notify: bool,
}

/// The channel of the wake-up hint (followed by `.` and the schema): a payload-less NOTIFY
/// when tasks become claimable.
pub const WORK_CHANNEL: &str = "owl_work";

pub(crate) type Tx<'a> = deadpool_postgres::Transaction<'a>;
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// Why a transaction stopped: a rule of the store, or a conflict with a concurrent transaction
/// that makes running it again the right answer.
pub(crate) enum Fail {
    Store(StoreError),
    Retry(String),
}

pub(crate) type R<T> = Result<T, Fail>;

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        let code = e.code().map(|c| c.code().to_string());
        match code.as_deref() {
            // serialization_failure, deadlock_detected
            Some("40001") | Some("40P01") => Fail::Retry(describe(&e)),
            _ => Fail::Store(StoreError::Backend(describe(&e))),
        }
    }
}

impl Fail {
    fn into_store(self) -> StoreError {
        match self {
            Fail::Store(e) => e,
            Fail::Retry(m) => StoreError::Backend(format!("gave up after repeated conflicts with other nodes: {m}")),
        }
    }
}

pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{}: {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                msg = format!("{msg} ({d})");
            }
            if let Some(h) = db.hint() {
                msg = format!("{msg}; {h}");
            }
            msg
        }
        None => {
            // The cause (a refused connection, an untrusted certificate) is in the sources.
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                msg = format!("{msg}: {c}");
                cause = c.source();
            }
            msg
        }
    }
}

/// How many times a transaction that lost a conflict is run again.
const RETRIES: u32 = 10;

/// Runs `$body` in a transaction on a pooled connection and commits it; a transaction that
/// lost a deadlock or serialization check runs again. `$body` names the transaction `$t` and
/// evaluates to `R<T>`.
macro_rules! tx {
    ($store:expr, $iso:expr, |$t:ident| $body:expr) => {{
        let mut tries = 0u32;
        loop {
            let r: $crate::R<_> = async {
                let mut client = $store.client().await?;
                let $t = client.build_transaction().isolation_level($iso).start().await?;
                let v = $body?;
                $t.commit().await?;
                Ok(v)
            }
            .await;
            match r {
                Ok(v) => break Ok(v),
                Err($crate::Fail::Retry(why)) if tries < $crate::RETRIES => {
                    tries += 1;
                    tracing::debug!(%why, tries, "transaction conflicted with another node; running it again");
                    tokio::time::sleep(std::time::Duration::from_millis(2u64 << tries.min(6))).await;
                }
                Err(f) => break Err(f.into_store()),
            }
        }
    }};
}

/// A write: READ COMMITTED, with the row locks each operation takes.
macro_rules! in_write {
    ($store:expr, |$t:ident| $body:expr) => {
        $crate::tx!($store, tokio_postgres::IsolationLevel::ReadCommitted, |$t| $body)
    };
}

/// A read of several statements that must see one snapshot.
macro_rules! in_read {
    ($store:expr, |$t:ident| $body:expr) => {
        $crate::tx!($store, tokio_postgres::IsolationLevel::RepeatableRead, |$t| $body)
    };
}

pub(crate) use {in_read, in_write, tx};

/// Options of [`PgStore::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Connections in the pool.
    pub pool_size: usize,
    pub migrate: Migrate,
    /// Send a payload-less `NOTIFY owl_work` when tasks become claimable, so listening nodes
    /// start them at once instead of at their next poll. Off by default: NOTIFY takes a global
    /// lock at commit (it halves concurrent single-task submits, BENCHMARKS.md), and PgBouncer
    /// in transaction mode cannot carry LISTEN.
    pub notify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { pool_size: 8, migrate: Migrate::Check, notify: false }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db?...`), checks or applies the
    /// schema, and returns the store.
    pub async fn open(url: &str, opts: Options) -> Result<PgStore, StoreError> {
        let mut store = PgStore::connect(url, opts.pool_size)?;
        store.notify = opts.notify;
        schema::migrate(&store, opts.migrate).await?;
        Ok(store)
    }

    /// The store without touching its schema; connections are made on first use.
    fn connect(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        let (pg_url, root_cert) = tls::split_url(url);
        let mut cfg = tokio_postgres::Config::from_str(&pg_url)
            .map_err(|e| StoreError::Backend(format!("the store URL `{}` is not a PostgreSQL URL: {e}", redact(url))))?;
        if !tls::names_sslmode(&pg_url) {
            // Plain TCP unless the URL asks for TLS (sslmode=require): a verified connection
            // needs the server's CA, which a default cannot know.
            cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("owl");
        }
        // owl never idles inside a transaction; one that does (a stuck client) must not hold
        // locks and the xmin horizon for long.
        let options = format!("{} -c idle_in_transaction_session_timeout=60000", cfg.get_options().unwrap_or(""));
        cfg.options(options.trim());
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(10));
        }
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let tls = match cfg.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => None,
            _ => Some(tls::connector(root_cert.as_deref())?),
        };
        let mgr = match &tls {
            None => Manager::from_config(cfg.clone(), NoTls, recycling),
            Some(t) => Manager::from_config(cfg.clone(), t.clone(), recycling),
        };
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(1))
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        Ok(PgStore { pool, shown: redact(url), cfg, tls, notify: false })
    }

    /// The schema version the database is at (0 when owl never wrote to it), and the newest
    /// this owl knows.
    pub async fn schema_version(&self) -> Result<(i64, i64), StoreError> {
        Ok((schema::current(self).await?, schema::newest()))
    }

    /// How far the database server's clock is ahead of `local` (milliseconds since the epoch),
    /// and the round trip of the best of three measurements.
    pub async fn clock_offset(&self, local: &(dyn Fn() -> i64 + Send + Sync)) -> Result<(i64, u64), StoreError> {
        let client = self.client().await.map_err(Fail::into_store)?;
        let st = client
            .prepare_cached("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT")
            .await
            .map_err(|e| StoreError::Backend(describe(&e)))?;
        let mut best: Option<(i64, u64)> = None;
        for _ in 0..3 {
            let t0 = local();
            let db: i64 = client.query_one(&st, &[]).await.map_err(|e| StoreError::Backend(describe(&e)))?.get(0);
            let t1 = local();
            let rtt = (t1 - t0).max(0) as u64;
            let offset = db - (t0 + t1) / 2;
            if best.is_none_or(|(_, r)| rtt < r) {
                best = Some((offset, rtt));
            }
        }
        Ok(best.expect("three measurements"))
    }

    /// Listens for the `owl_work` hint on a connection of its own, reconnecting when it drops;
    /// `wake` runs for each hint (bursts arrive as one or a few). The hint is only a hint:
    /// polling is what guarantees that work is found.
    pub fn listen(&self, wake: impl Fn() + Send + Sync + 'static) -> tokio::task::JoinHandle<()> {
        let (cfg, tls, shown) = (self.cfg.clone(), self.tls.clone(), self.shown.clone());
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let r = match &tls {
                    None => listen_once(&cfg, NoTls, &wake).await,
                    Some(t) => listen_once(&cfg, t.clone(), &wake).await,
                };
                if let Err(e) = r {
                    tracing::debug!(store = %shown, error = %e, "the wake-up listener lost its connection; polling covers the gap");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    pub(crate) async fn client(&self) -> R<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            let msg = match e {
                deadpool_postgres::PoolError::Backend(e) => describe(&e),
                other => other.to_string(),
            };
            Fail::Store(StoreError::Backend(format!("cannot connect to PostgreSQL at {}: {msg}", self.shown)))
        })
    }
}

async fn listen_once<T>(cfg: &tokio_postgres::Config, tls: T, wake: &(impl Fn() + Send + Sync)) -> Result<(), String>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    use futures_util::StreamExt;
    let (client, mut conn) = cfg.connect(tls).await.map_err(|e| describe(&e))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    // One channel per schema: clusters in other schemas of the database do not wake this one.
    let channel: String =
        client.query_one(&format!("SELECT '{WORK_CHANNEL}.' || current_schema()"), &[]).await.map_err(|e| describe(&e))?.get(0);
    client.batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "\"\""))).await.map_err(|e| describe(&e))?;
    while rx.recv().await.is_some() {
        // Coalesce a burst into one wake.
        while rx.try_recv().is_ok() {}
        wake();
    }
    driver.abort();
    Err("the listening connection closed".into())
}

/// One connection of its own to the database at `url` (same URL handling and TLS as a store),
/// driven on the current runtime: for a caller that keeps a single session, such as the
/// shared memory.
pub async fn connect_one(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let store = PgStore::connect(url, 1)?;
    let shown = store.shown.clone();
    let fail = |e: tokio_postgres::Error| StoreError::Backend(format!("cannot connect to PostgreSQL at {shown}: {}", describe(&e)));
    match &store.tls {
        None => {
            let (client, conn) = store.cfg.connect(NoTls).await.map_err(fail)?;
            tokio::spawn(conn);
            Ok(client)
        }
        Some(t) => {
            let (client, conn) = store.cfg.connect(t.clone()).await.map_err(fail)?;
            tokio::spawn(conn);
            Ok(client)
        }
    }
}

/// The schema version of the database at `url`, changing nothing (0 when owl never wrote to it).
pub async fn schema_version_of(url: &str) -> Result<i64, StoreError> {
    schema::current(&PgStore::connect(url, 1)?).await
}

/// `url` with the password replaced by `***`, in the user part and in a `password=` parameter.
pub fn redact(url: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let main = match main.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => main.to_string(),
            },
            None => main.to_string(),
        },
        // A key=value connection string.
        None => main.split(' ').map(|kv| if kv.starts_with("password=") { "password=***" } else { kv }).collect::<Vec<_>>().join(" "),
    };
    match query {
        None => main,
        Some(q) => {
            let q: Vec<&str> = q.split('&').map(|kv| if kv.starts_with("password=") { "password=***" } else { kv }).collect();
            format!("{main}?{}", q.join("&"))
        }
    }
}

// Short forms of the statements every module runs, with statements cached per connection.

pub(crate) async fn query(t: &Tx<'_>, sql: &str, p: &[Param<'_>]) -> R<Vec<Row>> {
    let st = t.prepare_cached(sql).await?;
    Ok(t.query(&st, p).await?)
}

pub(crate) async fn query_opt(t: &Tx<'_>, sql: &str, p: &[Param<'_>]) -> R<Option<Row>> {
    let st = t.prepare_cached(sql).await?;
    Ok(t.query_opt(&st, p).await?)
}

pub(crate) async fn query_one(t: &Tx<'_>, sql: &str, p: &[Param<'_>]) -> R<Row> {
    let st = t.prepare_cached(sql).await?;
    Ok(t.query_one(&st, p).await?)
}

pub(crate) async fn exec(t: &Tx<'_>, sql: &str, p: &[Param<'_>]) -> R<u64> {
    let st = t.prepare_cached(sql).await?;
    Ok(t.execute(&st, p).await?)
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Fail {
    Fail::Store(StoreError::Backend(format!("corrupt {what} in the database: {e}")))
}

#[cfg(test)]
mod tests;
