//! The seams between one node and the cluster.
//!
//! * [`Broker`] moves [`ChannelEvent`]s between nodes: events, not frames. It also tells the
//!   backend which channels this node wants to receive, so a node only gets the traffic it
//!   delivers.
//! * [`ClusterState`] holds the shared truth: subscription counts, presence members, the
//!   cache channels' last events, which users are signed in. Every mutation reports the transition it caused (occupied, member
//!   added, user online, ...) exactly once cluster-wide, so presence and watchlist events (and,
//!   later, webhooks) are never doubled or lost.
//! * [`EventSink`] is the way back in: a backend hands it what reaches this node from
//!   elsewhere (relayed events, presence changes found by cleaning up a dead node).
//! * [`Broadcast`]s are the embedding program's own messages for every node
//!   ([`Broker::broadcast`], [`EventSink::deliver_broadcast`]); a server without broadcast
//!   handlers ignores them.
//!
//! Only `crate::node::Node` calls the seams; the order in which it calls them is where the
//! protocol's guarantees come from, and it is written down there. Backends never see a
//! WebSocket frame or Pusher JSON. The single-node implementations live in [`local`], the
//! Redis ones in [`redis`], the NATS ones in [`nats`]; `tests/conformance.rs` runs the same
//! cases against each. [`ordering`] orders presence announcements for a backend whose
//! announcements can overtake each other.

mod broadcast;
pub(crate) mod envelope;
mod event;
pub mod local;
pub mod nats;
pub mod ordering;
pub mod redis;
pub mod split;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};

pub use broadcast::{BadBroadcastType, Broadcast, BroadcastType, MAX_BROADCAST_TYPE};
pub use event::{ChannelEvent, ChannelMessage, UserNotice, UserStatus};

/// A failure of the cluster backend (never of the single-node one).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cluster backend unavailable: {0}")]
pub struct BackendError(pub String);

/// Moves events to the other nodes that have subscribers for a channel.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sends `event` to every *other* node listening to its channel. Delivery on this node is
    /// the caller's: it happens once, right after, whatever the backend.
    async fn publish(&self, event: &ChannelEvent) -> Result<(), BackendError>;

    /// Starts receiving the channel's events from other nodes; returns only once they are
    /// sure to arrive. Called once per channel until [`Broker::unlisten`], never concurrently
    /// for one channel.
    async fn listen(&self, app: &AppId, channel: &ChannelName) -> Result<(), BackendError>;

    /// Stops receiving the channel's events (best effort: stray ones are harmless).
    async fn unlisten(&self, app: &AppId, channel: &ChannelName);

    /// Whether events of listened channels can arrive right now; a new subscriber is refused
    /// while they cannot, rather than told it is subscribed to a channel it would not hear.
    fn check_receiving(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Sends a custom broadcast to every *other* node, listening or not; as with
    /// [`Broker::publish`], this node's handlers are the caller's. The default reaches no
    /// other node, which is right for a backend of one node.
    async fn broadcast(&self, _broadcast: &Broadcast) -> Result<(), BackendError> {
        Ok(())
    }

    /// Sends a presence announcement (`member_added` / `member_removed`) that the cluster
    /// state decided at `version` to every *other* node listening to its channel; they apply
    /// it only when it is newer than the last they applied for that member
    /// ([`EventSink::deliver_announcement`]). For a state backend whose announcements do not
    /// travel in the same atomic step as the change (another backend's fan-out). The default
    /// publishes it without its version, which is right for a backend of one node only.
    async fn announce(&self, event: &ChannelEvent, _version: u64) -> Result<(), BackendError> {
        self.publish(event).await
    }
}

/// Where a backend hands what reaches this node from elsewhere, for delivery to its local
/// subscribers.
pub trait EventSink: Send + Sync + 'static {
    fn deliver(&self, event: &ChannelEvent);

    /// A presence announcement the cluster state decided at `version` (see
    /// [`Broker::announce`]): delivered only when newer than the last one applied here for
    /// its member (INVARIANT(presence-ordered)). The default delivers it as it comes.
    fn deliver_announcement(&self, event: &ChannelEvent, _version: u64) {
        self.deliver(event);
    }

    /// Events of any listened channel may have been lost (`why`: a reconnect of the
    /// subscription, a relay that fell behind). The node forgets what it listens to, so every
    /// channel is listened to again (and confirmed) before anyone is told it is subscribed,
    /// and closes (4200) the connections that may have missed events: they reconnect and
    /// subscribe again at once.
    fn resync(&self, why: &str);

    /// A custom broadcast from another node. Ignored unless the server has broadcast handlers.
    fn deliver_broadcast(&self, _broadcast: &Broadcast) {}

    /// A transition the backend decided itself, cleaning up after a dead node: reported to
    /// the one node that did the cleanup (for its webhooks), besides any announcement.
    fn reaped(&self, _app: &AppId, _channel: &ChannelName, _transition: Reaped) {}
}

