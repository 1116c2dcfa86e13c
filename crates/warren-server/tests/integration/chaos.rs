//! The cluster when Redis misbehaves, against a Redis of the test's own: no event is lost
//! without the clients that may have missed it being told (closed with 4200, so that they
//! reconnect and subscribe again).

use std::time::Duration;

use serde_json::json;
use warren_testkit::api::{api_get, api_post};
use warren_testkit::redis::{cli, unique_prefix, use_redis, RedisServer};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::{close_code, connect};
use warren_testkit::WAIT;

async fn node(redis: &RedisServer, prefix: &str) -> TestServer {
    let url = redis.url();
    start_with(|c| use_redis(c, vec![url], prefix, 2000)).await
}

async fn publish(to: &TestServer, channel: &str, data: &str) {
    let r = api_post(
        to,
        "/apps/app-id/events",
        json!({"name": "news", "channel": channel, "data": data}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `CLIENT KILL TYPE pubsub` cuts every node's subscriber connection: whatever was published
/// until it is back is gone. The node closes its subscribed connections with 4200 and says
/// so; a client that reconnects and subscribes again hears the channel once more.
#[tokio::test]
async fn a_killed_subscriber_connection_closes_its_clients_with_4200() {
    let redis = RedisServer::start();
    let prefix = unique_prefix("chaos");
    let a = node(&redis, &prefix).await;
    let b = node(&redis, &prefix).await;
    let mut listener = connect(&b).await;
    listener.subscribed("ticker", None).await;
    publish(&a, "ticker", "before").await;
    let got = listener.next_event("news", WAIT).await;
    assert_eq!(got["data"], "before");

    let killed = cli(redis.port(), &["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_ne!(killed.trim(), "0", "pub/sub clients were connected");
    let error = listener.next_event("pusher:error", WAIT).await;
    assert_eq!(error["data"]["code"], 4200, "{error}");
    assert_eq!(close_code(&mut listener.ws).await, Some(4200));

    let health = api_get(&b, "/health", &[]).await.json();
    assert!(health["event_loss_resyncs"].as_u64() >= Some(1), "{health}");
    assert!(
        health["event_loss_closed_connections"].as_u64() >= Some(1),
        "{health}"
    );

    // Reconnecting, as pusher-js does on 4200: subscribed means receiving again.
    let mut again = None;
    for _ in 0..50 {
        let mut c = connect(&b).await;
        let reply = c.subscribe("ticker", None).await;
        if reply["event"] == "pusher_internal:subscription_succeeded" {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = again.expect("subscribes again once the subscriber is back");
    publish(&a, "ticker", "after").await;
    let got = again.next_event("news", WAIT).await;
    assert_eq!(got["data"], "after");
}
