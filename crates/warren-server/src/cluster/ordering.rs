//! Orders presence announcements that reach a node by paths that do not keep their order.
//!
//! A backend whose state change and announcement are not one atomic step (NATS: the writer
//! that won the compare-and-set publishes afterwards) can deliver two announcements of one
//! member out of order: `member_removed` from one node before the `member_added` another node
//! decided earlier. Each announcement carries the version of the state change that decided it
//! (larger for every change of the channel), and a receiving node applies one only when it is
//! newer than the last one it applied for that member.
//!
//! INVARIANT(presence-ordered): for one (app, channel, user), a node applies announcements in
//! increasing version order and drops an older one that arrives late; the memory kept is one
//! version per member of the channels this node listens to, forgotten on unlisten.

use std::collections::HashMap;

use parking_lot::Mutex;
use warren_protocol::{AppId, ChannelName, UserId};

/// The last version applied per member, for the channels listened to here.
#[derive(Default)]
pub struct PresenceOrder {
    channels: Mutex<HashMap<(AppId, ChannelName), HashMap<UserId, u64>>>,
}

impl PresenceOrder {
    /// Starts ordering the channel's announcements (the node listens to it from now on).
    pub fn listen(&self, app: &AppId, channel: &ChannelName) {
        self.channels
            .lock()
            .entry((app.clone(), channel.clone()))
            .or_default();
    }

    /// Forgets the channel (the node stopped listening to it).
    pub fn forget(&self, app: &AppId, channel: &ChannelName) {
        self.channels.lock().remove(&(app.clone(), channel.clone()));
    }

    /// Whether an announcement about `user` decided at `version` is to be applied: it is newer
    /// than any applied before for that member, which it then replaces. Announcements of a
    /// channel not listened to pass (the node has no one to deliver them to) and are not kept.
    pub fn admit(&self, app: &AppId, channel: &ChannelName, user: &UserId, version: u64) -> bool {
        let mut channels = self.channels.lock();
        let Some(members) = channels.get_mut(&(app.clone(), channel.clone())) else {
            return true;
        };
        match members.get_mut(user) {
            Some(last) if *last >= version => false,
            Some(last) => {
                *last = version;
                true
            }
            None => {
                members.insert(user.clone(), version);
                true
            }
        }
    }

    /// Members remembered across every channel (for tests of the bound).
    pub fn remembered(&self) -> usize {
        self.channels.lock().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (AppId, ChannelName, UserId) {
        (
            AppId::parse("a").unwrap(),
            ChannelName::parse("presence-x", 200).unwrap(),
            UserId::parse("u", 200).unwrap(),
        )
    }

    #[test]
    fn a_late_older_announcement_is_dropped() {
        let (app, ch, user) = names();
        let order = PresenceOrder::default();
        order.listen(&app, &ch);
        // The removal (version 12) overtook the arrival (version 10).
        assert!(order.admit(&app, &ch, &user, 12));
        assert!(!order.admit(&app, &ch, &user, 10));
        assert!(!order.admit(&app, &ch, &user, 12), "applied twice");
        assert!(order.admit(&app, &ch, &user, 13));
        let other = UserId::parse("v", 200).unwrap();
        assert!(order.admit(&app, &ch, &other, 1), "members are apart");
    }

    #[test]
    fn memory_is_kept_for_listened_channels_only() {
        let (app, ch, user) = names();
        let order = PresenceOrder::default();
        assert!(order.admit(&app, &ch, &user, 5));
        assert!(order.admit(&app, &ch, &user, 4), "not listened: passes");
        assert_eq!(order.remembered(), 0);
        order.listen(&app, &ch);
        assert!(order.admit(&app, &ch, &user, 5));
        assert_eq!(order.remembered(), 1);
        order.forget(&app, &ch);
        assert_eq!(order.remembered(), 0);
    }
}
