//! This node's subscribers: for each (app, channel), the connections subscribed here.
//!
//! The hub is the last step of the delivery path, so it is built for that: channels live in a
//! sharded map (no global lock), each channel's subscriber list is behind its own read-write
//! lock, and delivering a frame to N subscribers is N pushes of the same `Bytes` handle.
//!
//! A subscriber joins in two steps. `join` registers it as *pending*: frames published to the
//! channel from then on are held for it. `activate` then queues its
//! `subscription_succeeded` (and anything else that must come first) followed by the held
//! frames, atomically. So a subscriber never misses an event published after the cluster state
//! was read for its `subscription_succeeded`, and never sees one before it.
//!
//! Two kinds of message are special, and only they pay for it (ordinary events take the same
//! path as before either kind existed):
//!
//! * Cache-channel events carry a sequence number. A subscriber that was handed the cached
//!   event number N right after its `subscription_succeeded` gets no event numbered N or
//!   lower after that, neither from what was held for it nor live: those are the cached event
//!   itself or older ones still in flight, and showing them after N would replay the past.
//! * Subscription counts carry a version; a channel delivers only counts newer than the last
//!   one it delivered, so counts from different nodes never leave an older one showing. A
//!   pending subscriber keeps only the newest count held for it: another node's count can
//!   reach this node after the newcomer joined (a NATS publish is sent after the call that
//!   made it returns), and the newcomer's own, newer count follows before it is activated.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use indexmap::IndexMap;
use parking_lot::RwLock;
use warren_protocol::{AppId, ChannelName, SocketId};

use crate::metrics::Stamp;
use crate::outbox::{CloseReason, Outbox};

type Key = (AppId, ChannelName);

#[derive(Default)]
struct Subscribers {
    active: IndexMap<SocketId, Arc<Outbox>>,
    pending: Vec<Pending>,
    /// Cache channels: active subscribers handed the cached event with this sequence number,
    /// until an event numbered at least that arrives live (after which no older one can).
    replayed_up_to: Vec<(SocketId, u64)>,
    /// The version of the last subscription count delivered.
    count_version: u64,
}

struct Pending {
    socket: SocketId,
    outbox: Arc<Outbox>,
    held: Vec<(Bytes, Held)>,
}

/// What a held frame is, where that matters when it is let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Event,
    /// A cache-channel event, with its sequence number.
    Cached(u64),
    /// A subscription count: only the newest one held is worth sending.
    Count,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.active.is_empty() && self.pending.is_empty()
    }

    fn contains(&self, socket: SocketId) -> bool {
        self.active.contains_key(&socket) || self.pending.iter().any(|p| p.socket == socket)
    }
}

#[derive(Default)]
struct LocalChannel {
    subscribers: RwLock<Subscribers>,
}

/// Whether a join or leave changed the channel's presence on this node; the broker subscribes
/// the node to a channel's cluster traffic on the first local join and drops it on the last leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTransition {
    /// The channel had no local subscriber before this join / has none after this leave.
    Changed,
    Unchanged,
}

#[derive(Default)]
pub struct Hub {
    channels: DashMap<Key, Arc<LocalChannel>>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `socket` as a pending subscriber. Returns `None` if it is already subscribed.
    pub fn join(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        outbox: Arc<Outbox>,
    ) -> Option<LocalTransition> {
        // The shard's entry lock is held while the channel is changed, so a concurrent `leave`
        // cannot remove the channel between our lookup and our insert.
        let entry = self.channels.entry((app.clone(), channel.clone()));
        let first = matches!(entry, Entry::Vacant(_));
        let ch = entry.or_default();
        let mut subs = ch.subscribers.write();
        if subs.contains(socket) {
            return None;
        }
        subs.pending.push(Pending {
            socket,
            outbox,
            held: Vec::new(),
        });
        Some(if first {
            LocalTransition::Changed
        } else {
            LocalTransition::Unchanged
        })
    }

