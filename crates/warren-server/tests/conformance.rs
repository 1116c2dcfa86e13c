//! One conformance suite for the cluster seams (`Broker`, `ClusterState`): the same cases run
//! against every backend. A backend is added with one `conformance!` line at the bottom.
//!
//! A fixture connects nodes of one cluster, each with a sink that records what reaches it.
//! The local backend is a cluster of one: its "nodes" are the same node, so cases about
//! traffic between nodes check what a single node must do (publish reaches nobody else) and
//! the node-failure case does not apply.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use warren_protocol::presence::PresenceMember;
use warren_protocol::user::UserChannel;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};
use warren_server::cluster::local::LocalBackend;
use warren_server::cluster::nats::{NatsCluster, NatsOptions};
use warren_server::cluster::redis::{RedisCluster, RedisOptions};
use warren_server::cluster::{
    Broadcast, BroadcastType, ChannelEvent, ChannelMessage, ChannelStats, ClusterBackend,
    CountVersion, EventSink, JoinError, Seams, UserNotice, UserStatus,
};
use warren_server::config::{NatsTarget, RedisTarget};
use warren_testkit::WAIT;

#[path = "conformance/split.rs"]
mod split;
use split::Split;

/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// Records every event that reaches one node.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<ChannelEvent>>,
    broadcasts: Mutex<Vec<Broadcast>>,
    arrived: Notify,
}

impl EventSink for Recorder {
    fn deliver(&self, event: &ChannelEvent) {
        self.events.lock().push(event.clone());
        self.arrived.notify_waiters();
    }

    fn deliver_broadcast(&self, broadcast: &Broadcast) {
        self.broadcasts.lock().push(broadcast.clone());
        self.arrived.notify_waiters();
    }

    fn resync(&self, _why: &str) {}
}

impl Recorder {
    /// Waits until `n` events have arrived and returns them.
    async fn wait_for(&self, n: usize) -> Vec<ChannelEvent> {
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                if self.events.lock().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
        let events = self.events.lock().clone();
        assert!(waited.is_ok(), "expected {n} events, got {events:?}");
        events
    }

    /// What arrived after a quiet period (for asserting that nothing more does).
    async fn settled(&self) -> Vec<ChannelEvent> {
        tokio::time::sleep(QUIET).await;
        self.events.lock().clone()
    }
}

struct TestNode {
    seams: Seams,
    sink: Arc<Recorder>,
    /// Stops the node as a crash would (see [`Fixture::kill`]).
    halt: Option<Halt>,
}

/// A node of a backend with a crash to simulate.
enum Halt {
    Redis(RedisCluster),
    Nats(NatsCluster),
    /// A node of a split setup: its fan-out and its state backend.
    Split(Vec<Halt>),
}

impl Halt {
    async fn halt(self) {
        match self {
            Halt::Redis(cluster) => cluster.halt().await,
            Halt::Nats(cluster) => cluster.halt().await,
            Halt::Split(parts) => {
                for part in parts {
                    Box::pin(part.halt()).await;
                }
            }
        }
    }
}

/// A backend under test: connects nodes of one cluster.
#[async_trait]
trait Fixture: Send + Sync {
    /// A node of this fixture's cluster.
    async fn node(&self, id: &str) -> TestNode;

    /// Whether `node` returns separate nodes (false: the backend is a single node).
    fn separate_nodes(&self) -> bool;

    /// Stops a node without a goodbye; false when the backend has no node to lose.
    async fn kill(&self, node: TestNode) -> bool;
}

struct Local {
    /// Every "node" of a cluster of one is the same node.
    node: Seams,
    sink: Arc<Recorder>,
}

impl Local {
    async fn new() -> Self {
        let sink = Arc::new(Recorder::default());
        let node = LocalBackend.connect(sink.clone()).await.expect("local");
        Self { node, sink }
    }
}

