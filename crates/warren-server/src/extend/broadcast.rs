//! Custom broadcast types: a handler per type name, run on every node that receives one.
//!
//! A broadcast sent through [`ServerHandle::broadcast`] goes to the cluster backend (the
//! other nodes) and then to this node's handler, as a channel event goes to other nodes and
//! then to local subscribers. Other nodes' broadcasts reach the handlers through the
//! backend's [`EventSink`]: the server wraps its sink in [`WithBroadcasts`] only when a
//! handler is registered, so a server without one delivers events exactly as before.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use super::handle::{Inner, ServerHandle};
use crate::cluster::{Broadcast, BroadcastType, ChannelEvent, EventSink, Reaped};
use warren_protocol::{AppId, ChannelName};

/// Runs for each broadcast of the type it was registered for, on every node.
///
/// It is called on the thread that receives cluster traffic (or on the sender's task, for
/// this node's own broadcasts), in the order broadcasts arrive: keep it short, and spawn a
/// task (`tokio::spawn`) for anything that waits, with a clone of the handle.
pub trait BroadcastHandler: Send + Sync + 'static {
    fn on_broadcast(&self, broadcast: &Broadcast, server: &ServerHandle);
}

impl<F> BroadcastHandler for F
where
    F: Fn(&Broadcast, &ServerHandle) + Send + Sync + 'static,
{
    fn on_broadcast(&self, broadcast: &Broadcast, server: &ServerHandle) {
        self(broadcast, server)
    }
}

/// The handlers of one server, by type.
pub(crate) struct BroadcastHandlers {
    handlers: HashMap<BroadcastType, Arc<dyn BroadcastHandler>>,
    /// Set once the server is composed (the sink exists before the node it serves).
    server: OnceLock<Weak<Inner>>,
}

impl BroadcastHandlers {
    pub(crate) fn new(handlers: HashMap<BroadcastType, Arc<dyn BroadcastHandler>>) -> Self {
        Self {
            handlers,
            server: OnceLock::new(),
        }
    }

    pub(crate) fn attach(&self, server: Weak<Inner>) {
        let _ = self.server.set(server);
    }

    /// Runs the handler of the broadcast's type, if there is one.
    pub(crate) fn run(&self, broadcast: &Broadcast, server: &ServerHandle) {
        match self.handlers.get(&broadcast.kind) {
            Some(handler) => handler.on_broadcast(broadcast, server),
            None => tracing::debug!(kind = %broadcast.kind, "no handler for this broadcast type"),
        }
    }

    /// A broadcast from another node.
    fn receive(&self, broadcast: &Broadcast) {
        let server = self.server.get().and_then(Weak::upgrade);
        match server {
            Some(inner) => self.run(broadcast, &ServerHandle::from_inner(inner)),
            None => tracing::debug!(kind = %broadcast.kind, "broadcast before start or after stop"),
        }
    }
}

/// A node's event sink, with its broadcast handlers: events go on to `events` unchanged.
pub(crate) struct WithBroadcasts<S> {
    pub events: Arc<S>,
    pub broadcasts: Arc<BroadcastHandlers>,
}

impl<S: EventSink> EventSink for WithBroadcasts<S> {
    fn deliver(&self, event: &ChannelEvent) {
        self.events.deliver(event);
    }

    fn deliver_announcement(&self, event: &ChannelEvent, version: u64) {
        self.events.deliver_announcement(event, version);
    }

    fn resync(&self, why: &str) {
        self.events.resync(why);
    }

    fn deliver_broadcast(&self, broadcast: &Broadcast) {
        self.broadcasts.receive(broadcast);
    }

    fn reaped(&self, app: &AppId, channel: &ChannelName, transition: Reaped) {
        self.events.reaped(app, channel, transition);
    }
}