    /// Turns a pending subscriber into an active one: queues `first` and then the frames held
    /// for it, in one step. Returns false when the subscriber left in the meantime.
    pub fn activate(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        first: impl IntoIterator<Item = Bytes>,
    ) -> bool {
        self.activate_replayed(app, channel, socket, first, None)
    }

    /// [`Hub::activate`] for a cache channel's subscriber whose `first` frames end with the
    /// cached event numbered `replayed`: held or live events numbered up to it are skipped.
    pub fn activate_replayed(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        first: impl IntoIterator<Item = Bytes>,
        replayed: Option<u64>,
    ) -> bool {
        let Some(ch) = self.get(app, channel) else {
            return false;
        };
        let mut subs = ch.subscribers.write();
        let Some(i) = subs.pending.iter().position(|p| p.socket == socket) else {
            return false;
        };
        let p = subs.pending.swap_remove(i);
        // INVARIANT(cache-never-rewinds): of what was held, only events newer than the
        // replayed one follow it.
        let newer = |held: Held| match (held, replayed) {
            (Held::Cached(seq), Some(up_to)) => seq > up_to,
            _ => true,
        };
        let held = p
            .held
            .into_iter()
            .filter(|(_, held)| newer(*held))
            .map(|(frame, _)| frame);
        p.outbox.push_all(first.into_iter().chain(held));
        subs.active.insert(socket, p.outbox);
        if let Some(up_to) = replayed {
            subs.replayed_up_to.push((socket, up_to));
        }
        true
    }

    /// Removes `socket` from the channel (active or pending). Returns `None` if it was not there.
    pub fn leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Option<LocalTransition> {
        let Entry::Occupied(entry) = self.channels.entry((app.clone(), channel.clone())) else {
            return None;
        };
        let now_empty = {
            let mut subs = entry.get().subscribers.write();
            subs.replayed_up_to.retain(|(s, _)| *s != socket);
            let removed = subs.active.swap_remove(&socket).is_some() || {
                let before = subs.pending.len();
                subs.pending.retain(|p| p.socket != socket);
                subs.pending.len() != before
            };
            if !removed {
                return None;
            }
            subs.is_empty()
        };
        if now_empty {
            entry.remove();
            Some(LocalTransition::Changed)
        } else {
            Some(LocalTransition::Unchanged)
        }
    }

    /// Hands `frame` to every local subscriber of the channel except `except`. Returns how many
    /// connections it was queued for.
    ///
    /// INVARIANT(delivery-without-global-lock): a shard read lock to find the channel (released
    /// at once), the channel's read lock to walk it, each outbox's own mutex; nothing global.
    pub fn deliver(
        &self,
        app: &AppId,
        channel: &ChannelName,
        frame: &Bytes,
        except: Option<SocketId>,
    ) -> usize {
        self.deliver_stamped(app, channel, frame, except, Stamp::NONE)
    }

    /// [`Hub::deliver`] for an event published at `published` (see `outbox`).
    pub fn deliver_stamped(
        &self,
        app: &AppId,
        channel: &ChannelName,
        frame: &Bytes,
        except: Option<SocketId>,
        published: Stamp,
    ) -> usize {
        let Some(ch) = self.get(app, channel) else {
            return 0;
        };
        {
            let subs = ch.subscribers.read();
            if subs.pending.is_empty() {
                return push_to_active(&subs.active, frame, except, published);
            }
        }
        let mut subs = ch.subscribers.write();
        hold(&mut subs.pending, frame, except, Held::Event);
        push_to_active(&subs.active, frame, except, published)
    }