#[async_trait]
impl Fixture for Local {
    async fn node(&self, _: &str) -> TestNode {
        TestNode {
            seams: Seams {
                broker: self.node.broker.clone(),
                state: self.node.state.clone(),
            },
            sink: self.sink.clone(),
            halt: None,
        }
    }

    fn separate_nodes(&self) -> bool {
        false
    }

    async fn kill(&self, _: TestNode) -> bool {
        false
    }
}

/// Nodes sharing one Redis under a prefix of their own.
struct Redis {
    url: String,
    prefix: String,
}

impl Redis {
    fn new() -> Self {
        Self {
            url: warren_testkit::redis::shared_url(),
            prefix: warren_testkit::redis::unique_prefix("conformance"),
        }
    }
}

#[async_trait]
impl Fixture for Redis {
    async fn node(&self, id: &str) -> TestNode {
        let sink = Arc::new(Recorder::default());
        let options = RedisOptions {
            target: RedisTarget::parse(&self.url).expect("REDIS_URL is a valid Redis URL"),
            prefix: self.prefix.clone(),
            node_id: id.to_owned(),
            // Short, so that the reaping tests finish within `WAIT`; not the minimum (1 s), so
            // that a loaded machine's stall does not get a live node reaped mid-test.
            node_timeout: Duration::from_millis(2000),
        };
        let cluster = RedisCluster::connect(options, sink.clone())
            .await
            .expect("Redis answers at REDIS_URL (scripts/test.sh starts one)");
        TestNode {
            seams: Seams {
                broker: Arc::new(cluster.clone()),
                state: Arc::new(cluster.clone()),
            },
            sink,
            halt: Some(Halt::Redis(cluster)),
        }
    }

    fn separate_nodes(&self) -> bool {
        true
    }

    async fn kill(&self, node: TestNode) -> bool {
        halt(node).await
    }
}

/// Crashes a node of a backend that has nodes to lose.
async fn halt(node: TestNode) -> bool {
    match node.halt {
        Some(cluster) => {
            cluster.halt().await;
            true
        }
        None => false,
    }
}

/// Nodes sharing one NATS under a prefix of their own.
struct Nats {
    nats: warren_testkit::nats::SharedNats,
    prefix: String,
}

impl Nats {
    fn new() -> Self {
        Self {
            nats: warren_testkit::nats::shared(),
            prefix: warren_testkit::redis::unique_prefix("conformance"),
        }
    }
}

#[async_trait]
impl Fixture for Nats {
    async fn node(&self, id: &str) -> TestNode {
        let sink = Arc::new(Recorder::default());
        let options = NatsOptions {
            target: NatsTarget::parse_list(&[self.nats.url()]).expect("a valid NATS URL"),
            auth: Default::default(),
            prefix: self.prefix.clone(),
            node_id: id.to_owned(),
            // As for Redis: short, but not so short that a stall reaps a live node.
            node_timeout: Duration::from_millis(2000),
        };
        let cluster = NatsCluster::connect(options, sink.clone())
            .await
            .expect("NATS answers (scripts/ensure-nats.sh starts one)");
        TestNode {
            seams: Seams {
                broker: Arc::new(cluster.clone()),
                state: Arc::new(cluster.clone()),
            },
            sink,
            halt: Some(Halt::Nats(cluster)),
        }
    }

    fn separate_nodes(&self) -> bool {
        true
    }

    async fn kill(&self, node: TestNode) -> bool {
        halt(node).await
    }
}

/// The online flags of statuses read from the state.
fn onlines(read: &[UserStatus]) -> Vec<bool> {
    read.iter().map(|s| s.online).collect()
}

/// A user status notice.
fn status(online: bool, version: u64) -> ChannelMessage {
    ChannelMessage::User(UserNotice::Status(UserStatus { online, version }))
}

fn app() -> AppId {
    AppId::parse("app-1").unwrap()
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name, 200).unwrap()
}

