//! Events as delivered to handlers, and the parsing of server frames.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One event received from the server.
///
/// `data` is the event's data decoded from its string form (Pusher sends data as a JSON
/// string): JSON text becomes the JSON value, anything else a `Value::String`. `raw_data`
/// keeps the string as received (for encrypted channels: the decrypted text).
///
/// Internal events are renamed as pusher-js does: `pusher:subscription_succeeded`,
/// `pusher:member_added` / `pusher:member_removed` (data `{"user_id", "user_info"}`),
/// `pusher:subscription_error`, `pusher:subscription_count`.
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

/// A frame from the server, borrowed from its text.
#[derive(Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(default)]
    pub user_id: Option<Value>,
}

impl<'a> Incoming<'a> {
    pub fn parse(text: &'a str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            let start: String = text.chars().take(120).collect();
            format!("{e} in {start:?}")
        })
    }

    /// The data string: the decoded string when `data` is a JSON string, otherwise the JSON
    /// text itself (`pusher:error` carries an object).
    pub fn data_string(&self) -> String {
        match self.data {
            None => String::new(),
            Some(raw) => {
                let text = raw.get();
                if text.starts_with('"') {
                    serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned())
                } else {
                    text.to_owned()
                }
            }
        }
    }

    pub fn user_id(&self) -> Option<String> {
        self.user_id.as_ref().and_then(id_string)
    }
}

/// A user id as a string: Laravel sends numbers.
pub(crate) fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decodes a data string into a value: JSON when it parses, otherwise the string itself.
pub(crate) fn decode_data(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// `pusher:error` data: `{"code": int|null, "message": "..."}`.
pub(crate) fn error_fields(data: &Value) -> (Option<u16>, String) {
    let code = data
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok());
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| data.to_string());
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_decoded_from_its_string_form() {
        let f =
            Incoming::parse(r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#).expect("parses");
        assert_eq!(f.event, "e");
        assert_eq!(f.channel.as_deref(), Some("c"));
        assert_eq!(f.data_string(), r#"{"a":1}"#);
        assert_eq!(decode_data(&f.data_string()), serde_json::json!({"a": 1}));
        assert_eq!(decode_data("plain"), Value::String("plain".into()));

        let err =
            Incoming::parse(r#"{"event":"pusher:error","data":{"code":null,"message":"no"}}"#)
                .expect("parses");
        let data = decode_data(&err.data_string());
        assert_eq!(error_fields(&data), (None, "no".into()));
        let err = Incoming::parse(r#"{"event":"pusher:error","data":{"code":4001,"message":"x"}}"#)
            .expect("parses");
        assert_eq!(
            error_fields(&decode_data(&err.data_string())),
            (Some(4001), "x".into())
        );

        let ce = Incoming::parse(
            r#"{"event":"client-x","channel":"presence-a","data":"1","user_id":7}"#,
        )
        .expect("parses");
        assert_eq!(ce.user_id().as_deref(), Some("7"));
        assert!(Incoming::parse("not json").is_err());
        assert!(Incoming::parse(r#"{"data":"x"}"#).is_err());
    }
}