/// What cleaning up after a dead node did to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaped {
    Vacated,
    MemberRemoved(UserId),
}

/// What a node uses a backend for: both jobs, or one of them while another backend does the
/// other (`[cluster.fanout]`, `[cluster.state]`; see [`split`]).
#[derive(Clone)]
pub enum Jobs {
    /// Fan-out and state; the state's announcements travel on this backend's own fan-out.
    Both,
    /// Fan-out only: no state, no registry of nodes.
    Fanout,
    /// State only: no subscriptions; presence and user announcements go out through
    /// `announcer`, the other backend's fan-out, carrying their versions.
    State { announcer: Arc<dyn Broker> },
}

impl Jobs {
    pub fn fans_out(&self) -> bool {
        !matches!(self, Jobs::State { .. })
    }

    pub fn keeps_state(&self) -> bool {
        !matches!(self, Jobs::Fanout)
    }

    /// The other backend's fan-out, when announcements go there.
    pub fn announcer(&self) -> Option<&Arc<dyn Broker>> {
        match self {
            Jobs::State { announcer } => Some(announcer),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Jobs::Both => "Both",
            Jobs::Fanout => "Fanout",
            Jobs::State { .. } => "State",
        })
    }
}

/// Both seams of one node, as a backend connected them.
pub struct Seams {
    pub broker: Arc<dyn Broker>,
    pub state: Arc<dyn ClusterState>,
}

/// A cluster backend, ready to connect a node: what `Server::builder(..).cluster(..)` takes to
/// run on a backend of the embedding program's own.
#[async_trait]
pub trait ClusterBackend: Send + Sync + 'static {
    /// Connects this node; events from other nodes go to `sink` from then on.
    async fn connect(&self, sink: Arc<dyn EventSink>) -> Result<Seams, BackendError>;
}

/// How a subscription changed a channel, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionChange {
    /// This subscription made the channel occupied (or, on leave, vacated) cluster-wide.
    pub transition: bool,
    /// Subscriptions to the channel cluster-wide after the change.
    pub subscription_count: u64,
    /// Orders the changes of one channel: each change that counts gets a larger one than the
    /// change before it (see [`ChannelMessage::SubscriptionCount`]).
    pub version: u64,
}

/// A channel's subscription count now, and the version of the change that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountVersion {
    pub subscription_count: u64,
    pub version: u64,
}

/// The event a cache channel keeps: the last one published to it through the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEvent {
    pub name: EventName,
    pub data: Arc<str>,
    /// Larger for every event cached on the channel, whichever node cached it (see
    /// [`ChannelMessage::CacheEvent`]).
    pub seq: u64,
    /// How much longer it is kept.
    pub ttl: Duration,
}

/// The result of joining a presence channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceJoin {
    /// The user had no other connection in the channel anywhere: `member_added`. The backend
    /// has told the other nodes (in the same atomic step as the change, so announcements of
    /// one channel keep their order); the caller delivers it to this node's subscribers.
    pub member_added: bool,
    pub change: SubscriptionChange,
    /// Every member after the join, the joining one included, one entry per user.
    pub members: Vec<PresenceMember>,
}

/// The result of leaving a presence channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLeave {
    /// That was the user's last connection in the channel anywhere: `member_removed`, told
    /// to the other nodes as [`PresenceJoin::member_added`] is.
    pub member_removed: bool,
    pub change: SubscriptionChange,
}

/// Why a presence join was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JoinError {
    #[error("presence channel is full: at most {max} members")]
    MemberLimit { max: usize },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Cluster-wide facts about one channel, for the HTTP API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub subscription_count: u64,
    /// Distinct presence members (0 for other channels).
    pub user_count: u64,
}

