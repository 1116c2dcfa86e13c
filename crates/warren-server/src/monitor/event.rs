//! What the tap reports: one [`MonitorEvent`] per thing that happened on a node, as plain
//! fields (names and ids as text), so it serializes to one JSON object for `/monitor`, the
//! console and the Redis relay alike.

use serde::{Deserialize, Serialize};

/// One thing that happened, where and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorEvent {
    /// The node it happened on.
    pub node: String,
    /// Milliseconds since the Unix epoch, on that node's clock.
    pub at_ms: u64,
    /// The app it concerns.
    pub app: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Serialized with a `type` field (`connection_opened`, `api_publish`...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    ConnectionOpened {
        socket_id: String,
        /// The client's address as this node saw it (a proxy's, behind one).
        remote: Option<String>,
    },
    ConnectionClosed {
        socket_id: String,
        /// Who ended it and why: `client closed`, `client gone`, `write failed`, `server closed`.
        reason: String,
        /// The close code the server sent, when it closed.
        code: Option<u16>,
        /// Counted from the first time the connection woke while the monitor was on.
        traffic: Option<Traffic>,
    },
    /// A busy connection's counts so far (at most every [`super::TRAFFIC_REPORT_EVERY`]).
    Traffic {
        socket_id: String,
        traffic: Traffic,
    },
    Subscribed {
        socket_id: String,
        channel: String,
    },
    Unsubscribed {
        socket_id: String,
        channel: String,
    },
    /// An event published through the HTTP API.
    ApiPublish {
        channel: String,
        event: String,
        data: String,
        /// The socket excluded from delivery (`socket_id` of the request).
        except: Option<String>,
    },
    /// A client event a connection sent and the server relayed.
    ClientEvent {
        socket_id: String,
        channel: String,
        event: String,
        data: String,
        user_id: Option<String>,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    /// A webhook request the server sent (emitted by the webhooks module).
    WebhookSent {
        url: String,
        /// The names of the events it carried (`channel_occupied`, `member_added`...).
        events: Vec<String>,
        /// The HTTP status of the answer, when one came.
        status: Option<u16>,
        error: Option<String>,
    },
}

/// What one connection sent and received, counted by its own task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// WebSocket messages (text frames) received from the client.
    pub messages_in: u64,
    /// Frames queued to the client and taken for writing.
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl EventKind {
    /// The channel it concerns, if any.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Self::Subscribed { channel, .. }
            | Self::Unsubscribed { channel, .. }
            | Self::ApiPublish { channel, .. }
            | Self::ClientEvent { channel, .. }
            | Self::MemberAdded { channel, .. }
            | Self::MemberRemoved { channel, .. } => Some(channel),
            Self::ConnectionOpened { .. }
            | Self::ConnectionClosed { .. }
            | Self::Traffic { .. }
            | Self::WebhookSent { .. } => None,
        }
    }

    /// The Pusher event name it carries, if any.
    pub fn event_name(&self) -> Option<&str> {
        match self {
            Self::ApiPublish { event, .. } | Self::ClientEvent { event, .. } => Some(event),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_flat_with_a_type_and_reads_back() {
        let event = MonitorEvent {
            node: "n1".into(),
            at_ms: 7,
            app: "app-id".into(),
            kind: EventKind::ApiPublish {
                channel: "orders".into(),
                event: "created".into(),
                data: "{}".into(),
                except: None,
            },
        };
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["type"], "api_publish");
        assert_eq!(json["channel"], "orders");
        assert_eq!(json["app"], "app-id");
        let back: MonitorEvent = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, event);
    }
}