fn member(id: &str) -> PresenceMember {
    PresenceMember {
        user_id: UserId::parse(id, 128).unwrap(),
        user_info: Some(Arc::from(format!("{{\"name\":\"{id}\"}}").as_str())),
    }
}

fn event(ch: &ChannelName, seq: u32, except: Option<SocketId>) -> ChannelEvent {
    ChannelEvent {
        app: app(),
        channel: ch.clone(),
        except,
        message: ChannelMessage::Event {
            name: EventName::parse("my-event").unwrap(),
            data: Arc::from(format!("{{\"seq\":{seq}}}").as_str()),
            user_id: None,
        },
    }
}

mod cases {
    use super::*;

    /// A publish reaches every other listening node once, with its excepted socket intact,
    /// and never comes back to the publisher (which delivers locally itself).
    pub async fn publish_carries_the_excepted_socket(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("news");
        b.seams.broker.listen(&app(), &ch).await.unwrap();
        let sent = event(&ch, 1, Some(SocketId::new(7, 8)));
        a.seams.broker.publish(&sent).await.unwrap();
        if f.separate_nodes() {
            assert_eq!(b.sink.wait_for(1).await, [sent]);
            assert!(a.sink.settled().await.is_empty(), "echoed to the publisher");
            assert_eq!(b.sink.settled().await.len(), 1, "delivered twice");
        } else {
            assert!(
                a.sink.settled().await.is_empty(),
                "a single node has no one to tell"
            );
        }
    }

    /// A broadcast reaches every other node, listening to channels or not, once and in
    /// order, and never comes back to its sender.
    pub async fn broadcasts_reach_every_other_node(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let sent: Vec<Broadcast> = (0..3u8)
            .map(|n| Broadcast {
                kind: BroadcastType::parse("cache:flush").unwrap(),
                payload: bytes::Bytes::from(vec![n, 0xff]),
            })
            .collect();
        for broadcast in &sent {
            a.seams.broker.broadcast(broadcast).await.unwrap();
        }
        if f.separate_nodes() {
            let _ = tokio::time::timeout(WAIT, async {
                loop {
                    let notified = b.sink.arrived.notified();
                    if b.sink.broadcasts.lock().len() >= sent.len() {
                        return;
                    }
                    notified.await;
                }
            })
            .await;
        }
        tokio::time::sleep(QUIET).await;
        let expected = if f.separate_nodes() { sent } else { vec![] };
        assert_eq!(*b.sink.broadcasts.lock(), expected);
        if f.separate_nodes() {
            assert!(a.sink.broadcasts.lock().is_empty(), "echoed to the sender");
        }
        assert!(
            b.sink.events.lock().is_empty(),
            "a broadcast is no channel event"
        );
    }

    /// Events of one publisher reach another node in the order they were published.
    pub async fn one_publisher_keeps_its_order(f: impl Fixture) {
        if !f.separate_nodes() {
            return;
        }
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("ordered");
        b.seams.broker.listen(&app(), &ch).await.unwrap();
        for seq in 0..50 {
            a.seams
                .broker
                .publish(&event(&ch, seq, None))
                .await
                .unwrap();
        }
        let got = b.sink.wait_for(50).await;
        let expected: Vec<_> = (0..50).map(|seq| event(&ch, seq, None)).collect();
        assert_eq!(got, expected);
    }

    /// A node receives a channel only between `listen` and `unlisten`.
    pub async fn listen_and_unlisten(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("toggle");
        a.seams.broker.publish(&event(&ch, 0, None)).await.unwrap();
        assert!(
            b.sink.settled().await.is_empty(),
            "received before listening"
        );
        b.seams.broker.check_receiving().unwrap();
        b.seams.broker.listen(&app(), &ch).await.unwrap();
        a.seams.broker.publish(&event(&ch, 1, None)).await.unwrap();
        if f.separate_nodes() {
            assert_eq!(b.sink.wait_for(1).await, [event(&ch, 1, None)]);
        }
        b.seams.broker.unlisten(&app(), &ch).await;
        a.seams.broker.publish(&event(&ch, 2, None)).await.unwrap();
        let after = b.sink.settled().await;
        assert!(
            !after.contains(&event(&ch, 2, None)),
            "received after unlisten"
        );
    }