/// Shared channel and presence state. Each socket's contribution is recorded under its id, so
/// a node can withdraw exactly what its connections added.
#[async_trait]
pub trait ClusterState: Send + Sync + 'static {
    async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError>;

    async fn unsubscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError>;

    /// Adds `socket` as a connection of `member` to a presence channel, unless that would make
    /// a new member beyond `max_members`.
    async fn join_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        member: &PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoin, JoinError>;

    async fn leave_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        user: &UserId,
    ) -> Result<PresenceLeave, BackendError>;

    /// Occupied channels of an app whose names start with `prefix`, with their stats.
    async fn channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, ChannelStats)>, BackendError>;

    async fn channel(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<ChannelStats, BackendError>;

    /// The members of a presence channel, one entry per user.
    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<PresenceMember>, BackendError>;

    /// Records `socket` as signed in as `user`. Returns the version of the user's going online
    /// when that made the user online (their first signed-in connection anywhere). The backend
    /// has then told the other nodes ([`UserNotice::Status`] on the user's channel, in the same
    /// atomic step as the change); the caller tells this node's watchers.
    async fn sign_in(
        &self,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError>;

    /// Forgets a signed-in socket. Returns the version of the user's going offline when it was
    /// their last signed-in connection anywhere, announced as [`ClusterState::sign_in`] is.
    async fn sign_out(
        &self,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError>;

    /// Whether each of `users` is online (signed in on at least one connection anywhere), each
    /// with a version no older than the user's last transition and older than their next
    /// one: a notice about an earlier change must not override this state.
    async fn online(&self, app: &AppId, users: &[UserId]) -> Result<Vec<UserStatus>, BackendError>;

    /// Keeps `name` and `data` as the cache channel's last event for `ttl`, replacing the one
    /// kept before; returns its sequence number, larger than any the channel had.
    async fn cache_put(
        &self,
        app: &AppId,
        channel: &ChannelName,
        name: &EventName,
        data: &Arc<str>,
        ttl: Duration,
    ) -> Result<u64, BackendError>;

    /// The cache channel's last event, unless it expired or there was none.
    async fn cache_get(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<CachedEvent>, BackendError>;

    /// The channel's subscription count now, with the version of the last change.
    async fn subscription_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<CountVersion, BackendError>;

    /// Opens the channel's throttling window of subscription counts for `window`, unless one
    /// is open: true for exactly one caller cluster-wide per window.
    async fn claim_count_window(
        &self,
        app: &AppId,
        channel: &ChannelName,
        window: Duration,
    ) -> Result<bool, BackendError>;

    /// Called once the node's connections have all left: withdraw the node itself.
    async fn shutdown(&self) {}

    /// Whether the backend can serve this node now, judged from what the node already knows
    /// (no round trip: readiness probes ask it). A backend of one node always can.
    fn health(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Whether the backend shares connection and rate counters between nodes
    /// ([`ClusterState::take_connection`], [`ClusterState::take_rate`]). When it does not
    /// (one node), the node counts alone and never calls them.
    fn shares_counters(&self) -> bool {
        false
    }

    /// Takes one of the app's `limit` connections, cluster-wide; false when all are taken.
    /// Each taken connection is given back with [`ClusterState::release_connection`], and a
    /// dead node's are given back by its cleanup.
    async fn take_connection(&self, _app: &AppId, _limit: u64) -> Result<bool, BackendError> {
        Ok(true)
    }

    /// Gives back a connection taken with [`ClusterState::take_connection`].
    async fn release_connection(&self, _app: &AppId) {}

    /// Takes at least `need` and at most `want` of the `limit` units of the app's `counter`
    /// in the one-second `window` (seconds since the Unix epoch), cluster-wide. Returns how
    /// many were taken: 0 when fewer than `need` are left.
    async fn take_rate(
        &self,
        _app: &AppId,
        _counter: RateCounter,
        _window: u64,
        _need: u32,
        want: u32,
        _limit: u32,
    ) -> Result<u32, BackendError> {
        // Never called when `shares_counters` is false; were it, it would take what it asks.
        Ok(want)
    }

    /// How the backend's connections are doing, checked now (for metrics). A backend in
    /// this process is always up.
    async fn check_health(&self) -> BackendHealth {
        BackendHealth {
            backend: "local",
            up: true,
            round_trip: None,
            reconnects: Vec::new(),
        }
    }
}

/// The per-app rates counted per second window (`apps[].api_request_rate_per_sec`,
/// `apps[].api_event_rate_per_sec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateCounter {
    ApiRequests,
    ApiEvents,
}

impl RateCounter {
    /// Its short name in keys.
    pub fn as_str(self) -> &'static str {
        match self {
            RateCounter::ApiRequests => "rq",
            RateCounter::ApiEvents => "ev",
        }
    }
}

/// A cluster backend's health as the metrics report it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendHealth {
    /// The backend's name (`local`, `redis`, `nats`).
    pub backend: &'static str,
    /// It answered the check.
    pub up: bool,
    /// How long the check's round trip took, for a backend across the network.
    pub round_trip: Option<std::time::Duration>,
    /// Reconnections since start, per connection (a fixed set of names).
    pub reconnects: Vec<(&'static str, u64)>,
}
