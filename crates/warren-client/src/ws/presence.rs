//! Presence channel members.

use std::collections::HashMap;

use serde_json::Value;

use super::event::id_string;

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

    /// From `subscription_succeeded` data: `{"presence":{"ids":[..],"hash":{..},"count":n}}`.
    pub(crate) fn from_subscription(data: &Value, me: Option<Member>) -> Self {
        let presence = data.get("presence");
        let mut members = HashMap::new();
        if let Some(Value::Object(hash)) = presence.and_then(|p| p.get("hash")) {
            for (id, info) in hash {
                members.insert(id.clone(), (!info.is_null()).then(|| info.clone()));
            }
        }
        if let Some(Value::Array(ids)) = presence.and_then(|p| p.get("ids")) {
            for id in ids.iter().filter_map(id_string) {
                members.entry(id).or_insert(None);
            }
        }
        Self { me, members }
    }

    /// `member_added` data `{"user_id", "user_info"?}`; returns the member when it is new.
    pub(crate) fn add(&mut self, data: &Value) -> Option<Member> {
        let id = data.get("user_id").and_then(id_string)?;
        let info = data.get("user_info").filter(|v| !v.is_null()).cloned();
        self.members.insert(id.clone(), info.clone());
        Some(Member { id, info })
    }

    /// `member_removed` data `{"user_id"}`; returns the member when it was known.
    pub(crate) fn remove(&mut self, data: &Value) -> Option<Member> {
        let id = data.get("user_id").and_then(id_string)?;
        let info = self.members.remove(&id)?;
        Some(Member { id, info })
    }
}

/// The member a `channel_data` string describes: `{"user_id", "user_info"?}`.
pub(crate) fn member_from_channel_data(channel_data: &str) -> Option<Member> {
    let v: Value = serde_json::from_str(channel_data).ok()?;
    Some(Member {
        id: v.get("user_id").and_then(id_string)?,
        info: v.get("user_info").filter(|v| !v.is_null()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_follow_the_protocol_messages() {
        let me = member_from_channel_data(r#"{"user_id":10,"user_info":{"name":"A"}}"#);
        assert_eq!(me.as_ref().map(|m| m.id.as_str()), Some("10"));
        let data = json!({"presence": {"ids": ["10", "2"], "hash": {"10": {"name": "A"}, "2": null}, "count": 2}});
        let mut m = Members::from_subscription(&data, me);
        assert_eq!(m.count(), 2);
        assert_eq!(m.ids(), ["10", "2"]);
        assert_eq!(m.me().map(|m| m.id.as_str()), Some("10"));
        assert_eq!(m.get("2").and_then(|m| m.info), None);
        assert_eq!(m.get("10").and_then(|m| m.info), Some(json!({"name": "A"})));
        assert!(m
            .add(&json!({"user_id": 3, "user_info": {"x": 1}}))
            .is_some());
        assert!(m.contains("3"));
        assert!(m.remove(&json!({"user_id": "2"})).is_some());
        assert!(m.remove(&json!({"user_id": "2"})).is_none());
        assert!(m.add(&json!({"nope": 1})).is_none());
        assert_eq!(m.ids(), ["10", "3"]);
        assert_eq!(m.iter().count(), 2);
        assert!(member_from_channel_data("x").is_none());
    }
}
