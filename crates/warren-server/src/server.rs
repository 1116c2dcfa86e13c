//! Composing the server: configuration (and optionally parts of the embedding program's own)
//! in, a bound listener out, serving until shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Api;
use crate::app::{App, AppRegistry, StaticApps};
use crate::cluster::local::LocalBackend;
use crate::cluster::redis::RedisOptions;
use crate::cluster::{ClusterBackend, Seams};
use crate::config::{Backend, Config};
use crate::connection;
use crate::connections::{self, Connections};
use crate::gate::{self, Gate};
use crate::http::{self, Health};
use crate::http_connection::Deadlines;
use crate::hub::Hub;
use crate::ingress::Ingress;
use crate::listener::{self, Routes};
use crate::node::{LocalDelivery, LocalUsers, Node};
use crate::webhooks::Webhooks;

/// How long a stopping server waits for its connections to leave their channels.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Composes a [`Server`]: the configuration, plus anything the embedding program brings.
pub struct ServerBuilder {
    config: Config,
    apps: Option<Arc<dyn AppRegistry>>,
    cluster: Option<Box<dyn ClusterBackend>>,
}

impl ServerBuilder {
    /// Looks apps up in `registry` instead of the configuration's `[[apps]]`.
    pub fn apps(mut self, registry: Arc<dyn AppRegistry>) -> Self {
        self.apps = Some(registry);
        self
    }

    /// Runs on `backend` instead of the one `[cluster]` names.
    pub fn cluster(mut self, backend: impl ClusterBackend) -> Self {
        self.cluster = Some(Box::new(backend));
        self
    }

    /// Validates the configuration, connects the cluster backend and binds the listener;
    /// nothing is served until [`Server::run`].
    pub async fn bind(self) -> anyhow::Result<Server> {
        let Self {
            config,
            apps,
            cluster,
        } = self;
        config.validate()?;
        let apps: Arc<dyn AppRegistry> = match apps {
            Some(registry) => registry,
            None => Arc::new(StaticApps::new(config.apps.iter().map(App::from_config))),
        };
        let server = &config.server;
        let listener = listener::bind(&format!("{}:{}", server.host, server.port)).await?;
        let node_id = server
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
        let ingress = Ingress::new(server.ingress_threads)?;
        let local = Arc::new(LocalDelivery::new(
            Arc::new(Hub::new()),
            Arc::new(LocalUsers::default()),
        ));
        let sink = local.clone();
        let backend: Box<dyn ClusterBackend> = match cluster {
            Some(backend) => backend,
            None => match config.cluster.backend {
                Backend::Local => Box::new(LocalBackend),
                Backend::Redis => Box::new(RedisOptions {
                    target: config.cluster.redis_url.clone(),
                    prefix: config.cluster.prefix.clone(),
                    node_id: node_id.clone(),
                    node_timeout: Duration::from_millis(config.cluster.node_timeout_ms),
                }),
            },
        };
        // INVARIANT(ingress-apart-from-connections): the backend's connections (and the tasks
        // it spawns) live on the ingress runtime.
        let Seams { broker, state } = match ingress.handle() {
            Some(h) => {
                h.spawn(async move { backend.connect(sink).await })
                    .await??
            }
            None => backend.connect(sink).await?,
        };
        let webhooks = Webhooks::start(&config, &node_id, state.clone(), ingress.handle()).await?;
        local.report_to(webhooks.clone());
        let node = Arc::new(Node::new(&local, broker, state).with_webhooks(webhooks));
        let connections = Arc::new(Connections::new(
            server.activity_timeout,
            server.pong_timeout,
            Duration::from_millis(server.write_timeout_ms),
        ));
        let websocket = server.role.serves_websocket().then(|| {
            Arc::new(connection::Context {
                apps: apps.clone(),
                node: node.clone(),
                connections: connections.clone(),
                max_outbound_queue: server.max_outbound_queue,
                max_message_size: server.max_message_size_kb.saturating_mul(1024),
            })
        });
        let api = server.role.serves_api().then(|| {
            Arc::new(Api {
                apps,
                node: node.clone(),
                timestamp_tolerance_secs: server.api_timestamp_tolerance_secs,
                request_timeout: Duration::from_millis(server.request_timeout_ms),
            })
        });
        let health = Arc::new(Health {
            node_id: node_id.clone(),
            role: server.role,
            connections: connections.clone(),
            node: node.clone(),
        });
        let gate = Gate::new(
            gate::Limits {
                max_connections: server.max_connections,
                max_connections_per_ip: server.max_connections_per_ip,
                new_connections_per_ip_per_sec: server.new_connections_per_ip_per_sec,
                trusted_proxies: server.trusted_proxies.0.clone(),
            },
            gate::file_limit(),
        );
        tracing::debug!(max = gate.max_websockets(), "WebSocket connections");
        let (shutdown_tx, _) = watch::channel(false);
        Ok(Server {
            routes: Routes {
                websocket,
                http: http::router(health, api),
                ingress: ingress.handle(),
                deadlines: Deadlines {
                    head: Duration::from_millis(server.handshake_timeout_ms),
                    idle: Duration::from_secs(server.http_idle_timeout_secs),
                    write: Duration::from_millis(server.write_timeout_ms),
                },
                gate,
            },
            ingress,
            listener,
            connections,
            node,
            node_id,
            shutdown_tx,
        })
    }

    /// Binds and serves in a background task (see [`Server::start`]).
    pub async fn start(self) -> anyhow::Result<RunningServer> {
        let server = self.bind().await?;
        let addr = server.local_addr()?;
        let handle = server.shutdown_handle();
        tokio::spawn(server.run());
        Ok(RunningServer { addr, handle })
    }
}

/// A bound, ready-to-run Warren server.
pub struct Server {
    listener: TcpListener,
    routes: Routes,
    /// Owns the threads `routes` sends HTTP connections to; they stop when it is dropped.
    ingress: Ingress,
    connections: Arc<Connections>,
    node: Arc<Node>,
    node_id: String,
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
    /// Composes a server from `config`, with the builder's options for anything else.
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            apps: None,
            cluster: None,
        }
    }

    /// `Server::builder(config).bind()`.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        Self::builder(config).bind().await
    }

    /// Binds and serves in a background task: Warren embedded in another program (and in
    /// tests). Dropping the returned value shuts the server down.
    pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
        Self::builder(config).start().await
    }

    /// This node's id in the cluster (configured, or generated at start-up).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::new(self.shutdown_tx.clone()))
    }

    /// Serves until the shutdown handle is used, then stops gracefully: every connection is
    /// closed with 4200 and leaves its channels (departures are announced cluster-wide), then
    /// the node leaves the cluster.
    pub async fn run(self) {
        let Server {
            listener,
            routes,
            ingress,
            connections,
            node,
            node_id: _,
            shutdown_tx,
        } = self;
        let sweeper = tokio::spawn(connections::sweep_forever(connections.clone()));
        let gate_sweeper = tokio::spawn(gate::sweep_forever(routes.gate.clone()));
        let watchlists = {
            let node = node.clone();
            tokio::spawn(async move { node.send_watchlist_batches().await })
        };
        listener::serve(listener, routes, shutdown_tx.subscribe()).await;
        sweeper.abort();
        gate_sweeper.abort();
        connections.close_all();
        connections.drained(DRAIN_LIMIT).await;
        watchlists.abort();
        node.leave_cluster().await;
        drop(ingress);
    }
}
