//! The single-node backend: there is no other node to tell, and the state lives in memory.
//! No Redis, same behaviour as a cluster of one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};

use super::{
    BackendError, Broker, CachedEvent, ChannelEvent, ChannelStats, ClusterBackend, ClusterState,
    CountVersion, EventSink, JoinError, PresenceJoin, PresenceLeave, Seams, SubscriptionChange,
    UserStatus,
};

/// The embedded default: one node, nothing shared.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBackend;

#[async_trait]
impl ClusterBackend for LocalBackend {
    async fn connect(&self, _: Arc<dyn EventSink>) -> Result<Seams, BackendError> {
        Ok(Seams {
            broker: Arc::new(LocalBroker),
            state: Arc::new(LocalState::new()),
        })
    }
}

/// There is no other node: publishing and listening have nothing to do.
#[derive(Debug, Default)]
pub struct LocalBroker;

#[async_trait]
impl Broker for LocalBroker {
    async fn publish(&self, _: &ChannelEvent) -> Result<(), BackendError> {
        Ok(())
    }

    async fn listen(&self, _: &AppId, _: &ChannelName) -> Result<(), BackendError> {
        Ok(())
    }

    async fn unlisten(&self, _: &AppId, _: &ChannelName) {}
}

#[derive(Default)]
struct Channel {
    sockets: HashSet<SocketId>,
    /// The version of the last change of `sockets`.
    version: u64,
    /// Presence only: each user's connections and user_info (the first join's info wins, as
    /// the member was announced with it).
    members: BTreeMap<UserId, Member>,
}

struct Member {
    info: PresenceMember,
    sockets: HashSet<SocketId>,
}

impl Channel {
    fn stats(&self) -> ChannelStats {
        ChannelStats {
            subscription_count: self.sockets.len() as u64,
            user_count: self.members.len() as u64,
        }
    }
}

/// One app's channels, behind one lock: presence joins read and change several fields at once.
/// INVARIANT(transition-once): every change and the transition it reports happen under it.
type AppChannels = Arc<Mutex<HashMap<ChannelName, Channel>>>;

/// In-memory channel and presence state, one lock per app; cache channels' last events and
/// subscription-count windows.
#[derive(Default)]
pub struct LocalState {
    apps: Mutex<HashMap<AppId, AppChannels>>,
    /// Each signed-in user's connections. INVARIANT(transition-once): online and offline are
    /// decided under this lock, and so are their versions (INVARIANT(user-status-versioned)).
    users: Mutex<HashMap<(AppId, UserId), HashSet<SocketId>>>,
    /// Count versions and cache sequence numbers: one process, so one counter orders all.
    counter: AtomicU64,
    cache: Mutex<Expiring<Kept>>,
    count_windows: Mutex<Expiring<()>>,
}

/// A cache channel's last event.
struct Kept {
    name: EventName,
    data: Arc<str>,
    seq: u64,
}

/// Entries per (app, channel) that stop counting at a deadline. Expired entries are dropped
/// when read, and all of them every [`Expiring::SWEEP_EVERY`] writes, so channels nobody
/// reads again do not accumulate.
struct Expiring<T> {
    entries: HashMap<(AppId, ChannelName), (T, Instant)>,
    writes: u32,
}

impl<T> Default for Expiring<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            writes: 0,
        }
    }
}

impl<T> Expiring<T> {
    const SWEEP_EVERY: u32 = 1024;

    fn get(&mut self, app: &AppId, channel: &ChannelName, now: Instant) -> Option<(&T, Instant)> {
        let key = (app.clone(), channel.clone());
        if self
            .entries
            .get(&key)
            .is_some_and(|(_, until)| *until <= now)
        {
            self.entries.remove(&key);
        }
        self.entries.get(&key).map(|(v, until)| (v, *until))
    }

    fn insert(&mut self, app: &AppId, channel: &ChannelName, value: T, until: Instant) {
        self.writes = self.writes.wrapping_add(1);
        if self.writes.is_multiple_of(Self::SWEEP_EVERY) {
            let now = Instant::now();
            self.entries.retain(|_, (_, until)| *until > now);
        }
        self.entries
            .insert((app.clone(), channel.clone()), (value, until));
    }
}