    /// Counts are cluster-wide; occupied and vacated are reported once, by the first
    /// subscribe and the last unsubscribe wherever they happen.
    pub async fn channel_counts_and_transitions(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("counted");
        let (s1, s2, s3) = (
            SocketId::new(1, 1),
            SocketId::new(2, 2),
            SocketId::new(3, 3),
        );
        let first = a.seams.state.subscribe(&app(), &ch, s1).await.unwrap();
        assert!(first.transition && first.subscription_count == 1);
        let second = b.seams.state.subscribe(&app(), &ch, s2).await.unwrap();
        assert!(!second.transition && second.subscription_count == 2);
        b.seams.state.subscribe(&app(), &ch, s3).await.unwrap();
        let stats = a.seams.state.channel(&app(), &ch).await.unwrap();
        assert_eq!(
            stats,
            ChannelStats {
                subscription_count: 3,
                user_count: 0
            }
        );
        let listed = b.seams.state.channels(&app(), "count").await.unwrap();
        assert_eq!(listed, [(ch.clone(), stats)]);
        assert!(b
            .seams
            .state
            .channels(&app(), "other")
            .await
            .unwrap()
            .is_empty());
        let left = a.seams.state.unsubscribe(&app(), &ch, s1).await.unwrap();
        assert!(!left.transition && left.subscription_count == 2);
        // Leaving twice changes nothing.
        let again = a.seams.state.unsubscribe(&app(), &ch, s1).await.unwrap();
        assert!(!again.transition);
        b.seams.state.unsubscribe(&app(), &ch, s2).await.unwrap();
        let last = b.seams.state.unsubscribe(&app(), &ch, s3).await.unwrap();
        assert!(last.transition && last.subscription_count == 0);
        assert!(a.seams.state.channels(&app(), "").await.unwrap().is_empty());
    }

    /// Many connections of one user join and leave at once from two nodes: exactly one
    /// `member_added` and one `member_removed`, and the other node hears each exactly once.
    pub async fn presence_transitions_happen_once_under_races(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("presence-race");
        // A third node watches the announcements.
        let watcher = f.node("watcher").await;
        watcher.seams.broker.listen(&app(), &ch).await.unwrap();
        let user = member("u1");
        let joins = (0..20u64).map(|i| {
            let node = if i % 2 == 0 { &a } else { &b };
            let user = &user;
            let ch = &ch;
            async move {
                node.seams
                    .state
                    .join_presence(&app(), ch, SocketId::new(10, i), user, 100)
                    .await
                    .unwrap()
            }
        });
        let joined = futures_util::future::join_all(joins).await;
        assert_eq!(joined.iter().filter(|j| j.member_added).count(), 1);
        assert_eq!(joined.iter().filter(|j| j.change.transition).count(), 1);
        assert!(joined.iter().all(|j| j.members == [user.clone()]));
        let stats = a.seams.state.channel(&app(), &ch).await.unwrap();
        assert_eq!(
            stats,
            ChannelStats {
                subscription_count: 20,
                user_count: 1
            }
        );
        let leaves = (0..20u64).map(|i| {
            let node = if i % 2 == 0 { &a } else { &b };
            let user = &user;
            let ch = &ch;
            async move {
                node.seams
                    .state
                    .leave_presence(&app(), ch, SocketId::new(10, i), &user.user_id)
                    .await
                    .unwrap()
            }
        });
        let left = futures_util::future::join_all(leaves).await;
        assert_eq!(left.iter().filter(|l| l.member_removed).count(), 1);
        assert_eq!(left.iter().filter(|l| l.change.transition).count(), 1);
        if f.separate_nodes() {
            let heard = watcher.sink.wait_for(2).await;
            let kinds: Vec<_> = heard.iter().map(|e| &e.message).collect();
            assert!(
                matches!(kinds[..], [ChannelMessage::MemberAdded(ref m), ChannelMessage::MemberRemoved { ref user_id }] if *m == user && *user_id == user.user_id),
                "{heard:?}"
            );
            assert_eq!(watcher.sink.settled().await.len(), 2, "announced twice");
        }
    }

