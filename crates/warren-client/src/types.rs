//! What the HTTP API answers, as typed values.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A channel attribute that can be asked for with `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ChannelAttribute {
    /// Distinct users of a presence channel (`user_count`); presence channels only.
    UserCount,
    /// Connections subscribed to the channel (`subscription_count`).
    SubscriptionCount,
    /// The last event of a cache channel (`cache`); single-channel queries only.
    Cache,
}

impl ChannelAttribute {
    /// The name used on the wire, e.g. `user_count`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelAttribute::UserCount => "user_count",
            ChannelAttribute::SubscriptionCount => "subscription_count",
            ChannelAttribute::Cache => "cache",
        }
    }

    /// `user_count,subscription_count`: the form of the `info` parameter.
    pub fn join(attributes: &[ChannelAttribute]) -> String {
        let mut out = String::new();
        for (i, attr) in attributes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(attr.as_str());
        }
        out
    }
}

impl fmt::Display for ChannelAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attribute name is not one of `user_count`, `subscription_count`, `cache`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel attribute {0:?}: expected user_count, subscription_count or cache")]
pub struct UnknownAttribute(pub String);

impl FromStr for ChannelAttribute {
    type Err = UnknownAttribute;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "user_count" => Ok(ChannelAttribute::UserCount),
            "subscription_count" => Ok(ChannelAttribute::SubscriptionCount),
            "cache" => Ok(ChannelAttribute::Cache),
            other => Err(UnknownAttribute(other.to_owned())),
        }
    }
}

/// Attributes of one channel, as returned by `trigger` with `info`, by `channels` and in each
/// entry of a batch result. Only the attributes that were asked for (and apply) are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
}

/// The answer to [`crate::Client::trigger`]: per-channel attributes when `info` was given,
/// otherwise empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerResult {
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelAttributes>,
}

/// The answer to [`crate::Client::trigger_batch`]: when any event asked for `info`, one entry
/// per event, in order (empty for events that did not ask); otherwise empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    #[serde(default)]
    pub batch: Vec<ChannelAttributes>,
}

/// The answer to [`crate::Client::channels`]: the occupied channels, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsList {
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelAttributes>,
}

/// The answer to [`crate::Client::channel`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// At least one connection is subscribed.
    pub occupied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
    /// The cached event of a cache channel, when `cache` was asked for and there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CachedEvent>,
}

/// The last event of a cache channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedEvent {
    /// The event's data string, verbatim.
    pub data: String,
    /// Seconds it stays cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// `{"users":[{"id":"1"}]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct UsersResponse {
    pub users: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserEntry {
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        for attr in [
            ChannelAttribute::UserCount,
            ChannelAttribute::SubscriptionCount,
            ChannelAttribute::Cache,
        ] {
            assert_eq!(attr.as_str().parse::<ChannelAttribute>(), Ok(attr));
        }
        assert!("users".parse::<ChannelAttribute>().is_err());
        assert_eq!(
            ChannelAttribute::join(&[
                ChannelAttribute::UserCount,
                ChannelAttribute::SubscriptionCount
            ]),
            "user_count,subscription_count"
        );
    }

    #[test]
    fn responses_decode() {
        let list: ChannelsList =
            serde_json::from_str(r#"{"channels":{"presence-a":{"user_count":1},"b":{}}}"#)
                .expect("decodes");
        assert_eq!(list.channels["presence-a"].user_count, Some(1));
        assert_eq!(list.channels["b"], ChannelAttributes::default());
        let info: ChannelInfo = serde_json::from_str(
            r#"{"occupied":true,"user_count":42,"subscription_count":51,"cache":{"data":"x","ttl":60}}"#,
        )
        .expect("decodes");
        assert!(info.occupied);
        assert_eq!(info.cache.map(|c| c.ttl), Some(Some(60)));
        let empty: TriggerResult = serde_json::from_str("{}").expect("decodes");
        assert!(empty.channels.is_empty());
        let batch: BatchResult =
            serde_json::from_str(r#"{"batch":[{"subscription_count":2},{}]}"#).expect("decodes");
        assert_eq!(batch.batch.len(), 2);
    }
}
