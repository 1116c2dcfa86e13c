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
//!
//! INVARIANT(user-status-versioned): every status, the initial ones included, comes with the
//! version the cluster state gave it, and a watcher takes a status only when its version is
//! newer than that of the status it holds for the user. The node's own notices are delivered
//! straight here while other nodes' travel through the backend, so an older notice can arrive
//! after a newer one (another node's late "offline" after this node's "online"); it is
//! ignored, and what the watcher is told last is the newest status.
//!
//! Changes after that are gathered per watcher for [`WATCHLIST_BATCH`] and sent as one
//! `pusher_internal:watchlist_events` ([`LocalUsers::send_batches_forever`]): a wave of
//! arrivals or departures (a node restarting, a cleanup) is one event per watcher, not one per
//! user; a user who went and came back within the window is not mentioned at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use parking_lot::Mutex;
use tokio::sync::Notify;
use warren_protocol::user::UserChannel;
use warren_protocol::{outbound, AppId, ChannelName, ErrorCode, SocketId};

use crate::cluster::{ChannelEvent, ChannelMessage, UserNotice, UserStatus};
use crate::outbox::{CloseReason, Outbox};
use crate::ws::frame;

/// The message connections closed by `terminate_connections` get, with 4009.
pub(crate) const TERMINATED: &str = "Connection terminated: the app ended this user's sessions";

/// How long watchlist changes are gathered before they are sent.
pub(crate) const WATCHLIST_BATCH: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(crate) struct LocalUsers {
    /// Sign-ins and watchlists change rarely and status changes are rare: one lock is enough,
    /// and makes a watcher's activation atomic with every change.
    state: Mutex<State>,
    /// Wakes the batch sender when a batch starts.
    batched: Notify,
}

impl LocalUsers {
    /// Asks every signed-in or watching connection to close with `reason`; returns how many
    /// that is (each counted once).
    pub(crate) fn close_all(&self, reason: &CloseReason) -> usize {
        let state = self.state.lock();
        let mut closed = std::collections::HashSet::new();
        for local in state.users.values() {
            let outboxes = local
                .signed_in
                .iter()
                .chain(local.watchers.iter().map(|(s, w)| (s, &w.outbox)));
            for (socket, outbox) in outboxes {
                if closed.insert(*socket) {
                    outbox.close(reason.clone());
                }
            }
        }
        closed.len()
    }
}

#[derive(Default)]
struct State {
    /// Keyed by (app, the user's channel).
    users: HashMap<(AppId, ChannelName), Local>,
    /// Changes told to each watcher connection and not sent yet.
    batches: HashMap<SocketId, Batch>,
}

