//! Webhooks (docs/WEBHOOKS.md): the application learns that a channel became occupied or
//! vacated, that a member came or went, that a client sent an event, that a cache channel
//! missed, or that a subscription count changed.
//!
//! The node reports each event through [`Webhooks`], which only puts a small [`Record`] on a
//! bounded queue (never waiting: a full queue drops and counts), so webhooks never slow
//! message delivery. Everything else runs in tasks on the ingress runtime: the
//! [`dispatch`] task holds removals for the delay ([`removal`]) and hands each event to the
//! queue of every endpoint that wants it; each [`endpoint`] has a task of its own that
//! batches, signs, posts and retries, so one slow endpoint delays no other.
//!
//! Transitions come from the cluster state, which decides each one once cluster-wide, and
//! only the node whose call decided it reports it: a cluster of N nodes sends each once.
//! With no endpoint configured, [`Webhooks`] is empty and every report is one branch.

mod dispatch;
mod endpoint;
mod event;
mod nats;
mod queue;
mod redis;
mod removal;
mod spool;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use warren_protocol::{AppId, ChannelKind, ChannelName, UserId};

use crate::cluster::{ChannelEvent, ChannelMessage, ClusterState};
use crate::config::{Backend, Config, WebhookConfig, WebhookEventType};
use dispatch::{Dispatch, Route};
use endpoint::Endpoint;
pub(crate) use endpoint::{Attempt, CurrentSecret, Observer};
pub(crate) use event::{Hook, Record};
use queue::{MemoryQueue, Queue};
use removal::{Markers, MemoryMarkers};
use spool::SpoolQueue;

/// A set of event kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KindSet(u8);

impl KindSet {
    fn of(endpoint: &WebhookConfig) -> Self {
        let mut set = KindSet(0);
        for kind in ALL_KINDS {
            if endpoint.wants(kind) {
                set.0 |= 1 << kind as u8;
            }
        }
        set
    }

    pub(crate) fn contains(self, kind: WebhookEventType) -> bool {
        self.0 & (1 << kind as u8) != 0
    }
}

/// In a cluster, how long `channel_occupied` and `member_added` wait, when they find no
/// pending removal to cancel, for one another node may be about to mark (see
/// `Dispatch::return_later`): longer than a busy node takes to write a marker, short next
/// to the removal delay.
const RETURN_SETTLE: Duration = Duration::from_millis(250);

const ALL_KINDS: [WebhookEventType; 7] = [
    WebhookEventType::ChannelOccupied,
    WebhookEventType::ChannelVacated,
    WebhookEventType::MemberAdded,
    WebhookEventType::MemberRemoved,
    WebhookEventType::ClientEvent,
    WebhookEventType::CacheMiss,
    WebhookEventType::SubscriptionCount,
];

/// The name of an app's `n`th endpoint's queue, the same on every node configured alike.
fn queue_name(app: &str, n: usize, url: &str) -> String {
    use sha1::{Digest, Sha1};
    let hash = Sha1::digest(url.as_bytes());
    let hash: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{app}:{n}:{hash}")
}

/// Where the node reports webhook events. Cheap to clone; empty (and free) when no app has
/// an endpoint.
#[derive(Clone, Default)]
pub(crate) struct Webhooks(Option<Arc<Intake>>);

struct Intake {
    /// The kinds some endpoint of each app wants; other apps and kinds stop here.
    wants: HashMap<AppId, KindSet>,
    queue: mpsc::Sender<Record>,
    dropped: AtomicU64,
    /// Every endpoint, for metrics.
    endpoints: Vec<Watched>,
}

/// An endpoint as the metrics see it.
struct Watched {
    app: AppId,
    /// Its place among the app's endpoints in the configuration.
    index: usize,
    stats: Arc<endpoint::Stats>,
    queue: Arc<dyn Queue>,
}

/// One endpoint's counts and queue, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointReport {
    pub app: AppId,
    pub index: usize,
    pub delivered: u64,
    pub given_up: u64,
    pub queue_full: u64,
    /// `None` when the queue could not be asked (Redis unreachable).
    pub depth: Option<u64>,
}

