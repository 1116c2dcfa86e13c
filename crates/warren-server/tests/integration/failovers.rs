//! Failovers that can fail: the Redis primary killed under Sentinel, a Redis Cluster master
//! killed (its replica takes over), and a Redis Cluster slot moved under traffic (MOVED/ASK).
//! After each, writes made through one node (a presence join and leave, a subscription that
//! occupies a channel, a publish) must be seen from the other: a demoted or dead Redis would
//! answer reads, not these.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use warren_testkit::api::{api_get, api_post};
use warren_testkit::redis::{cli, cli_ok, use_redis, RedisCluster, RedisSentinel};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::{connect, presence_data, Socket};
use warren_testkit::WAIT;

const NODE_TIMEOUT_MS: u64 = 2000;
/// How long a failover may take: the Sentinel or the cluster notices a dead primary after
/// 1-2 s, elects and promotes; a loaded machine adds to it.
const FAILOVER: Duration = Duration::from_secs(30);

async fn cluster_node(urls: Vec<String>, prefix: &str) -> TestServer {
    let prefix = prefix.to_owned();
    start_with(move |c| use_redis(c, urls, prefix, NODE_TIMEOUT_MS)).await
}

/// Subscribes a new connection on `on` to `channel` (as `user` on a presence channel),
/// retrying until the cluster takes it, as pusher-js does after a 4200.
async fn joined(on: &TestServer, channel: &str, user: Option<&str>) -> Socket {
    let deadline = Instant::now() + FAILOVER;
    let data = user.map(|u| presence_data(json!(u), None));
    loop {
        let mut s = connect(on).await;
        let reply = s.subscribe(channel, data.as_deref()).await;
        if reply["event"] == "pusher_internal:subscription_succeeded" {
            return s;
        }
        assert!(Instant::now() < deadline, "no subscribe: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The channel's users as `on` answers, `None` while it answers 503 (reconnecting).
async fn users(on: &TestServer, channel: &str) -> Option<BTreeSet<String>> {
    let r = api_get(on, &format!("/apps/app-id/channels/{channel}/users"), &[]).await;
    if r.status == 503 {
        return None;
    }
    assert_eq!(r.status, 200, "{}", r.body);
    Some(
        r.json()["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// Waits until `check` holds of what `on` answers for `channel`'s users.
async fn users_become(on: &TestServer, channel: &str, check: impl Fn(&BTreeSet<String>) -> bool) {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let now = users(on, channel).await;
        if now.as_ref().is_some_and(&check) {
            return;
        }
        assert!(Instant::now() < deadline, "users of {channel}: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish(on: &TestServer, channel: &str, data: &str) -> u16 {
    let body = json!({"name":"e","channel":channel,"data":data});
    api_post(on, "/apps/app-id/events", body).await.status
}

/// Resyncs so far (`/health`), or `None` while the node answers something else.
async fn resyncs(on: &TestServer) -> Option<u64> {
    let r = api_get(on, "/health", &[]).await;
    (r.status == 200)
        .then(|| r.json()["event_loss_resyncs"].as_u64())
        .flatten()
}

/// Waits until both nodes resynced after the failover (their subscriber reconnected, or the
/// slot map changed: clients closed with 4200) and no further resync came for a second, so
/// that the writes checked next are not undone by a late 4200.
async fn settled(a: &TestServer, b: &TestServer) {
    let deadline = Instant::now() + FAILOVER;
    loop {
        let before = (resyncs(a).await, resyncs(b).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = (resyncs(a).await, resyncs(b).await);
        if let (Some(x), Some(y)) = after {
            if x >= 1 && y >= 1 && before == after {
                return;
            }
        }
        assert!(Instant::now() < deadline, "resyncs: {after:?}");
    }
}

/// The writes every failover test ends with, through `a` and checked from `b` and back:
/// a presence join and leave, an occupied channel, a publish.
async fn writes_cross_nodes(a: &TestServer, b: &TestServer, tag: &str) {
    let presence = format!("presence-{tag}");
    let carol = joined(a, &presence, Some("carol")).await;
    users_become(b, &presence, |u| u.contains("carol")).await;
    let counted = format!("counted-{tag}");
    let mut dave = joined(b, &counted, None).await;
    // Right after a failover a node may answer 503 for a moment (its client reconnecting).
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let info = api_get(a, &format!("/apps/app-id/channels/{counted}"), &[]).await;
        if info.status == 200 {
            assert_eq!(info.json()["occupied"], true, "{}", info.body);
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", info.status, info.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while publish(a, &counted, "across").await != 200 {
        assert!(Instant::now() < deadline, "publishing did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dave.next_event("e", WAIT).await["data"], "across");
    carol.close().await;
    users_become(b, &presence, |u| !u.contains("carol")).await;
}

/// The primary killed (not a polite `SENTINEL FAILOVER`): the Sentinel promotes the replica,
/// and the nodes write to it. Takes about 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_primary_killed_then_writes_cross_nodes() {
    let mut redis = RedisSentinel::start();
    let url = vec![redis.url()];
    let a = cluster_node(url.clone(), "wk").await;
    let b = cluster_node(url, "wk").await;
    let _before = joined(&a, "presence-k", Some("alice")).await;
    users_become(&b, "presence-k", |u| u.contains("alice")).await;

    redis.kill_primary();
    let killed = Instant::now();
    while !cli(redis.replica, &["role"]).starts_with("master") {
        assert!(killed.elapsed() < FAILOVER, "the replica was not promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("replica promoted {:?} after the kill", killed.elapsed());
    settled(&a, &b).await;
    writes_cross_nodes(&a, &b, "k").await;
}

/// The master holding the app's state killed; its replica takes over. Takes about 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_then_writes_cross_nodes() {
    let mut redis = RedisCluster::with_replicas(3);
    let a = cluster_node(redis.urls(), "wm").await;
    let b = cluster_node(redis.urls(), "wm").await;
    let _before = joined(&a, "presence-m", Some("alice")).await;
    users_become(&b, "presence-m", |u| u.contains("alice")).await;

    let via = redis.ports[0];
    let slot = RedisCluster::slot_of(via, "{wm:app-id}");
    let victim = RedisCluster::master_of_slot(via, slot);
    let witness = *redis
        .ports
        .iter()
        .find(|&&p| p != victim)
        .expect("another master");
    redis.kill(victim);
    let killed = Instant::now();
    loop {
        let ok = cli(witness, &["cluster", "info"]).contains("cluster_state:ok");
        if ok && RedisCluster::master_of_slot(witness, slot) != victim {
            break;
        }
        assert!(killed.elapsed() < FAILOVER, "no replica took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("replica took over {:?} after the kill", killed.elapsed());
    settled(&a, &b).await;
    writes_cross_nodes(&a, &b, "m").await;
}

/// Moves one slot from its master to another, key by key, as `redis-cli --cluster reshard`
/// does: clients meet ASK while it moves and MOVED after.
fn move_slot(ports: &[u16], slot: u16) -> (u16, u16) {
    let from = RedisCluster::master_of_slot(ports[0], slot);
    let to = *ports.iter().find(|&&p| p != from).expect("another master");
    let (from_id, to_id) = (RedisCluster::node_id(from), RedisCluster::node_id(to));
    let slot_s = slot.to_string();
    cli_ok(to, &["cluster", "setslot", &slot_s, "importing", &from_id]);
    cli_ok(from, &["cluster", "setslot", &slot_s, "migrating", &to_id]);
    loop {
        let keys = cli_ok(from, &["cluster", "getkeysinslot", &slot_s, "10"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let port = to.to_string();
        let mut args = vec!["migrate", "127.0.0.1", &port, "", "0", "5000", "keys"];
        args.extend(keys.iter().copied());
        let out = cli_ok(from, &args);
        assert!(
            out.contains("OK") || out.contains("NOKEY"),
            "migrate: {out}"
        );
        // Slowly, so that traffic meets the slot half moved.
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in ports {
        cli_ok(p, &["cluster", "setslot", &slot_s, "node", &to_id]);
    }
    (from, to)
}

/// The slot of a sharded pub/sub channel moved to another master while events are published
/// to it: Redis drops the subscriptions of the moved slot, so the listener must be told
/// (4200) unless it got every accepted event; then the cluster works. Takes about 8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_resharding_of_a_pubsub_slot_under_traffic_loses_nothing_silently() {
    resharding_under_traffic("wr:ev:app-id:sharded", "wr").await;
}

/// The slot of the app's state moved while presence members join and leave through the
/// other node (scripts meet ASK while it moves, MOVED after).
///
/// With fred 10.1 a node's command client can stop answering once the slot has moved
/// (every command times out, heartbeats included, and a forced reconnection hangs too); the
/// heartbeat task then replaces the client (`registry::heartbeats`), and this test is how
/// that is known to work: without it the node stays deaf, 503 on every read. Takes about 12 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_resharding_of_the_state_slot_under_churn() {
    resharding_under_traffic("{ws:app-id}", "ws").await;
}

/// Moves the slot of `key` from its master to another while a node publishes to `sharded`,
/// which a client on the other node listens to, and members join and leave `presence-r`
/// through that other node. The listener got every accepted event or was told (4200); no
/// member of the churn stays; writes cross the nodes after.
async fn resharding_under_traffic(key: &str, prefix: &str) {
    let redis = RedisCluster::start(3);
    let a = cluster_node(redis.urls(), prefix).await;
    let b = cluster_node(redis.urls(), prefix).await;
    let mut listener = joined(&b, "sharded", None).await;
    let _member = joined(&a, "presence-r", Some("alice")).await;
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (accepted, running, to) = (accepted.clone(), running.clone(), a.addr);
        tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::SeqCst) {
                let body = json!({"name":"e","channel":"sharded","data":n.to_string()});
                let r = api_post(&to, "/apps/app-id/events", body).await;
                if r.status == 200 {
                    accepted.lock().expect("lock").insert(n);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Presence churn through the move: each join and leave is a script in the moving slot.
    let churn = {
        let (running, on) = (running.clone(), b.addr);
        tokio::spawn(async move {
            let mut joins = 0;
            while running.load(Ordering::SeqCst) {
                let mut s = connect(&on).await;
                let data = presence_data(json!(format!("c{joins}")), None);
                let _ = s.subscribe("presence-r", Some(&data)).await;
                s.close().await;
                joins += 1;
            }
            joins
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ports = redis.ports.clone();
    let key = key.to_owned();
    let moves = tokio::task::spawn_blocking(move || {
        move_slot(&ports, RedisCluster::slot_of(ports[0], &key))
    })
    .await
    .expect("slots moved");
    eprintln!("moved (from, to): {moves:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    running.store(false, Ordering::SeqCst);
    publisher.await.expect("publisher");
    let joins = churn.await.expect("churn");
    let accepted = accepted.lock().expect("lock").clone();
    assert!(accepted.len() > 20, "accepted: {}", accepted.len());
    eprintln!(
        "{} events accepted, {joins} presence joins and leaves",
        accepted.len()
    );

    // The listener got every accepted event, or was told to reconnect.
    let mut got = BTreeSet::new();
    let mut told = false;
    while let Some(msg) = listener.try_recv(Duration::from_millis(500)).await {
        if msg["event"] == "pusher:error" {
            assert_eq!(msg["data"]["code"], 4200, "{msg}");
            told = true;
            break;
        }
        if msg["event"] == "e" {
            got.insert(
                msg["data"]
                    .as_str()
                    .and_then(|d| d.parse::<u64>().ok())
                    .expect("n"),
            );
        }
    }
    if !told {
        let missed: Vec<_> = accepted.difference(&got).collect();
        assert!(missed.is_empty(), "missed silently: {missed:?}");
    }
    // A node whose Redis client was replaced resyncs (4200) only once its slot-map watch can
    // read the map again: let that happen before the checks.
    settled(&a, &b).await;
    // Nobody of the churn is left over, and the cluster works.
    users_become(&a, "presence-r", |u| u.iter().all(|id| id == "alice")).await;
    writes_cross_nodes(&a, &b, "r").await;
    let mut after = joined(&b, "sharded", None).await;
    assert_eq!(publish(&a, "sharded", "after").await, 200);
    assert_eq!(after.next_event("e", WAIT).await["data"], "after");
}