struct Batch {
    outbox: Arc<Outbox>,
    /// Per user, in order of first change: (status before the batch, status now).
    changes: IndexMap<Arc<str>, (bool, bool)>,
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

/// What a watcher knows about one watched user.
enum Told {
    /// Its initial state is not sent yet; the newest change that arrived meanwhile.
    Pending { held: Option<UserStatus> },
    /// The newest status applied (sent, or batched to be sent).
    Sent(UserStatus),
}

/// Whether `status` is newer than what is held (nothing held: anything is).
fn newer(status: UserStatus, held: Option<UserStatus>) -> bool {
    match held {
        Some(h) => status.version > h.version,
        None => true,
    }
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
        self.state
            .lock()
            .users
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
        let mut state = self.state.lock();
        for user in watchlist {
            state
                .users
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

    /// Queues the watcher's initial state (`online[i]` for `watchlist[i]`), and batches every
    /// change held since [`LocalUsers::watch`] that is newer than it and differs from it.
    pub(crate) fn activate(
        &self,
        app: &AppId,
        socket: SocketId,
        outbox: &Outbox,
        watchlist: &[UserChannel],
        online: &[UserStatus],
    ) {
        let mut state = self.state.lock();
        let State { users, batches } = &mut *state;
        let was_idle = batches.is_empty();
        let ids = |want: bool| {
            watchlist
                .iter()
                .zip(online)
                .filter(move |(_, s)| s.online == want)
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
                Told::Pending { held: Some(held) } if newer(held, Some(now)) => {
                    if held.online != now.online {
                        batch_of(batches, socket, &watcher.outbox)
                            .changes
                            .insert(Arc::from(user.user().as_str()), (now.online, held.online));
                    }
                    held
                }
                _ => now,
            };
            watcher.told = Told::Sent(told);
        }
        if was_idle && !batches.is_empty() {
            self.batched.notify_one();
        }
    }

    /// Forgets `socket` as a watcher of each user of `watchlist`.
    pub(crate) fn unwatch(&self, app: &AppId, socket: SocketId, watchlist: &[UserChannel]) {
        let mut state = self.state.lock();
        state.batches.remove(&socket);
        let users = &mut state.users;
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
        self.state.lock().users.contains_key(&key(app, channel))
    }

    /// Acts on a notice about the user of the event's channel: closes the user's connections,
    /// or adds the user's new status to its watchers' batches, unless a watcher already has a
    /// newer one.
    pub(crate) fn notify(&self, event: &ChannelEvent) {
        let ChannelMessage::User(notice) = event.message else {
            return;
        };
        let mut state = self.state.lock();
        let State { users, batches } = &mut *state;
        let Some(local) = users.get_mut(&key(&event.app, &event.channel)) else {
            return;
        };
        let status = match notice {
            UserNotice::Terminate => {
                for outbox in local.signed_in.values() {
                    outbox.close(CloseReason::new(ErrorCode::Unauthorized, TERMINATED));
                }
                return;
            }
            UserNotice::Status(status) => status,
        };
        let Some(user) = event.channel.server_to_user_id() else {
            return;
        };
        let was_idle = batches.is_empty();
        for (&socket, watcher) in &mut local.watchers {
            match &mut watcher.told {
                Told::Pending { held } => {
                    if newer(status, *held) {
                        *held = Some(status);
                    }
                }
                Told::Sent(told) if newer(status, Some(*told)) => {
                    if told.online != status.online {
                        // The batch keeps what the watcher was told before it, and the newest
                        // status: what is sent is the net change to the newest.
                        batch_of(batches, socket, &watcher.outbox)
                            .changes
                            .entry(Arc::from(user))
                            .or_insert((told.online, status.online))
                            .1 = status.online;
                    }
                    *told = status;
                }
                Told::Sent(_) => {}
            }
        }
        if was_idle && !batches.is_empty() {
            self.batched.notify_one();
        }
    }

    /// Sends the gathered changes, one event per watcher: the users whose status differs from
    /// what the watcher was told before the batch.
    pub(crate) fn flush(&self) {
        let batches = std::mem::take(&mut self.state.lock().batches);
        for batch in batches.into_values() {
            let changed = |want: bool| {
                batch
                    .changes
                    .iter()
                    .filter(move |(_, &(before, now))| before != now && now == want)
                    .map(|(user, _)| &**user)
            };
            if changed(true).next().is_none() && changed(false).next().is_none() {
                continue;
            }
            let json = outbound::watchlist_events(changed(true), changed(false));
            batch.outbox.push(frame::text(json.as_bytes()));
        }
    }

    /// Sends batches of watchlist changes, [`WATCHLIST_BATCH`] after each batch starts, until
    /// the task is aborted.
    pub(crate) async fn send_batches_forever(&self) {
        loop {
            self.batched.notified().await;
            tokio::time::sleep(WATCHLIST_BATCH).await;
            self.flush();
        }
    }

    fn change(&self, app: &AppId, channel: &ChannelName, f: impl FnOnce(&mut Local)) {
        let users = &mut self.state.lock().users;
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

/// The batch of a watcher connection, started if need be.
fn batch_of<'a>(
    batches: &'a mut HashMap<SocketId, Batch>,
    socket: SocketId,
    outbox: &Arc<Outbox>,
) -> &'a mut Batch {
    batches.entry(socket).or_insert_with(|| Batch {
        outbox: outbox.clone(),
        changes: IndexMap::new(),
    })
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

    /// Notices in the order they are made: each newer than the one before.
    static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);

    fn status(online: bool, version: u64) -> UserNotice {
        UserNotice::Status(UserStatus { online, version })
    }

