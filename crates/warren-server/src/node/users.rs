//! This node's connections per user: those signed in as the user, and those watching the user.
//!
//! Everything about one user reaches a node on the user's `#server-to-user-<id>` channel (as
//! [`UserNotice`]s), and the node listens to that channel while any connection here is signed
//! in as the user or watches them ([`LocalUsers::wants`]). Entries are keyed by that channel.
//!
//! A watcher joins in two steps, as a subscriber joins the hub: [`LocalUsers::watch`]
//! registers it as *pending* (a status change arriving meanwhile is held), then
//! [`LocalUsers::activate`] queues the initial state and then what was held, under the same
//! lock as every change. So a watcher never sees a change before its initial state, and each
//! watcher is told only actual changes of what it was last told.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use warren_protocol::user::UserChannel;
use warren_protocol::{outbound, AppId, ChannelName, ErrorCode, SocketId};

use crate::cluster::{ChannelEvent, ChannelMessage, UserNotice};
use crate::outbox::{CloseReason, Outbox};
use crate::ws::frame;

/// The message connections closed by `terminate_connections` get, with 4009.
pub(crate) const TERMINATED: &str = "Connection terminated: the app ended this user's sessions";

#[derive(Default)]
pub(crate) struct LocalUsers {
    /// Keyed by (app, the user's channel). Sign-ins and watchlists change rarely and status
    /// changes are rare: one lock is enough, and makes a watcher's activation atomic.
    users: Mutex<HashMap<(AppId, ChannelName), Local>>,
}

#[derive(Default)]
struct Local {
    signed_in: HashMap<SocketId, Arc<Outbox>>,
    watchers: HashMap<SocketId, Watcher>,
}

impl Local {
    fn is_empty(&self) -> bool {
        self.signed_in.is_empty() && self.watchers.is_empty()
    }
}

struct Watcher {
    outbox: Arc<Outbox>,
    told: Told,
}

/// What a watcher knows about one watched user (`true`: online).
enum Told {
    /// Its initial state is not sent yet; the latest change that arrived meanwhile.
    Pending {
        held: Option<bool>,
    },
    Sent(bool),
}

impl LocalUsers {
    /// Records a connection signed in as `user`.
    pub(crate) fn sign_in(
        &self,
        app: &AppId,
        user: &UserChannel,
        socket: SocketId,
        outbox: &Arc<Outbox>,
    ) {
        self.users
            .lock()
            .entry(key(app, user.channel()))
            .or_default()
            .signed_in
            .insert(socket, outbox.clone());
    }

    /// Forgets a signed-in connection.
    pub(crate) fn sign_out(&self, app: &AppId, user: &UserChannel, socket: SocketId) {
        self.change(app, user.channel(), |local| {
            local.signed_in.remove(&socket);
        });
    }

    /// Registers `socket` as a pending watcher of each user of `watchlist`.
    pub(crate) fn watch(
        &self,
        app: &AppId,
        socket: SocketId,
        outbox: &Arc<Outbox>,
        watchlist: &[UserChannel],
    ) {
        let mut users = self.users.lock();
        for user in watchlist {
            users
                .entry(key(app, user.channel()))
                .or_default()
                .watchers
                .insert(
                    socket,
                    Watcher {
                        outbox: outbox.clone(),
                        told: Told::Pending { held: None },
                    },
                );
        }
    }

    /// Queues the watcher's initial state (`online[i]` for `watchlist[i]`), then every change
    /// held since [`LocalUsers::watch`] that differs from it.
    pub(crate) fn activate(
        &self,
        app: &AppId,
        socket: SocketId,
        outbox: &Outbox,
        watchlist: &[UserChannel],
        online: &[bool],
    ) {
        let mut users = self.users.lock();
        let ids = |want: bool| {
            watchlist
                .iter()
                .zip(online)
                .filter(move |(_, &on)| on == want)
                .map(|(u, _)| u.user().as_str())
        };
        outbox.push(frame::text(
            outbound::watchlist_events(ids(true), ids(false)).as_bytes(),
        ));
        for (user, &now) in watchlist.iter().zip(online) {
            let Some(watcher) = users
                .get_mut(&key(app, user.channel()))
                .and_then(|local| local.watchers.get_mut(&socket))
            else {
                continue;
            };
            let told = match watcher.told {
                Told::Pending { held: Some(held) } if held != now => {
                    outbox.push(status_frame(user.user().as_str(), held));
                    held
                }
                _ => now,
            };
            watcher.told = Told::Sent(told);
        }
    }

    /// Forgets `socket` as a watcher of each user of `watchlist`.
    pub(crate) fn unwatch(&self, app: &AppId, socket: SocketId, watchlist: &[UserChannel]) {
        let mut users = self.users.lock();
        for user in watchlist {
            let k = key(app, user.channel());
            if let Some(local) = users.get_mut(&k) {
                local.watchers.remove(&socket);
                if local.is_empty() {
                    users.remove(&k);
                }
            }
        }
    }

    /// Whether a connection here is signed in as, or watches, the user of `channel`: the node
    /// must hear what happens to that user elsewhere.
    pub(crate) fn wants(&self, app: &AppId, channel: &ChannelName) -> bool {
        self.users.lock().contains_key(&key(app, channel))
    }

