//! Composing the server: configuration (and optionally parts of the embedding program's own)
//! in, a bound listener out, serving until shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Api;
use crate::app::{App, AppRegistry, LiveApps};
use crate::apps_source::PostgresSource;
use crate::cluster::local::LocalBackend;
use crate::cluster::nats::NatsOptions;
use crate::cluster::redis::RedisOptions;
use crate::cluster::split::{Part, SplitOptions};
use crate::cluster::{ClusterBackend, EventSink, Seams};
use crate::config::{AppsBackend, Backend, Config, PartTarget};
use crate::connection;
use crate::connection_errors;
use crate::connections::{self, Connections};
use crate::console::{self, Console};
use crate::extend::{
    self, ApiMiddleware, ApiRoute, BroadcastHandler, ClientEventHandler, InboundMiddleware,
    ServerHandle,
};
use crate::gate::{self, Gate};
use crate::http::{self, Health};
use crate::http_connection::Deadlines;
use crate::hub::Hub;
use crate::ingress::SideRuntime;
use crate::listener::{self, Routes};
use crate::metrics::Metrics;
use crate::monitor::{self, Monitor};
use crate::node::{LocalDelivery, LocalUsers, Node};
use crate::readiness::{self, Readiness};
use crate::reload::{AppsUpdater, Reloader};
use crate::scrape::{MetricsListener, Scrape};
use crate::tls::{Tls, TlsReloader};
use crate::webhooks::{self, Webhooks};

mod parts;
mod running;

pub use running::{RunningServer, ShutdownHandle};

/// How long a stopping server waits for its connections to leave their channels.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Composes a [`Server`]: the configuration, plus anything the embedding program brings.
pub struct ServerBuilder {
    config: Config,
    apps: Option<Arc<dyn AppRegistry>>,
    cluster: Option<Box<dyn ClusterBackend>>,
    extensions: extend::Registry,
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

    /// Adds an inbound middleware at the end of the chain (see [`crate::extend`]).
    pub fn inbound_middleware(mut self, middleware: impl InboundMiddleware) -> Self {
        self.extensions.inbound(Arc::new(middleware));
        self
    }

    /// Handles clients' custom events named `name` (see [`crate::extend`]).
    pub fn client_event(mut self, name: &str, handler: impl ClientEventHandler) -> Self {
        self.extensions.client_event(name, Arc::new(handler));
        self
    }

    /// Handles broadcasts of type `kind`, on every node (see [`crate::extend`]).
    pub fn broadcast_handler(mut self, kind: &str, handler: impl BroadcastHandler) -> Self {
        self.extensions.broadcast(kind, Arc::new(handler));
        self
    }

    /// Adds an HTTP API middleware, run after authentication (see [`crate::extend`]).
    pub fn api_middleware(mut self, middleware: impl ApiMiddleware) -> Self {
        self.extensions.api_middleware(Arc::new(middleware));
        self
    }

    /// Serves `route` at `/apps/{app_id}/x-{name}` (see [`crate::extend`]).
    pub fn api_route(mut self, name: &str, route: impl ApiRoute) -> Self {
        self.extensions.api_route(name, Arc::new(route));
        self
    }