    /// [`Hub::deliver`] for a cache channel's event numbered `seq`: skipped for subscribers
    /// that were handed an event numbered at least `seq` from the cache.
    pub fn deliver_cached(
        &self,
        app: &AppId,
        channel: &ChannelName,
        frame: &Bytes,
        except: Option<SocketId>,
        seq: u64,
        published: Stamp,
    ) -> usize {
        let Some(ch) = self.get(app, channel) else {
            return 0;
        };
        {
            // Nobody pending and nobody replayed: an ordinary delivery.
            let subs = ch.subscribers.read();
            if subs.pending.is_empty() && subs.replayed_up_to.is_empty() {
                return push_to_active(&subs.active, frame, except, published);
            }
        }
        let mut subs = ch.subscribers.write();
        let subs = &mut *subs;
        hold(&mut subs.pending, frame, except, Held::Cached(seq));
        if subs.replayed_up_to.is_empty() {
            return push_to_active(&subs.active, frame, except, published);
        }
        // INVARIANT(cache-never-rewinds): nothing numbered up to what a subscriber was handed
        // from the cache reaches it afterwards.
        let replayed = &subs.replayed_up_to;
        let skip = |socket: &SocketId| {
            Some(*socket) == except
                || replayed
                    .iter()
                    .any(|(s, up_to)| s == socket && seq <= *up_to)
        };
        let mut n = 0;
        for (socket, outbox) in &subs.active {
            if !skip(socket) && outbox.push_stamped(frame.clone(), published) {
                n += 1;
            }
        }
        // One publisher's events reach a node in the order they were cached, so after this
        // one nothing numbered at or below it follows (concurrent publishers have no order).
        subs.replayed_up_to.retain(|(_, up_to)| *up_to > seq);
        n
    }

    /// [`Hub::deliver`] for a subscription count of `version`: dropped unless it is newer
    /// than the last count this channel delivered.
    pub fn deliver_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
        frame: &Bytes,
        version: u64,
    ) -> usize {
        let Some(ch) = self.get(app, channel) else {
            return 0;
        };
        // One write lock for the check and the pushes: two counts cannot overtake each other.
        // INVARIANT(newest-count-wins)
        let mut subs = ch.subscribers.write();
        if version <= subs.count_version {
            return 0;
        }
        subs.count_version = version;
        // A count that reached this node late (another node's publish overtaken by this
        // one's own subscription) must not show before the newer one: a pending subscriber
        // keeps only the newest count held for it.
        for p in subs.pending.iter_mut() {
            p.held.retain(|(_, held)| *held != Held::Count);
        }
        hold(&mut subs.pending, frame, None, Held::Count);
        push_to_active(&subs.active, frame, None, Stamp::NONE)
    }

    /// Number of connections subscribed to the channel on this node (active and pending).
    pub fn local_subscribers(&self, app: &AppId, channel: &ChannelName) -> usize {
        self.get(app, channel).map_or(0, |ch| {
            let subs = ch.subscribers.read();
            subs.active.len() + subs.pending.len()
        })
    }

    /// Asks every subscriber of every channel to close with `reason`; returns how many
    /// connections that is (each counted once).
    pub fn close_all(&self, reason: &CloseReason) -> usize {
        let mut closed = std::collections::HashSet::new();
        for channel in self.channels.iter() {
            let subs = channel.value().subscribers.read();
            let outboxes = subs
                .active
                .iter()
                .map(|(s, o)| (*s, o))
                .chain(subs.pending.iter().map(|p| (p.socket, &p.outbox)));
            for (socket, outbox) in outboxes {
                if closed.insert(socket) {
                    outbox.close(reason.clone());
                }
            }
        }
        closed.len()
    }

    /// Per app: channels with a local subscriber, and subscriptions (active and pending).
    /// Walks every channel: for a scrape, not for the delivery path.
    pub fn census(&self) -> std::collections::HashMap<AppId, (usize, usize)> {
        let mut census = std::collections::HashMap::<AppId, (usize, usize)>::new();
        for entry in self.channels.iter() {
            let subs = entry.value().subscribers.read();
            let counts = census.entry(entry.key().0.clone()).or_default();
            counts.0 += 1;
            counts.1 += subs.active.len() + subs.pending.len();
        }
        census
    }

    /// Number of channels with at least one local subscriber, over all apps.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    fn get(&self, app: &AppId, channel: &ChannelName) -> Option<Arc<LocalChannel>> {
        // Clone the Arc and release the shard lock at once: delivery then holds only the
        // channel's own lock.
        self.channels
            .get(&(app.clone(), channel.clone()))
            .map(|r| r.value().clone())
    }
}

