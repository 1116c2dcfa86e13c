//! The Redis backend: many nodes behave as one.
//!
//! * Fan-out: each Pusher channel has a pub/sub channel; a node subscribes to it while it has
//!   local subscribers, so nodes only receive the traffic they deliver. In Redis Cluster the
//!   sharded variants (SPUBLISH/SSUBSCRIBE) spread channels over the shards.
//! * State: counts, presence members and signed-in users live in Redis, changed by the Lua
//!   scripts in `scripts`, each subscription and sign-in recorded under the node *instance*
//!   that made it (`users` for the sign-ins). Cache channels' kept events and the windows of
//!   throttled subscription counts are in `features`.
//! * Liveness: instances heartbeat into a sorted set; any node cleans up an instance that
//!   stopped (`registry`). A node that lost its registration (cut off too long, Redis
//!   restarted, a state change it could not record) registers as a new instance and records
//!   its local state again from its mirror of it.
//! * Topology (Redis Cluster): a slot moved to another master drops the sharded
//!   subscriptions of its channels; `topology` notices and resyncs.
//! * Jobs: a node may use Redis for fan-out only (no registry, no state) or for state only
//!   (no subscriptions; the scripts publish nothing and the node announces through the other
//!   backend's fan-out, with versions: `announce`), see `cluster::split`.

mod announce;
mod features;
mod keys;
mod quotas;
mod registry;
mod scripts;
mod topology;
mod users;
mod value;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{
    ClientLike, EventInterface, HashesInterface, PubsubInterface, SetsInterface,
};
use fred::types::config::ReconnectPolicy;
use fred::types::Value;
use parking_lot::Mutex;
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};

use super::envelope::{self, Relayed};
use super::{
    BackendError, BackendHealth, Broadcast, Broker, CachedEvent, ChannelEvent, ChannelMessage,
    ChannelStats, ClusterBackend, ClusterState, CountVersion, EventSink, Jobs, JoinError,
    PresenceJoin, PresenceLeave, RateCounter, Seams, SubscriptionChange, UserStatus,
};
use crate::config::RedisTarget;
use keys::Keys;
use scripts::Scripts;

/// How the node connects and identifies itself.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub target: RedisTarget,
    pub prefix: String,
    pub node_id: String,
    /// A node silent this long is declared dead and cleaned up.
    pub node_timeout: Duration,
}

#[async_trait]
impl ClusterBackend for RedisOptions {
    async fn connect(&self, sink: Arc<dyn EventSink>) -> Result<Seams, BackendError> {
        let cluster = RedisCluster::connect(self.clone(), sink).await?;
        Ok(Seams {
            broker: Arc::new(cluster.clone()),
            state: Arc::new(cluster),
        })
    }
}

/// Longest wait for one Redis command; past it the operation fails (the API answers 503).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Channels read per script call by `GET /channels`: a page costs Redis well under a
/// millisecond, so other commands wait no longer than that.
const CHANNELS_PAGE: u32 = 250;
/// Relayed messages buffered for the dispatcher before the oldest are dropped (and logged).
const RELAY_BUFFER: usize = 1 << 16;
/// Channel names from Redis are checked against the protocol's absolute maximum.
const ANY_NAME_LENGTH: usize = 1000;

