//! Composing the server: configuration in, a bound listener out, serving until shut down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use warren_protocol::{outbound, ErrorCode, SocketId};

use crate::app::{App, AppRegistry, StaticApps};
use crate::cluster::local::{LocalBroker, LocalState};
use crate::cluster::redis::{RedisCluster, RedisOptions};
use crate::cluster::{Broker, ClusterState};
use crate::config::{Backend, Config, ServerConfig};
use crate::hub::Hub;
use crate::listener;
use crate::outbox::{CloseReason, Liveness, Outbox};
use crate::ws::frame;

/// Everything a connection or request handler needs, shared by all of them.
pub struct Shared {
    pub config: ServerConfig,
    /// This node's name in the cluster (configured, or generated at start-up).
    pub node_id: String,
    pub apps: Arc<dyn AppRegistry>,
    pub hub: Arc<Hub>,
    pub broker: Arc<dyn Broker>,
    pub state: Arc<dyn ClusterState>,
    /// Flips to `true` once: the listener stops and every connection closes with 4200.
    pub shutdown: watch::Receiver<bool>,
    /// Every open connection on this node (liveness sweeps, shutdown).
    pub connections: DashMap<SocketId, Arc<Outbox>>,
    /// `pusher:ping`, framed once.
    pub ping_frame: Bytes,
    started: std::time::Instant,
    socket_id_high: u64,
    next_socket_id: AtomicU64,
}

impl Shared {
    /// Milliseconds since the server started: the clock of connection liveness.
    pub fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// One pass of the liveness sweeper: ping connections idle for `activity_timeout`, close
    /// with 4201 those that did not answer within `pong_timeout`. One task does this for every
    /// connection, so a connection carries no timer of its own.
    pub fn sweep_liveness(&self) {
        let now = self.clock();
        let activity = self.config.activity_timeout.saturating_mul(1000);
        let pong = self.config.pong_timeout.saturating_mul(1000);
        for entry in self.connections.iter() {
            let outbox = entry.value();
            match outbox.liveness(now, activity, pong) {
                Liveness::Fine => {}
                Liveness::Idle => {
                    outbox.pinged(now);
                    outbox.push(self.ping_frame.clone());
                }
                Liveness::Dead => outbox.close(CloseReason {
                    code: ErrorCode::PongNotReceived.code(),
                    message: "Pong reply not received in time".into(),
                }),
            }
        }
    }

    /// Closes every connection with 4200: clients reconnect, to another node if there is one.
    pub fn close_all(&self) {
        for entry in self.connections.iter() {
            entry.value().close(CloseReason {
                code: ErrorCode::GenericReconnect.code(),
                message: "Server is shutting down; reconnect".into(),
            });
        }
    }

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

/// A server running in the background on the current tokio runtime (see [`Server::start`]);
/// it shuts down, closing its connections with 4200, when dropped.
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    handle: ShutdownHandle,
}

impl RunningServer {
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
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
            connections: DashMap::new(),
            ping_frame: frame::text(outbound::PING.as_bytes()),
            started: std::time::Instant::now(),
            socket_id_high: u64::from(rand::random::<u32>()),
            next_socket_id: AtomicU64::new(u64::from(rand::random::<u16>())),
        });
        Ok(Self {
            shared,
            listener,
            shutdown_tx,
        })
    }

    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> Arc<Shared> {
        self.shared.clone()
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

    /// Binds and serves in a background task: Warren embedded in another program (and in
    /// tests). Dropping the returned value shuts the server down.
    pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
        let server = Self::bind(config).await?;
        let addr = server.local_addr()?;
        let handle = server.shutdown_handle();
        tokio::spawn(server.run());
        Ok(RunningServer { addr, handle })
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
        let sweeper = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    shared.sweep_liveness();
                }
            }
        });
        listener::serve(listener, shared.clone()).await;
        sweeper.abort();
        shared.close_all();
        // Let connections send their close frames and leave their channels (announcing
        // departures cluster-wide), then withdraw the node.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !shared.connections.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        shared.state.shutdown().await;
    }
}
