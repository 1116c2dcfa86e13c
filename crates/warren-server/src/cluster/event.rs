//! What the seams carry: one message for the subscribers of one channel, as fields.
//!
//! Nothing here is a WebSocket frame or Pusher JSON. The node that delivers an event builds
//! the frame once, from these fields, with `warren_protocol::outbound`; so backends never
//! depend on the WebSocket layer, and a frame is built exactly once per event per node.

use std::sync::Arc;

use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};

/// A message for every subscriber of `channel` (of `app`) on every node, except `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEvent {
    pub app: AppId,
    pub channel: ChannelName,
    /// The connection that must not receive it: the publisher's own, or the joining member.
    pub except: Option<SocketId>,
    pub message: ChannelMessage,
}

impl ChannelEvent {
    /// `message` for the subscribers of `channel` (of `app`), except `except`.
    pub fn new(
        app: &AppId,
        channel: &ChannelName,
        except: Option<SocketId>,
        message: ChannelMessage,
    ) -> Self {
        ChannelEvent {
            app: app.clone(),
            channel: channel.clone(),
            except,
            message,
        }
    }
}

/// The kinds of message a channel's subscribers receive from other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMessage {
    /// An event published through the HTTP API or sent by a client. `data` is forwarded as it
    /// is; `user_id` is the sender of a client event on a presence channel.
    Event {
        name: EventName,
        data: Arc<str>,
        user_id: Option<UserId>,
    },
    /// `pusher_internal:member_added`: the user's first connection joined the channel.
    MemberAdded(PresenceMember),
    /// `pusher_internal:member_removed`: the user's last connection left the channel.
    MemberRemoved { user_id: UserId },
    /// An event published through the HTTP API on a cache channel, after it was cached.
    /// `seq` is the cache's number for it: a subscriber that was handed this event (or a
    /// later one) from the cache does not receive it again live (see `hub`).
    CacheEvent {
        name: EventName,
        data: Arc<str>,
        seq: u64,
    },
    /// `pusher_internal:subscription_count`. `version` orders the counts of one channel: a
    /// node delivers a count only when it is newer than the last one it delivered, so counts
    /// published by different nodes cannot leave an older one showing.
    SubscriptionCount { count: u64, version: u64 },
    /// About the user whose `#server-to-user-<id>` channel this is: not for the channel's
    /// subscribers, but for the node's connections signed in as (or watching) that user.
    User(UserNotice),
}

/// What a node does for one user's connections, when told on the user's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNotice {
    /// The user went online (first signed-in connection anywhere opened) or offline (last one
    /// closed): tell their watchers.
    Status(UserStatus),
    /// Close every connection signed in as `user` (`terminate_connections`).
    Terminate,
}

/// Whether a user is online, and the version of the change that made it so.
///
/// INVARIANT(user-status-versioned): the version is decided in the same atomic step as the
/// transition, and grows with every transition of the user; notices reach a node by
/// different paths (its own, other nodes' through the backend) and may arrive out of order,
/// so a node applies one only when it is newer than what it last applied for that watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStatus {
    pub online: bool,
    pub version: u64,
}