    /// The member limit holds cluster-wide however joins race: never more distinct users.
    pub async fn member_limit_holds_under_races(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("presence-full");
        let joins = (0..10u64).map(|i| {
            let node = if i % 2 == 0 { &a } else { &b };
            let ch = &ch;
            async move {
                node.seams
                    .state
                    .join_presence(
                        &app(),
                        ch,
                        SocketId::new(20, i),
                        &member(&format!("u{i}")),
                        3,
                    )
                    .await
            }
        });
        let results = futures_util::future::join_all(joins).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, JoinError::MemberLimit { max: 3 })));
        let members = a.seams.state.presence_members(&app(), &ch).await.unwrap();
        assert_eq!(members.len(), 3);
    }

    /// A node that dies is cleaned up by the others: its subscriptions stop counting and
    /// its presence members are announced gone, once.
    pub async fn a_dead_node_is_reaped(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let (plain, presence) = (channel("reaped"), channel("presence-reaped"));
        b.seams.broker.listen(&app(), &presence).await.unwrap();
        a.seams
            .state
            .subscribe(&app(), &plain, SocketId::new(30, 1))
            .await
            .unwrap();
        a.seams
            .state
            .join_presence(&app(), &presence, SocketId::new(30, 2), &member("gone"), 10)
            .await
            .unwrap();
        b.seams
            .state
            .join_presence(
                &app(),
                &presence,
                SocketId::new(31, 1),
                &member("stays"),
                10,
            )
            .await
            .unwrap();
        let b_sink = b.sink.clone();
        if !f.kill(a).await {
            return;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let stats = b.seams.state.channel(&app(), &plain).await.unwrap();
            if stats.subscription_count == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dead node never reaped"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let members = b
            .seams
            .state
            .presence_members(&app(), &presence)
            .await
            .unwrap();
        assert_eq!(members, [member("stays")]);
        let heard = b_sink.wait_for(1).await;
        let removed: Vec<_> = heard
            .iter()
            .filter(|e| {
                matches!(&e.message, ChannelMessage::MemberRemoved { user_id } if user_id.as_str() == "gone")
            })
            .collect();
        assert_eq!(removed.len(), 1, "{heard:?}");
    }

    /// Many connections of one user sign in and out at once from two nodes: the user comes
    /// online once and goes offline once, and a node listening to the user's channel hears
    /// each exactly once.
    pub async fn users_go_online_and_offline_once_under_races(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let user = UserChannel::new(UserId::parse("racer", 128).unwrap()).unwrap();
        let watcher = f.node("watcher").await;
        watcher
            .seams
            .broker
            .listen(&app(), user.channel())
            .await
            .unwrap();
        let nodes = |i: u64| if i.is_multiple_of(2) { &a } else { &b };
        let ins = (0..20u64).map(|i| {
            let user = user.user();
            async move {
                nodes(i)
                    .seams
                    .state
                    .sign_in(&app(), SocketId::new(40, i), user)
                    .await
                    .unwrap()
            }
        });
        let came_online = futures_util::future::join_all(ins).await;
        let came_online: Vec<u64> = came_online.into_iter().flatten().collect();
        assert_eq!(came_online.len(), 1);
        let other = UserId::parse("nobody", 128).unwrap();
        let asked = [user.user().clone(), other.clone()];
        let read = b.seams.state.online(&app(), &asked).await.unwrap();
        assert_eq!(onlines(&read), [true, false]);
        assert!(read[0].version >= came_online[0], "{read:?}");
        let outs = (0..20u64).map(|i| {
            let user = user.user();
            async move {
                nodes(i)
                    .seams
                    .state
                    .sign_out(&app(), SocketId::new(40, i), user)
                    .await
                    .unwrap()
            }
        });
        let went_offline = futures_util::future::join_all(outs).await;
        let went_offline: Vec<u64> = went_offline.into_iter().flatten().collect();
        assert_eq!(went_offline.len(), 1);
        assert!(went_offline[0] > read[0].version);
        let read = a.seams.state.online(&app(), &asked).await.unwrap();
        assert_eq!(onlines(&read), [false, false]);
        if f.separate_nodes() {
            let heard = watcher.sink.wait_for(2).await;
            let notices: Vec<_> = heard.iter().map(|e| (&e.channel, &e.message)).collect();
            assert_eq!(
                notices,
                [
                    (user.channel(), &status(true, came_online[0])),
                    (user.channel(), &status(false, went_offline[0])),
                ],
            );
            assert_eq!(watcher.sink.settled().await.len(), 2, "announced twice");
        }
    }

    /// The users of a node that dies go offline (unless signed in elsewhere), announced once
    /// by the node that cleans up.
    pub async fn a_dead_nodes_users_go_offline(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let gone = UserId::parse("gone", 128).unwrap();
        let both = UserId::parse("both", 128).unwrap();
        let state_a = a.seams.state.clone();
        state_a
            .sign_in(&app(), SocketId::new(50, 1), &gone)
            .await
            .unwrap();
        state_a
            .sign_in(&app(), SocketId::new(50, 2), &both)
            .await
            .unwrap();
        b.seams
            .state
            .sign_in(&app(), SocketId::new(51, 1), &both)
            .await
            .unwrap();
        let b_sink = b.sink.clone();
        let asked = [gone.clone(), both.clone()];
        let before = b.seams.state.online(&app(), &asked).await.unwrap();
        if !f.kill(a).await {
            return;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while onlines(&b.seams.state.online(&app(), &asked).await.unwrap()) != [false, true] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dead node's user never went offline"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let heard = b_sink.settled().await;
        let offline: Vec<_> = heard
            .iter()
            .filter_map(|e| match e.message {
                ChannelMessage::User(UserNotice::Status(s)) if !s.online => {
                    Some((e.channel.as_str(), s.version > before[0].version))
                }
                _ => None,
            })
            .collect();
        assert_eq!(offline, [("#server-to-user-gone", true)], "{heard:?}");
    }

    /// INVARIANT(user-status-versioned): every transition of a user, on whichever node, has a
    /// larger version than the one before it and than any status read before it, and a status
    /// read after it is at least as new; also across going offline and coming back (when a
    /// backend may forget what it knew of the user).
    pub async fn user_status_versions_grow_across_nodes(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let user = UserId::parse("versioned", 128).unwrap();
        let asked = [user.clone()];
        let mut last = a.seams.state.online(&app(), &asked).await.unwrap()[0];
        assert!(!last.online);
        for round in 0..3u64 {
            let (on, off) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let socket = SocketId::new(60 + round, 1);
            let v = on.seams.state.sign_in(&app(), socket, &user).await.unwrap();
            let v = v.expect("came online");
            assert!(v > last.version, "round {round}: {v} after {last:?}");
            let read = off.seams.state.online(&app(), &asked).await.unwrap()[0];
            assert!(read.online && read.version >= v, "{read:?} after {v}");
            // The owning node signs the socket out; the other node reads.
            let v2 = on
                .seams
                .state
                .sign_out(&app(), socket, &user)
                .await
                .unwrap();
            let v2 = v2.expect("went offline");
            assert!(v2 > read.version, "round {round}: {v2} after {read:?}");
            last = off.seams.state.online(&app(), &asked).await.unwrap()[0];
            assert!(!last.online && last.version >= v2, "{last:?} after {v2}");
        }
    }
}

mod channel_features {
    use super::*;

    /// A cache channel's last event is one truth for every node: the latest put wins, its
    /// number is larger than every earlier one's (also after the kept event expired), and it
    /// is gone after its time to live.
    pub async fn the_cache_keeps_the_last_event_until_it_expires(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("cache-prices");
        assert_eq!(b.seams.state.cache_get(&app(), &ch).await.unwrap(), None);
        let name = EventName::parse("price").unwrap();
        let ttl = Duration::from_secs(60);
        let first = a
            .seams
            .state
            .cache_put(&app(), &ch, &name, &Arc::from("1"), ttl)
            .await
            .unwrap();
        let second = b
            .seams
            .state
            .cache_put(&app(), &ch, &name, &Arc::from("{\"v\":2}"), ttl)
            .await
            .unwrap();
        assert!(second > first, "{second} after {first}");
        let kept = a.seams.state.cache_get(&app(), &ch).await.unwrap().unwrap();
        assert_eq!(
            (kept.name, &*kept.data, kept.seq),
            (name.clone(), "{\"v\":2}", second)
        );
        assert!(
            kept.ttl > Duration::from_secs(55) && kept.ttl <= ttl,
            "{:?}",
            kept.ttl
        );
        let other = channel("cache-other");
        assert_eq!(a.seams.state.cache_get(&app(), &other).await.unwrap(), None);

        let short = Duration::from_millis(200);
        a.seams
            .state
            .cache_put(&app(), &ch, &name, &Arc::from("3"), short)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(b.seams.state.cache_get(&app(), &ch).await.unwrap(), None);
        let after = b
            .seams
            .state
            .cache_put(&app(), &ch, &name, &Arc::from("4"), ttl)
            .await
            .unwrap();
        assert!(after > second, "numbers keep growing after expiry");
    }

    /// Every subscription change gets a larger version than the change before it, whichever
    /// node made it; the current count comes with the last change's version.
    pub async fn subscription_changes_are_versioned_in_order(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("versioned");
        let mut last = 0;
        let steps: [(bool, &TestNode, u64); 4] =
            [(true, &a, 1), (true, &b, 2), (false, &a, 1), (true, &a, 3)];
        for (join, node, socket) in steps {
            let s = SocketId::new(40, socket);
            let change = if join {
                node.seams.state.subscribe(&app(), &ch, s).await.unwrap()
            } else {
                node.seams.state.unsubscribe(&app(), &ch, s).await.unwrap()
            };
            assert!(change.version > last, "{change:?} after version {last}");
            last = change.version;
        }
        let now = b.seams.state.subscription_count(&app(), &ch).await.unwrap();
        assert_eq!(
            now,
            CountVersion {
                subscription_count: 2,
                version: last
            }
        );
        let other = b
            .seams
            .state
            .subscription_count(&app(), &channel("never"))
            .await
            .unwrap();
        assert_eq!(other.subscription_count, 0);
    }

    /// One caller cluster-wide opens a channel's count window; once it has passed, the next
    /// caller opens a new one.
    pub async fn one_count_window_at_a_time(f: impl Fixture) {
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("busy");
        // Long enough that all ten claims land in it even on a loaded machine.
        let window = Duration::from_millis(1500);
        let claims = (0..10).map(|i| {
            let node = if i % 2 == 0 { &a } else { &b };
            let ch = &ch;
            async move {
                node.seams
                    .state
                    .claim_count_window(&app(), ch, window)
                    .await
                    .unwrap()
            }
        });
        let won = futures_util::future::join_all(claims).await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let other = channel("quiet");
        assert!(a
            .seams
            .state
            .claim_count_window(&app(), &other, window)
            .await
            .unwrap());
        tokio::time::sleep(window + Duration::from_millis(200)).await;
        assert!(b
            .seams
            .state
            .claim_count_window(&app(), &ch, window)
            .await
            .unwrap());
    }

    /// Cache events and subscription counts cross nodes with their numbers.
    pub async fn cache_events_and_counts_are_relayed(f: impl Fixture) {
        if !f.separate_nodes() {
            return;
        }
        let (a, b) = (f.node("a").await, f.node("b").await);
        let ch = channel("cache-relayed");
        b.seams.broker.listen(&app(), &ch).await.unwrap();
        let cached = ChannelEvent {
            app: app(),
            channel: ch.clone(),
            except: Some(SocketId::new(1, 2)),
            message: ChannelMessage::CacheEvent {
                name: EventName::parse("e").unwrap(),
                data: Arc::from("d"),
                seq: 42,
            },
        };
        let count = ChannelEvent {
            app: app(),
            channel: ch.clone(),
            except: None,
            message: ChannelMessage::SubscriptionCount {
                count: 7,
                version: 9,
            },
        };
        a.seams.broker.publish(&cached).await.unwrap();
        a.seams.broker.publish(&count).await.unwrap();
        assert_eq!(b.sink.wait_for(2).await, [cached, count]);
    }
}

/// Runs every case against one backend: `conformance!(module_name, fixture expression)`.
macro_rules! conformance {
    ($name:ident, $fixture:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn publish_carries_the_excepted_socket() {
                cases::publish_carries_the_excepted_socket($fixture).await
            }

            #[tokio::test]
            async fn broadcasts_reach_every_other_node() {
                cases::broadcasts_reach_every_other_node($fixture).await
            }

            #[tokio::test]
            async fn one_publisher_keeps_its_order() {
                cases::one_publisher_keeps_its_order($fixture).await
            }

            #[tokio::test]
            async fn listen_and_unlisten() {
                cases::listen_and_unlisten($fixture).await
            }

            #[tokio::test]
            async fn channel_counts_and_transitions() {
                cases::channel_counts_and_transitions($fixture).await
            }

            #[tokio::test]
            async fn presence_transitions_happen_once_under_races() {
                cases::presence_transitions_happen_once_under_races($fixture).await
            }

            #[tokio::test]
            async fn member_limit_holds_under_races() {
                cases::member_limit_holds_under_races($fixture).await
            }

            #[tokio::test]
            async fn a_dead_node_is_reaped() {
                cases::a_dead_node_is_reaped($fixture).await
            }

            #[tokio::test]
            async fn users_go_online_and_offline_once_under_races() {
                cases::users_go_online_and_offline_once_under_races($fixture).await
            }

            #[tokio::test]
            async fn user_status_versions_grow_across_nodes() {
                cases::user_status_versions_grow_across_nodes($fixture).await
            }

            #[tokio::test]
            async fn a_dead_nodes_users_go_offline() {
                cases::a_dead_nodes_users_go_offline($fixture).await
            }

            #[tokio::test]
            async fn the_cache_keeps_the_last_event_until_it_expires() {
                channel_features::the_cache_keeps_the_last_event_until_it_expires($fixture).await
            }

            #[tokio::test]
            async fn subscription_changes_are_versioned_in_order() {
                channel_features::subscription_changes_are_versioned_in_order($fixture).await
            }

            #[tokio::test]
            async fn one_count_window_at_a_time() {
                channel_features::one_count_window_at_a_time($fixture).await
            }

            #[tokio::test]
            async fn cache_events_and_counts_are_relayed() {
                channel_features::cache_events_and_counts_are_relayed($fixture).await
            }
        }
    };
}

conformance!(local, Local::new().await);
conformance!(redis, Redis::new());
conformance!(nats, Nats::new());
conformance!(split_redis_nats, Split::redis_state_nats_fanout());
conformance!(split_two_redis, Split::two_redis_servers());
conformance!(split_nats_redis, Split::nats_state_redis_fanout());