/// The Redis implementation of both seams. Cheap to clone.
#[derive(Clone)]
pub struct RedisCluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// The command client; replaced whole when it stops answering (`rebuild_client`).
    client: arc_swap::ArcSwap<Client>,
    /// What made it, to make another.
    builder: fred::types::Builder,
    subscriber: SubscriberClient,
    /// Listens to custom broadcasts only, apart from `subscriber`: with a subscription of its
    /// own from the start, the channel subscriptions' first events were sometimes lost.
    broadcasts: SubscriberClient,
    sharded: bool,
    keys: Keys,
    scripts: Scripts,
    options: RedisOptions,
    /// Unique to this process: relayed messages carrying it are our own and are skipped.
    origin: String,
    /// Where events from other nodes go.
    sink: Arc<dyn EventSink>,
    /// What this node uses Redis for.
    jobs: Jobs,
    /// The instance id state is recorded under; replaced (write lock) on re-registration,
    /// read-locked by every state change so none straddles a re-registration.
    instance: tokio::sync::RwLock<String>,
    /// Apps already announced under the current instance (`{prefix}:apps:<instance>`).
    announced_apps: Mutex<std::collections::HashSet<AppId>>,
    /// What this node contributed, to record again after losing its registration.
    mirror: Mutex<HashMap<(AppId, ChannelName, SocketId), Option<PresenceMember>>>,
    /// This node's signed-in sockets (of apps with watchlists), recorded again likewise.
    signed_in: Mutex<HashMap<(AppId, SocketId), UserId>>,
    /// A change could not be recorded: the state in Redis may be off; re-register.
    dirty: AtomicBool,
    /// The heartbeat found the registration gone: re-register.
    lost: AtomicBool,
    /// The instance the heartbeat keeps alive: set as soon as a new instance is registered,
    /// before its state is rebuilt, so a long rebuild cannot let it expire.
    live_instance: Mutex<String>,
    /// Set on shutdown: the background tasks stop.
    stopping: AtomicBool,
    /// The scripts of the shared per-app counters.
    quotas: quotas::QuotaScripts,
    /// Connections this node holds per app with a cluster-wide limit, as recorded in Redis
    /// under the current instance (to record them again under a new one).
    connections: Mutex<HashMap<AppId, u64>>,
    /// The origin of [`Inner::clock_ms`].
    started: std::time::Instant,
    /// When a heartbeat (or registration) last went through, on [`Inner::clock_ms`].
    last_beat: AtomicU64,
    /// Reconnections of the command, subscriber and broadcast connections (for metrics).
    reconnects: [AtomicU64; 3],
}

/// The connections whose reconnections are counted, in the order of `Inner::reconnects`.
const CONNECTIONS: [&str; 3] = ["commands", "subscriber", "broadcasts"];

impl RedisCluster {
    /// Connects, registers this node and starts the relay, heartbeat and cleanup tasks.
    pub async fn connect(
        options: RedisOptions,
        sink: Arc<dyn EventSink>,
    ) -> Result<Self, BackendError> {
        Self::connect_for(options, sink, Jobs::Both).await
    }

    /// [`RedisCluster::connect`] for `jobs`: fan-out alone registers nothing and keeps no
    /// state; state alone listens to nothing and announces through the other fan-out.
    pub async fn connect_for(
        options: RedisOptions,
        sink: Arc<dyn EventSink>,
        jobs: Jobs,
    ) -> Result<Self, BackendError> {
        let config = options.target.client_config().clone();
        let policy = ReconnectPolicy::new_exponential(0, 100, 1000, 2);
        let mut builder = fred::types::Builder::from_config(config);
        builder
            .set_policy(policy)
            .with_performance_config(|p| {
                p.default_command_timeout = COMMAND_TIMEOUT;
                p.broadcast_channel_capacity = RELAY_BUFFER;
            })
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                c.max_command_attempts = 1;
            });
        let client = builder.build().map_err(backend)?;
        let subscriber = builder.build_subscriber_client().map_err(backend)?;
        let broadcasts = builder.build_subscriber_client().map_err(backend)?;
        let shown = options.target.to_string();
        tokio::time::timeout(COMMAND_TIMEOUT * 3, async {
            client.init().await?;
            broadcasts.init().await?;
            subscriber.init().await
        })
        .await
        .map_err(|_| BackendError(format!("cannot reach Redis at {shown}: timed out")))?
        .map_err(|e| BackendError(format!("cannot reach Redis at {shown}: {e}")))?;
        let sharded = client.is_clustered();
        subscriber.manage_subscriptions();

        let origin = format!("{}~{:08x}", options.node_id, rand::random::<u32>());
        let inner = Arc::new(Inner {
            sharded,
            keys: Keys::new(&options.prefix),
            scripts: Scripts::new(),
            instance: tokio::sync::RwLock::new(String::new()),
            announced_apps: Mutex::default(),
            mirror: Mutex::default(),
            signed_in: Mutex::default(),
            dirty: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            live_instance: Mutex::default(),
            stopping: AtomicBool::new(false),
            quotas: quotas::QuotaScripts::new(),
            connections: Mutex::default(),
            started: std::time::Instant::now(),
            last_beat: AtomicU64::new(0),
            reconnects: Default::default(),
            origin,
            sink,
            jobs,
            client: arc_swap::ArcSwap::from_pointee(client),
            builder: builder.clone(),
            subscriber,
            broadcasts,
            options,
        });
        if inner.jobs.keeps_state() {
            registry::register_at_start(&inner).await?;
        }
        spawn_connection_logs(&inner);
        if inner.jobs.fans_out() {
            spawn_dispatcher(inner.clone());
            listen_to_broadcasts(&inner).await?;
            tokio::spawn(topology::watch(inner.clone()));
        }
        if inner.jobs.keeps_state() {
            tokio::spawn(registry::heartbeats(inner.clone()));
            tokio::spawn(registry::maintenance(inner.clone()));
        }
        tracing::info!(
            redis = %shown,
            sharded,
            node = %inner.options.node_id,
            jobs = ?inner.jobs,
            "cluster backend: Redis"
        );
        Ok(Self { inner })
    }

    /// This process's id in relayed messages and logs.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Stops heartbeating and drops the connections without leaving the cluster: to the other
    /// nodes this looks like a crash, and they clean up after it. For tests of that cleanup.
    #[doc(hidden)]
    pub async fn halt(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        let _ = self.inner.subscriber.quit().await;
        let _ = self.inner.broadcasts.quit().await;
        let _ = self.inner.client().quit().await;
    }
}

