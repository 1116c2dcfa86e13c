//! The NATS backend: many nodes behave as one, through a NATS server with JetStream.
//!
//! * Fan-out: each Pusher channel has a core NATS subject; a node subscribes to it while it
//!   has local subscribers (and `listen` returns once the server confirmed, by a flush).
//!   Envelopes are those of `cluster::envelope`; presence announcements carry the version of
//!   the change that decided them in a header, and receivers order them
//!   (`cluster::ordering`, applied by the node's sink).
//! * State: JetStream key-value buckets changed by compare-and-set (`kv`). A node writes its
//!   own contribution to a channel (subscriptions and presence connections per instance) as
//!   a whole, from its mirror of its local state (`channels`, `users`), so changes are
//!   idempotent and a node never races itself (one change per channel at a time here).
//! * Liveness: instances heartbeat into a bucket by compare-and-set; any node claims an
//!   instance whose heartbeat stopped, exactly once, and removes what the instance recorded
//!   in its ledger (`registry`). A node that lost its registration registers a new instance
//!   and records its local state again.
//! * Jobs: a node may use NATS for fan-out only (no buckets written, no registry) or for
//!   state only (no subscriptions; announcements through the other backend's fan-out), see
//!   `cluster::split`.

mod channels;
mod fanout;
mod features;
pub(crate) mod keys;
pub(crate) mod kv;
mod registry;
mod state;
mod users;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use async_trait::async_trait;
use parking_lot::Mutex;
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, SocketId, UserId};

use super::envelope;
use super::{BackendError, ChannelEvent, ClusterBackend, EventSink, Jobs, Seams};
use crate::config::{NatsAuth, NatsTarget};
use keys::Keys;

/// How the node connects and identifies itself.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub target: NatsTarget,
    pub auth: NatsAuth,
    pub prefix: String,
    pub node_id: String,
    /// A node silent this long is declared dead and cleaned up.
    pub node_timeout: Duration,
}

#[async_trait]
impl ClusterBackend for NatsOptions {
    async fn connect(&self, sink: Arc<dyn EventSink>) -> Result<Seams, BackendError> {
        let cluster = NatsCluster::connect(self.clone(), sink).await?;
        Ok(Seams {
            broker: Arc::new(cluster.clone()),
            state: Arc::new(cluster),
        })
    }
}

/// Longest wait for one NATS request; past it the operation fails (the API answers 503).
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Names read back from NATS are checked against the protocol's absolute maximum.
const ANY_NAME_LENGTH: usize = 1000;
/// The header carrying a presence announcement's version (see `cluster::ordering`).
const ORDER_HEADER: &str = "Warren-Order";
/// Local changes of different channels run at once up to this many stripes; changes of one
/// channel on one node never overlap (so a node never conflicts with itself).
const STRIPES: usize = 256;
/// Relayed messages buffered per listened channel before NATS reports a slow consumer
/// (which closes the channel's connections with 4200: no silent loss).
const SUBSCRIPTION_BUFFER: usize = 1 << 14;

/// The NATS implementation of both seams. Cheap to clone.
#[derive(Clone)]
pub struct NatsCluster {
    inner: Arc<Inner>,
}

/// The instance state is recorded under, and its ledger (see `registry`).
struct Instance {
    id: String,
    ledger: kv::Bucket,
    /// Ledger keys written under this instance.
    written: Mutex<HashSet<String>>,
}

/// The buckets of one cluster.
struct Buckets {
    /// `<app>.<channel>` -> `channels::ChannelEntry`.
    channels: kv::Bucket,
    /// `<app>.<user>` -> `users::UserEntry`.
    users: kv::Bucket,
    /// `hb.<instance>` -> `registry::Beat`, `own.<node id>` -> the instance holding it.
    nodes: kv::Bucket,
    /// `<app>.<channel>` -> `features::Cached`.
    cache: kv::Bucket,
    /// `<app>.<channel>` -> `features::Window`.
    windows: kv::Bucket,
    /// `<app>` -> `features::Held` (connections per instance).
    connections: kv::Bucket,
    /// `<app>.<counter>.<second>` -> `features::Taken`, expiring.
    rates: kv::Bucket,
}

/// A channel's sockets on this node, each with its presence member.
type LocalChannel = HashMap<SocketId, Option<PresenceMember>>;

