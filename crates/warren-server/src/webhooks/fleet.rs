//! The endpoints that run, kept in step with the apps: an endpoint added to an app (in
//! PostgreSQL, or in the file on `SIGHUP`) starts at once, a removed one stops, and a changed
//! one (other headers, or the app's key or secret) signs its next request with the new values
//! while its task and its queue go on, so nothing queued for it is lost.
//!
//! An endpoint is known by its queue's name (`queue_name`: the app, its place in the app's
//! list, a hash of its URL), the same on every node configured alike. An endpoint whose URL or
//! place changed is therefore another endpoint: the old one stops, and what a shared or
//! spooled queue held for it stays there for the day it comes back.
//!
//! INVARIANT(table-after-start): the [`Table`] the intake and the dispatcher read is swapped
//! whole, after every endpoint it names has its queue, so an event is routed only to a queue
//! whose task is running.
//!
//! The store of the queues and markers (Redis, JetStream, a spool or memory, by the cluster
//! backend and `webhooks.spool_dir`) is opened with the first endpoint, so a node whose apps
//! have none holds no connection for webhooks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{watch, OnceCell};
use warren_protocol::AppId;

use super::dispatch::{Dispatch, Route, Table};
use super::endpoint::{CurrentSecret, Endpoint, Observer, Signing, Stats};
use super::queue::{MemoryQueue, Queue};
use super::removal::{Markers, MemoryMarkers};
use super::spool::SpoolQueue;
use super::{nats, queue_name, redis, spool, KindSet};
use crate::app::{AppRegistry, LiveApps};
use crate::config::{AppConfig, Backend, Config, WebhookConfig};

/// After a change could not be applied in full (the store unreachable), the next try.
const RETRY: Duration = Duration::from_secs(2);

/// Where the queues and the removal markers live.
enum Store {
    /// A cluster on Redis: a stream per endpoint, markers in keys.
    Redis(fred::clients::Client),
    /// A cluster on NATS: a JetStream work queue per endpoint, markers in a bucket.
    Nats(Box<async_nats::jetstream::Context>),
    /// One node with `webhooks.spool_dir`: a table per endpoint.
    Spool(Arc<redb::Database>),
    Memory,
}

/// The running endpoints and what it takes to start more.
pub(super) struct Fleet {
    config: Config,
    client: reqwest::Client,
    /// This node's name in the shared queues' consumer groups.
    consumer: String,
    observer: Option<Observer>,
    current_secret: Option<CurrentSecret>,
    store: OnceCell<Store>,
    /// By queue name. One change at a time.
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    pub(super) table: Arc<ArcSwap<Table>>,
    dispatch: Arc<Dispatch>,
}

/// A running endpoint. Dropping it stops its task (`stop`).
struct Running {
    app: AppId,
    url: String,
    /// What its signing was made of, to tell a change.
    made_of: (WebhookConfig, String, String),
    signing: Arc<ArcSwap<Signing>>,
    stats: Arc<Stats>,
    queue: Arc<dyn Queue>,
    _stop: watch::Sender<()>,
}

