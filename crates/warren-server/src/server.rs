//! Composing the server: configuration in, a bound listener out, serving until shut down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use warren_protocol::SocketId;

use crate::app::{App, AppRegistry, StaticApps};
use crate::cluster::local::{LocalBroker, LocalState};
use crate::cluster::redis::{RedisCluster, RedisOptions};
use crate::cluster::{Broker, ClusterState};
use crate::config::{Backend, Config, ServerConfig};
use crate::hub::Hub;
use crate::listener;

/// Everything a connection or request handler needs, shared by all of them.
pub struct Shared {
    pub config: ServerConfig,
    /// This node's name in the cluster (configured, or generated at start-up).
    pub node_id: String,
    pub apps: Arc<dyn AppRegistry>,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub state: Arc<dyn ClusterState>,
    /// Flips to `true` once: every connection then closes with 4200 (reconnect elsewhere).
    pub shutdown: watch::Receiver<bool>,
    socket_id_high: u64,
    next_socket_id: AtomicU64,
}

impl Shared {
    /// A socket id unique on this node: a random per-process part and a counter.
    pub fn next_socket_id(&self) -> SocketId {
        SocketId::new(
            self.socket_id_high,
            self.next_socket_id.fetch_add(1, Ordering::Relaxed),
        )
    }
}

/// A bound, ready-to-run Warren server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown_tx: watch::Sender<bool>,
}

/// Stops a running server: connections are closed with 4200 so clients reconnect elsewhere.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl Server {
    /// Validates the configuration and binds the listener; nothing is served until `run`.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let apps = config
            .apps
            .iter()
            .map(App::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let listener = listener::bind(&addr).await?;
        let hub = Arc::new(Hub::new());
        let node_id = config
            .server
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
        let (broker, state): (Arc<dyn Broker>, Arc<dyn ClusterState>) = match config.cluster.backend
        {
            Backend::Local => (
                Arc::new(LocalBroker::new(hub.clone())),
                Arc::new(LocalState::new()),
            ),
            Backend::Redis => {
                let options = RedisOptions {
                    urls: config.cluster.redis_url.0.clone(),
                    prefix: config.cluster.prefix.clone(),
                    node_id: node_id.clone(),
                    node_timeout: std::time::Duration::from_millis(config.cluster.node_timeout_ms),
                };
                let cluster = RedisCluster::connect(options, hub.clone()).await?;
                (Arc::new(cluster.clone()), Arc::new(cluster))
            }
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            config: config.server,
            node_id,
            apps: Arc::new(StaticApps::new(apps)),
            broker,
            state,
            hub,
            shutdown,
            socket_id_high: u64::from(rand::random::<u32>()),
            next_socket_id: AtomicU64::new(u64::from(rand::random::<u16>())),
        });
        Ok(Self {
            shared,
            listener,
            shutdown_tx,
        })
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::new(self.shutdown_tx.clone()))
    }

    /// Serves until the shutdown handle is used.
    pub async fn run(self) {
        let Server {
            shared,
            listener,
            shutdown_tx,
        } = self;
        // Keep the sender alive for as long as we serve, even if every handle is dropped.
        let _keep = shutdown_tx;
        listener::serve(listener, shared).await;
    }
}
