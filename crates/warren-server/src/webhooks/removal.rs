//! The removal delay: `channel_vacated` and `member_removed` wait `delay_removal_ms`, and a
//! return within it (the channel occupied again, the user back) cancels both the removal and
//! the return, so a page reload sends nothing (docs/WEBHOOKS.md, "Removal delay").
//!
//! A pending removal leaves a *marker* in the store the nodes share (memory on one node,
//! Redis in a cluster), named by the app, the channel and (members) the user. Whoever removes
//! the marker first decides, whichever node it runs on:
//!
//! * the return (`channel_occupied`, `member_added`) finds and removes it: both are dropped;
//! * the removal, when its delay is over, removes it: it is sent, unless the cluster state
//!   says the channel is occupied or the user a member again (a return that did not see the
//!   marker in time), and then it is dropped too.
//!
//! So a leave on node A and a return on node B within the delay send nothing, and whatever
//! the race, the last event a receiver gets for a channel (or member) matches the state.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::event::{Hook, Record};

/// How a record takes part in the delay.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Waits, behind a marker of this name.
    Removal(String),
    /// Cancels the pending removal of this name, if there is one.
    Return(String),
    Neither,
}

/// The marker's name (app, channel and user; the parts cannot contain a newline).
pub(crate) fn role(r: &Record) -> Role {
    let channel = |app, channel| format!("{app}\n{channel}");
    let member = |app, channel, user| format!("{app}\n{channel}\n{user}");
    match &r.hook {
        Hook::Vacated => Role::Removal(channel(&r.app, &r.channel)),
        Hook::Occupied => Role::Return(channel(&r.app, &r.channel)),
        Hook::MemberRemoved(u) => Role::Removal(member(&r.app, &r.channel, u.as_str())),
        Hook::MemberAdded(u) => Role::Return(member(&r.app, &r.channel, u.as_str())),
        _ => Role::Neither,
    }
}

/// Where pending removals are marked: shared by every node that sends webhooks for an app.
#[async_trait]
pub(crate) trait Markers: Send + Sync + 'static {
    /// Marks a removal as pending for at most `ttl`.
    async fn mark(&self, name: &str, ttl: Duration);
    /// Removes the marker: whether this call removed it (it was there, unexpired), or `None`
    /// when the store could not say.
    async fn claim(&self, name: &str) -> Option<bool>;
}

/// The markers of a single node.
#[derive(Default)]
pub(crate) struct MemoryMarkers(Mutex<HashMap<String, Instant>>);

#[async_trait]
impl Markers for MemoryMarkers {
    async fn mark(&self, name: &str, ttl: Duration) {
        let now = Instant::now();
        let mut markers = self.0.lock();
        // Expired markers would otherwise stay for good when nothing claims them.
        if markers.len() > 1024 && markers.len().is_power_of_two() {
            markers.retain(|_, until| *until > now);
        }
        markers.insert(name.to_owned(), now + ttl);
    }

    async fn claim(&self, name: &str) -> Option<bool> {
        let until = self.0.lock().remove(name);
        Some(until.is_some_and(|until| until > Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{AppId, ChannelName, UserId};

    #[tokio::test]
    async fn the_first_claim_wins_and_expired_markers_do_not_count() {
        let m = MemoryMarkers::default();
        assert_eq!(m.claim("a").await, Some(false));
        m.mark("a", Duration::from_secs(60)).await;
        assert_eq!(m.claim("a").await, Some(true));
        assert_eq!(m.claim("a").await, Some(false));
        m.mark("b", Duration::ZERO).await;
        assert_eq!(m.claim("b").await, Some(false));
    }

    #[test]
    fn removals_and_returns_share_a_marker() {
        let r = |hook| Record {
            app: AppId::parse("1").unwrap(),
            channel: ChannelName::parse("presence-c", 200).unwrap(),
            hook,
        };
        let u = || UserId::parse("u", 10).unwrap();
        let name = |role| match role {
            Role::Removal(n) | Role::Return(n) => n,
            Role::Neither => panic!("no marker"),
        };
        assert_eq!(
            name(role(&r(Hook::Vacated))),
            name(role(&r(Hook::Occupied)))
        );
        let member = name(role(&r(Hook::MemberRemoved(u()))));
        assert_eq!(member, name(role(&r(Hook::MemberAdded(u())))));
        assert_ne!(member, name(role(&r(Hook::Vacated))));
        assert!(matches!(role(&r(Hook::Vacated)), Role::Removal(_)));
        assert!(matches!(role(&r(Hook::MemberAdded(u()))), Role::Return(_)));
        assert_eq!(role(&r(Hook::CacheMiss)), Role::Neither);
    }
}
