//! Presence channel members, as this client knows them from the server's messages.

use std::collections::HashMap;

use serde_json::Value;
use warren_protocol::presence::{parse_channel_data, MemberLimits, PresenceMember};
use warren_protocol::server_message::PresenceSnapshot;

/// One member of a presence channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    /// What the auth endpoint vouched for (`user_info`), if anything.
    pub info: Option<Value>,
}

/// The members of a presence channel as this client knows them: filled by
/// `subscription_succeeded`, kept up to date by `member_added` / `member_removed`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members {
    me: Option<Member>,
    members: HashMap<String, Option<Value>>,
}

impl Members {
    /// This connection's own member (from the `channel_data` it subscribed with).
    pub fn me(&self) -> Option<&Member> {
        self.me.as_ref()
    }

    pub fn count(&self) -> usize {
        self.members.len()
    }

    pub fn get(&self, id: &str) -> Option<Member> {
        self.members.get(id).map(|info| Member {
            id: id.to_owned(),
            info: info.clone(),
        })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    /// Every member, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Member> + '_ {
        self.members.iter().map(|(id, info)| Member {
            id: id.clone(),
            info: info.clone(),
        })
    }

    /// The member ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.members.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The members a `subscription_succeeded` lists; `me` is this connection's own member.
    pub(crate) fn from_snapshot(snapshot: &PresenceSnapshot, me: Option<Member>) -> Self {
        let members = snapshot
            .members
            .iter()
            .map(|m| (m.user_id.as_str().to_owned(), info_value(m)))
            .collect();
        Self { me, members }
    }

    /// A `member_added`: the member, new or updated.
    pub(crate) fn add(&mut self, member: &PresenceMember) -> Member {
        let added = Member::from(member);
        self.members.insert(added.id.clone(), added.info.clone());
        added
    }

    /// A `member_removed`: the member when it was known.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Member> {
        let info = self.members.remove(id)?;
        Some(Member {
            id: id.to_owned(),
            info,
        })
    }
}

impl From<&PresenceMember> for Member {
    fn from(m: &PresenceMember) -> Self {
        Member {
            id: m.user_id.as_str().to_owned(),
            info: info_value(m),
        }
    }
}

/// `user_info` is kept by the protocol as the JSON text it arrived as, so it always parses.
fn info_value(m: &PresenceMember) -> Option<Value> {
    m.user_info
        .as_deref()
        .and_then(|raw| serde_json::from_str(raw).ok())
}

/// The member a `channel_data` string describes: `{"user_id", "user_info"?}`.
pub(crate) fn member_from_channel_data(channel_data: &str) -> Option<Member> {
    // The auth endpoint's answer is trusted here; the server enforces the real limits.
    let limits = MemberLimits {
        max_user_id_length: usize::MAX,
        max_user_info_bytes: usize::MAX,
    };
    parse_channel_data(channel_data, limits)
        .ok()
        .map(|m| Member::from(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warren_protocol::{ServerMessage, UserId};

    #[test]
    fn members_follow_the_protocol_messages() {
        let me = member_from_channel_data(r#"{"user_id":10,"user_info":{"name":"A"}}"#);
        assert_eq!(me.as_ref().map(|m| m.id.as_str()), Some("10"));
        let succeeded = warren_protocol::outbound::presence_subscription_succeeded(
            "presence-a",
            [("10", Some(r#"{"name":"A"}"#)), ("2", None)],
        );
        let Ok(ServerMessage::SubscriptionSucceeded {
            presence: Some(snapshot),
            ..
        }) = ServerMessage::parse(&succeeded)
        else {
            panic!("a presence subscription_succeeded: {succeeded}");
        };
        let mut m = Members::from_snapshot(&snapshot, me);
        assert_eq!(m.count(), 2);
        assert_eq!(m.ids(), ["10", "2"]);
        assert_eq!(m.me().map(|m| m.id.as_str()), Some("10"));
        assert_eq!(m.get("2").and_then(|m| m.info), None);
        assert_eq!(m.get("10").and_then(|m| m.info), Some(json!({"name": "A"})));
        let three = PresenceMember {
            user_id: UserId::parse("3", 10).expect("valid"),
            user_info: Some(r#"{"x":1}"#.into()),
        };
        assert_eq!(
            m.add(&three),
            Member {
                id: "3".into(),
                info: Some(json!({"x": 1}))
            }
        );
        assert!(m.contains("3"));
        assert!(m.remove("2").is_some());
        assert!(m.remove("2").is_none());
        assert_eq!(m.ids(), ["10", "3"]);
        assert_eq!(m.iter().count(), 2);
        assert!(member_from_channel_data("x").is_none());
        assert!(member_from_channel_data(r#"{"user_info":1}"#).is_none());
    }
}
