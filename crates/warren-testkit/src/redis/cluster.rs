//! A Redis Cluster of the test's own.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{cli, RedisProcesses};
use crate::net::free_port;

/// A Redis Cluster of masters without replicas, every slot assigned; killed on drop.
pub struct RedisCluster {
    _processes: RedisProcesses,
    /// The masters' ports.
    pub ports: Vec<u16>,
}

impl RedisCluster {
    /// Starts `masters` nodes, creates the cluster and waits until every node reports it ok.
    pub fn start(masters: usize) -> RedisCluster {
        let mut processes = RedisProcesses::new("cluster");
        let ports: Vec<u16> = (0..masters).map(|_| free_port()).collect();
        for &p in &ports {
            processes.start_on(
                p,
                &[
                    "--cluster-enabled".to_owned(),
                    "yes".to_owned(),
                    "--cluster-config-file".to_owned(),
                    format!("nodes-{p}.conf"),
                ],
            );
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend(
            ["--cluster-replicas", "0", "--cluster-yes"]
                .iter()
                .map(|s| s.to_string()),
        );
        let created = Command::new("redis-cli")
            .args(&create)
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        // Slots are assigned at once, but each node learns of the others a little later.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ports
            .iter()
            .all(|&p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster {
            _processes: processes,
            ports,
        }
    }

    /// The seed URLs, one per master, as a server's configuration takes them.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}
