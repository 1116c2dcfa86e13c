//! Validated identifiers: once one of these exists, it is known to be well-formed.
//!
//! Names travel through the hot path as cheap clones (`Arc<str>` or plain integers), so the
//! validation cost is paid once, where the name enters the server.

use std::fmt;
use std::sync::Arc;

/// Why a name was rejected. The `Display` text is what clients and API callers see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} contains characters outside {allowed}: {value:?}")]
    InvalidChars {
        what: &'static str,
        /// The characters the name may use, as a bracket expression.
        allowed: &'static str,
        value: String,
    },
    #[error("invalid socket id {0:?}: expected digits.digits")]
    SocketId(String),
}

macro_rules! arc_str_name {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Characters allowed in app ids and keys: they appear in URL paths.
fn is_url_safe_id(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn parse_id(s: &str, what: &'static str) -> Result<Arc<str>, NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if !is_url_safe_id(s) {
        return Err(NameError::InvalidChars {
            what,
            allowed: "[-a-zA-Z0-9_.]",
            value: s.to_owned(),
        });
    }
    Ok(Arc::from(s))
}

arc_str_name!(
    /// The id of an application (`/apps/{id}/...` in the HTTP API).
    AppId
);
arc_str_name!(
    /// The public key of an application (`/app/{key}` on the WebSocket endpoint).
    AppKey
);

impl AppId {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        parse_id(s, "app id").map(Self)
    }
}

impl AppKey {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        parse_id(s, "app key").map(Self)
    }
}

/// A connection's id, `"<u64>.<u64>"` on the wire. Kept as integers so that comparing
/// against an excluded socket on the delivery path is two integer compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    high: u64,
    low: u64,
}

impl SocketId {
    pub fn new(high: u64, low: u64) -> Self {
        Self { high, low }
    }

    /// Parses `digits.digits`; each part must fit a `u64`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let err = || NameError::SocketId(s.chars().take(64).collect());
        let (a, b) = s.split_once('.').ok_or_else(err)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return Err(err());
        }
        Ok(Self {
            high: a.parse().map_err(|_| err())?,
            low: b.parse().map_err(|_| err())?,
        })
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.high, self.low)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({self})")
    }
}