impl Webhooks {
    /// Starts the dispatcher and one task per endpoint on `runtime` (the ingress runtime;
    /// `None`: the current one), unless no app has an endpoint. With the Redis backend the
    /// markers and queues are in Redis, through a client of their own.
    pub(crate) async fn start(
        config: &Config,
        node_id: &str,
        state: Arc<dyn ClusterState>,
        runtime: Option<Handle>,
        observer: Option<endpoint::Observer>,
        current_secret: Option<CurrentSecret>,
    ) -> anyhow::Result<Self> {
        if config.apps.iter().all(|app| app.webhooks.is_empty()) {
            return Ok(Webhooks(None));
        }
        let build = Self::build(
            config.clone(),
            node_id.to_owned(),
            state,
            observer,
            current_secret,
        );
        match runtime {
            Some(h) => h.spawn(build).await?,
            None => build.await,
        }
    }

    async fn build(
        config: Config,
        node_id: String,
        state: Arc<dyn ClusterState>,
        observer: Option<endpoint::Observer>,
        current_secret: Option<CurrentSecret>,
    ) -> anyhow::Result<Self> {
        let settings = &config.webhooks;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            // Some SDKs (PHP) read `X-Pusher-Key` case-sensitively.
            .http1_title_case_headers()
            .build()?;
        let any_endpoint = config.apps.iter().any(|a| !a.webhooks.is_empty());
        // Queues and markers are state: they live with the cluster state.
        let kept_in = config.cluster.state_target();
        let redis_client = match kept_in.backend {
            Backend::Redis => {
                let target = kept_in
                    .redis_target()
                    .map_err(|e| anyhow::anyhow!("cluster.redis_tls_ca_file: {e}"))?;
                Some(redis::connect(&target).await?)
            }
            Backend::Local | Backend::Nats => None,
        };
        let nats_js = match kept_in.backend {
            Backend::Nats if any_endpoint => {
                Some(nats::connect(&kept_in.nats_url, &kept_in.nats).await?)
            }
            _ => None,
        };
        let spool = match (&redis_client, &nats_js, &settings.spool_dir) {
            (None, None, Some(dir)) => Some(spool::open(dir)?),
            _ => None,
        };
        let consumer = format!("{node_id}~{:08x}", rand::random::<u32>());
        let min_idle = Duration::from_millis(config.cluster.node_timeout_ms);
        let (mut routes, mut wants) = (HashMap::new(), HashMap::new());
        let mut watched = Vec::new();
        for app in &config.apps {
            let mut app_routes = Vec::new();
            for (n, hook) in app.webhooks.iter().enumerate() {
                let (key, secret) = (app.key.as_str(), &app.secret);
                let mut endpoint = Endpoint::new(hook, settings, key, secret, client.clone())?;
                endpoint.app = app.id.to_string();
                endpoint.observer = observer.clone();
                endpoint.current_secret = current_secret.clone();
                let name = queue_name(app.id.as_str(), n, &hook.url);
                let capacity = settings.max_pending;
                let queue: Arc<dyn Queue> = match (&redis_client, &nats_js, &spool) {
                    (Some(redis_client), _, _) => {
                        let stream = format!("{}:wh:{name}", config.cluster.prefix);
                        let c = redis_client.clone();
                        redis::RedisQueue::start(c, stream, consumer.clone(), capacity, min_idle)
                    }
                    (None, Some(js), _) => {
                        let prefix = &config.cluster.prefix;
                        nats::NatsQueue::start(js, prefix, &name, capacity, min_idle).await?
                    }
                    (None, None, Some(db)) => {
                        Arc::new(SpoolQueue::start(db.clone(), name, capacity))
                    }
                    (None, None, None) => Arc::new(MemoryQueue::new(capacity)),
                };
                let route = Route {
                    wants: KindSet::of(hook),
                    queue: queue.clone(),
                    stats: endpoint.stats.clone(),
                    url: hook.url.clone(),
                };
                watched.push(Watched {
                    app: app.id.clone(),
                    index: n,
                    stats: endpoint.stats.clone(),
                    queue: queue.clone(),
                });
                tokio::spawn(endpoint.run(queue));
                let all: &mut KindSet = wants.entry(app.id.clone()).or_default();
                all.0 |= route.wants.0;
                app_routes.push(route);
            }
            routes.insert(app.id.clone(), app_routes);
        }
        let (markers, return_settle): (Arc<dyn Markers>, _) = match (redis_client, nats_js) {
            (None, Some(js)) => (
                Arc::new(nats::NatsMarkers::open(&js, &config.cluster.prefix).await?),
                RETURN_SETTLE,
            ),
            (Some(client), _) => (
                Arc::new(redis::RedisMarkers::new(
                    client,
                    config.cluster.prefix.clone(),
                )),
                RETURN_SETTLE,
            ),
            (None, None) => (Arc::new(MemoryMarkers::default()), Duration::ZERO),
        };
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let dispatch = Arc::new(Dispatch {
            routes,
            markers,
            state,
            delay_removal: Duration::from_millis(settings.delay_removal_ms),
            id_prefix: format!("{node_id}-{started:x}"),
            next_id: AtomicU64::new(0),
            token_base: rand::random(),
            return_settle,
        });
        let (queue, intake) = mpsc::channel(settings.max_pending);
        tokio::spawn(dispatch.run(intake));
        Ok(Webhooks(Some(Arc::new(Intake {
            wants,
            queue,
            dropped: AtomicU64::new(0),
            endpoints: watched,
        }))))
    }

