//! Custom broadcasts: a message of the embedding program's own, for every node of the cluster.
//!
//! Unlike a [`super::ChannelEvent`] a broadcast is for no channel and no client: it reaches the
//! handler registered for its type on each node (`extend::broadcast`). The seams carry it as a
//! type name and opaque bytes; what the bytes mean is the program's business.

use bytes::Bytes;

/// Longest broadcast type name, in bytes.
pub const MAX_BROADCAST_TYPE: usize = 100;

/// The name a broadcast handler is registered under: 1 to [`MAX_BROADCAST_TYPE`] ASCII letters,
/// digits and `-_.:`. Checked once, where it is made or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BroadcastType(Box<str>);

/// Why a name is not a [`BroadcastType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broadcast type {0:?}: use 1 to 100 ASCII letters, digits and -_.:")]
pub struct BadBroadcastType(pub String);

impl BroadcastType {
    pub fn parse(name: &str) -> Result<Self, BadBroadcastType> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
        if name.is_empty() || name.len() > MAX_BROADCAST_TYPE || !name.bytes().all(allowed) {
            let shown: String = name.chars().take(MAX_BROADCAST_TYPE).collect();
            return Err(BadBroadcastType(shown));
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BroadcastType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One custom broadcast: its type and its payload, as the program that sent it encoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    pub kind: BroadcastType,
    pub payload: Bytes,
}

impl Broadcast {
    /// The payload as UTF-8 text, when it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The payload decoded from JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_types_are_short_plain_names() {
        assert!(BroadcastType::parse("cache:flush").is_ok());
        assert!(BroadcastType::parse("a.b-c_d").is_ok());
        assert!(BroadcastType::parse(&"x".repeat(100)).is_ok());
        for bad in ["", "with space", "é", "a/b", &"x".repeat(101)] {
            assert!(BroadcastType::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
