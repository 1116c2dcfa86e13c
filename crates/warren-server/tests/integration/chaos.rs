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

/// The figure of docs/RELIABILITY.md: how long a node holding 100,000 subscriptions takes to
/// record them again after Redis lost everything, and how long a subscribe waits meanwhile.
/// Ignored in the suite (a load, not a check); run it with
/// `cargo test --release -p warren-server --test integration rebuild_of_100k -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn rebuild_of_100k_subscriptions() {
    use tokio::io::AsyncWriteExt;
    use warren_testkit::raw::{masked_text, raw_tcp_upgrade, read_socket_id};

    const CONNECTIONS: usize = 100;
    const PER_CONNECTION: usize = 1000;
    let redis = RedisServer::start();
    let prefix = unique_prefix("rebuild");
    let url = redis.url();
    let server = start_with(|c| {
        use_redis(c, vec![url], &prefix, 2000);
        let app = warren_testkit::server::demo_app(c);
        app.subscribe_rate_per_sec = 100_000;
        app.max_subscriptions_per_connection = PER_CONNECTION;
    })
    .await;
    let occupied = || {
        cli(redis.port(), &["HLEN", &format!("{{{prefix}:app-id}}:ch")])
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    let mut sockets = Vec::new();
    for i in 0..CONNECTIONS {
        let mut s = raw_tcp_upgrade(&server).await;
        read_socket_id(&mut s).await;
        let mut burst = Vec::new();
        for j in 0..PER_CONNECTION {
            let sub = json!({"event":"pusher:subscribe","data":{"channel":format!("c-{i}-{j}")}});
            burst.extend_from_slice(&masked_text(sub.to_string().as_bytes()));
        }
        s.write_all(&burst).await.expect("subscribes");
        sockets.push(s);
    }
    let total = CONNECTIONS * PER_CONNECTION;
    let drain = tokio::spawn(async move {
        // Read and drop the answers, so the server's writes never stall.
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let mut any = false;
            for s in sockets.iter_mut() {
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
                {
                    any |= n > 0;
                }
            }
            if !any {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let started = std::time::Instant::now();
    while occupied() < total {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "subscribing stalled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{total} subscriptions recorded in {:?}", started.elapsed());

    cli(redis.port(), &["FLUSHALL"]);
    let flushed = std::time::Instant::now();
    // While the node rebuilds, a new connection subscribes: how long does it wait?
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut probe = connect(&server).await;
    let asked = std::time::Instant::now();
    let reply = probe.subscribe("probe", None).await;
    let waited = asked.elapsed();
    let during = occupied();
    while occupied() < total + 1 {
        assert!(
            flushed.elapsed() < Duration::from_secs(120),
            "rebuild stalled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "after FLUSHALL: {total} subscriptions recorded again {:?} later (detection included); \
         a subscribe during the rebuild ({during} recorded then) was answered in {waited:?}: {}",
        flushed.elapsed(),
        reply["event"]
    );
    drain.abort();
}