    /// Each endpoint's counts and queue depth, and the events the intake dropped; nothing
    /// when no app has an endpoint.
    pub(crate) async fn endpoints_report(&self) -> (Vec<EndpointReport>, u64) {
        let Some(intake) = &self.0 else {
            return (Vec::new(), 0);
        };
        let mut reports = Vec::with_capacity(intake.endpoints.len());
        for e in &intake.endpoints {
            let load = |n: &AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
            reports.push(EndpointReport {
                app: e.app.clone(),
                index: e.index,
                delivered: load(&e.stats.delivered),
                given_up: load(&e.stats.given_up),
                queue_full: load(&e.stats.queue_full),
                depth: e.queue.depth().await,
            });
        }
        let dropped = intake.dropped.load(std::sync::atomic::Ordering::Relaxed);
        (reports, dropped)
    }

    /// Enqueues the event if an endpoint of the app wants its kind.
    ///
    /// INVARIANT(webhook-never-waits): `try_send` on a bounded channel; a full one drops and
    /// counts, so a webhook never slows or fails what the node is doing.
    fn report(
        &self,
        app: &AppId,
        channel: &ChannelName,
        kind: WebhookEventType,
        hook: impl FnOnce() -> Hook,
    ) {
        let Some(intake) = &self.0 else { return };
        if !intake.wants.get(app).is_some_and(|k| k.contains(kind)) {
            return;
        }
        let record = Record {
            app: app.clone(),
            channel: channel.clone(),
            hook: hook(),
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        if intake.queue.try_send(record).is_err() {
            let dropped = intake
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped_total = dropped,
                    "webhook dropped: the queue is full"
                );
            }
        }
    }

    /// A subscription was recorded: did it occupy the channel, or add a member?
    pub(crate) fn subscribed(
        &self,
        app: &AppId,
        channel: &ChannelName,
        occupied: bool,
        member_added: Option<&UserId>,
    ) {
        if occupied && channel.kind() != ChannelKind::ServerToUser {
            self.report(app, channel, WebhookEventType::ChannelOccupied, || {
                Hook::Occupied
            });
        }
        if let Some(user) = member_added {
            let added = || Hook::MemberAdded(user.clone());
            self.report(app, channel, WebhookEventType::MemberAdded, added);
        }
    }

    /// A subscription ended: did it vacate the channel, or remove a member?
    pub(crate) fn unsubscribed(
        &self,
        app: &AppId,
        channel: &ChannelName,
        vacated: bool,
        member_removed: Option<&UserId>,
    ) {
        if let Some(user) = member_removed {
            let removed = || Hook::MemberRemoved(user.clone());
            self.report(app, channel, WebhookEventType::MemberRemoved, removed);
        }
        if vacated && channel.kind() != ChannelKind::ServerToUser {
            self.report(app, channel, WebhookEventType::ChannelVacated, || {
                Hook::Vacated
            });
        }
    }

    /// A client event was published (`except` is its sender).
    pub(crate) fn client_event(&self, event: &ChannelEvent) {
        let (
            ChannelMessage::Event {
                name,
                data,
                user_id,
            },
            Some(socket),
        ) = (&event.message, event.except)
        else {
            return;
        };
        self.report(
            &event.app,
            &event.channel,
            WebhookEventType::ClientEvent,
            || Hook::ClientEvent {
                event: name.clone(),
                data: data.clone(),
                socket,
                user: user_id.clone(),
            },
        );
    }

    /// A cache channel's new subscriber found nothing kept.
    pub(crate) fn cache_miss(&self, app: &AppId, channel: &ChannelName) {
        self.report(app, channel, WebhookEventType::CacheMiss, || {
            Hook::CacheMiss
        });
    }

    /// A channel's subscription count was sent to its subscribers.
    pub(crate) fn subscription_count(&self, app: &AppId, channel: &ChannelName, count: u64) {
        self.report(app, channel, WebhookEventType::SubscriptionCount, || {
            Hook::SubscriptionCount(count)
        });
    }
}
