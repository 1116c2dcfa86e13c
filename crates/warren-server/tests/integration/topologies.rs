//! Redis Cluster (three masters, sharded pub/sub) and Sentinel (with a forced failover),
//! each started by the test from `redis-server` in a temporary directory.

use std::time::{Duration, Instant};

use serde_json::json;
use warren_testkit::api::{api_get, api_post};
use warren_testkit::redis::{cli, use_redis, RedisCluster, RedisSentinel, SENTINEL_MASTER};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::{connect, presence_data};

/// Short, so that nodes cut off during a failover are not kept waiting long.
const NODE_TIMEOUT_MS: u64 = 2000;

/// A node on this test's own Redis; the Redis is the test's alone, so a fixed prefix serves.
async fn cluster_node(urls: Vec<String>, prefix: &str) -> TestServer {
    let prefix = prefix.to_owned();
    start_with(move |c| use_redis(c, urls, prefix, NODE_TIMEOUT_MS)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_with_three_masters_and_sharded_pubsub() {
    let redis = RedisCluster::start(3);
    let ports = &redis.ports;
    let urls = redis.urls();
    let a = cluster_node(urls.clone(), "wc").await;
    let b = cluster_node(urls, "wc").await;

    // Many channels, so that they land on every shard.
    let channels: Vec<String> = (0..12).map(|i| format!("presence-shard-{i}")).collect();
    let mut alice = connect(&a).await;
    let mut bob = connect(&b).await;
    for (i, ch) in channels.iter().enumerate() {
        alice
            .subscribed(ch, Some(&presence_data(json!("alice"), None)))
            .await;
        bob.subscribed(ch, Some(&presence_data(json!("bob"), None)))
            .await;
        assert_eq!(alice.recv().await["event"], "pusher_internal:member_added");
        bob.subscribed(&format!("shard-{i}"), None).await;
    }
    for ch in &channels {
        let r = api_post(
            &a,
            "/apps/app-id/events",
            json!({"name":"e","channel":ch,"data":ch}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(bob.recv().await["data"], ch.as_str());
        assert_eq!(alice.recv().await["data"], ch.as_str());
        let users = api_get(&b, &format!("/apps/app-id/channels/{ch}/users"), &[]).await;
        assert_eq!(
            users.json()["users"].as_array().map(Vec::len),
            Some(2),
            "{}",
            users.body
        );
    }
    // Public channels are sharded pub/sub channels spread over more than one shard; presence
    // channels relay in the app's slot, where their state is, so that the state scripts can
    // publish their announcements atomically.
    let shards_used = ports
        .iter()
        .filter(|&&p| {
            cli(p, &["pubsub", "shardchannels", "wc:ev:*"]).contains("wc:ev:app-id:shard-")
        })
        .count();
    assert!(
        shards_used >= 2,
        "sharded channels on {shards_used} shard(s)"
    );
    let presence_shards = ports
        .iter()
        .filter(|&&p| {
            cli(p, &["pubsub", "shardchannels", "{wc:app-id}:pev:*"]).contains("presence-shard-")
        })
        .count();
    assert_eq!(presence_shards, 1);
    for i in 0..12 {
        let r = api_post(
            &a,
            "/apps/app-id/events",
            json!({"name":"p","channel":format!("shard-{i}"),"data":"x"}),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(bob.recv().await["channel"], format!("shard-{i}"));
    }
    let listed = api_get(
        &a,
        "/apps/app-id/channels",
        &[
            ("filter_by_prefix", "presence-shard-"),
            ("info", "user_count"),
        ],
    )
    .await;
    assert_eq!(
        listed.json()["channels"].as_object().map(|m| m.len()),
        Some(12)
    );
    // Departures announced from inside the cluster reach the other node on every channel.
    bob.close().await;
    for _ in &channels {
        assert_eq!(
            alice.recv().await["event"],
            "pusher_internal:member_removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_urls_follow_a_failover() {
    let redis = RedisSentinel::start();
    let url = vec![redis.url()];
    let a = cluster_node(url.clone(), "ws").await;
    let b = cluster_node(url, "ws").await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    on_a.subscribed("presence-s", Some(&presence_data(json!("1"), None)))
        .await;
    on_b.subscribed("presence-s", Some(&presence_data(json!("2"), None)))
        .await;
    assert_eq!(on_a.recv().await["event"], "pusher_internal:member_added");
    api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"e","channel":"presence-s","data":"before"}),
    )
    .await;
    assert_eq!(on_b.recv().await["data"], "before");
    assert_eq!(on_a.recv().await["data"], "before");

    let out = cli(redis.sentinel, &["sentinel", "failover", SENTINEL_MASTER]);
    assert!(out.contains("OK"), "failover refused: {out}");
    // After the failover the nodes talk to the new primary: writes and delivery work again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let promoted = cli(redis.replica, &["role"]).starts_with("master");
        let r = api_post(
            &a,
            "/apps/app-id/events",
            json!({"name":"probe","channel":"presence-s","data":"after"}),
        )
        .await;
        if promoted && r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after failover: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Drain probes, then check one clean delivery and the shared state.
    let r = api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"final","channel":"presence-s","data":"after"}),
    )
    .await;
    assert_eq!(r.status, 200);
    loop {
        let m = on_b.recv().await;
        if m["event"] == "final" {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let users = api_get(&b, "/apps/app-id/channels/presence-s/users", &[]).await;
        if users.status == 200 && users.json()["users"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members not restored: {}",
            users.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