/// What a channel is, decided by its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Public,
    Private,
    /// End-to-end encrypted: authorized like private, payloads are opaque to the server.
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-<user id>`: only a socket signed in as that user may subscribe.
    ServerToUser,
}

impl ChannelKind {
    /// Private, encrypted and presence channels need a signed `auth` to subscribe.
    pub fn requires_auth(self) -> bool {
        matches!(
            self,
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence
        )
    }

    /// Client events may only be sent on private and presence channels: not on public ones
    /// (nobody signed the sender in), nor on encrypted ones, whose payloads the clients
    /// encrypt with a key only the app's server hands out (pusher-js refuses them itself).
    pub fn allows_client_events(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::Presence)
    }
}

/// Prefix of the per-user channel that server-to-user messages travel on.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// The longest channel name the protocol allows; apps may configure a lower limit.
pub const MAX_CHANNEL_NAME_LENGTH: usize = 200;

/// A channel name that has passed validation; its kind is derived once.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates `s` as a channel name no longer than `max_len` characters.
    pub fn parse(s: &str, max_len: usize) -> Result<Self, NameError> {
        const WHAT: &str = "channel name";
        if s.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if s.len() > max_len {
            return Err(NameError::TooLong {
                what: WHAT,
                max: max_len,
            });
        }
        let body = s.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(s);
        let valid = !body.is_empty()
            && body.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'_' | b'=' | b'@' | b',' | b'.' | b';')
            });
        if !valid {
            return Err(NameError::InvalidChars {
                what: WHAT,
                allowed: "[-a-zA-Z0-9_=@,.;]",
                value: s.chars().take(MAX_CHANNEL_NAME_LENGTH).collect(),
            });
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> ChannelKind {
        let s = self.as_str();
        if s.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if s.starts_with("private-") {
            ChannelKind::Private
        } else if s.starts_with("presence-") {
            ChannelKind::Presence
        } else if s.starts_with(SERVER_TO_USER_PREFIX) {
            ChannelKind::ServerToUser
        } else {
            ChannelKind::Public
        }
    }

    /// Cache channels keep the last event published through the HTTP API.
    pub fn is_cache(&self) -> bool {
        let s = self.as_str();
        [
            "cache-",
            "private-cache-",
            "private-encrypted-cache-",
            "presence-cache-",
        ]
        .iter()
        .any(|p| s.starts_with(p))
    }

    /// For `#server-to-user-<id>`, the user id it belongs to.
    pub fn server_to_user_id(&self) -> Option<&str> {
        self.as_str().strip_prefix(SERVER_TO_USER_PREFIX)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The longest event name accepted, from clients and from the HTTP API.
pub const MAX_EVENT_NAME_LENGTH: usize = 200;

/// An event name: non-empty and at most [`MAX_EVENT_NAME_LENGTH`] characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

impl EventName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        const WHAT: &str = "event name";
        if s.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if s.len() > MAX_EVENT_NAME_LENGTH {
            return Err(NameError::TooLong {
                what: WHAT,
                max: MAX_EVENT_NAME_LENGTH,
            });
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Client events are the only events a client may send on a channel.
    pub fn is_client_event(&self) -> bool {
        self.0.starts_with("client-")
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A user id from presence `channel_data` or sign-in `user_data`, always a string
/// (numeric ids from Laravel are stringified on the way in).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    pub fn parse(s: &str, max_len: usize) -> Result<Self, NameError> {
        const WHAT: &str = "user id";
        if s.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if s.len() > max_len {
            return Err(NameError::TooLong {
                what: WHAT,
                max: max_len,
            });
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_kinds_follow_prefix_order() {
        let k = |s: &str| ChannelName::parse(s, 200).unwrap().kind();
        assert_eq!(k("private-encrypted-x"), ChannelKind::PrivateEncrypted);
        assert_eq!(k("private-x"), ChannelKind::Private);
        assert_eq!(k("presence-x"), ChannelKind::Presence);
        assert_eq!(k("#server-to-user-42"), ChannelKind::ServerToUser);
        assert_eq!(k("public"), ChannelKind::Public);
        assert_eq!(k("privatex"), ChannelKind::Public);
    }

    #[test]
    fn client_events_only_on_private_and_presence() {
        let allowed = |s: &str| {
            ChannelName::parse(s, 200)
                .unwrap()
                .kind()
                .allows_client_events()
        };
        assert!(allowed("private-x") && allowed("presence-x"));
        assert!(!allowed("private-encrypted-x"));
        assert!(!allowed("public") && !allowed("#server-to-user-1"));
    }

    #[test]
    fn cache_channels_are_recognized() {
        for name in [
            "cache-a",
            "private-cache-a",
            "private-encrypted-cache-a",
            "presence-cache-a",
        ] {
            assert!(ChannelName::parse(name, 200).unwrap().is_cache(), "{name}");
        }
        assert!(!ChannelName::parse("cachea", 200).unwrap().is_cache());
    }

    #[test]
    fn channel_name_validation() {
        assert!(ChannelName::parse("a-zA-Z0-9_=@,.;", 200).is_ok());
        assert!(matches!(
            ChannelName::parse("", 200),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            ChannelName::parse("a b", 200),
            Err(NameError::InvalidChars { .. })
        ));
        assert!(matches!(
            ChannelName::parse("a#b", 200),
            Err(NameError::InvalidChars { .. })
        ));
        assert!(matches!(
            ChannelName::parse("#server-to-user-", 200),
            Err(NameError::InvalidChars { .. })
        ));
        assert!(matches!(
            ChannelName::parse("é", 200),
            Err(NameError::InvalidChars { .. })
        ));
        assert!(ChannelName::parse(&"a".repeat(200), 200).is_ok());
        assert!(matches!(
            ChannelName::parse(&"a".repeat(201), 200),
            Err(NameError::TooLong { max: 200, .. })
        ));
        assert!(matches!(
            ChannelName::parse("abcd", 3),
            Err(NameError::TooLong { .. })
        ));
        assert_eq!(
            ChannelName::parse("#server-to-user-7", 200)
                .unwrap()
                .server_to_user_id(),
            Some("7")
        );
    }

    #[test]
    fn socket_ids_round_trip_and_reject_garbage() {
        let id = SocketId::parse("123.456").unwrap();
        assert_eq!(id.to_string(), "123.456");
        assert_eq!(id, SocketId::new(123, 456));
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "a.1",
            "1.2.3",
            "-1.2",
            "1.2 ",
            "99999999999999999999.1",
        ] {
            assert!(SocketId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn event_and_user_ids() {
        assert!(EventName::parse("client-x").unwrap().is_client_event());
        assert!(EventName::parse("").is_err());
        assert!(EventName::parse(&"e".repeat(201)).is_err());
        assert!(UserId::parse("u", 128).is_ok());
        assert!(UserId::parse("", 128).is_err());
        assert!(UserId::parse(&"u".repeat(129), 128).is_err());
    }

    #[test]
    fn app_ids_are_url_safe() {
        assert!(AppId::parse("app-id_1.x").is_ok());
        assert!(AppId::parse("a/b").is_err());
        assert!(AppKey::parse("").is_err());
        // The message names the characters ids may use, not those of channel names.
        assert_eq!(
            AppKey::parse("a=b").unwrap_err().to_string(),
            "app key contains characters outside [-a-zA-Z0-9_.]: \"a=b\""
        );
    }
}
