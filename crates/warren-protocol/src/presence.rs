//! Presence members as described by a client's `channel_data` (docs/PROTOCOL.md, "Presence").

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::names::{NameError, UserId};

/// One member of a presence channel. `user_info` is kept as the raw JSON text the client's
/// auth endpoint produced, so it is re-sent byte for byte and never re-serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceMember {
    pub user_id: UserId,
    pub user_info: Option<Arc<str>>,
}

/// Why `channel_data` was refused; `Display` is sent in the subscription error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    #[error("channel_data must be a JSON object with a user_id")]
    NotAnObject,
    #[error("channel_data must contain a user_id")]
    MissingUserId,
    #[error("user_id must be a string or a number")]
    BadUserId,
    #[error("{0}")]
    UserId(#[from] NameError),
    #[error("user_info is larger than {max} bytes")]
    UserInfoTooLarge { max: usize },
}

#[derive(Deserialize)]
struct ChannelData<'a> {
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

/// Limits applied to presence members, from the app's configuration.
#[derive(Debug, Clone, Copy)]
pub struct MemberLimits {
    pub max_user_id_length: usize,
    pub max_user_info_bytes: usize,
}

/// Parses presence `channel_data`: a JSON object with `user_id` (string, or a number that is
/// stringified) and optional `user_info` (any JSON; `null` means none).
pub fn parse_channel_data(
    text: &str,
    limits: MemberLimits,
) -> Result<PresenceMember, ChannelDataError> {
    if !text.trim_start().starts_with('{') {
        return Err(ChannelDataError::NotAnObject);
    }
    let data: ChannelData<'_> =
        serde_json::from_str(text).map_err(|_| ChannelDataError::NotAnObject)?;
    let raw_id = data.user_id.ok_or(ChannelDataError::MissingUserId)?;
    let user_id = user_id_from_json(raw_id, limits.max_user_id_length)?;
    let user_info = match data.user_info {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) if raw.get().len() > limits.max_user_info_bytes => {
            return Err(ChannelDataError::UserInfoTooLarge {
                max: limits.max_user_info_bytes,
            })
        }
        Some(raw) => Some(Arc::from(raw.get())),
    };
    Ok(PresenceMember { user_id, user_info })
}

/// A user id given as a JSON string or number; numbers keep their textual form (`10` -> "10").
pub fn user_id_from_json(raw: &RawValue, max_len: usize) -> Result<UserId, ChannelDataError> {
    let text = raw.get();
    let id = if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|_| ChannelDataError::BadUserId)?
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        text.to_owned()
    } else if text == "null" {
        return Err(ChannelDataError::MissingUserId);
    } else {
        return Err(ChannelDataError::BadUserId);
    };
    Ok(UserId::parse(&id, max_len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MemberLimits = MemberLimits {
        max_user_id_length: 128,
        max_user_info_bytes: 1024,
    };

    #[test]
    fn string_and_numeric_ids() {
        let m = parse_channel_data(r#"{"user_id":"u1","user_info":{"name":"A"}}"#, LIMITS).unwrap();
        assert_eq!(m.user_id.as_str(), "u1");
        assert_eq!(m.user_info.as_deref(), Some(r#"{"name":"A"}"#));
        let m = parse_channel_data(r#"{"user_id":10}"#, LIMITS).unwrap();
        assert_eq!(m.user_id.as_str(), "10");
        assert_eq!(m.user_info, None);
        let m = parse_channel_data(r#"{"user_id":10,"user_info":null}"#, LIMITS).unwrap();
        assert_eq!(m.user_info, None);
    }

    #[test]
    fn bad_channel_data() {
        let p = |s: &str| parse_channel_data(s, LIMITS);
        assert_eq!(p("nope"), Err(ChannelDataError::NotAnObject));
        assert_eq!(p("[1]"), Err(ChannelDataError::NotAnObject));
        assert_eq!(p("{}"), Err(ChannelDataError::MissingUserId));
        assert_eq!(
            p(r#"{"user_id":null}"#),
            Err(ChannelDataError::MissingUserId)
        );
        assert_eq!(p(r#"{"user_id":true}"#), Err(ChannelDataError::BadUserId));
        assert_eq!(
            p(r#"{"user_id":{"a":1}}"#),
            Err(ChannelDataError::BadUserId)
        );
        assert!(matches!(
            p(r#"{"user_id":""}"#),
            Err(ChannelDataError::UserId(_))
        ));
        let long_id = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129));
        assert!(matches!(p(&long_id), Err(ChannelDataError::UserId(_))));
        let big = format!(r#"{{"user_id":"a","user_info":"{}"}}"#, "x".repeat(1100));
        assert_eq!(
            p(&big),
            Err(ChannelDataError::UserInfoTooLarge { max: 1024 })
        );
    }
}
