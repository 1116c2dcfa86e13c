//! Messages a client sends over the WebSocket, parsed without trusting anything about them.
//!
//! Parsing is split from validation against an app's limits: this module knows the wire shape
//! (docs/PROTOCOL.md: "Framing", "Subscriptions", "Users", "Client events"); the server applies names, sizes and permissions.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One message from a client, in its wire shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Ping,
    Pong,
    Subscribe(Subscribe),
    Unsubscribe {
        channel: String,
    },
    Signin {
        auth: String,
        user_data: String,
    },
    /// An event named `client-*` sent on a channel. `data` is already a string, as it will be
    /// forwarded: a JSON string's value, or the raw JSON text of any other value.
    ClientEvent {
        event: String,
        channel: String,
        data: String,
    },
    /// Any other event name (`my-app:ping`): not part of the Pusher protocol, so a server
    /// refuses it unless it has a handler of its own for that name. `data` as in
    /// [`ClientMessage::ClientEvent`].
    Custom {
        event: String,
        channel: Option<String>,
        data: String,
    },
}

/// `pusher:subscribe` as sent. Signatures are checked against these exact strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub channel: String,
    pub auth: Option<String>,
    pub channel_data: Option<String>,
}

/// Why a client frame could not be understood. `Display` is the `pusher:error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("Invalid message: not valid JSON")]
    NotJson,
    #[error("Invalid message: expected a JSON object")]
    NotAnObject,
    #[error("Invalid message: {0}")]
    Malformed(String),
    #[error("Invalid message: missing `event`")]
    MissingEvent,
    #[error("Unsupported event {0:?}")]
    UnknownPusherEvent(String),
    #[error("Invalid {event}: {reason}")]
    BadData { event: &'static str, reason: String },
    #[error("Event {0:?} rejected: only client events (client-*) may be sent on a channel")]
    NotAClientEvent(String),
    #[error("Event {0:?} rejected: no channel given")]
    MissingChannel(String),
}

impl InboundError {
    /// The answer to a [`ClientMessage::Custom`] event nobody handles.
    pub fn not_a_client_event(event: &str) -> Self {
        Self::NotAClientEvent(truncate(event))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Parses one text frame from a client.
pub fn parse_client_message(text: &[u8]) -> Result<ClientMessage, InboundError> {
    let raw: &RawValue = serde_json::from_slice(text).map_err(|_| InboundError::NotJson)?;
    if !raw.get().starts_with('{') {
        return Err(InboundError::NotAnObject);
    }
    let env: Envelope<'_> = serde_json::from_str(raw.get())
        .map_err(|e| InboundError::Malformed(strip_position(&e.to_string())))?;
    let event = env.event.ok_or(InboundError::MissingEvent)?;
    match &*event {
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        "pusher:subscribe" => parse_subscribe(env.data).map(ClientMessage::Subscribe),
        "pusher:unsubscribe" => with_data_object("pusher:unsubscribe", env.data, |text| {
            let data: ChannelOnly<'_> = serde_json::from_str(text)?;
            Ok(ClientMessage::Unsubscribe {
                channel: data.channel.into_owned(),
            })
        }),
        "pusher:signin" => with_data_object("pusher:signin", env.data, |text| {
            let data: SigninData<'_> = serde_json::from_str(text)?;
            Ok(ClientMessage::Signin {
                auth: data.auth.into_owned(),
                user_data: string_or_raw(data.user_data),
            })
        }),
        other if other.starts_with("pusher:") || other.starts_with("pusher_internal:") => {
            Err(InboundError::UnknownPusherEvent(truncate(other)))
        }
        other => {
            let data = env.data.map_or_else(|| "null".to_owned(), string_or_raw);
            if !other.starts_with("client-") {
                return Ok(ClientMessage::Custom {
                    event: other.to_owned(),
                    channel: env.channel.map(Cow::into_owned),
                    data,
                });
            }
            let channel = env
                .channel
                .ok_or_else(|| InboundError::MissingChannel(truncate(other)))?;
            Ok(ClientMessage::ClientEvent {
                event: other.to_owned(),
                channel: channel.into_owned(),
                data,
            })
        }
    }
}

#[derive(Deserialize)]
struct ChannelOnly<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

#[derive(Deserialize)]
struct SubscribeData<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow, default)]
    auth: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    channel_data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SigninData<'a> {
    #[serde(borrow)]
    auth: Cow<'a, str>,
    #[serde(borrow)]
    user_data: &'a RawValue,
}

fn parse_subscribe(data: Option<&RawValue>) -> Result<Subscribe, InboundError> {
    with_data_object("pusher:subscribe", data, |text| {
        let d: SubscribeData<'_> = serde_json::from_str(text)?;
        Ok(Subscribe {
            channel: d.channel.into_owned(),
            auth: d.auth.map(Cow::into_owned),
            channel_data: d
                .channel_data
                .filter(|raw| raw.get() != "null")
                .map(string_or_raw),
        })
    })
}

