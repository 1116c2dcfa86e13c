//! Events as delivered to handlers, and the emitted-but-not-yet-decoded form the connection's
//! state machine produces: decoding `data` into a [`Value`] waits until a handler wants it.

use serde_json::Value;

/// The channel name watchlist events are delivered with: no channel can have it (`#` only
/// starts `#server-to-user-` channels), so handlers tell them from channel events.
pub const WATCHLIST_CHANNEL: &str = "#watchlist";

/// One event received from the server.
///
/// `data` is the event's data decoded from its string form (Pusher sends data as a JSON
/// string): JSON text becomes the JSON value, anything else a `Value::String`. `raw_data`
/// keeps the string as received (for encrypted channels: the decrypted text).
///
/// Internal events are renamed as pusher-js does: `pusher:subscription_succeeded`,
/// `pusher:member_added` / `pusher:member_removed` (data `{"user_id", "user_info"}`),
/// `pusher:subscription_error`, `pusher:subscription_count`. Watchlist changes arrive as
/// `online` / `offline` on [`WATCHLIST_CHANNEL`], data `{"user_ids":[...]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: String,
    pub channel: Option<String>,
    pub data: Value,
    pub raw_data: String,
    /// The sender of a client event on a presence channel.
    pub user_id: Option<String>,
}

impl Event {
    /// The data as a string slice when it was not JSON (or was a JSON string).
    pub fn data_str(&self) -> Option<&str> {
        self.data.as_str()
    }
}

/// An event for the handlers, with its data still a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Emit {
    pub event: String,
    pub channel: Option<String>,
    pub raw_data: String,
    pub user_id: Option<String>,
}

impl Emit {
    pub fn into_event(self) -> Event {
        Event {
            data: decode_data(&self.raw_data),
            event: self.event,
            channel: self.channel,
            raw_data: self.raw_data,
            user_id: self.user_id,
        }
    }
}

/// Decodes a data string into a value: JSON when it parses, otherwise the string itself.
pub(crate) fn decode_data(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_is_decoded_from_its_string_form() {
        let emit = Emit {
            event: "e".into(),
            channel: Some("c".into()),
            raw_data: r#"{"a":1}"#.into(),
            user_id: Some("7".into()),
        };
        let e = emit.into_event();
        assert_eq!(e.data, json!({"a": 1}));
        assert_eq!(e.raw_data, r#"{"a":1}"#);
        assert_eq!(e.user_id.as_deref(), Some("7"));
        assert_eq!(decode_data("plain"), Value::String("plain".into()));
        assert_eq!(decode_data(""), Value::String(String::new()));
        assert_eq!(decode_data("\"s\""), json!("s"));
    }
}
