//! What a webhook says: the events the node reports, and their JSON (docs/WEBHOOKS.md).

use std::sync::Arc;

use serde::Serialize;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};

use crate::config::WebhookEventType;

/// One thing that happened on a channel, as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hook {
    Occupied,
    Vacated,
    MemberAdded(UserId),
    MemberRemoved(UserId),
    ClientEvent {
        event: EventName,
        data: Arc<str>,
        socket: SocketId,
        /// On presence channels: the sender.
        user: Option<UserId>,
    },
    CacheMiss,
    SubscriptionCount(u64),
}

impl Hook {
    pub(crate) fn kind(&self) -> WebhookEventType {
        match self {
            Hook::Occupied => WebhookEventType::ChannelOccupied,
            Hook::Vacated => WebhookEventType::ChannelVacated,
            Hook::MemberAdded(_) => WebhookEventType::MemberAdded,
            Hook::MemberRemoved(_) => WebhookEventType::MemberRemoved,
            Hook::ClientEvent { .. } => WebhookEventType::ClientEvent,
            Hook::CacheMiss => WebhookEventType::CacheMiss,
            Hook::SubscriptionCount(_) => WebhookEventType::SubscriptionCount,
        }
    }
}

/// A reported event with its app and channel: what the node enqueues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub app: AppId,
    pub channel: ChannelName,
    pub hook: Hook,
    /// When the node reported it (Unix µs): a return cancels only removals from before it. In
    /// microseconds, because a join and the leave right after it can come within the same
    /// millisecond, and the join must not take the leave's marker.
    pub at_us: u64,
}

/// An event's fields as Pusher sends them; absent ones are left out.
#[derive(Serialize)]
struct Wire<'a> {
    name: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_count: Option<u64>,
}

impl Record {
    /// The event's JSON object, as it goes into a request's `events`.
    pub(crate) fn to_json(&self) -> String {
        let mut wire = Wire {
            name: self.hook.kind().as_str(),
            channel: self.channel.as_str(),
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
            subscription_count: None,
        };
        match &self.hook {
            Hook::Occupied | Hook::Vacated | Hook::CacheMiss => {}
            Hook::MemberAdded(user) | Hook::MemberRemoved(user) => {
                wire.user_id = Some(user.as_str())
            }
            Hook::ClientEvent {
                event,
                data,
                socket,
                user,
            } => {
                wire.event = Some(event.as_str());
                wire.data = Some(data);
                wire.socket_id = Some(socket.to_string());
                wire.user_id = user.as_ref().map(UserId::as_str);
            }
            Hook::SubscriptionCount(n) => wire.subscription_count = Some(*n),
        }
        serde_json::to_string(&wire).expect("strings and numbers always serialize")
    }
}

/// A request body: `{"time_ms":..,"events":[..]}` around events already in JSON.
pub(crate) fn body<'a>(time_ms: u64, events: impl IntoIterator<Item = &'a str>) -> String {
    let mut body = format!(r#"{{"time_ms":{time_ms},"events":["#);
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event);
    }
    body.push_str("]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn record(channel: &str, hook: Hook) -> Record {
        Record {
            app: AppId::parse("1").unwrap(),
            channel: ChannelName::parse(channel, 200).unwrap(),
            hook,
            at_us: 0,
        }
    }

    fn value(r: &Record) -> Value {
        serde_json::from_str(&r.to_json()).unwrap()
    }

    #[test]
    fn every_event_has_pushers_shape() {
        let user = || UserId::parse("u1", 128).unwrap();
        let cases = [
            (
                Hook::Occupied,
                json!({"name":"channel_occupied","channel":"presence-c"}),
            ),
            (
                Hook::Vacated,
                json!({"name":"channel_vacated","channel":"presence-c"}),
            ),
            (
                Hook::MemberAdded(user()),
                json!({"name":"member_added","channel":"presence-c","user_id":"u1"}),
            ),
            (
                Hook::MemberRemoved(user()),
                json!({"name":"member_removed","channel":"presence-c","user_id":"u1"}),
            ),
            (
                Hook::ClientEvent {
                    event: EventName::parse("client-x").unwrap(),
                    data: Arc::from(r#"{"a":1}"#),
                    socket: SocketId::parse("1.2").unwrap(),
                    user: Some(user()),
                },
                json!({"name":"client_event","channel":"presence-c","event":"client-x",
                       "data":"{\"a\":1}","socket_id":"1.2","user_id":"u1"}),
            ),
            (
                Hook::CacheMiss,
                json!({"name":"cache_miss","channel":"presence-c"}),
            ),
            (
                Hook::SubscriptionCount(7),
                json!({"name":"subscription_count","channel":"presence-c","subscription_count":7}),
            ),
        ];
        for (hook, want) in cases {
            assert_eq!(value(&record("presence-c", hook)), want);
        }
    }

    #[test]
    fn body_wraps_events_exactly() {
        let b = body(
            1403175510755,
            [r#"{"channel":"test_channel","name":"channel_vacated"}"#],
        );
        assert_eq!(
            b,
            r#"{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}"#
        );
        // The reference vector of docs/WEBHOOKS.md.
        assert_eq!(
            warren_protocol::auth::sign_webhook("tofu", b.as_bytes()),
            "c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5"
        );
        assert_eq!(body(1, ["{}", "{}"]), r#"{"time_ms":1,"events":[{},{}]}"#);
        assert_eq!(body(1, []), r#"{"time_ms":1,"events":[]}"#);
    }
}
