//! The split setups (fan-out and state on servers of their own). Presence announcements no
//! longer travel in the same atomic step as the change: each goes out after it, with the
//! change's version, and every node (the deciding one included) applies a member's
//! announcements in version order. Under racing joins and leaves of the same users on both
//! nodes, every client must end with the cluster's member list, and the last announcement it
//! got about each user must be the last change (a departure).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use warren_testkit::api::api_get;
use warren_testkit::server::TestServer;
use warren_testkit::ws::{connect, decode_data, presence_data, Socket};

use crate::cluster_users::{redis_at, resp_bulk};
use crate::two_nodes::{two_split_nodes, Split};

const CHANNEL: &str = "presence-race";
/// Users joining and leaving at once, each on both nodes in every round.
const USERS: usize = 6;
const ROUNDS: usize = 10;
/// How long a watcher must stay quiet before its list is read as final.
const QUIET: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn racing_joins_and_leaves_end_with_one_member_list_redis_state_nats_fanout() {
    check_racing_joins_and_leaves(Split::RedisStateNatsFanout).await;
}

#[tokio::test]
async fn racing_joins_and_leaves_end_with_one_member_list_on_two_redis_servers() {
    check_racing_joins_and_leaves(Split::TwoRedis).await;
}

/// INVARIANT(presence-ordered): a presence announcement older than the last change a node
/// applied for the member (here: the node's own departure of the member, delivered through
/// the same ordering) is dropped however late it comes; a newer one is delivered. The late
/// ones are published on the fan-out Redis as another node's would be.
#[tokio::test]
async fn a_late_presence_announcement_does_not_undo_a_newer_change() {
    let (a, _b, servers) = two_split_nodes(Split::TwoRedis, |_| {}).await;
    let fanout = servers
        .fanout_redis
        .as_ref()
        .expect("a fan-out Redis")
        .url();
    let mut watcher = connect(&a).await;
    let data = presence_data(json!("watcher"), None);
    watcher.subscribed(CHANNEL, Some(&data)).await;
    let u = {
        let mut u = connect(&a).await;
        u.subscribed(CHANNEL, Some(&presence_data(json!("u"), None)))
            .await;
        u
    };
    let added = watcher.recv().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    u.close().await;
    let removed = watcher.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    // The channel's version now is that of u's departure (the watcher keeps it occupied).
    let base = format!("{{{}:app-id}}", servers.prefix);
    let cv = format!("{base}:cv");
    let reply = redis_at(
        &warren_testkit::redis::shared_url(),
        &[b"HGET", cv.as_bytes(), CHANNEL.as_bytes()],
    )
    .await;
    let left: u64 = resp_bulk(&reply).parse().expect("a version");
    let relay = format!("{base}:pev:{CHANNEL}");
    for late in [left - 1, left] {
        let envelope = arrival_envelope("u", late);
        let n = redis_at(&fanout, &[b"PUBLISH", relay.as_bytes(), &envelope]).await;
        assert_eq!(n, b":1\r\n", "node a listens to the channel");
    }
    watcher.assert_silent().await;
    let envelope = arrival_envelope("u", left + 1);
    redis_at(&fanout, &[b"PUBLISH", relay.as_bytes(), &envelope]).await;
    let added = watcher.recv().await;
    assert_eq!(
        added["event"], "pusher_internal:member_added",
        "a newer one is applied"
    );
    assert_eq!(decode_data(&added)["user_id"], "u");
}

/// Another node's `member_added` of `user` decided at `version`, as `Broker::announce` sends
/// it on Redis (`cluster::envelope`, kind 10).
fn arrival_envelope(user: &str, version: u64) -> Vec<u8> {
    let mut out = vec![2];
    for s in ["elsewhere~1", "", "app-id", CHANNEL] {
        out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.push(10);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&u16::try_from(user.len()).unwrap().to_be_bytes());
    out.extend_from_slice(user.as_bytes());
    out
}

/// A watcher's view of the channel: the members it was told of, and per user the last
/// announcement it got.
struct View {
    members: BTreeSet<String>,
    last: HashMap<String, &'static str>,
}

impl View {
    fn of(succeeded: &Value) -> Self {
        let ids = succeeded["presence"]["ids"].as_array().expect("ids");
        Self {
            members: ids
                .iter()
                .filter_map(|v| v.as_str())
                .map(Into::into)
                .collect(),
            last: HashMap::new(),
        }
    }

    /// Applies what arrives until the watcher stays quiet.
    async fn follow(&mut self, watcher: &mut Socket) {
        while let Some(msg) = watcher.try_recv(QUIET).await {
            let user = decode_data(&msg)["user_id"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            match msg["event"].as_str() {
                Some("pusher_internal:member_added") => {
                    self.members.insert(user.clone());
                    self.last.insert(user, "added");
                }
                Some("pusher_internal:member_removed") => {
                    self.members.remove(&user);
                    self.last.insert(user, "removed");
                }
                _ => panic!("unexpected {msg}"),
            }
        }
    }
}

async fn check_racing_joins_and_leaves(setup: Split) {
    let (a, b, _servers) = two_split_nodes(setup, |_| {}).await;
    let mut watchers = Vec::new();
    for (i, node) in [&a, &b].into_iter().enumerate() {
        let mut w = connect(node).await;
        let data = presence_data(json!(format!("watcher-{i}")), None);
        let succeeded = w.subscribed(CHANNEL, Some(&data)).await;
        watchers.push((w, View::of(&succeeded)));
    }
    let racers = (0..USERS).map(|u| race(&a, &b, u));
    futures_util::future::join_all(racers).await;

    let truth: BTreeSet<String> = ["watcher-0", "watcher-1"].map(String::from).into();
    for via in [&a, &b] {
        // A closed connection leaves its channels right after its socket closed.
        let deadline = tokio::time::Instant::now() + warren_testkit::WAIT;
        loop {
            let ids = members(via).await;
            if ids == truth {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster's list: {ids:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (i, (watcher, view)) in watchers.iter_mut().enumerate() {
        view.follow(watcher).await;
        assert_eq!(view.members, truth, "watcher {i}'s list");
        for u in 0..USERS {
            let last = view.last.get(&format!("user-{u}")).copied();
            assert_eq!(
                last,
                Some("removed"),
                "watcher {i}, user-{u}: the last change"
            );
        }
    }
}

/// The channel's members as the HTTP API reports them.
async fn members(via: &TestServer) -> BTreeSet<String> {
    let path = format!("/apps/app-id/channels/{CHANNEL}/users");
    let users = api_get(via, &path, &[]).await.json();
    users["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str().map(Into::into))
        .collect()
}

/// One user joining on both nodes at once and leaving again, `ROUNDS` times; the leaves race
/// in even rounds and follow each other in odd ones, from either side.
async fn race(a: &TestServer, b: &TestServer, u: usize) {
    let data = presence_data(json!(format!("user-{u}")), None);
    for round in 0..ROUNDS {
        let (mut x, mut y) = tokio::join!(connect(a), connect(b));
        tokio::join!(
            x.subscribed(CHANNEL, Some(&data)),
            y.subscribed(CHANNEL, Some(&data))
        );
        match round % 4 {
            0 | 2 => {
                tokio::join!(x.close(), y.close());
            }
            1 => {
                x.close().await;
                y.close().await;
            }
            _ => {
                y.close().await;
                x.close().await;
            }
        }
    }
}
