//! `redis-server` processes of one test, in a temporary directory of their own (cluster
//! configuration files, Sentinel's configuration), all killed and the directory removed when
//! the test ends, even when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::net::wait_port;

/// A group of `redis-server` processes; killed on drop.
pub struct RedisProcesses {
    /// With the port of each one started by [`RedisProcesses::start_on`].
    children: Vec<(Child, Option<u16>)>,
    dir: PathBuf,
}

impl RedisProcesses {
    /// An empty group with a fresh directory named after `tag`.
    pub fn new(tag: &str) -> RedisProcesses {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("warren-{tag}-{}-{n}", std::process::id()));
        // A directory left by an earlier run with the same process id may hold a cluster
        // node's configuration for the same port, which would confuse a new node.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        RedisProcesses {
            children: Vec::new(),
            dir,
        }
    }

    /// The group's directory, where its processes run.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `redis-server ARGS` in the directory.
    pub fn spawn(&mut self, args: &[String]) {
        self.spawn_on(None, args);
    }

    fn spawn_on(&mut self, port: Option<u16>, args: &[String]) {
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (the test command installs it)");
        self.children.push((child, port));
    }

    /// Runs a plain Redis on `port` (no persistence) with `extra` arguments, and waits until
    /// it accepts connections.
    pub fn start_on(&mut self, port: u16, extra: &[String]) {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend_from_slice(extra);
        self.spawn_on(Some(port), &args);
        wait_port(port);
    }

    /// Runs Redis with `args` that open `port` for TLS only (and no plain port), and waits
    /// until it accepts connections there.
    pub fn start_tls_on(&mut self, port: u16, args: &[String]) {
        let mut all: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend_from_slice(args);
        self.spawn_on(Some(port), &all);
        wait_port(port);
    }

    /// Kills every process of the group (the directory stays).
    pub fn kill_all(&mut self) {
        for (c, _) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }

    /// Kills (SIGKILL) the Redis started on `port`, as a crash would.
    pub fn kill_port(&mut self, port: u16) {
        let at = self.children.iter().position(|(_, p)| *p == Some(port));
        let (mut child, _) = self
            .children
            .remove(at.expect("a Redis of this group on the port"));
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for RedisProcesses {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
