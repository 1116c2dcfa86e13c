//! A real Warren server in the test process, shared by the client's integration tests.

#![allow(dead_code)] // each test file uses part of it

use std::time::Duration;

use warren_server::config::Config;
use warren_server::{RunningServer, Server};

pub const KEY: &str = "app-key";
pub const MASTER_KEY: &str = "zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=";
pub const WAIT: Duration = Duration::from_secs(5);

pub type TestServer = RunningServer;

/// The demo configuration on a free port, changed by `edit`.
pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::default();
    config.server.port = 0;
    edit(&mut config);
    Server::start(config).await.expect("server starts")
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}
