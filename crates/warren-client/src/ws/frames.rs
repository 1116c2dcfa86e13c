//! The messages this client sends, as JSON text in the shape the server's parser
//! (`warren_protocol::inbound`) reads.

use serde_json::{json, Value};

pub(crate) const PING: &str = r#"{"event":"pusher:ping","data":{}}"#;
pub(crate) const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// `pusher:subscribe`; public channels send an empty `auth`, as pusher-js does.
pub(crate) fn subscribe(channel: &str, auth: &str, channel_data: Option<&str>) -> String {
    let mut data = json!({"channel": channel, "auth": auth});
    if let Some(cd) = channel_data {
        data["channel_data"] = Value::String(cd.to_owned());
    }
    json!({"event": "pusher:subscribe", "data": data}).to_string()
}

pub(crate) fn unsubscribe(channel: &str) -> String {
    json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}).to_string()
}

pub(crate) fn signin(auth: &str, user_data: &str) -> String {
    json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}).to_string()
}

/// A client event; `data` is JSON text and goes in as it is.
pub(crate) fn client_event(event: &str, channel: &str, data: &str) -> String {
    format!(
        r#"{{"event":{},"channel":{},"data":{data}}}"#,
        Value::from(event),
        Value::from(channel)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::inbound::{parse_client_message, ClientMessage, Subscribe};

    fn parsed(text: &str) -> ClientMessage {
        match parse_client_message(text.as_bytes()) {
            Ok(m) => m,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    /// What this client sends is what the server reads.
    #[test]
    fn the_server_parses_every_frame() {
        assert_eq!(parsed(PING), ClientMessage::Ping);
        assert_eq!(parsed(PONG), ClientMessage::Pong);
        assert_eq!(
            parsed(&subscribe("news", "", None)),
            ClientMessage::Subscribe(Subscribe {
                channel: "news".into(),
                auth: Some(String::new()),
                channel_data: None
            })
        );
        let cd = r#"{"user_id":"1","user_info":{"n":"\""}}"#;
        assert_eq!(
            parsed(&subscribe("presence-a", "k:s", Some(cd))),
            ClientMessage::Subscribe(Subscribe {
                channel: "presence-a".into(),
                auth: Some("k:s".into()),
                channel_data: Some(cd.into())
            })
        );
        assert_eq!(
            parsed(&unsubscribe("news")),
            ClientMessage::Unsubscribe {
                channel: "news".into()
            }
        );
        assert_eq!(
            parsed(&signin("k:s", r#"{"id":"1"}"#)),
            ClientMessage::Signin {
                auth: "k:s".into(),
                user_data: r#"{"id":"1"}"#.into()
            }
        );
        assert_eq!(
            parsed(&client_event("client-\"x", "private-a", r#"{"a":[1]}"#)),
            ClientMessage::ClientEvent {
                event: "client-\"x".into(),
                channel: "private-a".into(),
                data: r#"{"a":[1]}"#.into()
            }
        );
        assert_eq!(
            parsed(&client_event("client-x", "private-a", r#""text""#)),
            ClientMessage::ClientEvent {
                event: "client-x".into(),
                channel: "private-a".into(),
                data: "text".into()
            }
        );
    }
}