struct Inner {
    client: Client,
    js: async_nats::jetstream::Context,
    buckets: Buckets,
    keys: Keys,
    options: NatsOptions,
    /// Unique to this process: relayed messages carrying it are our own and are skipped.
    origin: String,
    sink: Arc<dyn EventSink>,
    /// What this node uses NATS for.
    jobs: Jobs,
    /// Replaced (write lock) on re-registration, read-locked by every state change so none
    /// straddles a re-registration.
    instance: tokio::sync::RwLock<Arc<Instance>>,
    /// What this node's connections hold per channel: the truth a node's contribution is
    /// written from, and recorded again from after a lost registration.
    mirror: Mutex<HashMap<(AppId, ChannelName), LocalChannel>>,
    /// This node's signed-in sockets per user.
    signed_in: Mutex<HashMap<(AppId, UserId), HashSet<SocketId>>>,
    /// Connections this node holds per app with a cluster-wide limit.
    connections: Mutex<HashMap<AppId, u64>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// The receiving task of each listened channel.
    listening: Mutex<HashMap<(AppId, ChannelName), tokio::task::JoinHandle<()>>>,
    broadcasts: Mutex<Option<tokio::task::JoinHandle<()>>>,
    dirty: AtomicBool,
    lost: AtomicBool,
    stopping: AtomicBool,
    /// The heartbeat key's revision of the live instance (its compare-and-set).
    live: Mutex<(String, u64)>,
    started: std::time::Instant,
    last_beat: AtomicU64,
    reconnects: AtomicU64,
    /// The runtime the backend was connected on (the ingress one): receiving tasks run
    /// there, whichever runtime `listen` is called from
    /// (INVARIANT(ingress-apart-from-connections)).
    runtime: tokio::runtime::Handle,
}

