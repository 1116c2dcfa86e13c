//! [`ConnectionContext`]: one connection as inbound middlewares and custom event handlers see
//! it, and what they may do to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use warren_protocol::presence::PresenceMember;
use warren_protocol::{outbound, ChannelName, ErrorCode, SocketId, UserId};

use super::handle::{self, ExtensionError};
use crate::app::App;
use crate::node::Node;
use crate::outbox::{CloseReason, Outbox};
use crate::ws::frame;

/// One connection, borrowed from its session while an extension handles one of its messages.
pub struct ConnectionContext<'a> {
    pub(crate) app: &'a Arc<App>,
    pub(crate) socket_id: SocketId,
    pub(crate) user: Option<&'a UserId>,
    pub(crate) subscriptions: &'a HashMap<ChannelName, Option<PresenceMember>>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) node: &'a Arc<Node>,
    pub(crate) outbox: &'a Arc<Outbox>,
}

impl ConnectionContext<'_> {
    /// The app the connection belongs to.
    pub fn app(&self) -> &App {
        self.app
    }

    pub fn socket_id(&self) -> SocketId {
        self.socket_id
    }

    /// The user the connection signed in as (`pusher:signin`), if it did.
    pub fn user_id(&self) -> Option<&str> {
        self.user.map(UserId::as_str)
    }

    /// The channels the connection is subscribed to, in no particular order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> + '_ {
        self.subscriptions.keys().map(ChannelName::as_str)
    }

    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.subscriptions.contains_key(channel)
    }

    /// The connection's presence identity on `channel`, when it is a member there.
    pub fn presence_user(&self, channel: &str) -> Option<&str> {
        self.subscriptions
            .get(channel)?
            .as_ref()
            .map(|m| m.user_id.as_str())
    }

    /// The peer's address, as the TCP connection reports it (a proxy's, behind one).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// Sends `{"event": event, "channel": channel, "data": data}` to this connection only;
    /// `data` is sent as a JSON string, as Pusher sends every event's data.
    pub fn send(&self, event: &str, channel: Option<&str>, data: &str) {
        let mut message = serde_json::Map::new();
        message.insert("event".into(), event.into());
        if let Some(channel) = channel {
            message.insert("channel".into(), channel.into());
        }
        message.insert("data".into(), data.into());
        let json = serde_json::Value::Object(message).to_string();
        self.outbox.push(frame::text(json.as_bytes()));
    }

    /// Sends a `pusher:error` to this connection, which stays open.
    pub fn send_error(&self, code: Option<ErrorCode>, message: &str) {
        let json = outbound::error(code.map(ErrorCode::code), message);
        self.outbox.push(frame::text(json.as_bytes()));
    }

    /// Closes the connection with `code` after what is queued for it. Codes of 4300 and above
    /// may not close a connection (pusher-js would never reconnect): such a code is sent as a
    /// `pusher:error`, and the connection closed with 4009.
    pub fn close(&self, code: ErrorCode, reason: &str) {
        let code = if code.may_close() {
            code
        } else {
            self.send_error(Some(code), reason);
            ErrorCode::Unauthorized
        };
        self.outbox.close(CloseReason::new(code, reason));
    }

    /// Publishes an event to every subscriber of a channel of this connection's app, on every
    /// node, this connection included if it is subscribed.
    pub async fn publish(
        &self,
        channel: &str,
        event: &str,
        data: &str,
    ) -> Result<(), ExtensionError> {
        handle::publish(self.node, self.app, channel, event, data, None).await
    }

    /// As [`ConnectionContext::publish`], but not to this connection (as client events go).
    pub async fn publish_to_others(
        &self,
        channel: &str,
        event: &str,
        data: &str,
    ) -> Result<(), ExtensionError> {
        handle::publish(
            self.node,
            self.app,
            channel,
            event,
            data,
            Some(self.socket_id),
        )
        .await
    }
}
