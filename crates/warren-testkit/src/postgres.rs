//! PostgreSQL for the tests of apps read from a database.
//!
//! [`TestDatabase`] is a fresh database on the shared server (`POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`, which `scripts/ensure-postgres.sh` starts),
//! dropped when the test ends. [`PostgresServer`] is a server of the test's own (`initdb` into a
//! temporary directory, run on a free port), for the tests that stop and start the database,
//! or that need TLS ([`PostgresServer::start_tls`]: `ssl = on` with a certificate from the
//! test's own authority); run as the `postgres` user when the test runs as root, since
//! PostgreSQL refuses root.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::net::{free_port, wait_port};
use crate::tls::TestCa;

/// The shared server's maintenance database.
pub fn shared_url() -> String {
    std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let slash = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(base.len());
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{database}{query}", &base[..slash])
}

/// Runs `sql` on the server of `url` (a fresh connection, on a runtime of its own, so that it
/// also works in `Drop`).
fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(connection);
            let done = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            done
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_owned())?
}

/// A database of the test's own on the shared server; dropped (with its connections) on drop.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a database with a unique name on the server of `admin_url`.
    pub fn create_on(admin_url: &str) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "warren_test_{}_{}_{:06x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>() & 0xff_ffff
        );
        run_sql(admin_url, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!("create database on {admin_url} (scripts/ensure-postgres.sh): {e}")
        });
        TestDatabase {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        }
    }

    /// A database on the shared server.
    pub fn create() -> TestDatabase {
        Self::create_on(&shared_url())
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` in this database.
    pub fn execute(&self, sql: &str) {
        run_sql(&self.url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = run_sql(&self.admin_url, &sql);
    }
}

/// A PostgreSQL server of the test's own on a free port; stopped and its directory removed on
/// drop.
pub struct PostgresServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// The addresses it listens on (`listen_addresses`).
    listen: &'static str,
}

/// The directory of PostgreSQL's programs (`initdb`, `postgres`).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("POSTGRES_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| "/usr/local/bin".into())
}

/// `program` as the `postgres` user when this process is root (PostgreSQL refuses root).
fn as_server_user(program: PathBuf) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Command::new(program);
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    c.arg(program);
    c
}

impl PostgresServer {
    /// `initdb` (trust authentication, user `postgres`) and start.
    pub fn start() -> PostgresServer {
        Self::start_with(None)
    }

    /// As [`PostgresServer::start`], with TLS offered (`ssl = on`) under a certificate `ca`
    /// issued for `localhost` and `127.0.0.1`. It listens on 127.0.0.2 too, an address the
    /// certificate does not name. Plain connections stay allowed until
    /// [`PostgresServer::require_tls`].
    pub fn start_tls(ca: &TestCa) -> PostgresServer {
        Self::start_with(Some(ca))
    }

    fn start_with(ca: Option<&TestCa>) -> PostgresServer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("warren-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown").arg("postgres").arg(&dir).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown the data directory"
            );
        }
        let status = as_server_user(bin_dir().join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb into {}", dir.display());
        let data = dir.join("data");
        let listen = match ca {
            Some(ca) => {
                let issued = ca.issue("postgres");
                // The server's default file names, in its data directory; the key must be
                // the server user's and private.
                write_private(&data.join("server.crt"), &issued.cert_pem);
                write_private(&data.join("server.key"), &issued.key_pem);
                let mut conf =
                    std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
                conf += "\nssl = on\n";
                std::fs::write(data.join("postgresql.conf"), conf).expect("postgresql.conf");
                "127.0.0.1,127.0.0.2"
            }
            None => "127.0.0.1",
        };
        let mut server = PostgresServer {
            dir,
            port: free_port(),
            child: None,
            listen,
        };
        server.restart();
        server
    }

    /// The `postgres` database of this server.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// From now on, TCP clients get in only over TLS (`hostssl` alone in `pg_hba.conf`);
    /// returns once a plain connection is refused.
    pub fn require_tls(&self) {
        let hba = "local all all trust\nhostssl all all 127.0.0.0/8 trust\n";
        write_private(&self.dir.join("data").join("pg_hba.conf"), hba);
        run_sql(&self.url(), "SELECT pg_reload_conf()").expect("reload pg_hba.conf");
        let deadline = Instant::now() + Duration::from_secs(10);
        while run_sql(&self.url(), "SELECT 1").is_ok() {
            assert!(Instant::now() < deadline, "plain connections still let in");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits for it to end.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by its id.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the server again on the same port, with the same data.
    pub fn restart(&mut self) {
        let child = as_server_user(bin_dir().join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                &format!("listen_addresses={}", self.listen),
            ])
            .arg("-k")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres runs");
        self.child = Some(child);
        wait_port(self.port);
        // The port opens a moment before connections are accepted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while run_sql(&self.url(), "SELECT 1").is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Writes `text` to `path`, readable by the server's user only (as root: owned by `postgres`).
fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown").arg("postgres").arg(path).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chown {}",
            path.display()
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