impl LocalState {
    pub fn new() -> Self {
        Self::default()
    }

    fn app(&self, app: &AppId) -> AppChannels {
        self.apps.lock().entry(app.clone()).or_default().clone()
    }

    /// A number larger than every one handed out before.
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds `socket` to `ch`, giving the change a new version if it changed anything.
    fn add_socket(&self, ch: &mut Channel, socket: SocketId) -> SubscriptionChange {
        let was_empty = ch.sockets.is_empty();
        if ch.sockets.insert(socket) {
            ch.version = self.next();
        }
        change(was_empty, ch)
    }

    /// Removes `socket` from the channel; drops the channel when empty. Returns the change.
    fn remove_socket(
        &self,
        channels: &mut HashMap<ChannelName, Channel>,
        channel: &ChannelName,
        socket: SocketId,
    ) -> SubscriptionChange {
        let Some(ch) = channels.get_mut(channel) else {
            return SubscriptionChange {
                transition: false,
                subscription_count: 0,
                version: 0,
            };
        };
        let removed = ch.sockets.remove(&socket);
        if removed {
            ch.version = self.next();
        }
        let out = change(removed && ch.sockets.is_empty(), ch);
        if ch.sockets.is_empty() {
            channels.remove(channel);
        }
        out
    }
}

fn change(transition: bool, ch: &Channel) -> SubscriptionChange {
    SubscriptionChange {
        transition,
        subscription_count: ch.sockets.len() as u64,
        version: ch.version,
    }
}

#[async_trait]
impl ClusterState for LocalState {
    async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError> {
        let app = self.app(app);
        let mut channels = app.lock();
        let ch = channels.entry(channel.clone()).or_default();
        Ok(self.add_socket(ch, socket))
    }

    async fn unsubscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError> {
        let app = self.app(app);
        let mut channels = app.lock();
        Ok(self.remove_socket(&mut channels, channel, socket))
    }

    async fn join_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        member: &PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoin, JoinError> {
        let app = self.app(app);
        let mut channels = app.lock();
        let ch = channels.entry(channel.clone()).or_default();
        let is_new_member = !ch.members.contains_key(&member.user_id);
        if is_new_member && ch.members.len() >= max_members {
            if ch.sockets.is_empty() {
                channels.remove(channel);
            }
            return Err(JoinError::MemberLimit { max: max_members });
        }
        let change = self.add_socket(ch, socket);
        ch.members
            .entry(member.user_id.clone())
            .or_insert_with(|| Member {
                info: member.clone(),
                sockets: HashSet::new(),
            })
            .sockets
            .insert(socket);
        Ok(PresenceJoin {
            member_added: is_new_member,
            change,
            members: ch.members.values().map(|m| m.info.clone()).collect(),
        })
    }

