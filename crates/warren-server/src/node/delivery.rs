//! The last step on every node: an event becomes one frame, handed to each local subscriber.
//!
//! This is the only place an event turns into bytes for clients: the Pusher JSON comes from
//! `warren_protocol::outbound`, the WebSocket framing from `ws::frame`, and both happen once
//! per event per node, however many subscribers share the resulting `Bytes`. Notices about a
//! user (online, offline, terminate) are not for a channel's subscribers: they go to
//! [`LocalUsers`], which acts on the user's connections and watchers.
//!
//! With metrics on, each event carries its publish time (a [`Stamp`]: when it entered this
//! node through `Node::publish` / `Node::trigger`, or when it arrived from the backend) to
//! the outboxes, and is counted once per event with the number of subscribers it reached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use warren_protocol::{outbound, AppId, ChannelName, ErrorCode, UserId};

use super::listening::Listening;
use super::users::LocalUsers;
use crate::cluster::{ChannelEvent, ChannelMessage, EventSink, Reaped};
use crate::hub::Hub;
use crate::metrics::{Metrics, Stamp};
use crate::outbox::CloseReason;
use crate::webhooks::Webhooks;
use crate::ws::frame;

/// Delivers events to this node's subscribers; what backends hand relayed events to, and
/// tell when events may have been lost.
pub(crate) struct LocalDelivery {
    hub: Arc<Hub>,
    users: Arc<LocalUsers>,
    listening: Arc<Listening>,
    /// Times events may have been lost, and connections closed for it.
    resyncs: AtomicU64,
    resync_closes: AtomicU64,
    /// Set once the node is composed (the webhooks need the state the backend made).
    webhooks: OnceLock<Webhooks>,
    metrics: Metrics,
}

impl LocalDelivery {
    pub(crate) fn new(hub: Arc<Hub>, users: Arc<LocalUsers>, metrics: Metrics) -> Self {
        Self {
            hub,
            users,
            metrics,
            listening: Arc::default(),
            resyncs: AtomicU64::new(0),
            resync_closes: AtomicU64::new(0),
            webhooks: OnceLock::new(),
        }
    }

    /// What the node shares with it.
    pub(super) fn parts(&self) -> (Arc<Hub>, Arc<LocalUsers>, Arc<Listening>, Metrics) {
        (
            self.hub.clone(),
            self.users.clone(),
            self.listening.clone(),
            self.metrics.clone(),
        )
    }

    /// How often events may have been lost, and how many connections were closed for it.
    pub(crate) fn resync_counts(&self) -> (u64, u64) {
        (
            self.resyncs.load(Ordering::Relaxed),
            self.resync_closes.load(Ordering::Relaxed),
        )
    }

    /// Where transitions found by cleaning up a dead node are reported.
    pub(crate) fn report_to(&self, webhooks: Webhooks) {
        let _ = self.webhooks.set(webhooks);
    }

    /// Delivers a presence announcement decided at `version`, unless a newer one of the same
    /// member was delivered here already, whichever path either took: this node's own
    /// changes and other nodes' announcements pass the same filter.
    ///
    /// INVARIANT(presence-ordered): see `cluster::ordering`.
    pub(super) fn deliver_ordered(&self, event: &ChannelEvent, version: u64, published: Stamp) {
        let user = match &event.message {
            ChannelMessage::MemberAdded(m) => &m.user_id,
            ChannelMessage::MemberRemoved { user_id } => user_id,
            _ => return deliver(&self.hub, &self.users, &self.metrics, event, published),
        };
        let order = &self.listening.order;
        if order.admit(&event.app, &event.channel, user, version) {
            deliver(&self.hub, &self.users, &self.metrics, event, published);
        }
    }
}

impl EventSink for LocalDelivery {
    fn deliver(&self, event: &ChannelEvent) {
        // Relayed: published on another node; measured from its arrival here.
        let arrived = self.metrics.stamp();
        deliver(&self.hub, &self.users, &self.metrics, event, arrived);
    }

    fn deliver_announcement(&self, event: &ChannelEvent, version: u64) {
        self.deliver_ordered(event, version, self.metrics.stamp());
    }

    // INVARIANT(no-silent-loss): when events may have been lost, every channel is listened
    // to again with confirmation, and every connection that may have missed one is closed
    // with 4200 (it reconnects and subscribes again); the count and the reason are logged.
    fn resync(&self, why: &str) {
        self.listening.forget_all();
        let reason = CloseReason::new(
            ErrorCode::GenericReconnect,
            "Events may have been lost on the way to this node: reconnect and subscribe again",
        );
        let closed = self.hub.close_all(&reason) + self.users.close_all(&reason);
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        self.resync_closes
            .fetch_add(closed as u64, Ordering::Relaxed);
        tracing::warn!(
            why,
            closed,
            "events may have been lost; connections closed with 4200"
        );
    }

    fn reaped(&self, app: &AppId, channel: &ChannelName, transition: Reaped) {
        let Some(webhooks) = self.webhooks.get() else {
            return;
        };
        match transition {
            Reaped::Vacated => webhooks.unsubscribed(app, channel, true, None),
            Reaped::MemberRemoved(user) => webhooks.unsubscribed(app, channel, false, Some(&user)),
        }
    }
}

/// Frames the event once and hands it to the hub's subscribers of its channel. Cache events
/// and counts carry the numbers the hub orders them by (see `hub`). A user notice goes to the
/// user's connections and watchers instead. `published` is when the event entered this node
/// (none while metrics are off).
pub(super) fn deliver(
    hub: &Hub,
    users: &LocalUsers,
    metrics: &Metrics,
    event: &ChannelEvent,
    published: Stamp,
) {
    let Some(frame) = frame_of(event) else {
        return users.notify(event);
    };
    let (app, channel) = (&event.app, &event.channel);
    let reached = match event.message {
        ChannelMessage::CacheEvent { seq, .. } => {
            hub.deliver_cached(app, channel, &frame, event.except, seq, published)
        }
        ChannelMessage::SubscriptionCount { version, .. } => {
            hub.deliver_count(app, channel, &frame, version)
        }
        _ => hub.deliver_stamped(app, channel, &frame, event.except, published),
    };
    // Once per event, however many subscribers it reached.
    metrics.delivered(app, reached, frame.len());
}

/// The WebSocket frame subscribers of the event's channel receive; `None` for a user notice,
/// which has no frame of its own.
///
/// INVARIANT(frame-once): called once per event per node; every subscriber gets a clone of
/// the returned `Bytes` handle, never a copy or a re-serialization.
fn frame_of(event: &ChannelEvent) -> Option<Bytes> {
    let channel = event.channel.as_str();
    let json = match &event.message {
        ChannelMessage::Event {
            name,
            data,
            user_id,
        } => outbound::channel_event(
            name.as_str(),
            channel,
            data,
            user_id.as_ref().map(UserId::as_str),
        ),
        ChannelMessage::MemberAdded(member) => outbound::member_added(
            channel,
            member.user_id.as_str(),
            member.user_info.as_deref(),
        ),
        ChannelMessage::MemberRemoved { user_id } => {
            outbound::member_removed(channel, user_id.as_str())
        }
        ChannelMessage::User(_) => return None,
        ChannelMessage::CacheEvent { name, data, .. } => {
            outbound::channel_event(name.as_str(), channel, data, None)
        }
        ChannelMessage::SubscriptionCount { count, .. } => {
            outbound::subscription_count(channel, *count)
        }
    };
    Some(frame::text(json.as_bytes()))
}
