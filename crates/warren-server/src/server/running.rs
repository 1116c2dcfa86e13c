//! A server running in the background, and the handle that stops one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::extend::{self, ServerHandle};
use crate::monitor::Monitor;
use crate::reload::Reloader;
use crate::tls::TlsReloader;

/// A server running in the background on the current tokio runtime (see [`Server::start`]);
/// it shuts down, closing its connections with 4200, when dropped.
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// Where it serves `/metrics`, when `[metrics]` is enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub(super) handle: ShutdownHandle,
    pub(super) server: ServerHandle,
    pub(super) monitor: Arc<Monitor>,
    pub(super) tls: Option<TlsReloader>,
    pub(super) reloader: Reloader,
}

impl RunningServer {
    /// Applies a re-read configuration: see [`Reloader`].
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Reloads the TLS certificate (`None` without `[server.tls]`): see [`TlsReloader`].
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Publishes and broadcasts on behalf of the embedding program (see [`crate::extend`]).
    pub fn handle(&self) -> ServerHandle {
        self.server.clone()
    }

    /// Runs the handler of `kind` on every node (see [`ServerHandle::broadcast`]).
    pub async fn broadcast(
        &self,
        kind: &str,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<(), extend::ExtensionError> {
        self.server.broadcast(kind, payload).await
    }

    /// The tap on this node (cluster-wide with the Redis backend): see [`Monitor::attach`].
    pub fn monitor(&self) -> Arc<Monitor> {
        self.monitor.clone()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Stops a running server: connections are closed with 4200 so clients reconnect elsewhere.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    pub(super) fn new(sender: watch::Sender<bool>) -> Self {
        ShutdownHandle(Arc::new(sender))
    }

    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}
