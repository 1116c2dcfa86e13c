//! The seams between one node and the cluster (DESIGN.md, "Seams").
//!
//! * [`Broker`] moves frames: publishing to a channel reaches its subscribers on every node.
//! * [`ClusterState`] holds the shared truth: subscription counts, presence members. Every
//!   mutation reports the transition it caused (occupied, member added, ...) exactly once
//!   cluster-wide, so presence events (and, later, webhooks) are never doubled or lost.
//!
//! Connection and API code talk only to these traits. The single-node implementations live in
//! [`local`]; a Redis backend implements the same traits for a cluster.

pub mod local;
pub mod redis;

use async_trait::async_trait;
use bytes::Bytes;
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, SocketId, UserId};

/// A failure of the cluster backend (never of the single-node one).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cluster backend unavailable: {0}")]
pub struct BackendError(pub String);

/// Fans frames out to every node that has subscribers for a channel.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Delivers a WebSocket text frame (built once, see `ws::frame::text`) to every subscriber
    /// of `channel` on every node, except the connection `except`.
    async fn publish(
        &self,
        app: &AppId,
        channel: &ChannelName,
        frame: Bytes,
        except: Option<SocketId>,
    ) -> Result<(), BackendError>;

    /// Called on every local join; returns once this node is sure to receive the channel's
    /// cluster traffic (only then may `subscription_succeeded` be sent).
    async fn ensure_listening(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<(), BackendError>;

    /// Called when the channel's last local subscriber left: the node may stop receiving it.
    async fn stop_listening(&self, app: &AppId, channel: &ChannelName);
}

/// How a subscription changed a channel, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionChange {
    /// This subscription made the channel occupied (or, on leave, vacated) cluster-wide.
    pub transition: bool,
    /// Subscriptions to the channel cluster-wide after the change.
    pub subscription_count: u64,
}

/// The result of joining a presence channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceJoin {
    /// The user had no other connection in the channel anywhere: announce `member_added`.
    pub member_added: bool,
    /// The backend already told the other nodes (in the same atomic step as the change, so
    /// announcements keep their order); the caller only delivers to this node's subscribers.
    pub announced: bool,
    pub change: SubscriptionChange,
    /// Every member after the join, the joining one included, one entry per user.
    pub members: Vec<PresenceMember>,
}

/// The result of leaving a presence channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLeave {
    /// That was the user's last connection in the channel anywhere: announce `member_removed`.
    pub member_removed: bool,
    /// As [`PresenceJoin::announced`].
    pub announced: bool,
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

    /// Called once the node's connections have all left: withdraw the node itself.
    async fn shutdown(&self) {}
}