/// Hands the text of the `data` object to `parse`. Clients send an object; some send it
/// JSON-encoded in a string, and both are accepted.
fn with_data_object<R>(
    event: &'static str,
    data: Option<&RawValue>,
    parse: impl FnOnce(&str) -> Result<R, serde_json::Error>,
) -> Result<R, InboundError> {
    let bad = |reason: String| InboundError::BadData { event, reason };
    let raw = data.ok_or_else(|| bad("missing `data`".to_owned()))?;
    let text = raw.get();
    let decoded;
    let object_text = if text.starts_with('"') {
        decoded = serde_json::from_str::<String>(text)
            .map_err(|e| bad(strip_position(&e.to_string())))?;
        decoded.trim_start()
    } else {
        text
    };
    if !object_text.starts_with('{') {
        return Err(bad("`data` must be an object".into()));
    }
    parse(object_text).map_err(|e| bad(strip_position(&e.to_string())))
}

/// A JSON string's value, or the raw text of any other JSON value.
fn string_or_raw(raw: &RawValue) -> String {
    let text = raw.get();
    if text.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(text) {
            return s;
        }
    }
    text.to_owned()
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientMessage, InboundError> {
        parse_client_message(s.as_bytes())
    }

    #[test]
    fn ping_and_pong() {
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(parse(r#"{"event":"pusher:pong"}"#), Ok(ClientMessage::Pong));
    }

    #[test]
    fn subscribe_public_private_presence() {
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"c"}}"#),
            Ok(ClientMessage::Subscribe(Subscribe {
                channel: "c".into(),
                auth: Some(String::new()),
                channel_data: None
            }))
        );
        let presence = r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":10}"}}"#;
        assert_eq!(
            parse(presence),
            Ok(ClientMessage::Subscribe(Subscribe {
                channel: "presence-a".into(),
                auth: Some("k:s".into()),
                channel_data: Some(r#"{"user_id":10}"#.into())
            }))
        );
    }

    #[test]
    fn subscribe_data_may_be_a_json_string() {
        let msg = r#"{"event":"pusher:subscribe","data":"{\"channel\":\"c\"}"}"#;
        assert_eq!(
            parse(msg),
            Ok(ClientMessage::Subscribe(Subscribe {
                channel: "c".into(),
                auth: None,
                channel_data: None
            }))
        );
    }

    #[test]
    fn unsubscribe_and_signin() {
        assert_eq!(
            parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"c"}}"#),
            Ok(ClientMessage::Unsubscribe {
                channel: "c".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}"#
            ),
            Ok(ClientMessage::Signin {
                auth: "k:s".into(),
                user_data: r#"{"id":"1"}"#.into()
            })
        );
    }

    #[test]
    fn client_event_data_becomes_a_string() {
        assert_eq!(
            parse(r#"{"event":"client-x","channel":"private-a","data":{"a":1}}"#),
            Ok(ClientMessage::ClientEvent {
                event: "client-x".into(),
                channel: "private-a".into(),
                data: r#"{"a":1}"#.into()
            })
        );
        assert_eq!(
            parse(r#"{"event":"client-x","channel":"private-a","data":"hi"}"#),
            Ok(ClientMessage::ClientEvent {
                event: "client-x".into(),
                channel: "private-a".into(),
                data: "hi".into()
            })
        );
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert_eq!(parse("not json"), Err(InboundError::NotJson));
        assert_eq!(parse("[1,2]"), Err(InboundError::NotAnObject));
        assert_eq!(parse("42"), Err(InboundError::NotAnObject));
        assert_eq!(parse("{}"), Err(InboundError::MissingEvent));
        assert!(matches!(
            parse(r#"{"event":5}"#),
            Err(InboundError::Malformed(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":5}}"#),
            Err(InboundError::BadData { .. })
        ));
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe"}"#),
            Err(InboundError::BadData { .. })
        ));
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe","data":[1]}"#),
            Err(InboundError::BadData { .. })
        ));
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe","data":"not json"}"#),
            Err(InboundError::BadData { .. })
        ));
        assert_eq!(
            parse(r#"{"event":"pusher:bogus"}"#),
            Err(InboundError::UnknownPusherEvent("pusher:bogus".into()))
        );
        assert_eq!(
            parse(r#"{"event":"hello","channel":"c","data":{"a":1}}"#),
            Ok(ClientMessage::Custom {
                event: "hello".into(),
                channel: Some("c".into()),
                data: r#"{"a":1}"#.into()
            })
        );
        assert_eq!(
            parse(r#"{"event":"my-app:ping"}"#),
            Ok(ClientMessage::Custom {
                event: "my-app:ping".into(),
                channel: None,
                data: "null".into()
            })
        );
        assert_eq!(
            InboundError::not_a_client_event(&"x".repeat(100)),
            InboundError::NotAClientEvent("x".repeat(64))
        );
        assert_eq!(
            parse(r#"{"event":"client-x"}"#),
            Err(InboundError::MissingChannel("client-x".into()))
        );
        assert_eq!(parse("\u{0}"), Err(InboundError::NotJson));
    }
}