fn backend(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

/// Each bucket's name and how long its entries live (zero: ever), in the order of `Buckets`.
const BUCKETS: [(&str, Duration); 7] = [
    ("ch", Duration::ZERO),
    ("us", Duration::ZERO),
    ("nodes", Duration::ZERO),
    ("cache", Duration::ZERO),
    ("win", Duration::from_secs(24 * 3600)),
    ("conn", Duration::ZERO),
    ("rate", Duration::from_secs(10)),
];

/// Opens every bucket, creating those missing (at start, and again after NATS lost them).
async fn open_buckets(
    js: &async_nats::jetstream::Context,
    keys: &Keys,
) -> Result<[kv::Bucket; 7], BackendError> {
    let mut opened = Vec::with_capacity(BUCKETS.len());
    for (what, max_age) in BUCKETS {
        opened.push(kv::open(js, &keys.bucket(what), max_age).await?);
    }
    opened
        .try_into()
        .map_err(|_| BackendError("a bucket is missing".into()))
}

impl NatsCluster {
    /// Connects, opens the buckets, registers this node and starts the heartbeat and cleanup.
    pub async fn connect(
        options: NatsOptions,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, BackendError> {
        Self::connect_for(options, sink, Jobs::Both).await
    }

    /// [`NatsCluster::connect`] for `jobs`: fan-out alone registers nothing and writes no
    /// state; state alone listens to nothing and announces through the other fan-out.
    pub async fn connect_for(
        options: NatsOptions,
        sink: Arc<dyn EventSink>,
        jobs: Jobs,
    ) -> Result<Self, BackendError> {
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let connect_options = options
            .auth
            .connect_options(&options.target)
            .await
            .map_err(BackendError)?
            .no_echo()
            .subscription_capacity(SUBSCRIPTION_BUFFER)
            .connection_timeout(COMMAND_TIMEOUT)
            .request_timeout(Some(COMMAND_TIMEOUT))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            });
        let shown = options.target.to_string();
        let client = tokio::time::timeout(
            COMMAND_TIMEOUT * 3,
            connect_options.connect(options.target.addrs()),
        )
        .await
        .map_err(|_| BackendError(format!("cannot reach NATS at {shown}: timed out")))?
        .map_err(|e| BackendError(format!("cannot reach NATS at {shown}: {e}")))?;
        tokio::time::timeout(COMMAND_TIMEOUT * 3, client.flush())
            .await
            .map_err(|_| BackendError(format!("cannot reach NATS at {shown}: timed out")))?
            .map_err(|e| BackendError(format!("cannot reach NATS at {shown}: {e}")))?;
        let js = async_nats::jetstream::new(client.clone());
        let keys = Keys::new(&options.prefix);
        let [channels, users, nodes, cache, windows, connections, rates] =
            open_buckets(&js, &keys).await?;
        let buckets = Buckets {
            channels,
            users,
            nodes,
            cache,
            windows,
            connections,
            rates,
        };
        let origin = format!("{}~{:08x}", options.node_id, rand::random::<u32>());
        let placeholder = Instance {
            id: String::new(),
            ledger: buckets.nodes.clone(),
            written: Mutex::default(),
        };
        let inner = Arc::new(Inner {
            client,
            js,
            buckets,
            keys,
            options,
            origin,
            sink,
            jobs,
            instance: tokio::sync::RwLock::new(Arc::new(placeholder)),
            mirror: Mutex::default(),
            signed_in: Mutex::default(),
            connections: Mutex::default(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            listening: Mutex::default(),
            broadcasts: Mutex::default(),
            dirty: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            live: Mutex::default(),
            started: std::time::Instant::now(),
            last_beat: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
        });
        if inner.jobs.keeps_state() {
            registry::register_at_start(&inner).await?;
        }
        fanout::spawn_connection_events(&inner, events_rx);
        if inner.jobs.fans_out() {
            fanout::listen_to_broadcasts(&inner).await?;
        }
        if inner.jobs.keeps_state() {
            tokio::spawn(registry::heartbeats(inner.clone()));
            tokio::spawn(registry::maintenance(inner.clone()));
        }
        let jobs = &inner.jobs;
        tracing::info!(nats = %shown, node = %inner.options.node_id, ?jobs, "cluster backend: NATS");
        Ok(Self { inner })
    }

    /// This process's id in relayed messages and logs.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Stops heartbeating and receiving without leaving the cluster: to the other nodes this
    /// looks like a crash, and they clean up after it. For tests of that cleanup.
    #[doc(hidden)]
    pub async fn halt(&self) {
        self.inner.stop_tasks();
    }
}

impl Inner {
    /// Milliseconds since this backend connected: the clock of its heartbeat's freshness.
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn unavailable(&self) -> Option<BackendError> {
        (!self.connected()).then(|| BackendError("NATS is unreachable".into()))
    }

    /// The lock that keeps this node's changes of one channel (or user, or app) apart.
    async fn stripe(&self, what: &[&str]) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        what.hash(&mut h);
        let i = usize::try_from(h.finish() % STRIPES as u64).unwrap_or(0);
        self.stripes[i].lock().await
    }

    /// A failed change leaves the buckets possibly out of step with this node: write it all
    /// again soon.
    fn note_failure<T, E>(&self, r: Result<T, E>) -> Result<T, E> {
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }

    fn stop_tasks(&self) {
        self.stopping.store(true, Ordering::Release);
        for (_, task) in self.listening.lock().drain() {
            task.abort();
        }
        if let Some(task) = self.broadcasts.lock().take() {
            task.abort();
        }
    }

    /// Returns once the server handled everything this connection sent before (a flush only
    /// writes it out): a request nobody answers, whose "no responders" reply the server
    /// sends after the commands ahead of it, SUBs included.
    async fn confirm(&self) -> Result<(), BackendError> {
        let probe = self.client.request(self.keys.probe(), bytes::Bytes::new());
        match tokio::time::timeout(COMMAND_TIMEOUT, probe).await {
            Err(_) => Err(BackendError("NATS did not confirm in time".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(e)) => Err(backend(e)),
        }
    }

    /// Sends one envelope to the other nodes on `subject`, with `headers` when given.
    async fn send(
        &self,
        subject: String,
        envelope: bytes::Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<(), BackendError> {
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        let sent = match headers {
            Some(h) => {
                tokio::time::timeout(
                    COMMAND_TIMEOUT,
                    self.client.publish_with_headers(subject, h, envelope),
                )
                .await
            }
            None => {
                tokio::time::timeout(COMMAND_TIMEOUT, self.client.publish(subject, envelope)).await
            }
        };
        sent.map_err(|_| BackendError("NATS publish timed out".into()))?
            .map_err(backend)
    }

    /// Tells the other nodes of a presence change decided at `version` (this node's own
    /// subscribers get it from the caller, through the node's ordering).
    async fn announce(&self, event: ChannelEvent, version: u64) {
        if fanout::member_of(&event.message).is_none() {
            return;
        }
        let sent = match self.jobs.announcer() {
            Some(fanout) => fanout.announce(&event, version).await,
            None => self.announce_on_nats(&event, version).await,
        };
        if let Err(e) = sent {
            // The change stands; nodes that missed its announcement are out of step until
            // their subscribers resubscribe.
            tracing::warn!(error = %e, channel = %event.channel, "presence announcement not sent");
        }
    }
}

impl Inner {
    /// Publishes a presence announcement on this connection, its version in a header.
    async fn announce_on_nats(
        &self,
        event: &ChannelEvent,
        version: u64,
    ) -> Result<(), BackendError> {
        let mut headers = HeaderMap::new();
        headers.insert(ORDER_HEADER, version.to_string().as_str());
        let subject = self.keys.events(&event.app, &event.channel);
        let bytes = envelope::encode(&self.origin, event)?;
        self.send(subject, bytes, Some(headers)).await
    }

    /// Sends a user's status notice (its version is in the envelope) to the other nodes.
    async fn notify_others(&self, event: &ChannelEvent) -> Result<(), BackendError> {
        if let Some(fanout) = self.jobs.announcer() {
            return fanout.publish(event).await;
        }
        let subject = self.keys.events(&event.app, &event.channel);
        let bytes = envelope::encode(&self.origin, event)?;
        self.send(subject, bytes, None).await
    }
}

/// A user id read back from a bucket, when it still parses.
fn user_id(text: &str) -> Option<UserId> {
    UserId::parse(text, ANY_NAME_LENGTH).ok()
}