/// The join and leave scripts answer `{member flag, transition flag, count, ...}`, with the
/// change's version at `version_at`.
fn change_from(reply: &[Value], version_at: usize) -> Result<SubscriptionChange, BackendError> {
    Ok(SubscriptionChange {
        transition: value::flag_at(reply, 1, "subscription change")?,
        subscription_count: value::count_at(reply, 2, "subscription change")?,
        version: value::count_at(reply, version_at, "subscription change")?,
    })
}

/// Where the join script's answer has the version (then presence members), and the leave
/// script's.
const JOIN_VERSION_AT: usize = 3;
const LEAVE_VERSION_AT: usize = 4;

fn backend(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl Inner {
    /// The command client now (it is replaced when it stops answering).
    fn client(&self) -> Arc<Client> {
        self.client.load_full()
    }

    /// Milliseconds since this backend connected: the clock of its heartbeat's freshness.
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The command client, if it is connected: one load for the check and the command.
    fn connected(&self) -> Result<Arc<Client>, BackendError> {
        let client = self.client();
        if client.is_connected() {
            Ok(client)
        } else {
            Err(BackendError("Redis is unreachable".into()))
        }
    }

    async fn eval<V>(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: V,
    ) -> Result<Value, BackendError>
    where
        V: TryInto<fred::types::MultipleValues> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        let client = self.connected()?;
        tokio::time::timeout(
            COMMAND_TIMEOUT,
            script.evalsha_with_reload(&client, keys, args),
        )
        .await
        .map_err(|_| BackendError("Redis command timed out".into()))?
        .map_err(backend)
    }

    /// Records under `instance` that this node holds state of `app` (once per instance).
    async fn announce_app(&self, app: &AppId, instance: &str) -> Result<(), BackendError> {
        if self.announced_apps.lock().contains(app) {
            return Ok(());
        }
        tokio::time::timeout(
            COMMAND_TIMEOUT,
            self.client()
                .sadd::<i64, _, _>(self.keys.instance_apps(instance), app.as_str()),
        )
        .await
        .map_err(|_| BackendError("Redis command timed out".into()))?
        .map_err(backend)?;
        self.announced_apps.lock().insert(app.clone());
        Ok(())
    }

    /// Runs the join script under `instance`.
    async fn join(
        &self,
        instance: &str,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        member: Option<&PresenceMember>,
        max_members: usize,
    ) -> Result<Vec<Value>, BackendError> {
        self.announce_app(app, instance).await?;
        let (user, info) = match member {
            Some(m) => (
                m.user_id.to_string(),
                m.user_info.as_deref().unwrap_or("").to_owned(),
            ),
            None => (String::new(), String::new()),
        };
        // A member's arrival is published by the script itself, atomically with the change,
        // unless the fan-out is another backend's (then by `announce_member`, after it).
        let (relay, envelope) = match member.filter(|_| self.scripts_announce()) {
            Some(m) => {
                let arrival = ChannelEvent {
                    app: app.clone(),
                    channel: channel.clone(),
                    except: Some(socket),
                    message: ChannelMessage::MemberAdded(m.clone()),
                };
                (
                    self.keys.events(app, channel),
                    envelope::encode(&self.origin, &arrival)?,
                )
            }
            _ => (String::new(), Bytes::new()),
        };
        let reply = self
            .eval(
                &self.scripts.join,
                vec![self.keys.app_base(app)],
                vec![
                    Value::from(channel.as_str()),
                    Value::from(socket.to_string()),
                    Value::from(instance),
                    Value::from(user),
                    Value::from(info),
                    Value::from(max_members.to_string()),
                    Value::from(format!("{}~", self.options.node_id)),
                    Value::from(relay),
                    Value::Bytes(envelope),
                    Value::from(self.publish_command()),
                ],
            )
            .await?;
        let reply = value::array(reply, "join")?;
        if matches!(reply.first(), Some(v) if value::int(v, "join")? == -2) {
            return Err(BackendError(format!(
                "socket id {socket} is in use by another node's connection"
            )));
        }
        if let Some(m) = member {
            if !self.scripts_announce() && value::int(&reply[0], "join")? == 1 {
                let version = value::count_at(&reply, JOIN_VERSION_AT, "join")?;
                let arrival = ChannelMessage::MemberAdded(m.clone());
                let event = ChannelEvent::new(app, channel, Some(socket), arrival);
                self.announce_member(&event, version).await;
            }
        }
        Ok(reply)
    }

    async fn leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<Vec<Value>, BackendError> {
        self.mirror
            .lock()
            .remove(&(app.clone(), channel.clone(), socket));
        let instance = self.instance.read().await;
        let header = self.departure_header(app)?;
        let reply = self
            .eval(
                &self.scripts.leave,
                vec![self.keys.app_base(app)],
                vec![
                    Value::from(channel.as_str()),
                    Value::from(socket.to_string()),
                    Value::from(instance.as_str()),
                    Value::from(self.relay_prefix(app)),
                    Value::Bytes(header),
                    Value::from(self.publish_command()),
                ],
            )
            .await;
        let reply = value::array(self.note_failure(reply)?, "leave")?;
        if !self.scripts_announce() && value::flag_at(&reply, 0, "leave")? {
            let user = value::string(reply.get(3).unwrap_or(&Value::Null), "leave")?;
            if let Ok(user_id) = UserId::parse(&user, ANY_NAME_LENGTH) {
                let version = value::count_at(&reply, LEAVE_VERSION_AT, "leave")?;
                let departure = ChannelMessage::MemberRemoved { user_id };
                let event = ChannelEvent::new(app, channel, None, departure);
                self.announce_member(&event, version).await;
            }
        }
        Ok(reply)
    }

    /// The start of this process's `member_removed` envelopes for `app`; the leave script
    /// completes it with the channel and the user (see `envelope`).
    fn departure_header(&self, app: &AppId) -> Result<Bytes, BackendError> {
        envelope::header(&self.origin, None, app).map(bytes::BytesMut::freeze)
    }

    /// How scripts publish: sharded pub/sub in Redis Cluster.
    fn publish_command(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// A failed change leaves Redis possibly out of step with this node: re-register soon.
    fn note_failure<T>(&self, r: Result<T, BackendError>) -> Result<T, BackendError> {
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }

    /// Sends an event to the other nodes listening to its channel.
    async fn publish(&self, event: &ChannelEvent) -> Result<(), BackendError> {
        let client = self.connected()?;
        let envelope = envelope::encode(&self.origin, event)?;
        let name = self.keys.events(&event.app, &event.channel);
        self.send(&client, name, envelope).await
    }

    /// Publishes one envelope on a pub/sub channel.
    async fn send(
        &self,
        client: &Client,
        name: String,
        envelope: Bytes,
    ) -> Result<(), BackendError> {
        let sent = if self.sharded {
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                client.spublish::<i64, _, _>(name, envelope),
            )
            .await
        } else {
            tokio::time::timeout(COMMAND_TIMEOUT, client.publish::<i64, _, _>(name, envelope)).await
        };
        sent.map_err(|_| BackendError("Redis publish timed out".into()))?
            .map_err(backend)?;
        Ok(())
    }

    /// Subscribes `subscriber` to a pub/sub channel; returns once Redis confirmed.
    async fn listen_to(
        &self,
        subscriber: &SubscriberClient,
        name: String,
    ) -> Result<(), BackendError> {
        let subscribed = if self.sharded {
            tokio::time::timeout(COMMAND_TIMEOUT, subscriber.ssubscribe(name)).await
        } else {
            tokio::time::timeout(COMMAND_TIMEOUT, subscriber.subscribe(name)).await
        };
        subscribed
            .map_err(|_| BackendError("Redis subscribe timed out".into()))?
            .map_err(backend)
    }

    fn members_from(&self, flat: Option<&Value>) -> Result<Vec<PresenceMember>, BackendError> {
        let Some(v) = flat else {
            return Ok(Vec::new());
        };
        let items = match v {
            Value::Array(items) => items,
            _ => return Err(value::bad("members")),
        };
        let mut out = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks_exact(2) {
            let id = value::string(&pair[0], "member id")?;
            let info = value::string(&pair[1], "member info")?;
            let Ok(user_id) = UserId::parse(&id, ANY_NAME_LENGTH) else {
                continue;
            };
            out.push(PresenceMember {
                user_id,
                user_info: (!info.is_empty()).then(|| Arc::from(info.as_str())),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Broker for RedisCluster {
    async fn publish(&self, event: &ChannelEvent) -> Result<(), BackendError> {
        self.inner.publish(event).await
    }

    async fn listen(&self, app: &AppId, channel: &ChannelName) -> Result<(), BackendError> {
        let inner = &self.inner;
        inner
            .listen_to(&inner.subscriber, inner.keys.events(app, channel))
            .await
    }

    async fn broadcast(&self, broadcast: &Broadcast) -> Result<(), BackendError> {
        let inner = &self.inner;
        let client = inner.connected()?;
        let envelope = envelope::encode_broadcast(&inner.origin, broadcast)?;
        inner.send(&client, inner.keys.broadcasts(), envelope).await
    }

    async fn announce(&self, event: &ChannelEvent, version: u64) -> Result<(), BackendError> {
        let inner = &self.inner;
        let client = inner.connected()?;
        let envelope = envelope::encode_announcement(&inner.origin, event, version)?;
        let name = inner.keys.events(&event.app, &event.channel);
        inner.send(&client, name, envelope).await
    }

    async fn unlisten(&self, app: &AppId, channel: &ChannelName) {
        let inner = &self.inner;
        let name = inner.keys.events(app, channel);
        let result = if inner.sharded {
            tokio::time::timeout(COMMAND_TIMEOUT, inner.subscriber.sunsubscribe(name.clone())).await
        } else {
            tokio::time::timeout(COMMAND_TIMEOUT, inner.subscriber.unsubscribe(name.clone())).await
        };
        if !matches!(result, Ok(Ok(()))) {
            tracing::debug!(channel = %name, "unsubscribe failed; extra traffic is ignored");
        }
    }

    fn check_receiving(&self) -> Result<(), BackendError> {
        // Subscribed or not, a disconnected subscriber receives nothing.
        if self.inner.subscriber.is_connected() {
            Ok(())
        } else {
            Err(BackendError("Redis is unreachable".into()))
        }
    }
}

#[async_trait]
impl ClusterState for RedisCluster {
    async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError> {
        let inner = &self.inner;
        let instance = inner.instance.read().await;
        let reply = inner.join(&instance, app, channel, socket, None, 0).await;
        let reply = inner.note_failure(reply)?;
        inner
            .mirror
            .lock()
            .insert((app.clone(), channel.clone(), socket), None);
        change_from(&reply, JOIN_VERSION_AT)
    }

    async fn unsubscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError> {
        let reply = self.inner.leave(app, channel, socket).await?;
        change_from(&reply, LEAVE_VERSION_AT)
    }

    async fn join_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        member: &PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoin, JoinError> {
        let inner = &self.inner;
        let instance = inner.instance.read().await;
        let reply = inner
            .join(&instance, app, channel, socket, Some(member), max_members)
            .await;
        let reply = inner.note_failure(reply)?;
        if value::int(reply.first().ok_or_else(|| value::bad("join"))?, "join")? < 0 {
            return Err(JoinError::MemberLimit { max: max_members });
        }
        inner
            .mirror
            .lock()
            .insert((app.clone(), channel.clone(), socket), Some(member.clone()));
        Ok(PresenceJoin {
            member_added: value::flag_at(&reply, 0, "join")?,
            change: change_from(&reply, JOIN_VERSION_AT)?,
            members: inner.members_from(reply.get(JOIN_VERSION_AT + 1))?,
        })
    }

    async fn leave_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        _user: &UserId,
    ) -> Result<PresenceLeave, BackendError> {
        let reply = self.inner.leave(app, channel, socket).await?;
        Ok(PresenceLeave {
            member_removed: value::flag_at(&reply, 0, "leave")?,
            change: change_from(&reply, LEAVE_VERSION_AT)?,
        })
    }

    async fn channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, ChannelStats)>, BackendError> {
        let inner = &self.inner;
        // By name: HSCAN may return a channel twice (when the hash grows meanwhile).
        let mut found = std::collections::BTreeMap::new();
        let mut cursor = "0".to_owned();
        loop {
            let reply = inner
                .eval(
                    &inner.scripts.channels,
                    vec![inner.keys.app_base(app)],
                    vec![
                        cursor,
                        prefix.to_owned(),
                        "1".into(),
                        CHANNELS_PAGE.to_string(),
                    ],
                )
                .await?;
            let mut reply = value::array(reply, "channels")?.into_iter();
            let (Some(next), Some(items)) = (reply.next(), reply.next()) else {
                return Err(BackendError("channels: a short reply".into()));
            };
            let items = value::array(items, "channels")?;
            for row in items.chunks_exact(3) {
                let name = value::string(&row[0], "channel")?;
                let Ok(channel) = ChannelName::parse(&name, ANY_NAME_LENGTH) else {
                    continue;
                };
                let stats = ChannelStats {
                    subscription_count: value::count_at(row, 1, "channels")?,
                    user_count: value::count_at(row, 2, "channels")?,
                };
                found.insert(channel, stats);
            }
            cursor = value::string(&next, "cursor")?;
            if cursor == "0" {
                return Ok(found.into_iter().collect());
            }
        }
    }

    async fn channel(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<ChannelStats, BackendError> {
        let inner = &self.inner;
        let reply = inner
            .eval(
                &inner.scripts.channel,
                vec![inner.keys.app_base(app)],
                vec![channel.to_string()],
            )
            .await?;
        let items = value::array(reply, "channel")?;
        Ok(ChannelStats {
            subscription_count: value::count_at(&items, 0, "channel")?,
            user_count: value::count_at(&items, 1, "channel")?,
        })
    }

    fn health(&self) -> Result<(), BackendError> {
        quotas::health(&self.inner)
    }

    fn shares_counters(&self) -> bool {
        true
    }

    async fn take_connection(&self, app: &AppId, limit: u64) -> Result<bool, BackendError> {
        quotas::take_connection(&self.inner, app, limit).await
    }

    async fn release_connection(&self, app: &AppId) {
        quotas::release_connection(&self.inner, app).await
    }

    async fn take_rate(
        &self,
        app: &AppId,
        counter: RateCounter,
        window: u64,
        need: u32,
        want: u32,
        limit: u32,
    ) -> Result<u32, BackendError> {
        quotas::take_rate(&self.inner, app, counter, window, (need, want, limit)).await
    }

    async fn shutdown(&self) {
        registry::deregister(&self.inner).await;
    }

    /// One PING on the command connection, timed; up when it answered and the subscriber
    /// connection is connected too.
    async fn check_health(&self) -> BackendHealth {
        let inner = &self.inner;
        let started = std::time::Instant::now();
        let ping = tokio::time::timeout(COMMAND_TIMEOUT, inner.client().ping::<Value>(None)).await;
        let answered = matches!(ping, Ok(Ok(_)));
        let round_trip = answered.then(|| started.elapsed());
        let reconnects = CONNECTIONS
            .iter()
            .zip(&inner.reconnects)
            .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
            .collect();
        // State alone needs no subscriber connection.
        let receiving = !inner.jobs.fans_out() || inner.subscriber.is_connected();
        BackendHealth {
            backend: "redis",
            up: answered && receiving,
            round_trip,
            reconnects,
        }
    }

    async fn cache_put(
        &self,
        app: &AppId,
        channel: &ChannelName,
        name: &EventName,
        data: &Arc<str>,
        ttl: Duration,
    ) -> Result<u64, BackendError> {
        features::cache_put(&self.inner, app, channel, name, data, ttl).await
    }

    async fn cache_get(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<CachedEvent>, BackendError> {
        features::cache_get(&self.inner, app, channel).await
    }

    async fn subscription_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<CountVersion, BackendError> {
        features::subscription_count(&self.inner, app, channel).await
    }

    async fn claim_count_window(
        &self,
        app: &AppId,
        channel: &ChannelName,
        window: Duration,
    ) -> Result<bool, BackendError> {
        features::claim_count_window(&self.inner, app, channel, window).await
    }

    async fn sign_in(
        &self,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError> {
        let inner = &self.inner;
        let instance = inner.instance.read().await;
        let online = inner.sign_in(&instance, app, socket, user).await;
        let online = inner.note_failure(online)?;
        inner
            .signed_in
            .lock()
            .insert((app.clone(), socket), user.clone());
        Ok(online)
    }

    async fn sign_out(
        &self,
        app: &AppId,
        socket: SocketId,
        _user: &UserId,
    ) -> Result<Option<u64>, BackendError> {
        self.inner.sign_out(app, socket).await
    }

    async fn online(&self, app: &AppId, users: &[UserId]) -> Result<Vec<UserStatus>, BackendError> {
        self.inner.online(app, users).await
    }

    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<PresenceMember>, BackendError> {
        let inner = &self.inner;
        let client = inner.connected()?;
        let key = format!("{}:i:{}", inner.keys.app_base(app), channel);
        let reply: Value = tokio::time::timeout(COMMAND_TIMEOUT, client.hgetall(key))
            .await
            .map_err(|_| BackendError("Redis command timed out".into()))?
            .map_err(backend)?;
        let flat = match reply {
            Value::Map(map) => {
                let mut flat = Vec::new();
                for (k, v) in map.inner() {
                    flat.push(Value::String(k.as_str().unwrap_or_default().into()));
                    flat.push(v);
                }
                Value::Array(flat)
            }
            other => other,
        };
        inner.members_from(Some(&flat))
    }
}

/// Hands relayed events to this node, in the order Redis delivers them.
fn spawn_dispatcher(inner: Arc<Inner>) {
    let mut rx = inner.subscriber.message_rx();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(msg) => dispatch(&inner, &msg.channel, &msg.value),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(
                        dropped = n,
                        "relay dispatcher fell behind; messages were dropped"
                    );
                    inner
                        .sink
                        .resync("the relay dispatcher fell behind and dropped messages");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

fn dispatch(inner: &Inner, name: &str, value: &Value) {
    let bytes: &[u8] = match value {
        Value::Bytes(b) => b,
        Value::String(s) => s.as_bytes(),
        _ => return,
    };
    let Some(envelope) = envelope::decode(bytes) else {
        tracing::warn!(channel = %name, "ignoring a malformed relayed message");
        return;
    };
    // INVARIANT(others-then-here): the publisher delivered to its own subscribers already.
    if envelope.origin != inner.origin {
        match &envelope.relayed {
            Relayed::Event(event) => inner.sink.deliver(event),
            Relayed::Announcement(event, version) => {
                inner.sink.deliver_announcement(event, *version)
            }
            Relayed::Broadcast(broadcast) => inner.sink.deliver_broadcast(broadcast),
        }
    }
}

/// Every node hears broadcasts for its whole life (fred resubscribes after a reconnect; what
/// is broadcast meanwhile is lost: broadcasts are at most once).
async fn listen_to_broadcasts(inner: &Arc<Inner>) -> Result<(), BackendError> {
    inner.broadcasts.manage_subscriptions();
    let mut rx = inner.broadcasts.message_rx();
    inner
        .listen_to(&inner.broadcasts, inner.keys.broadcasts())
        .await?;
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(msg) => match weak.upgrade() {
                    Some(inner) => dispatch(&inner, &msg.channel, &msg.value),
                    None => return,
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(dropped = n, "broadcasts were dropped");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(())
}

/// Logs the command client's connection errors, and marks the state for re-registration
/// on each reconnection: writes may have been lost (a failover to a lagging replica, a
/// restart).
fn watch_client(inner: &Arc<Inner>, client: &Client) {
    let mut errors = client.error_rx();
    tokio::spawn(async move {
        while let Ok((e, server)) = errors.recv().await {
            tracing::warn!(error = %e, server = ?server.map(|s| s.to_string()), "Redis connection error; reconnecting");
        }
    });
    let mut reconnects = client.reconnect_rx();
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        while let Ok(server) = reconnects.recv().await {
            tracing::info!(server = %server, "connected to Redis");
            // Writes may have been lost (a failover to a lagging replica, a restart): record
            // this node's state again.
            match weak.upgrade() {
                Some(inner) => {
                    inner.reconnects[0].fetch_add(1, Ordering::Relaxed);
                    inner.dirty.store(true, Ordering::Release)
                }
                None => return,
            }
        }
    });
}

/// Replaces the command client with a new one, made and connected afresh (a fresh slot map
/// too), and lets the old one go; the state is then recorded again (`dirty`). For a client
/// that takes commands and answers none while it says it is connected, which a forced
/// reconnection does not mend (see `registry::heartbeats`).
async fn rebuild_client(inner: &Arc<Inner>) -> Result<(), BackendError> {
    let client = inner.builder.build().map_err(backend)?;
    tokio::time::timeout(COMMAND_TIMEOUT * 3, client.init())
        .await
        .map_err(|_| BackendError("a new Redis client could not connect: timed out".into()))?
        .map_err(backend)?;
    watch_client(inner, &client);
    let old = inner.client.swap(Arc::new(client));
    inner.dirty.store(true, Ordering::Release);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, old.quit()).await;
    });
    Ok(())
}

/// Connection changes are worth a log line each: they explain any 503 in between.
fn spawn_connection_logs(inner: &Arc<Inner>) {
    watch_client(inner, &inner.client());
    // A new subscriber connection missed what was published while it was away, and has
    // its subscriptions back only once fred resubscribed them, which can fail.
    let mut resubscribed = inner.subscriber.reconnect_rx();
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        while let Ok(server) = resubscribed.recv().await {
            tracing::warn!(server = %server, "Redis subscriber reconnected");
            match weak.upgrade() {
                // State alone receives nothing on it: no event was lost.
                Some(inner) if !inner.jobs.fans_out() => {}
                Some(inner) if !inner.stopping.load(Ordering::Acquire) => {
                    inner.reconnects[1].fetch_add(1, Ordering::Relaxed);
                    inner.sink.resync("the Redis subscriber reconnected")
                }
                _ => return,
            }
        }
    });
    let mut broadcasts = inner.broadcasts.reconnect_rx();
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        while broadcasts.recv().await.is_ok() {
            match weak.upgrade() {
                Some(inner) => inner.reconnects[2].fetch_add(1, Ordering::Relaxed),
                None => return,
            };
        }
    });
}