    /// Validates the configuration, connects the cluster backend and binds the listener;
    /// nothing is served until [`Server::run`].
    pub async fn bind(self) -> anyhow::Result<Server> {
        let Self {
            config,
            apps,
            cluster,
            extensions,
        } = self;
        config.validate()?;
        connection_errors::configure(&config.log);
        let mut extensions = extensions.compose()?;
        // The server's own registry, unless the embedding program brought one.
        let (apps, live): (Arc<dyn AppRegistry>, _) = match apps {
            Some(registry) => (registry, None),
            None => {
                let live = Arc::new(match config.apps_source.backend {
                    AppsBackend::Config => LiveApps::new(config.apps.iter().map(App::from_config)),
                    AppsBackend::Postgres => LiveApps::empty(),
                });
                (live.clone(), Some(live))
            }
        };
        let server = &config.server;
        // Before binding: a certificate that does not load stops start-up.
        let tls = server.tls.as_ref().map(Tls::load).transpose()?;
        let listener = listener::bind(&format!("{}:{}", server.host, server.port)).await?;
        let node_id = server
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
        let ingress = SideRuntime::new("warren-ingress", server.ingress_threads)?;
        // Parked while no app has an endpoint.
        let webhooks_runtime = SideRuntime::new("warren-webhooks", config.webhooks.threads)?;
        let metrics = Metrics::new(config.metrics.enabled);
        let local = Arc::new(LocalDelivery::new(
            Arc::new(Hub::new()),
            Arc::new(LocalUsers::default()),
            metrics.clone(),
        ));
        // INVARIANT(extensions-off-the-path): relayed events reach `LocalDelivery` directly
        // unless broadcast handlers need the wrapper.
        let sink: Arc<dyn EventSink> = match &extensions.broadcasts {
            Some(broadcasts) => Arc::new(extend::WithBroadcasts {
                events: local.clone(),
                broadcasts: broadcasts.clone(),
            }),
            None => local.clone(),
        };
        let node_timeout = Duration::from_millis(config.cluster.node_timeout_ms);
        let (fanout, state_part) = (
            config.cluster.fanout_target(),
            config.cluster.state_target(),
        );
        // Every Redis client of a job connects with its target (the CA file read once, here).
        let redis_of = |part: &PartTarget| {
            part.redis_target()
                .map_err(|e| anyhow::anyhow!("cluster.redis_tls_ca_file: {e}"))
        };
        let part_of = |part: &PartTarget| -> anyhow::Result<Option<Part>> {
            Ok(match part.backend {
                Backend::Local => None,
                Backend::Redis => Some(Part::Redis(RedisOptions {
                    target: redis_of(part)?,
                    prefix: config.cluster.prefix.clone(),
                    node_id: node_id.clone(),
                    node_timeout,
                })),
                Backend::Nats => Some(Part::Nats(NatsOptions {
                    target: part.nats_url.clone(),
                    auth: part.nats.clone(),
                    prefix: config.cluster.prefix.clone(),
                    node_id: node_id.clone(),
                    node_timeout,
                })),
            })
        };
        // The monitor relays over Redis when the node's events travel through Redis.
        let relays_monitor = cluster.is_none() && fanout.backend == Backend::Redis;
        let backend: Box<dyn ClusterBackend> = match cluster {
            Some(backend) => backend,
            None => match (part_of(&fanout)?, part_of(&state_part)?) {
                (Some(fanout), Some(state)) if config.cluster.is_split() => {
                    Box::new(SplitOptions { fanout, state })
                }
                (Some(Part::Redis(options)), _) => Box::new(options),
                (Some(Part::Nats(options)), _) => Box::new(options),
                (None, _) => Box::new(LocalBackend),
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
        let monitor = Arc::new(Monitor::new(node_id.clone(), config.monitor.tap_queue));
        if relays_monitor {
            let (monitor, target) = (monitor.clone(), redis_of(&fanout)?);
            let prefix = config.cluster.prefix.clone();
            let started = async move { monitor::relay::start(&monitor, &target, &prefix).await };
            let started = match ingress.handle() {
                Some(h) => h.spawn(started).await?,
                None => started.await,
            };
            if let Err(e) = started {
                tracing::warn!(error = %e, "the monitor shows this node only");
            }
        }
        let connections = Arc::new(Connections::new(
            server.activity_timeout,
            server.pong_timeout,
            Duration::from_millis(server.write_timeout_ms),
            metrics.delivery_latency(),
        ));
        let updater = live.clone().map(|live| {
            Arc::new(AppsUpdater {
                apps: live,
                connections: connections.clone(),
            })
        });
        let from_file = config.apps_source.backend == AppsBackend::Config;
        let reloader = Reloader::new(config.clone(), updater.clone().filter(|_| from_file));
        let apps_source = match updater.as_ref().filter(|_| !from_file) {
            Some(updater) => {
                let source = PostgresSource::new(&config.apps_source, updater.clone(), &metrics)
                    .map_err(|e| anyhow::anyhow!(e))?;
                let run = source.map(PostgresSource::run);
                run.map(|run| match ingress.handle() {
                    Some(h) => h.spawn(run),
                    None => tokio::spawn(run),
                })
            }
            None => None,
        };
        let current_secret: webhooks::CurrentSecret = {
            let apps = apps.clone();
            Arc::new(move |id: &str| apps.by_id(id).map(|app| app.secret.clone()))
        };
        let sent = parts::webhook_observer(monitor.clone());
        let webhooks = Webhooks::start(
            &config,
            live.clone(),
            &node_id,
            state.clone(),
            webhooks_runtime.handle().or_else(|| ingress.handle()),
            (Some(sent), Some(current_secret)),
        )
        .await?;
        local.report_to(webhooks.clone());
        let node =
            Arc::new(Node::new(&local, broker, state, monitor.clone()).with_webhooks(webhooks));
        let handle = ServerHandle::new(
            node.clone(),
            apps.clone(),
            node_id.clone(),
            extensions.broadcasts.clone(),
        );
        let websocket = server.role.serves_websocket().then(|| {
            Arc::new(connection::Context {
                apps: apps.clone(),
                node: node.clone(),
                connections: connections.clone(),
                max_outbound_queue: server.max_outbound_queue,
                max_message_size: server.max_message_size_kb.saturating_mul(1024),
                extensions: extensions.connection.clone(),
                metrics: metrics.clone(),
                inbound: connection::InboundBudget::new(server.inbound_messages_per_sec()),
            })
        });
        let console = Arc::new(Console {
            apps: apps.clone(),
            node: node.clone(),
            operator_token: config.monitor.operator_token.clone(),
            timestamp_tolerance_secs: server.api_timestamp_tolerance_secs,
            page: config.console.enabled,
        });
        let apps_for_readiness = apps.clone();
        let api = server.role.serves_api().then(|| {
            Arc::new(Api {
                apps,
                node: node.clone(),
                timestamp_tolerance_secs: server.api_timestamp_tolerance_secs,
                request_timeout: Duration::from_millis(server.request_timeout_ms),
                extensions: extensions.api(&handle),
                metrics: metrics.clone(),
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
        let scrape = Scrape {
            metrics,
            node: node.clone(),
        };
        let metrics_listener = MetricsListener::bind(&config.metrics, scrape).await?;
        let (shutdown_tx, _) = watch::channel(false);
        let readiness = Arc::new(Readiness {
            apps: apps_for_readiness,
            node: node.clone(),
            stopping: shutdown_tx.subscribe(),
        });
        Ok(Server {
            routes: Routes {
                websocket,
                http: http::router(health, api)
                    .merge(console::routes(console))
                    .merge(readiness::routes(readiness)),
                ingress: ingress.handle(),
                deadlines: Deadlines {
                    head: Duration::from_millis(server.handshake_timeout_ms),
                    idle: Duration::from_secs(server.http_idle_timeout_secs),
                    write: Duration::from_millis(server.write_timeout_ms),
                },
                gate,
                tls,
            },
            ingress,
            webhooks_runtime,
            listener,
            connections,
            node,
            node_id,
            monitor,
            shutdown_tx,
            handle,
            shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
            metrics_listener,
            reloader,
            apps_source,
        })
    }

    /// Binds and serves in a background task (see [`Server::start`]).
    pub async fn start(self) -> anyhow::Result<RunningServer> {
        let server = self.bind().await?;
        let addr = server.local_addr()?;
        let handle = server.shutdown_handle();
        let server_handle = server.handle();
        let monitor = server.monitor();
        let metrics_addr = server.metrics_addr()?;
        let tls = server.tls_reloader();
        let reloader = server.reloader();
        tokio::spawn(server.run());
        Ok(RunningServer {
            addr,
            metrics_addr,
            handle,
            server: server_handle,
            monitor,
            tls,
            reloader,
        })
    }
}

/// A bound, ready-to-run Warren server.
pub struct Server {
    listener: TcpListener,
    routes: Routes,
    /// Owns the threads `routes` sends HTTP connections to; they stop when it is dropped.
    ingress: SideRuntime,
    /// Owns the threads webhooks are sent from.
    webhooks_runtime: SideRuntime,
    connections: Arc<Connections>,
    node: Arc<Node>,
    node_id: String,
    monitor: Arc<Monitor>,
    shutdown_tx: watch::Sender<bool>,
    handle: ServerHandle,
    /// How long `/ready` answers 503 before the connections are closed.
    shutdown_grace: Duration,
    /// `[metrics]`, when enabled.
    metrics_listener: Option<MetricsListener>,
    reloader: Reloader,
    /// The task reading apps from PostgreSQL, when they come from there.
    apps_source: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Composes a server from `config`, with the builder's options for anything else.
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            apps: None,
            cluster: None,
            extensions: extend::Registry::default(),
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

    /// The tap on this node (cluster-wide with the Redis backend): see [`Monitor::attach`].
    pub fn monitor(&self) -> Arc<Monitor> {
        self.monitor.clone()
    }

    /// Applies a re-read configuration file (the apps, when they come from it): see
    /// [`Reloader`]. The `warren` binary calls it on `SIGHUP`.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Reloads the TLS certificate (`None` without `[server.tls]`): see [`TlsReloader`]. The
    /// `warren` binary calls it on `SIGHUP`.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.routes.tls.clone().map(TlsReloader)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, when `[metrics]` is enabled.
    pub fn metrics_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.metrics_listener
            .as_ref()
            .map(MetricsListener::local_addr)
            .transpose()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(self.shutdown_tx.clone())
    }

    /// Publishes and broadcasts on behalf of the embedding program (see [`crate::extend`]).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Runs the handler of `kind` on every node (see [`ServerHandle::broadcast`]).
    pub async fn broadcast(
        &self,
        kind: &str,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<(), extend::ExtensionError> {
        self.handle.broadcast(kind, payload).await
    }

    /// Serves until the shutdown handle is used, then stops gracefully: `/ready` answers 503
    /// at once and everything is still served for `server.shutdown_grace_ms` (load balancers
    /// take the node out meanwhile); then every connection is closed with 4200 and leaves its
    /// channels (departures are announced cluster-wide) while HTTP is still answered and new
    /// WebSocket connections are refused with 503; then the listener closes and the node
    /// leaves the cluster.
    pub async fn run(self) {
        let Server {
            listener,
            routes,
            ingress,
            webhooks_runtime,
            connections,
            node,
            node_id: _,
            monitor: _,
            shutdown_tx,
            handle: _,
            shutdown_grace,
            metrics_listener,
            reloader: _,
            apps_source,
        } = self;
        let metrics = metrics_listener.map(|l| tokio::spawn(l.serve(shutdown_tx.subscribe())));
        let sweeper = tokio::spawn(connections::sweep_forever(connections.clone()));
        let gate_sweeper = tokio::spawn(gate::sweep_forever(routes.gate.clone()));
        let watchlists = {
            let node = node.clone();
            tokio::spawn(async move { node.send_watchlist_batches().await })
        };
        let suppressed = tokio::spawn(connection_errors::report_suppressed_forever());
        let (stop_accepting, accepting) = watch::channel(false);
        let serving = tokio::spawn(listener::serve(listener, routes, accepting));
        let _ = shutdown_tx.subscribe().wait_for(|stopping| *stopping).await;
        if !shutdown_grace.is_zero() {
            let ms = shutdown_grace.as_millis() as u64;
            tracing::info!(
                grace_ms = ms,
                "stopping: /ready answers 503; still serving meanwhile"
            );
            tokio::time::sleep(shutdown_grace).await;
        }
        sweeper.abort();
        gate_sweeper.abort();
        connections.close_all();
        connections.drained(DRAIN_LIMIT).await;
        let _ = stop_accepting.send(true);
        let _ = serving.await;
        watchlists.abort();
        node.leave_cluster().await;
        suppressed.abort();
        connection_errors::report_suppressed_now();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        if let Some(source) = apps_source {
            source.abort();
        }
        drop(ingress);
        drop(webhooks_runtime);
    }
}