    async fn leave_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        user: &UserId,
    ) -> Result<PresenceLeave, BackendError> {
        let app = self.app(app);
        let mut channels = app.lock();
        let mut member_removed = false;
        if let Some(ch) = channels.get_mut(channel) {
            if let Some(m) = ch.members.get_mut(user) {
                if m.sockets.remove(&socket) && m.sockets.is_empty() {
                    ch.members.remove(user);
                    member_removed = true;
                }
            }
        }
        Ok(PresenceLeave {
            member_removed,
            change: self.remove_socket(&mut channels, channel, socket),
        })
    }

    async fn channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, ChannelStats)>, BackendError> {
        let app = self.app(app);
        let channels = app.lock();
        Ok(channels
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(prefix))
            .map(|(name, ch)| (name.clone(), ch.stats()))
            .collect())
    }

    async fn channel(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<ChannelStats, BackendError> {
        let app = self.app(app);
        let channels = app.lock();
        Ok(channels
            .get(channel)
            .map(Channel::stats)
            .unwrap_or_default())
    }

    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<PresenceMember>, BackendError> {
        let app = self.app(app);
        let channels = app.lock();
        Ok(channels
            .get(channel)
            .map(|ch| ch.members.values().map(|m| m.info.clone()).collect())
            .unwrap_or_default())
    }

    async fn cache_put(
        &self,
        app: &AppId,
        channel: &ChannelName,
        name: &EventName,
        data: &Arc<str>,
        ttl: Duration,
    ) -> Result<u64, BackendError> {
        let mut cache = self.cache.lock();
        let seq = self.next();
        let kept = Kept {
            name: name.clone(),
            data: data.clone(),
            seq,
        };
        cache.insert(app, channel, kept, Instant::now() + ttl);
        Ok(seq)
    }

    async fn cache_get(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<CachedEvent>, BackendError> {
        let now = Instant::now();
        let mut cache = self.cache.lock();
        Ok(cache
            .get(app, channel, now)
            .map(|(kept, until)| CachedEvent {
                name: kept.name.clone(),
                data: kept.data.clone(),
                seq: kept.seq,
                ttl: until - now,
            }))
    }

    async fn subscription_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<CountVersion, BackendError> {
        let app = self.app(app);
        let channels = app.lock();
        Ok(channels.get(channel).map_or(
            CountVersion {
                subscription_count: 0,
                version: 0,
            },
            |ch| CountVersion {
                subscription_count: ch.sockets.len() as u64,
                version: ch.version,
            },
        ))
    }

    async fn claim_count_window(
        &self,
        app: &AppId,
        channel: &ChannelName,
        window: Duration,
    ) -> Result<bool, BackendError> {
        let now = Instant::now();
        let mut windows = self.count_windows.lock();
        if windows.get(app, channel, now).is_some() {
            return Ok(false);
        }
        windows.insert(app, channel, (), now + window);
        Ok(true)
    }

    async fn sign_in(
        &self,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError> {
        let mut users = self.users.lock();
        let sockets = users.entry((app.clone(), user.clone())).or_default();
        let came_online = sockets.insert(socket) && sockets.len() == 1;
        Ok(came_online.then(|| self.next()))
    }

    async fn sign_out(
        &self,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError> {
        let mut users = self.users.lock();
        let key = (app.clone(), user.clone());
        let Some(sockets) = users.get_mut(&key) else {
            return Ok(None);
        };
        if !sockets.remove(&socket) || !sockets.is_empty() {
            return Ok(None);
        }
        users.remove(&key);
        Ok(Some(self.next()))
    }

    async fn online(&self, app: &AppId, users: &[UserId]) -> Result<Vec<UserStatus>, BackendError> {
        let signed_in = self.users.lock();
        // Every transition took its version under this lock: the counter now is at least the
        // last one's, and the next one will be larger.
        let version = self.counter.load(Ordering::Relaxed);
        Ok(users
            .iter()
            .map(|u| UserStatus {
                online: signed_in.contains_key(&(app.clone(), u.clone())),
                version,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> PresenceMember {
        PresenceMember {
            user_id: UserId::parse(id, 128).unwrap(),
            user_info: None,
        }
    }

    #[tokio::test]
    async fn presence_counts_users_not_sockets() {
        let st = LocalState::new();
        let app = AppId::parse("a").unwrap();
        let ch = ChannelName::parse("presence-x", 200).unwrap();
        let (s1, s2, s3) = (
            SocketId::new(1, 1),
            SocketId::new(2, 2),
            SocketId::new(3, 3),
        );
        let j1 = st
            .join_presence(&app, &ch, s1, &member("u1"), 10)
            .await
            .unwrap();
        assert!(j1.member_added && j1.change.transition);
        let j2 = st
            .join_presence(&app, &ch, s2, &member("u1"), 10)
            .await
            .unwrap();
        assert!(!j2.member_added && !j2.change.transition);
        assert_eq!(j2.members.len(), 1);
        let j3 = st
            .join_presence(&app, &ch, s3, &member("u2"), 10)
            .await
            .unwrap();
        assert_eq!(j3.members.len(), 2);
        assert_eq!(
            st.channel(&app, &ch).await.unwrap(),
            ChannelStats {
                subscription_count: 3,
                user_count: 2
            }
        );
        let u1 = UserId::parse("u1", 128).unwrap();
        assert!(
            !st.leave_presence(&app, &ch, s1, &u1)
                .await
                .unwrap()
                .member_removed
        );
        let last = st.leave_presence(&app, &ch, s2, &u1).await.unwrap();
        assert!(last.member_removed && !last.change.transition);
        let u2 = UserId::parse("u2", 128).unwrap();
        let gone = st.leave_presence(&app, &ch, s3, &u2).await.unwrap();
        assert!(gone.member_removed && gone.change.transition);
        assert!(st.channels(&app, "").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn member_limit_counts_only_new_users() {
        let st = LocalState::new();
        let app = AppId::parse("a").unwrap();
        let ch = ChannelName::parse("presence-x", 200).unwrap();
        st.join_presence(&app, &ch, SocketId::new(1, 1), &member("u1"), 1)
            .await
            .unwrap();
        assert!(st
            .join_presence(&app, &ch, SocketId::new(2, 2), &member("u1"), 1)
            .await
            .is_ok());
        assert!(matches!(
            st.join_presence(&app, &ch, SocketId::new(3, 3), &member("u2"), 1)
                .await,
            Err(JoinError::MemberLimit { max: 1 })
        ));
    }

    #[tokio::test]
    async fn users_are_online_from_first_sign_in_to_last_sign_out() {
        let st = LocalState::new();
        let app = AppId::parse("a").unwrap();
        let (u, other) = (member("u").user_id, member("v").user_id);
        let (s1, s2) = (SocketId::new(1, 1), SocketId::new(2, 2));
        let online = st
            .sign_in(&app, s1, &u)
            .await
            .unwrap()
            .expect("came online");
        assert_eq!(st.sign_in(&app, s2, &u).await.unwrap(), None);
        assert_eq!(st.sign_in(&app, s2, &u).await.unwrap(), None, "repeated");
        let both = [u.clone(), other];
        let now = st.online(&app, &both).await.unwrap();
        assert_eq!(
            now.iter().map(|s| s.online).collect::<Vec<_>>(),
            [true, false]
        );
        assert!(now[0].version >= online);
        assert_eq!(st.sign_out(&app, s1, &u).await.unwrap(), None);
        assert_eq!(st.sign_out(&app, s1, &u).await.unwrap(), None, "repeated");
        let offline = st
            .sign_out(&app, s2, &u)
            .await
            .unwrap()
            .expect("went offline");
        assert!(offline > now[0].version, "newer than any state read before");
        assert_eq!(st.sign_out(&app, s2, &u).await.unwrap(), None);
        let now = st.online(&app, &both).await.unwrap();
        assert_eq!(
            now.iter().map(|s| s.online).collect::<Vec<_>>(),
            [false, false]
        );
        assert!(now[0].version >= offline);
    }

    #[tokio::test]
    async fn occupied_and_vacated_once() {
        let st = LocalState::new();
        let app = AppId::parse("a").unwrap();
        let ch = ChannelName::parse("c", 200).unwrap();
        assert!(
            st.subscribe(&app, &ch, SocketId::new(1, 1))
                .await
                .unwrap()
                .transition
        );
        assert!(
            !st.subscribe(&app, &ch, SocketId::new(2, 2))
                .await
                .unwrap()
                .transition
        );
        assert!(
            !st.unsubscribe(&app, &ch, SocketId::new(1, 1))
                .await
                .unwrap()
                .transition
        );
        assert!(
            !st.unsubscribe(&app, &ch, SocketId::new(1, 1))
                .await
                .unwrap()
                .transition
        );
        let last = st
            .unsubscribe(&app, &ch, SocketId::new(2, 2))
            .await
            .unwrap();
        assert!(last.transition && last.subscription_count == 0);
        let prefixed = ChannelName::parse("presence-p", 200).unwrap();
        st.subscribe(&app, &ch, SocketId::new(3, 3)).await.unwrap();
        st.join_presence(&app, &prefixed, SocketId::new(4, 4), &member("u"), 5)
            .await
            .unwrap();
        let listed = st.channels(&app, "presence-").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1.user_count, 1);
    }
}