    fn online() -> UserNotice {
        status(
            true,
            VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn offline() -> UserNotice {
        status(
            false,
            VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Initial states older than every notice of [`online`] and [`offline`].
    fn initial(online: &[bool]) -> Vec<UserStatus> {
        online
            .iter()
            .map(|&online| UserStatus { online, version: 1 })
            .collect()
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
        users.notify(&notice(&u1, offline()));
        users.notify(&notice(&u2, online()));
        users.notify(&notice(&u2, offline()));
        assert!(
            taken(&outbox).is_empty(),
            "nothing before the initial state"
        );
        users.activate(&app, socket, &outbox, &list, &initial(&[true, false]));
        users.flush();
        assert_eq!(
            taken(&outbox),
            [
                r#"{"events":[{"name":"online","user_ids":["1"]},{"name":"offline","user_ids":["2"]}]}"#,
                r#"{"events":[{"name":"offline","user_ids":["1"]}]}"#,
            ]
        );
        // Live: only actual changes are told, once the batch is sent.
        users.notify(&notice(&u1, offline()));
        users.notify(&notice(&u2, online()));
        assert!(taken(&outbox).is_empty(), "batched");
        users.flush();
        assert_eq!(
            taken(&outbox),
            [r#"{"events":[{"name":"online","user_ids":["2"]}]}"#]
        );
        users.notify(&notice(&u2, offline()));
        users.unwatch(&app, socket, &list);
        assert!(!users.wants(&app, u1.channel()));
        users.notify(&notice(&u2, online()));
        users.flush();
        assert!(taken(&outbox).is_empty(), "nothing after unwatch");
    }

    #[test]
    fn a_batch_is_one_event_per_watcher_with_net_changes() {
        let users = LocalUsers::default();
        let app = AppId::parse("a").unwrap();
        let list: Vec<UserChannel> = ["1", "2", "3", "4"].into_iter().map(user).collect();
        let (w1, w2) = (Arc::new(Outbox::new(16)), Arc::new(Outbox::new(16)));
        for (socket, outbox) in [(SocketId::new(1, 1), &w1), (SocketId::new(1, 2), &w2)] {
            users.watch(&app, socket, outbox, &list);
            users.activate(
                &app,
                socket,
                outbox,
                &list,
                &initial(&[false, false, true, true]),
            );
            taken(outbox);
        }
        users.notify(&notice(&list[0], online()));
        users.notify(&notice(&list[1], online()));
        users.notify(&notice(&list[2], offline()));
        // 4 goes and comes back within the window: not mentioned.
        users.notify(&notice(&list[3], offline()));
        users.notify(&notice(&list[3], online()));
        users.flush();
        for outbox in [&w1, &w2] {
            assert_eq!(
                taken(outbox),
                [
                    r#"{"events":[{"name":"online","user_ids":["1","2"]},{"name":"offline","user_ids":["3"]}]}"#
                ]
            );
        }
        users.notify(&notice(&list[0], offline()));
        users.notify(&notice(&list[0], online()));
        users.flush();
        assert!(
            taken(&w1).is_empty(),
            "a net change of nothing sends nothing"
        );
    }

    #[test]
    fn an_older_notice_after_a_newer_one_is_ignored() {
        let users = LocalUsers::default();
        let app = AppId::parse("a").unwrap();
        let list = [user("1")];
        let outbox = Arc::new(Outbox::new(16));
        let socket = SocketId::new(1, 1);
        users.watch(&app, socket, &outbox, &list);
        let offline_at_10 = UserStatus {
            online: false,
            version: 10,
        };
        users.activate(&app, socket, &outbox, &list, &[offline_at_10]);
        taken(&outbox);
        // This node's sign-in (12) is delivered before another node's earlier sign-out (11),
        // within one batch: the net change is to the newest status.
        users.notify(&notice(&list[0], status(true, 12)));
        users.notify(&notice(&list[0], status(false, 11)));
        users.flush();
        assert_eq!(
            taken(&outbox),
            [r#"{"events":[{"name":"online","user_ids":["1"]}]}"#]
        );
        // And in a later batch: still ignored.
        users.notify(&notice(&list[0], status(false, 11)));
        users.notify(&notice(&list[0], status(false, 12)));
        users.flush();
        assert!(taken(&outbox).is_empty(), "not newer: ignored");
        users.notify(&notice(&list[0], status(false, 13)));
        users.flush();
        assert_eq!(
            taken(&outbox),
            [r#"{"events":[{"name":"offline","user_ids":["1"]}]}"#]
        );
    }

    #[test]
    fn held_and_initial_statuses_are_ordered_by_version() {
        let users = LocalUsers::default();
        let app = AppId::parse("a").unwrap();
        let list = [user("1"), user("2")];
        let outbox = Arc::new(Outbox::new(16));
        let socket = SocketId::new(1, 1);
        users.watch(&app, socket, &outbox, &list);
        // User 1: online (12) held, then a late offline (11): the newer one stays held.
        users.notify(&notice(&list[0], status(true, 12)));
        users.notify(&notice(&list[0], status(false, 11)));
        // User 2: an offline (4) older than the initial state read after it.
        users.notify(&notice(&list[1], status(false, 4)));
        let read = |online| UserStatus { online, version: 5 };
        users.activate(&app, socket, &outbox, &list, &[read(false), read(true)]);
        users.flush();
        assert_eq!(
            taken(&outbox),
            [
                r#"{"events":[{"name":"online","user_ids":["2"]},{"name":"offline","user_ids":["1"]}]}"#,
                r#"{"events":[{"name":"online","user_ids":["1"]}]}"#,
            ]
        );
        // A notice about a change the initial state already showed changes nothing.
        users.notify(&notice(&list[1], status(false, 5)));
        users.flush();
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
