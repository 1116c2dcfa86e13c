//! A Warren server in the test process, on a free port.
//!
//! Tests see only [`TestServer`] and the functions here, not how the server library starts
//! a server: when that changes, only this module does.

use std::net::SocketAddr;

use warren_server::config::{AppConfig, Config};
use warren_server::extend::ServerHandle;
use warren_server::{RunningServer, Server, ServerBuilder};

use crate::Endpoint;

/// A running server; dropping it shuts the server down gracefully (connections are closed
/// with 4200), which tests of shutdown rely on.
pub struct TestServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    _running: RunningServer,
}

impl TestServer {
    /// Publishes and broadcasts as the embedding program would.
    pub fn handle(&self) -> ServerHandle {
        self._running.handle()
    }

    /// Stops the server as a signal would, leaving this value (and the address) in place:
    /// for tests of what a stopping server answers.
    pub fn shutdown_handle(&self) -> warren_server::ShutdownHandle {
        self._running.shutdown_handle()
    }

    /// Where the server serves `/metrics`, when `[metrics]` is enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self._running.metrics_addr
    }

    /// Reloads the server's TLS certificate; `None` without `server.tls`.
    pub fn tls_reloader(&self) -> Option<warren_server::TlsReloader> {
        self._running.tls_reloader()
    }

    /// Applies a re-read configuration, as `SIGHUP` does (see `warren_server::Reloader`).
    pub fn reloader(&self) -> warren_server::Reloader {
        self._running.reloader()
    }

    /// The server's tap (see `warren_server::monitor`).
    pub fn monitor(&self) -> std::sync::Arc<warren_server::monitor::Monitor> {
        self._running.monitor()
    }
}

impl Endpoint for TestServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The demo configuration on a free port (port 0), changed by `edit`.
pub fn demo_config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    edit(&mut config);
    config
}

/// Starts a server on `config`, or says why it cannot start: for tests of start-up errors.
pub async fn try_start(config: Config) -> anyhow::Result<TestServer> {
    let running = Server::start(config).await?;
    Ok(TestServer {
        addr: running.addr,
        _running: running,
    })
}

/// Starts a composed server (extensions, registries): `builder` from
/// `Server::builder(demo_config(..))`.
pub async fn start_built(builder: ServerBuilder) -> TestServer {
    let running = builder.start().await.expect("server starts");
    TestServer {
        addr: running.addr,
        _running: running,
    }
}

/// Starts the demo configuration on a free port, changed by `edit`.
pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
    try_start(demo_config(edit)).await.expect("server starts")
}

/// Starts the demo configuration on a free port.
pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// The demo app of a configuration, for tests that change its limits.
pub fn demo_app(config: &mut Config) -> &mut AppConfig {
    &mut config.apps[0]
}
