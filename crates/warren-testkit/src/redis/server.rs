//! One `redis-server` of the test's own, for tests that stop or restart Redis, or that need
//! it behind TLS and a password.

use super::RedisProcesses;
use crate::net::free_port;
use crate::tls::TestCa;

/// A Redis on a free port; killed on drop.
pub struct RedisServer {
    processes: RedisProcesses,
    port: u16,
    /// With TLS (only) and a password: the arguments that say so, and the password.
    tls: Option<(Vec<String>, String)>,
}

impl RedisServer {
    /// Starts Redis on a free port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            processes: RedisProcesses::new("redis"),
            port: free_port(),
            tls: None,
        };
        redis.restart();
        redis
    }

    /// Starts Redis accepting only TLS connections, with a certificate `ca` issued for
    /// 127.0.0.1, and only clients that give `password` (`requirepass`).
    pub fn start_tls(ca: &TestCa, password: &str) -> RedisServer {
        let processes = RedisProcesses::new("redis-tls");
        let issued = ca.issue("redis");
        let (cert, key) = (
            processes.dir().join("cert.pem"),
            processes.dir().join("key.pem"),
        );
        std::fs::write(&cert, &issued.cert_pem).expect("writes the certificate");
        std::fs::write(&key, &issued.key_pem).expect("writes the key");
        let port = free_port();
        let args = [
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert.to_string_lossy(),
            "--tls-key-file",
            &key.to_string_lossy(),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut redis = RedisServer {
            processes,
            port,
            tls: Some((args, password.to_owned())),
        };
        redis.restart();
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://:PASSWORD@127.0.0.1:PORT` with TLS.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some((_, password)) => format!("rediss://:{password}@127.0.0.1:{}", self.port),
        }
    }

    /// Kills Redis (SIGKILL): everything it held is lost.
    pub fn kill(&mut self) {
        self.processes.kill_all();
    }

    /// Starts an empty Redis again on the same port, as after a crash and restart.
    pub fn restart(&mut self) {
        match &self.tls {
            None => self.processes.start_on(self.port, &[]),
            Some((args, _)) => {
                // The plain port closed; the TLS port is the one waited for.
                let mut all = vec!["--port".to_owned(), "0".to_owned()];
                all.extend_from_slice(args);
                self.processes.start_tls_on(self.port, &all);
            }
        }
    }
}
