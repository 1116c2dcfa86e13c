//! NATS (with JetStream) for the cluster tests.
//!
//! Most tests share one NATS ([`shared`]): `NATS_URL` when set, else the one answering on
//! 127.0.0.1:4222 (`scripts/ensure-nats.sh` starts it), else a `nats-server` of the test's
//! own; each test runs under a prefix of its own (`redis::unique_prefix`), so tests running
//! at once never see each other's subjects or buckets. Tests that stop or restart NATS start
//! their own [`NatsServer`] on a free port, killed with its directory when the test ends.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use warren_server::config::{Backend, Config, NatsTarget};

use crate::net::{free_port, wait_port};

/// Where Debian's package puts the server; `nats-server` on the PATH is tried first.
const DEBIAN_SERVER: &str = "/usr/sbin/nats-server";

/// A `nats-server -js` of the test's own, on a free port, its JetStream store in a temporary
/// directory; killed (and the directory removed) on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts NATS on a free port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("warren-nats-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut nats = NatsServer {
            child: None,
            port: free_port(),
            dir,
        };
        nats.restart();
        nats
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills NATS (SIGKILL); its JetStream store stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts NATS again on the same port with an empty store, as a server that kept nothing
    /// (JetStream in memory, or a new machine).
    pub fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::create_dir_all(&self.dir);
        self.restart();
    }

    /// Starts NATS again on the same port and store, as after a crash and restart.
    pub fn restart(&mut self) {
        self.kill();
        let args = [
            "-js".to_owned(),
            "-sd".to_owned(),
            self.dir.display().to_string(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        let spawn = |program: &str| {
            Command::new(program)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = spawn("nats-server")
            .or_else(|_| spawn(DEBIAN_SERVER))
            .expect("nats-server runs (scripts/ensure-nats.sh installs it)");
        self.child = Some(child);
        wait_port(self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The NATS a test shares with others, or its own when none answers; keep it for the test.
pub struct SharedNats {
    url: String,
    _own: Option<NatsServer>,
}

impl SharedNats {
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

/// `NATS_URL`, else NATS on 127.0.0.1:4222 when it answers, else a server of the test's own.
pub fn shared() -> SharedNats {
    if let Ok(url) = std::env::var("NATS_URL") {
        return SharedNats { url, _own: None };
    }
    let answers = TcpStream::connect_timeout(
        &"127.0.0.1:4222".parse().expect("an address"),
        Duration::from_millis(500),
    )
    .is_ok();
    if answers {
        return SharedNats {
            url: "nats://127.0.0.1:4222".into(),
            _own: None,
        };
    }
    let own = NatsServer::start();
    SharedNats {
        url: own.url(),
        _own: Some(own),
    }
}

/// Points a configuration at NATS under `prefix`, with a short `node_timeout_ms` for tests.
pub fn use_nats(config: &mut Config, url: &str, prefix: impl Into<String>, node_timeout_ms: u64) {
    config.cluster.backend = Backend::Nats;
    config.cluster.nats_url = NatsTarget::parse_list(&[url]).expect("a valid NATS URL");
    config.cluster.prefix = prefix.into();
    config.cluster.node_timeout_ms = node_timeout_ms;
}