/// Holds `frame` for each pending subscriber but `except`.
fn hold(pending: &mut [Pending], frame: &Bytes, except: Option<SocketId>, kind: Held) {
    for p in pending.iter_mut().filter(|p| Some(p.socket) != except) {
        // INVARIANT(bounded-outbox): held frames count against the same bound as the outbox
        // they will join.
        if p.held.len() >= p.outbox.capacity() {
            p.outbox.close_slow_consumer();
        } else {
            p.held.push((frame.clone(), kind));
        }
    }
}

fn push_to_active(
    active: &IndexMap<SocketId, Arc<Outbox>>,
    frame: &Bytes,
    except: Option<SocketId>,
    published: Stamp,
) -> usize {
    let mut n = 0;
    for (socket, outbox) in active {
        if Some(*socket) != except && outbox.push_stamped(frame.clone(), published) {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn names() -> (AppId, ChannelName) {
        (
            AppId::parse("a").unwrap(),
            ChannelName::parse("c", 200).unwrap(),
        )
    }

    fn drain(ob: &Outbox) -> Vec<Bytes> {
        let mut q = VecDeque::new();
        ob.take(&mut q);
        q.into_iter().collect()
    }

    #[test]
    fn pending_subscribers_get_held_frames_after_their_first_frames() {
        let hub = Hub::new();
        let (app, ch) = names();
        let s1 = SocketId::new(1, 1);
        let ob = Arc::new(Outbox::new(100));
        assert_eq!(
            hub.join(&app, &ch, s1, ob.clone()),
            Some(LocalTransition::Changed)
        );
        assert_eq!(hub.join(&app, &ch, s1, ob.clone()), None);
        assert_eq!(hub.deliver(&app, &ch, &Bytes::from_static(b"e1"), None), 0);
        assert!(drain(&ob).is_empty());
        assert!(hub.activate(&app, &ch, s1, [Bytes::from_static(b"ok")]));
        assert_eq!(drain(&ob), [&b"ok"[..], b"e1"]);
        assert_eq!(hub.deliver(&app, &ch, &Bytes::from_static(b"e2"), None), 1);
        assert_eq!(drain(&ob), [&b"e2"[..]]);
    }

    #[test]
    fn a_pending_subscriber_gets_only_the_newest_count_held_for_it() {
        let hub = Hub::new();
        let (app, ch) = names();
        let s1 = SocketId::new(1, 1);
        let ob = Arc::new(Outbox::new(100));
        hub.join(&app, &ch, s1, ob.clone());
        let frame = |b: &'static [u8]| Bytes::from_static(b);
        // Another node's count arrives late, then this node's own, newer one.
        hub.deliver_count(&app, &ch, &frame(b"count 1"), 5);
        hub.deliver(&app, &ch, &frame(b"e1"), None);
        hub.deliver_count(&app, &ch, &frame(b"count 2"), 6);
        hub.deliver_count(&app, &ch, &frame(b"stale"), 4);
        assert!(hub.activate(&app, &ch, s1, [frame(b"ok")]));
        assert_eq!(drain(&ob), [&b"ok"[..], b"e1", b"count 2"]);
    }

    #[test]
    fn except_and_leave() {
        let hub = Hub::new();
        let (app, ch) = names();
        let (s1, s2) = (SocketId::new(1, 1), SocketId::new(2, 2));
        let (o1, o2) = (Arc::new(Outbox::new(10)), Arc::new(Outbox::new(10)));
        hub.join(&app, &ch, s1, o1.clone());
        assert_eq!(
            hub.join(&app, &ch, s2, o2.clone()),
            Some(LocalTransition::Unchanged)
        );
        hub.activate(&app, &ch, s1, []);
        hub.activate(&app, &ch, s2, []);
        assert_eq!(
            hub.deliver(&app, &ch, &Bytes::from_static(b"x"), Some(s1)),
            1
        );
        assert!(drain(&o1).is_empty());
        assert_eq!(drain(&o2).len(), 1);
        assert_eq!(hub.leave(&app, &ch, s1), Some(LocalTransition::Unchanged));
        assert_eq!(hub.leave(&app, &ch, s1), None);
        assert_eq!(hub.leave(&app, &ch, s2), Some(LocalTransition::Changed));
        assert_eq!(hub.channel_count(), 0);
        assert!(!hub.activate(&app, &ch, s2, []));
    }

    #[test]
    fn a_replayed_cached_event_is_not_repeated_nor_followed_by_older_ones() {
        let hub = Hub::new();
        let (app, ch) = names();
        let (old, new) = (SocketId::new(1, 1), SocketId::new(2, 2));
        let (o_old, o_new) = (Arc::new(Outbox::new(10)), Arc::new(Outbox::new(10)));
        hub.join(&app, &ch, old, o_old.clone());
        hub.activate(&app, &ch, old, []);
        hub.join(&app, &ch, new, o_new.clone());
        // Held for the newcomer: events 4 and 5; it is then handed 5 from the cache.
        hub.deliver_cached(&app, &ch, &Bytes::from_static(b"e4"), None, 4, Stamp::NONE);
        hub.deliver_cached(&app, &ch, &Bytes::from_static(b"e5"), None, 5, Stamp::NONE);
        assert!(hub.activate_replayed(
            &app,
            &ch,
            new,
            [Bytes::from_static(b"ok"), Bytes::from_static(b"c5")],
            Some(5)
        ));
        assert_eq!(drain(&o_new), [&b"ok"[..], b"c5"]);
        // 3 and 5 still in flight from elsewhere: the newcomer skips them, the other does not.
        assert_eq!(
            hub.deliver_cached(&app, &ch, &Bytes::from_static(b"e3"), None, 3, Stamp::NONE),
            1
        );
        hub.deliver_cached(&app, &ch, &Bytes::from_static(b"e5"), None, 5, Stamp::NONE);
        hub.deliver_cached(&app, &ch, &Bytes::from_static(b"e6"), None, 6, Stamp::NONE);
        assert_eq!(drain(&o_new), [&b"e6"[..]]);
        assert_eq!(drain(&o_old), [&b"e4"[..], b"e5", b"e3", b"e5", b"e6"]);
        // Client events (no number) are never skipped.
        hub.deliver(&app, &ch, &Bytes::from_static(b"client"), None);
        assert_eq!(drain(&o_new), [&b"client"[..]]);
    }

    #[test]
    fn older_subscription_counts_are_dropped() {
        let hub = Hub::new();
        let (app, ch) = names();
        let s1 = SocketId::new(1, 1);
        let ob = Arc::new(Outbox::new(10));
        hub.join(&app, &ch, s1, ob.clone());
        assert_eq!(
            hub.deliver_count(&app, &ch, &Bytes::from_static(b"2"), 7),
            0
        );
        hub.activate(&app, &ch, s1, [Bytes::from_static(b"ok")]);
        assert_eq!(
            hub.deliver_count(&app, &ch, &Bytes::from_static(b"1"), 6),
            0
        );
        assert_eq!(
            hub.deliver_count(&app, &ch, &Bytes::from_static(b"3"), 9),
            1
        );
        assert_eq!(
            hub.deliver_count(&app, &ch, &Bytes::from_static(b"3"), 9),
            0
        );
        assert_eq!(drain(&ob), [&b"ok"[..], b"2", b"3"]);
    }

    #[test]
    fn leaving_while_pending_discards_the_join() {
        let hub = Hub::new();
        let (app, ch) = names();
        let s1 = SocketId::new(1, 1);
        hub.join(&app, &ch, s1, Arc::new(Outbox::new(10)));
        assert_eq!(hub.leave(&app, &ch, s1), Some(LocalTransition::Changed));
        assert!(!hub.activate(&app, &ch, s1, []));
        assert_eq!(hub.local_subscribers(&app, &ch), 0);
    }
}
