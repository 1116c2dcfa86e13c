//! What the node reports to the monitor: subscriptions, presence changes and publishes, as
//! [`EventKind`]s built only when somebody watches (each call is one atomic load otherwise).

use warren_protocol::{AppId, ChannelName, SocketId, UserId};

use crate::cluster::{ChannelEvent, ChannelMessage};
use crate::monitor::{EventKind, Monitor};

pub(super) fn subscribed(m: &Monitor, app: &AppId, channel: &ChannelName, socket: SocketId) {
    m.emit(app.as_str(), || EventKind::Subscribed {
        socket_id: socket.to_string(),
        channel: channel.to_string(),
    });
}

pub(super) fn unsubscribed(m: &Monitor, app: &AppId, channel: &ChannelName, socket: SocketId) {
    m.emit(app.as_str(), || EventKind::Unsubscribed {
        socket_id: socket.to_string(),
        channel: channel.to_string(),
    });
}

pub(super) fn member_added(m: &Monitor, app: &AppId, channel: &ChannelName, user: &UserId) {
    m.emit(app.as_str(), || EventKind::MemberAdded {
        channel: channel.to_string(),
        user_id: user.to_string(),
    });
}

pub(super) fn member_removed(m: &Monitor, app: &AppId, channel: &ChannelName, user: &UserId) {
    m.emit(app.as_str(), || EventKind::MemberRemoved {
        channel: channel.to_string(),
        user_id: user.to_string(),
    });
}

/// An event published through the HTTP API (user notices and counts are not reported).
pub(super) fn api_publish(m: &Monitor, e: &ChannelEvent) {
    if let ChannelMessage::Event { name, data, .. } = &e.message {
        m.emit(e.app.as_str(), || EventKind::ApiPublish {
            channel: e.channel.to_string(),
            event: name.to_string(),
            data: data.to_string(),
            except: e.except.map(|s| s.to_string()),
        });
    }
}

/// A client event, sent by `except` (the sending connection is never sent its own event).
pub(super) fn client_event(m: &Monitor, e: &ChannelEvent) {
    if let ChannelMessage::Event {
        name,
        data,
        user_id,
    } = &e.message
    {
        m.emit(e.app.as_str(), || EventKind::ClientEvent {
            socket_id: e.except.map(|s| s.to_string()).unwrap_or_default(),
            channel: e.channel.to_string(),
            event: name.to_string(),
            data: data.to_string(),
            user_id: user_id.as_ref().map(|u| u.to_string()),
        });
    }
}
