//! Names of every Redis key and pub/sub channel, all under the configured prefix.
//!
//! Keys carry Redis Cluster hash tags so that each Lua script only touches one slot:
//! an app's channel and presence state share the tag `{prefix:app}`, and the node registry
//! shares `{prefix}`. Pub/sub channel names carry no tag, so that sharded pub/sub spreads the
//! channels of one app over every shard, except presence and `#server-to-user-` channels: their
//! relay channel shares the app's tag, so the scripts that change presence or sign-in state can
//! also publish (SPUBLISH) the announcement in the same atomic step.

use warren_protocol::{AppId, ChannelKind, ChannelName};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    events_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            events_prefix: format!("{prefix}:ev:"),
        }
    }

    /// The base of every key of one app's state: `{prefix:app}`. Scripts derive the rest:
    /// `<base>:ch` (occupied channels and their subscription counts), `<base>:s:<channel>`
    /// (socket -> instance), `<base>:u:<channel>` (socket -> user, presence),
    /// `<base>:m:<channel>` (user -> connection count), `<base>:i:<channel>` (user -> info),
    /// `<base>:n:<instance>` (what one node instance contributed: `channel\nsocket`, and
    /// `#user\nsocket` for sign-ins), `<base>:cv` (channel -> version of its last subscription
    /// change), `<base>:uo` / `<base>:us` (signed-in socket -> instance / user), `<base>:uc`
    /// (user -> signed-in connections).
    pub fn app_base(&self, app: &AppId) -> String {
        format!("{{{}:{}}}", self.prefix, app)
    }

    /// A cache channel's last event (a hash: name, data, sequence number), expiring with it.
    pub fn cache(&self, app: &AppId, channel: &ChannelName) -> String {
        format!("{}:c:{}", self.app_base(app), channel)
    }

    /// Present while a channel's subscription counts are throttled.
    pub fn count_window(&self, app: &AppId, channel: &ChannelName) -> String {
        format!("{}:cw:{}", self.app_base(app), channel)
    }

    /// Sorted set of live node instances, scored by the time (ms) they are due to heartbeat.
    pub fn nodes(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }

    /// Which instance currently holds a node id (guards against two nodes with one id).
    pub fn node_owner(&self, node_id: &str) -> String {
        format!("{{{}}}:owner:{node_id}", self.prefix)
    }

    /// Apps a node instance has contributed state to (what to clean when it dies).
    pub fn instance_apps(&self, instance: &str) -> String {
        format!("{{{}}}:apps:{instance}", self.prefix)
    }

    /// Lock taken by the node that cleans up a dead instance.
    pub fn reaping(&self, instance: &str) -> String {
        format!("{{{}}}:reaping:{instance}", self.prefix)
    }

    /// The pub/sub channel every node listens to for custom broadcasts.
    pub fn broadcasts(&self) -> String {
        format!("{{{}}}:bc", self.prefix)
    }

    /// The pub/sub channel that carries one Pusher channel's events between nodes.
    pub fn events(&self, app: &AppId, channel: &ChannelName) -> String {
        if matches!(
            channel.kind(),
            ChannelKind::Presence | ChannelKind::ServerToUser
        ) {
            format!("{}{}", self.presence_events_of_app(app), channel)
        } else {
            format!("{}{}:{}", self.events_prefix, app, channel)
        }
    }

    /// The start of every presence and user relay channel of one app:
    /// `{<prefix>:<app>}:pev:`, in the slot of the app's state.
    pub fn presence_events_of_app(&self, app: &AppId) -> String {
        format!("{}:pev:", self.app_base(app))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_share_hash_tags() {
        let keys = Keys::new("warren");
        let app = AppId::parse("app-1").unwrap();
        let ch = ChannelName::parse("presence-a:b", 200);
        assert!(ch.is_err(), "':' is not a channel character");
        let ch = ChannelName::parse("presence-a", 200).unwrap();
        assert_eq!(keys.app_base(&app), "{warren:app-1}");
        let ev = keys.events(&app, &ch);
        assert_eq!(ev, "{warren:app-1}:pev:presence-a");
        let public = ChannelName::parse("news", 200).unwrap();
        let ev = keys.events(&app, &public);
        assert_eq!(ev, "warren:ev:app-1:news");
        let user = ChannelName::parse("#server-to-user-7", 200).unwrap();
        assert_eq!(
            keys.events(&app, &user),
            "{warren:app-1}:pev:#server-to-user-7"
        );
        assert!(keys.nodes().starts_with("{warren}"));
        assert!(keys.node_owner("n1").starts_with("{warren}"));
        assert!(keys.instance_apps("n1~x").starts_with("{warren}"));
        assert_eq!(keys.cache(&app, &public), "{warren:app-1}:c:news");
        assert!(keys
            .count_window(&app, &public)
            .starts_with("{warren:app-1}:"));
    }
}
