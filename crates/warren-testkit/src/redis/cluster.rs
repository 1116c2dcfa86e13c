//! A Redis Cluster of the test's own: masters only, or masters with a replica each, for tests
//! of failover and resharding.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{cli, RedisProcesses};
use crate::net::free_port;

/// A Redis Cluster, every slot assigned; killed on drop.
pub struct RedisCluster {
    processes: RedisProcesses,
    /// The masters' ports, as created.
    pub ports: Vec<u16>,
    /// The replicas' ports (none without replicas).
    pub replicas: Vec<u16>,
}

impl RedisCluster {
    /// Starts `masters` nodes, creates the cluster and waits until every node reports it ok.
    pub fn start(masters: usize) -> RedisCluster {
        Self::create(masters, 0)
    }

    /// Starts `masters` nodes with one replica each, with a node timeout of 2 s so that a
    /// replica takes over from a dead master within a few seconds.
    pub fn with_replicas(masters: usize) -> RedisCluster {
        Self::create(masters, 1)
    }

    fn create(masters: usize, replicas_each: usize) -> RedisCluster {
        let mut processes = RedisProcesses::new("cluster");
        let all: Vec<u16> = (0..masters * (1 + replicas_each))
            .map(|_| free_port())
            .collect();
        for &p in &all {
            let mut args = vec![
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                format!("nodes-{p}.conf"),
            ];
            if replicas_each > 0 {
                // Short, for quick failovers; without replicas the default (15 s) keeps a
                // loaded machine from taking a slow master for a failed one.
                args.extend(["--cluster-node-timeout".to_owned(), "2000".to_owned()]);
            }
            processes.start_on(p, &args);
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(all.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend([
            "--cluster-replicas".to_owned(),
            replicas_each.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        let created = Command::new("redis-cli")
            .args(&create)
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        // Slots are assigned at once, but each node learns of the others a little later, and
        // replicas must have synced before a failover can promote them.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut cluster = RedisCluster {
            processes,
            ports: Vec::new(),
            replicas: Vec::new(),
        };
        loop {
            let ok = all
                .iter()
                .all(|&p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"));
            let synced = all.iter().all(|&p| {
                let info = cli(p, &["info", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            cluster.ports = all
                .iter()
                .copied()
                .filter(|&p| role(p) == "master")
                .collect();
            cluster.replicas = all
                .iter()
                .copied()
                .filter(|&p| role(p) == "slave")
                .collect();
            if ok && synced && cluster.ports.len() == masters {
                return cluster;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The seed URLs, one per master, as a server's configuration takes them.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Kills (SIGKILL) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        self.processes.kill_port(port);
    }

    /// The port of the master serving `slot`, asked of the node on `via`.
    pub fn master_of_slot(via: u16, slot: u16) -> u16 {
        let nodes = cli(via, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // A master taken for failed still serves its slots until another takes them.
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let port = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok());
            let serves = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                let (lo, hi) = (lo.parse().unwrap_or(u16::MAX), hi.parse().unwrap_or(0));
                (lo..=hi).contains(&slot)
            });
            if let (Some(port), true) = (port, serves) {
                return port;
            }
        }
        panic!("no master serves slot {slot}: {nodes}")
    }

    /// The slot of `key`.
    pub fn slot_of(via: u16, key: &str) -> u16 {
        cli(via, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number")
    }

    /// The node id of the node on `port`.
    pub fn node_id(port: u16) -> String {
        cli(port, &["cluster", "myid"]).trim().to_owned()
    }
}

/// `master` or `slave`, from `ROLE`.
fn role(port: u16) -> String {
    cli(port, &["role"])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
