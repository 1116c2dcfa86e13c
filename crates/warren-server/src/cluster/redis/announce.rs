//! Who tells whom of the changes the Redis state decides.
//!
//! With Redis doing both jobs the scripts publish presence and user status announcements
//! themselves, in the same atomic step as the change (INVARIANT(announcement-with-change)).
//! With the fan-out on another backend (`Jobs::State`) they cannot: the scripts are given no
//! relay channel and publish nothing, and the node sends each announcement right after the
//! script, through the other backend's fan-out, carrying the version the script gave the
//! change. Announcements may then overtake each other on the way; receivers apply them in
//! version order (INVARIANT(presence-ordered)), user status notices by their own versions
//! (INVARIANT(user-status-versioned)).
//!
//! What this node delivers to its own subscribers after cleanup or re-registration goes
//! through the same ordering, in both cases.

use warren_protocol::presence::PresenceMember;
use warren_protocol::user::UserChannel;
use warren_protocol::{AppId, ChannelName, UserId};

use super::Inner;
use crate::cluster::{ChannelEvent, ChannelMessage, UserNotice, UserStatus};

impl Inner {
    /// Whether the scripts publish announcements themselves (Redis is the fan-out too).
    pub(super) fn scripts_announce(&self) -> bool {
        self.jobs.announcer().is_none()
    }

    /// Where scripts publish presence and user announcements for `app`: nowhere ('') when
    /// the node announces through another fan-out.
    pub(super) fn relay_prefix(&self, app: &AppId) -> String {
        if self.scripts_announce() {
            self.keys.presence_events_of_app(app)
        } else {
            String::new()
        }
    }

    /// Tells the other nodes, through the other fan-out, of a presence change the state
    /// decided at `version`. A failure is logged: the change stands, and nodes that missed it
    /// are out of step until their subscribers subscribe again (as on NATS).
    pub(super) async fn announce_member(&self, event: &ChannelEvent, version: u64) {
        let Some(fanout) = self.jobs.announcer() else {
            return;
        };
        if let Err(e) = fanout.announce(event, version).await {
            tracing::warn!(error = %e, channel = %event.channel, "presence announcement not sent");
        }
    }

    /// Tells the other nodes, through the other fan-out, of a user's going online or offline.
    pub(super) async fn announce_status(&self, app: &AppId, user: &UserId, status: UserStatus) {
        let Some(fanout) = self.jobs.announcer() else {
            return;
        };
        let Some(event) = status_event(app, user.clone(), status) else {
            return;
        };
        if let Err(e) = fanout.publish(&event).await {
            tracing::warn!(error = %e, "user status notice not sent");
        }
    }
}

/// A user's status notice, on the user's channel (none for an id that names no channel).
fn status_event(app: &AppId, user: UserId, status: UserStatus) -> Option<ChannelEvent> {
    let channel = UserChannel::new(user).ok()?;
    Some(ChannelEvent {
        app: app.clone(),
        channel: channel.channel().clone(),
        except: None,
        message: ChannelMessage::User(UserNotice::Status(status)),
    })
}

/// Delivers a presence departure found by cleanup, decided at `version`, to this node's
/// subscribers, as the departing node would have (the other nodes were told already).
pub(super) fn deliver_member_removed(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
    user_id: UserId,
    version: u64,
) {
    let departure = ChannelMessage::MemberRemoved { user_id };
    let event = ChannelEvent::new(app, channel, None, departure);
    inner.sink.deliver_announcement(&event, version);
}

/// Delivers a user's going online or offline, found by re-registration or cleanup, to this
/// node's watchers (the other nodes were told already).
pub(super) fn deliver_user(inner: &Inner, app: &AppId, user: UserId, status: UserStatus) {
    if let Some(event) = status_event(app, user, status) {
        inner.sink.deliver(&event);
    }
}

/// Delivers a presence arrival found by re-registration, decided at `version`, to this node's
/// subscribers (the other nodes were told already), the member's own connections included.
///
/// INVARIANT(reaped-member-restored): a node declared dead while alive (paused past the node
/// timeout) had its members removed by another node, and that `member_removed` reached its
/// own connections too, the member's among them; the arrival recorded again must reach the
/// same connections, or a member's own list would lack it for as long as it stays.
pub(super) fn deliver_member_added(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
    member: &PresenceMember,
    version: u64,
) {
    let arrival = ChannelMessage::MemberAdded(member.clone());
    let event = ChannelEvent::new(app, channel, None, arrival);
    inner.sink.deliver_announcement(&event, version);
}
