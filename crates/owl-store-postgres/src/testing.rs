//! A real PostgreSQL for tests and benchmarks: the server at `OWL_TEST_PG_URL` when that is set,
//! otherwise a throwaway cluster that the first caller on this machine starts (with the
//! installed server's `initdb` and `pg_ctl`, as the `postgres` user when running as root) on a
//! loopback port and later callers reuse. Each store gets a fresh schema of its own, so tests
//! run side by side on one cluster.

use crate::{Migrate, Options, PgStore};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The loopback port of the throwaway cluster.
pub const PORT: u16 = 55432;

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(d) = std::env::var("OWL_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    found.pop().ok_or_else(|| {
        "no PostgreSQL server is installed (looked in /usr/lib/postgresql/*/bin); install it (`apt-get install postgresql`) \
         or point OWL_TEST_PG_URL at a server"
            .to_string()
    })
}

fn run_as_owner(bin: &Path, args: &[&str]) -> Result<std::process::Output, String> {
    let root = nix::unistd::geteuid().is_root();
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args).output().map_err(|e| format!("cannot run {}: {e}", bin.display()))
}

fn ready(bin: &Path, dir: &Path) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &PORT.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && dir.join("postmaster.pid").exists()
}

/// Makes `data` a cluster directory (as the `postgres` user when running as root).
fn init(bin: &Path, base: &Path, data: &Path) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        // The server refuses to run as root; its files belong to the postgres user.
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(base).status();
    }
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    let d = data.to_str().expect("temp paths are UTF-8");
    let out = run_as_owner(&bin.join("initdb"), &["-D", d, "-U", "owl", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
    if !out.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// `pg_ctl start|restart` on a loopback port, waiting until the server accepts connections.
fn pg_ctl(bin: &Path, base: &Path, data: &Path, port: u16, action: &str, durable: bool) -> Result<(), String> {
    let d = data.to_str().expect("temp paths are UTF-8");
    let log = base.join("server.log");
    // Tests do not need to survive a power cut; a benchmark measures what a real server does.
    let sync = if durable { "" } else { " -c fsync=off -c full_page_writes=off" };
    let tls = if base.join("server.pem").exists() {
        format!(" -c ssl=on -c ssl_cert_file={b}/server.pem -c ssl_key_file={b}/server.key", b = base.display())
    } else {
        String::new()
    };
    let opts = format!("-p {port} -k {d} -c listen_addresses=127.0.0.1 -c max_connections=300{sync}{tls}");
    let out = run_as_owner(
        &bin.join("pg_ctl"),
        &["-D", d, "-l", log.to_str().expect("UTF-8"), "-o", &opts, "-m", "fast", "-w", "-t", "60", action],
    )?;
    if !out.status.success() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!(
            "pg_ctl {action} failed: {}{}\n{tail}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The URL of a PostgreSQL server for tests, starting the throwaway cluster when needed.
pub fn server_url() -> Result<String, String> {
    if let Ok(url) = std::env::var("OWL_TEST_PG_URL") {
        return Ok(url);
    }
    let bin = bin_dir()?;
    let base = std::env::temp_dir().join(format!("owl-test-pg-{}", nix::unistd::getuid()));
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let lock = std::fs::File::create(base.join("lock")).map_err(|e| format!("cannot create the lock file: {e}"))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| format!("cannot lock: {e}"))?;
    let data = base.join("data");
    let url = format!("postgres://owl@127.0.0.1:{PORT}/postgres");
    if ready(&bin, &data) {
        return Ok(url);
    }
    init(&bin, &base, &data)?;
    pg_ctl(&bin, &base, &data, PORT, "start", false)?;
    Ok(url)
}

/// A cluster of one's own, for a test that restarts the database: stopped and removed on drop.
pub struct Cluster {
    pub url: String,
    bin: PathBuf,
    base: PathBuf,
    port: u16,
    durable: bool,
}

impl Cluster {
    pub fn start() -> Result<Cluster, String> {
        Cluster::start_durable(false)
    }

    /// `durable`: fsync and full-page writes on, as a production server runs (for benchmarks).
    pub fn start_durable(durable: bool) -> Result<Cluster, String> {
        Cluster::start_with(durable, false)
    }

    /// A cluster that also speaks TLS, with a server certificate for 127.0.0.1 signed by a CA
    /// made for it (openssl); returns the CA's PEM file too.
    pub fn start_tls() -> Result<(Cluster, PathBuf), String> {
        let c = Cluster::start_with(false, true)?;
        let ca = c.base.join("ca.pem");
        Ok((c, ca))
    }

    fn start_with(durable: bool, tls: bool) -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let base = std::env::temp_dir().join(format!("owl-test-cluster-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        let c = Cluster { url: format!("postgres://owl@127.0.0.1:{port}/postgres"), bin, base, port, durable };
        if tls {
            make_certs(&c.base)?;
        }
        init(&c.bin, &c.base, &c.base.join("data"))?;
        pg_ctl(&c.bin, &c.base, &c.base.join("data"), port, "start", durable)?;
        Ok(c)
    }

    /// Stops the server (fast: open sessions are ended) and starts it again.
    pub fn restart(&self) -> Result<(), String> {
        pg_ctl(&self.bin, &self.base, &self.base.join("data"), self.port, "restart", self.durable)
    }
}

/// A CA and a server certificate for 127.0.0.1 it signed, in `dir` (ca.pem, server.pem,
/// server.key with mode 0600, as the server requires).
fn make_certs(dir: &Path) -> Result<(), String> {
    let sh = |script: &str| -> Result<(), String> {
        let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().map_err(|e| format!("cannot run openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("making test certificates failed: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=owl test CA' 2>/dev/null \
        && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null \
        && printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > ext.cnf \
        && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null \
        && chmod 600 server.key")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let d = self.base.join("data");
        let _ = run_as_owner(&self.bin.join("pg_ctl"), &["-D", d.to_str().unwrap_or_default(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A fresh, empty schema on the test server, and a connection string whose sessions use it.
pub async fn fresh_schema() -> Result<String, String> {
    let url = tokio::task::spawn_blocking(server_url).await.map_err(|e| e.to_string())??;
    schema_on(&url).await
}

/// A fresh, empty schema on the server at `url`, and a connection string whose sessions use it.
pub async fn schema_on(url: &str) -> Result<String, String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let schema = format!("t{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let task = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.map_err(|e| format!("CREATE SCHEMA: {e}"))?;
    drop(client);
    let _ = task.await;
    Ok(with_search_path(url, &schema))
}

/// `url` with its sessions' `search_path` set to `schema`.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A store on a fresh schema of the test server, with migrations applied.
pub async fn fresh_store() -> PgStore {
    let url = fresh_schema().await.unwrap_or_else(|e| panic!("no PostgreSQL for the test: {e}"));
    PgStore::open(&url, Options { pool_size: 4, migrate: Migrate::Apply, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"))
}
