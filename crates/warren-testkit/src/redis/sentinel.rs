//! A Redis primary with a replica, watched by one Sentinel: the smallest setup in which a
//! failover can happen.

use std::time::{Duration, Instant};

use super::{cli, RedisProcesses};
use crate::net::{free_port, wait_port};

/// The name under which the Sentinel monitors the primary.
pub const SENTINEL_MASTER: &str = "mymaster";

/// A primary, a replica and a Sentinel; killed on drop.
pub struct RedisSentinel {
    processes: RedisProcesses,
    pub primary: u16,
    pub replica: u16,
    pub sentinel: u16,
}

impl RedisSentinel {
    /// Starts the three and waits until the replica is in sync and known to the Sentinel, so
    /// that a failover can be asked for at once. The Sentinel declares the primary down after
    /// 1 s, which keeps failovers quick.
    pub fn start() -> RedisSentinel {
        let mut processes = RedisProcesses::new("sentinel");
        let (primary, replica, sentinel) = (free_port(), free_port(), free_port());
        processes.start_on(primary, &[]);
        processes.start_on(
            replica,
            &[
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                primary.to_string(),
            ],
        );
        let conf = processes.dir().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel}\nbind 127.0.0.1\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\nsentinel failover-timeout {SENTINEL_MASTER} 4000\n"
            ),
        )
        .expect("sentinel.conf");
        processes.spawn(&[conf.to_string_lossy().into_owned(), "--sentinel".to_owned()]);
        wait_port(sentinel);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cli(replica, &["info", "replication"]).contains("master_link_status:up")
            || !cli(sentinel, &["sentinel", "replicas", SENTINEL_MASTER])
                .contains(&replica.to_string())
        {
            assert!(Instant::now() < deadline, "replica/sentinel not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisSentinel {
            processes,
            primary,
            replica,
            sentinel,
        }
    }

    /// Kills the primary (SIGKILL): the Sentinel must notice and promote the replica.
    pub fn kill_primary(&mut self) {
        self.processes.kill_port(self.primary);
    }

    /// The URL a server's configuration takes to find the primary through the Sentinel.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{SENTINEL_MASTER}",
            self.sentinel
        )
    }
}