    /// Acts on a notice about the user of the event's channel.
    pub(crate) fn notify(&self, event: &ChannelEvent) {
        let ChannelMessage::User(notice) = event.message else {
            return;
        };
        let mut users = self.users.lock();
        let Some(local) = users.get_mut(&key(&event.app, &event.channel)) else {
            return;
        };
        let online = match notice {
            UserNotice::Terminate => {
                for outbox in local.signed_in.values() {
                    outbox.close(CloseReason::new(ErrorCode::Unauthorized, TERMINATED));
                }
                return;
            }
            UserNotice::Online => true,
            UserNotice::Offline => false,
        };
        let Some(user) = event.channel.server_to_user_id() else {
            return;
        };
        // INVARIANT(frame-once): one frame per change, shared by every watcher told.
        let frame = status_frame(user, online);
        for watcher in local.watchers.values_mut() {
            match &mut watcher.told {
                Told::Pending { held } => *held = Some(online),
                Told::Sent(told) if *told != online => {
                    watcher.outbox.push(frame.clone());
                    *told = online;
                }
                Told::Sent(_) => {}
            }
        }
    }

    fn change(&self, app: &AppId, channel: &ChannelName, f: impl FnOnce(&mut Local)) {
        let mut users = self.users.lock();
        let k = key(app, channel);
        if let Some(local) = users.get_mut(&k) {
            f(local);
            if local.is_empty() {
                users.remove(&k);
            }
        }
    }
}

fn key(app: &AppId, channel: &ChannelName) -> (AppId, ChannelName) {
    (app.clone(), channel.clone())
}

/// `pusher_internal:watchlist_events` telling one user's new status.
fn status_frame(user: &str, online: bool) -> Bytes {
    let json = if online {
        outbound::watchlist_events([user], [])
    } else {
        outbound::watchlist_events([], [user])
    };
    frame::text(json.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use warren_protocol::UserId;

    use super::*;

    fn user(id: &str) -> UserChannel {
        UserChannel::new(UserId::parse(id, 128).unwrap()).unwrap()
    }

    fn notice(u: &UserChannel, notice: UserNotice) -> ChannelEvent {
        ChannelEvent {
            app: AppId::parse("a").unwrap(),
            channel: u.channel().clone(),
            except: None,
            message: ChannelMessage::User(notice),
        }
    }

    /// The `data` of every frame queued for `outbox`, decoded.
    fn taken(outbox: &Outbox) -> Vec<String> {
        let mut q = VecDeque::new();
        outbox.take(&mut q);
        q.iter()
            .map(|f| {
                // Server frames: 2 header bytes, 4 from 126 payload bytes on.
                let header = if f[1] & 0x7f == 126 { 4 } else { 2 };
                let text = std::str::from_utf8(&f[header..]).unwrap();
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                v["data"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    #[test]
    fn watchers_get_initial_state_then_held_changes_then_live_ones() {
        let users = LocalUsers::default();
        let app = AppId::parse("a").unwrap();
        let (u1, u2) = (user("1"), user("2"));
        let outbox = Arc::new(Outbox::new(16));
        let socket = SocketId::new(1, 1);
        let list = [u1.clone(), u2.clone()];
        users.watch(&app, socket, &outbox, &list);
        assert!(users.wants(&app, u1.channel()));
        // While pending: u1 goes offline (held), u2 goes online then offline (net: offline).
        users.notify(&notice(&u1, UserNotice::Offline));
        users.notify(&notice(&u2, UserNotice::Online));
        users.notify(&notice(&u2, UserNotice::Offline));
        assert!(
            taken(&outbox).is_empty(),
            "nothing before the initial state"
        );
        users.activate(&app, socket, &outbox, &list, &[true, false]);
        assert_eq!(
            taken(&outbox),
            [
                r#"{"events":[{"name":"online","user_ids":["1"]},{"name":"offline","user_ids":["2"]}]}"#,
                r#"{"events":[{"name":"offline","user_ids":["1"]}]}"#,
            ]
        );
        // Live: only actual changes are told.
        users.notify(&notice(&u1, UserNotice::Offline));
        users.notify(&notice(&u2, UserNotice::Online));
        assert_eq!(
            taken(&outbox),
            [r#"{"events":[{"name":"online","user_ids":["2"]}]}"#]
        );
        users.unwatch(&app, socket, &list);
        assert!(!users.wants(&app, u1.channel()));
        users.notify(&notice(&u2, UserNotice::Offline));
        assert!(taken(&outbox).is_empty());
    }

    #[test]
    fn terminate_closes_only_the_users_connections() {
        let users = LocalUsers::default();
        let app = AppId::parse("a").unwrap();
        let (u1, u2) = (user("1"), user("2"));
        let (a, b, c) = (
            Arc::new(Outbox::new(4)),
            Arc::new(Outbox::new(4)),
            Arc::new(Outbox::new(4)),
        );
        users.sign_in(&app, &u1, SocketId::new(1, 1), &a);
        users.sign_in(&app, &u1, SocketId::new(1, 2), &b);
        users.sign_in(&app, &u2, SocketId::new(1, 3), &c);
        users.watch(&app, SocketId::new(1, 3), &c, std::slice::from_ref(&u1));
        users.notify(&notice(&u1, UserNotice::Terminate));
        let mut q = VecDeque::new();
        for closed in [&a, &b] {
            let reason = closed.take(&mut q).expect("closed");
            assert_eq!(reason.code(), ErrorCode::Unauthorized);
        }
        assert_eq!(c.take(&mut q), None, "a watcher is not terminated");
        users.sign_out(&app, &u1, SocketId::new(1, 1));
        users.sign_out(&app, &u1, SocketId::new(1, 2));
        assert!(users.wants(&app, u1.channel()), "still watched");
        users.unwatch(&app, SocketId::new(1, 3), std::slice::from_ref(&u1));
        assert!(!users.wants(&app, u1.channel()));
    }
}
