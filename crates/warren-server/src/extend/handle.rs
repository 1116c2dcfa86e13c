//! [`ServerHandle`]: what extension code may do to the whole server, from any node.

use std::sync::Arc;

use bytes::Bytes;
use warren_protocol::{AppId, ChannelName, EventName};

use super::broadcast::BroadcastHandlers;
use crate::app::{App, AppRegistry};
use crate::cluster::{BackendError, Broadcast, BroadcastType, ChannelEvent, ChannelMessage};
use crate::node::Node;

/// Why an extension's request to the server failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExtensionError {
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Publishes events and sends broadcasts on behalf of extension code. Cheap to clone; the
/// server it belongs to stops when the last handle and the server itself are gone.
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    node: Arc<Node>,
    apps: Arc<dyn AppRegistry>,
    node_id: String,
    broadcasts: Option<Arc<BroadcastHandlers>>,
}

impl ServerHandle {
    pub(crate) fn new(
        node: Arc<Node>,
        apps: Arc<dyn AppRegistry>,
        node_id: String,
        broadcasts: Option<Arc<BroadcastHandlers>>,
    ) -> Self {
        let inner = Arc::new(Inner {
            node,
            apps,
            node_id,
            broadcasts,
        });
        if let Some(handlers) = &inner.broadcasts {
            // Weak: the handlers live as long as the node, which must not keep itself alive.
            handlers.attach(Arc::downgrade(&inner));
        }
        Self { inner }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Looks an app up by id.
    pub fn app(&self, id: &str) -> Option<Arc<App>> {
        self.inner.apps.by_id(id)
    }

    /// Publishes `event` with `data` (forwarded as it is, as the HTTP API does) to every
    /// subscriber of `channel` of app `app`, on every node.
    pub async fn publish(
        &self,
        app: &str,
        channel: &str,
        event: &str,
        data: &str,
    ) -> Result<(), ExtensionError> {
        let app = self
            .app(app)
            .ok_or_else(|| ExtensionError::UnknownApp(app.chars().take(100).collect()))?;
        publish(&self.inner.node, &app, channel, event, data, None).await
    }

    /// Sends a custom broadcast: the handler registered for `kind` runs on every node of the
    /// cluster, this one included (here first, before this returns, once the cluster backend
    /// took it). A node without a handler for `kind` ignores it.
    pub async fn broadcast(
        &self,
        kind: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), ExtensionError> {
        let kind = BroadcastType::parse(kind).map_err(|e| ExtensionError::Invalid {
            what: "broadcast type",
            reason: e.to_string(),
        })?;
        let broadcast = Broadcast {
            kind,
            payload: payload.into(),
        };
        self.inner.node.broadcast(&broadcast).await?;
        if let Some(handlers) = &self.inner.broadcasts {
            handlers.run(&broadcast, self);
        }
        Ok(())
    }
}

/// Publishes one event on behalf of extension code: names are checked against the app's
/// limits as a client's or the API's would be.
pub(crate) async fn publish(
    node: &Node,
    app: &App,
    channel: &str,
    event: &str,
    data: &str,
    except: Option<warren_protocol::SocketId>,
) -> Result<(), ExtensionError> {
    let invalid = |what| {
        move |e: warren_protocol::NameError| ExtensionError::Invalid {
            what,
            reason: e.to_string(),
        }
    };
    let channel = ChannelName::parse(channel, app.max_channel_name_length)
        .map_err(invalid("channel name"))?;
    let name = EventName::parse(event).map_err(invalid("event name"))?;
    if data.len() > app.max_event_payload_bytes {
        return Err(ExtensionError::Invalid {
            what: "event data",
            reason: format!("larger than {} bytes", app.max_event_payload_bytes),
        });
    }
    let event = ChannelEvent {
        app: AppId::clone(&app.id),
        channel,
        except,
        message: ChannelMessage::Event {
            name,
            data: Arc::from(data),
            user_id: None,
        },
    };
    node.trigger(&event, app.cache_ttl).await?;
    Ok(())
}
