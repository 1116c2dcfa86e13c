//! One `redis-server` of the test's own, for tests that stop or restart Redis.

use super::RedisProcesses;
use crate::net::free_port;

/// A Redis on a free port; killed on drop.
pub struct RedisServer {
    processes: RedisProcesses,
    port: u16,
}

impl RedisServer {
    /// Starts Redis on a free port and waits until it accepts connections.
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            processes: RedisProcesses::new("redis"),
            port: free_port(),
        };
        redis.restart();
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills Redis (SIGKILL): everything it held is lost.
    pub fn kill(&mut self) {
        self.processes.kill_all();
    }

    /// Starts an empty Redis again on the same port, as after a crash and restart.
    pub fn restart(&mut self) {
        self.processes.start_on(self.port, &[]);
    }
}