impl Fleet {
    pub(super) fn new(
        config: Config,
        node_id: &str,
        dispatch: Arc<Dispatch>,
        observer: Option<Observer>,
        current_secret: Option<CurrentSecret>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.webhooks.timeout_ms))
            // Some SDKs (PHP) read `X-Pusher-Key` case-sensitively.
            .http1_title_case_headers()
            .build()?;
        Ok(Fleet {
            consumer: format!("{node_id}~{:08x}", rand::random::<u32>()),
            config,
            client,
            observer,
            current_secret,
            store: OnceCell::new(),
            running: tokio::sync::Mutex::default(),
            table: dispatch.table.clone(),
            dispatch,
        })
    }

    /// Makes the running endpoints those of `apps`. An endpoint that could not start (its
    /// store unreachable) is left out and named in the error; the others run.
    pub(super) async fn apply(&self, apps: &[AppConfig]) -> anyhow::Result<()> {
        let mut running = self.running.lock().await;
        let mut next = HashMap::new();
        let mut table = Table::default();
        let mut failed = Vec::new();
        for app in apps {
            for (n, hook) in app.webhooks.iter().enumerate() {
                let name = queue_name(app.id.as_str(), n, &hook.url);
                let made_of = (hook.clone(), app.key.to_string(), app.secret.clone());
                let endpoint = match running.remove(&name) {
                    Some(kept) => kept.resigned(made_of),
                    None => self.launch(app, hook, &name, made_of).await,
                };
                let endpoint = match endpoint {
                    Ok(endpoint) => endpoint,
                    Err(e) => {
                        failed.push(format!("{} ({}): {e:#}", hook.url, app.id));
                        continue;
                    }
                };
                table.routes.entry(app.id.clone()).or_default().push(Route {
                    wants: KindSet::of(hook),
                    queue: endpoint.queue.clone(),
                    stats: endpoint.stats.clone(),
                    url: hook.url.clone(),
                    index: n,
                });
                let wants = table.wants.entry(app.id.clone()).or_default();
                *wants = wants.union(KindSet::of(hook));
                next.insert(name, endpoint);
            }
        }
        for gone in running.values() {
            tracing::info!(app = %gone.app, url = %gone.url, "webhook endpoint removed");
        }
        // INVARIANT(table-after-start): every endpoint of `table` was started above.
        self.table.store(Arc::new(table));
        // The endpoints left in `running` stop as they are dropped here.
        *running = next;
        match failed.is_empty() {
            true => Ok(()),
            false => Err(anyhow::anyhow!(
                "webhook endpoints not started: {}",
                failed.join("; ")
            )),
        }
    }

    /// Starts an endpoint on its queue.
    async fn launch(
        &self,
        app: &AppConfig,
        hook: &WebhookConfig,
        name: &str,
        made_of: (WebhookConfig, String, String),
    ) -> anyhow::Result<Running> {
        let store = self.store.get_or_try_init(|| self.open_store()).await?;
        let signing = Arc::new(ArcSwap::from_pointee(Signing::new(
            hook, &made_of.1, &made_of.2,
        )?));
        let settings = &self.config.webhooks;
        let mut endpoint = Endpoint::new(hook, settings, signing.clone(), self.client.clone())?;
        endpoint.app = app.id.to_string();
        endpoint.observer = self.observer.clone();
        endpoint.current_secret = self.current_secret.clone();
        let capacity = settings.max_pending;
        let min_idle = Duration::from_millis(self.config.cluster.node_timeout_ms);
        let prefix = &self.config.cluster.prefix;
        let queue: Arc<dyn Queue> = match store {
            Store::Redis(client) => {
                let stream = format!("{prefix}:wh:{name}");
                let consumer = self.consumer.clone();
                redis::RedisQueue::start(client.clone(), stream, consumer, capacity, min_idle)
            }
            Store::Nats(js) => nats::NatsQueue::start(js, prefix, name, capacity, min_idle).await?,
            Store::Spool(db) => Arc::new(SpoolQueue::start(db.clone(), name.to_owned(), capacity)),
            Store::Memory => Arc::new(MemoryQueue::new(capacity)),
        };
        let (stop, stopped) = watch::channel(());
        let stats = endpoint.stats.clone();
        tokio::spawn(endpoint.run(queue.clone(), stopped));
        Ok(Running {
            app: app.id.clone(),
            url: hook.url.clone(),
            made_of,
            signing,
            stats,
            queue,
            _stop: stop,
        })
    }

    /// Opens the store for the cluster backend, and sets the dispatcher's markers in it.
    async fn open_store(&self) -> anyhow::Result<Store> {
        let cluster = &self.config.cluster;
        // Queues and markers are state: they live with the cluster state (`[cluster.state]`).
        let kept_in = cluster.state_target();
        let (store, markers): (Store, Arc<dyn Markers>) = match kept_in.backend {
            Backend::Redis => {
                let target = kept_in
                    .redis_target()
                    .map_err(|e| anyhow::anyhow!("cluster.redis_tls_ca_file: {e}"))?;
                let client = redis::connect(&target).await?;
                let prefix = cluster.prefix.clone();
                let markers = Arc::new(redis::RedisMarkers::new(client.clone(), prefix));
                (Store::Redis(client), markers)
            }
            Backend::Nats => {
                let js = nats::connect(&kept_in.nats_url, &kept_in.nats).await?;
                let markers = Arc::new(nats::NatsMarkers::open(&js, &cluster.prefix).await?);
                (Store::Nats(Box::new(js)), markers)
            }
            Backend::Local => {
                let store = match &self.config.webhooks.spool_dir {
                    Some(dir) => Store::Spool(spool::open(dir)?),
                    None => Store::Memory,
                };
                (store, Arc::new(MemoryMarkers::default()))
            }
        };
        // Set before any endpoint runs, so before any event reaches the dispatcher.
        let _ = self.dispatch.markers.set(markers);
        Ok(store)
    }

    /// Keeps the endpoints in step with `apps` until the registry is gone, retrying a change
    /// that could not be applied in full (`behind`: the first one was not).
    pub(super) fn follow(
        self: Arc<Self>,
        apps: &Arc<LiveApps>,
        mut behind: bool,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut changes = apps.changes();
        // A change between the caller's first read and this subscription is not missed.
        changes.mark_changed();
        let apps = Arc::downgrade(apps);
        async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(RETRY), if behind => {}
                }
                let Some(apps) = apps.upgrade() else { return };
                let settings: Vec<AppConfig> =
                    apps.all().iter().map(|a| a.settings().clone()).collect();
                drop(apps);
                behind = match self.apply(&settings).await {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhooks: will try again");
                        true
                    }
                };
            }
        }
    }
}

impl Running {
    /// The same endpoint, signing from now on with what `made_of` says.
    fn resigned(mut self, made_of: (WebhookConfig, String, String)) -> anyhow::Result<Self> {
        if self.made_of != made_of {
            let (hook, key, secret) = &made_of;
            self.signing
                .store(Arc::new(Signing::new(hook, key, secret)?));
            self.made_of = made_of;
        }
        Ok(self)
    }
}
