//! Fan-out for the NATS backend: the [`Broker`] (publish, listen with a confirmed
//! subscription, broadcasts), the receiving tasks and their dispatcher, and what the
//! connection's events mean for delivery.
//!
//! INVARIANT(others-then-here): this process's own envelopes are never delivered here (the
//! connection is `no_echo`, and the dispatcher skips its origin). INVARIANT(no-silent-loss):
//! a reconnect or a slow consumer resyncs the node. INVARIANT(presence-ordered): presence
//! announcements reach the sink with their version, which orders them
//! (`EventSink::deliver_announcement`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use warren_protocol::{AppId, ChannelName, UserId};

use super::{backend, Inner, NatsCluster, COMMAND_TIMEOUT, ORDER_HEADER};
use crate::cluster::envelope::{self, Relayed};
use crate::cluster::{BackendError, Broadcast, Broker, ChannelEvent, ChannelMessage};

#[async_trait]
impl Broker for NatsCluster {
    async fn publish(&self, event: &ChannelEvent) -> Result<(), BackendError> {
        let inner = &self.inner;
        let envelope = envelope::encode(&inner.origin, event)?;
        inner
            .send(
                inner.keys.events(&event.app, &event.channel),
                envelope,
                None,
            )
            .await
    }

    async fn listen(&self, app: &AppId, channel: &ChannelName) -> Result<(), BackendError> {
        let inner = &self.inner;
        if let Some(e) = inner.unavailable() {
            return Err(e);
        }
        let task = receive(inner, inner.keys.events(app, channel)).await?;
        if let Some(old) = inner
            .listening
            .lock()
            .insert((app.clone(), channel.clone()), task)
        {
            old.abort();
        }
        Ok(())
    }

    async fn unlisten(&self, app: &AppId, channel: &ChannelName) {
        let inner = &self.inner;
        // Dropping the subscriber (with its task) unsubscribes.
        if let Some(task) = inner
            .listening
            .lock()
            .remove(&(app.clone(), channel.clone()))
        {
            task.abort();
        }
    }

    fn check_receiving(&self) -> Result<(), BackendError> {
        match self.inner.unavailable() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn broadcast(&self, broadcast: &Broadcast) -> Result<(), BackendError> {
        let inner = &self.inner;
        let envelope = envelope::encode_broadcast(&inner.origin, broadcast)?;
        inner.send(inner.keys.broadcasts(), envelope, None).await
    }

    async fn announce(&self, event: &ChannelEvent, version: u64) -> Result<(), BackendError> {
        self.inner.announce_on_nats(event, version).await
    }
}

/// Hands one relayed message to this node.
fn dispatch(inner: &Inner, message: &async_nats::Message) {
    let Some(envelope) = envelope::decode(&message.payload) else {
        tracing::warn!(subject = %message.subject, "ignoring a malformed relayed message");
        return;
    };
    // INVARIANT(others-then-here): the publisher delivered to its own subscribers already
    // (the connection is `no_echo` too; this also drops another connection of ours).
    if envelope.origin == inner.origin {
        return;
    }
    match &envelope.relayed {
        Relayed::Broadcast(broadcast) => inner.sink.deliver_broadcast(broadcast),
        Relayed::Announcement(event, version) => inner.sink.deliver_announcement(event, *version),
        Relayed::Event(event) => {
            if member_of(&event.message).is_some() {
                let version = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(ORDER_HEADER))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                let Some(version) = version else {
                    tracing::warn!(channel = %event.channel, "presence announcement without a version");
                    return;
                };
                return inner.sink.deliver_announcement(event, version);
            }
            inner.sink.deliver(event);
        }
    }
}

/// Every node hears broadcasts for its whole life (async-nats subscribes again after a
/// reconnect; what is broadcast meanwhile is lost: broadcasts are at most once).
pub(super) async fn listen_to_broadcasts(inner: &Arc<Inner>) -> Result<(), BackendError> {
    let task = receive(inner, inner.keys.broadcasts()).await?;
    *inner.broadcasts.lock() = Some(task);
    Ok(())
}

/// Subscribes to `subject`, confirmed by the server, and dispatches what arrives on it until
/// the returned task is aborted (dropping the subscriber unsubscribes).
async fn receive(
    inner: &Arc<Inner>,
    subject: String,
) -> Result<tokio::task::JoinHandle<()>, BackendError> {
    let mut subscriber = tokio::time::timeout(COMMAND_TIMEOUT, inner.client.subscribe(subject))
        .await
        .map_err(|_| BackendError("NATS subscribe timed out".into()))?
        .map_err(backend)?;
    inner.confirm().await?;
    let weak = Arc::downgrade(inner);
    Ok(inner.runtime.spawn(async move {
        while let Some(message) = subscriber.next().await {
            match weak.upgrade() {
                Some(inner) => dispatch(&inner, &message),
                None => return,
            }
        }
    }))
}

/// The member a presence announcement is about.
pub(super) fn member_of(message: &ChannelMessage) -> Option<&UserId> {
    match message {
        ChannelMessage::MemberAdded(m) => Some(&m.user_id),
        ChannelMessage::MemberRemoved { user_id } => Some(user_id),
        _ => None,
    }
}

/// Connection events: a reconnect may have lost relayed events (resync) and state changes
/// (record it all again); a slow consumer lost events.
pub(super) fn spawn_connection_events(
    inner: &Arc<Inner>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        // The first `Connected` is the initial connection.
        let mut connected_before = false;
        while let Some(event) = events.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            match event {
                async_nats::Event::Connected if connected_before => {
                    tracing::warn!("NATS reconnected");
                    inner.reconnects.fetch_add(1, Ordering::Relaxed);
                    inner.dirty.store(true, Ordering::Release);
                    // State alone receives nothing here: no event was lost on the way.
                    if inner.jobs.fans_out() {
                        inner.sink.resync("the NATS connection was re-established");
                    }
                }
                async_nats::Event::Connected => connected_before = true,
                async_nats::Event::Disconnected => {
                    connected_before = true;
                    tracing::warn!("NATS connection lost; reconnecting");
                }
                async_nats::Event::SlowConsumer(sid) => {
                    tracing::error!(sid, "relayed messages were dropped (slow consumer)");
                    inner
                        .sink
                        .resync("the NATS subscription fell behind and dropped messages");
                }
                other => tracing::debug!(event = %other, "NATS event"),
            }
        }
    });
}
