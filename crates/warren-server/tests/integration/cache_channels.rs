//! Cache channels: the last event triggered through the HTTP API is kept (cluster-wide) and
//! handed to each new subscriber right after `subscription_succeeded`, or `pusher:cache_miss`
//! when nothing is kept; never an event older than one the subscriber already got.

use std::time::Duration;

use serde_json::{json, Value};
use warren_testkit::api::{api_get, api_post};
use warren_testkit::server::{demo_app, start, start_with, TestServer};
use warren_testkit::ws::{connect, presence_data, Socket};

use crate::two_nodes::{two_nats_nodes, two_nodes, two_split_nodes, Split};

async fn trigger(via: &TestServer, channel: &str, name: &str, data: &str) {
    let r = api_post(
        via,
        "/apps/app-id/events",
        json!({"name":name,"channel":channel,"data":data}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Subscribes (signed where needed) and returns the socket and the frame that followed
/// `subscription_succeeded`.
async fn join(server: &TestServer, channel: &str) -> (Socket, Value) {
    let mut s = connect(server).await;
    let data = channel
        .starts_with("presence-")
        .then(|| presence_data(json!("u1"), None));
    s.subscribed(channel, data.as_deref()).await;
    let next = s.recv().await;
    (s, next)
}

fn assert_miss(frame: &Value, channel: &str) {
    assert_eq!(
        *frame,
        json!({"event":"pusher:cache_miss","channel":channel}),
        "{frame}"
    );
}

fn assert_event(frame: &Value, channel: &str, name: &str, data: &str) {
    assert_eq!(
        *frame,
        json!({"event":name,"channel":channel,"data":data}),
        "{frame}"
    );
}

async fn cache_info(via: &TestServer, channel: &str) -> Value {
    let r = api_get(
        via,
        &format!("/apps/app-id/channels/{channel}"),
        &[("info", "cache,subscription_count")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Miss, then the kept event for later subscribers, then live events once; on `via_a` and
/// `via_b` (the same server, or two nodes).
async fn check_the_cache(via_a: &TestServer, via_b: &TestServer, channel: &str) {
    let (mut first, next) = join(via_a, channel).await;
    assert_miss(&next, channel);
    assert_eq!(cache_info(via_b, channel).await.get("cache"), None);

    trigger(via_b, channel, "price", "{\"v\":1}").await;
    assert_event(&first.recv().await, channel, "price", "{\"v\":1}");
    trigger(via_a, channel, "price", "{\"v\":2}").await;
    assert_event(&first.recv().await, channel, "price", "{\"v\":2}");

    let (mut second, next) = join(via_b, channel).await;
    assert_event(&next, channel, "price", "{\"v\":2}");
    second.assert_silent().await;
    first.assert_silent().await;

    let info = cache_info(via_a, channel).await;
    assert_eq!(info["cache"]["data"], "{\"v\":2}", "{info}");
    let ttl = info["cache"]["ttl"].as_u64().unwrap_or_default();
    assert!((1790..=1800).contains(&ttl), "{info}");
    assert_eq!(info["subscription_count"], 2);

    trigger(via_b, channel, "price", "{\"v\":3}").await;
    for s in [&mut first, &mut second] {
        assert_event(&s.recv().await, channel, "price", "{\"v\":3}");
        s.assert_silent().await;
    }
}

#[tokio::test]
async fn a_new_subscriber_gets_the_kept_event_or_a_miss() {
    let server = start().await;
    check_the_cache(&server, &server, "cache-prices").await;
}

#[tokio::test]
async fn every_cache_channel_kind_keeps_its_event() {
    let server = start().await;
    for channel in [
        "private-cache-a",
        "private-encrypted-cache-a",
        "presence-cache-a",
    ] {
        let (_, next) = join(&server, channel).await;
        assert_miss(&next, channel);
        trigger(&server, channel, "e", "kept").await;
        let (_, next) = join(&server, channel).await;
        assert_event(&next, channel, "e", "kept");
    }
    // Channels that only look alike are not cache channels.
    let mut plain = connect(&server).await;
    plain.subscribed("cached-not", None).await;
    plain.assert_silent().await;
}

#[tokio::test]
async fn client_events_are_not_kept() {
    let server = start().await;
    let ch = "private-cache-chat";
    let (mut a, _) = join(&server, ch).await;
    let (mut b, _) = join(&server, ch).await;
    a.send(json!({"event":"client-hi","channel":ch,"data":{"x":1}}))
        .await;
    assert_eq!(b.recv().await["event"], "client-hi");
    let (_, next) = join(&server, ch).await;
    assert_miss(&next, ch);
    let info = cache_info(&server, ch).await;
    assert_eq!(info.get("cache"), None, "{info}");
}

#[tokio::test]
async fn the_kept_event_expires_after_the_apps_ttl() {
    let server = start_with(|c| demo_app(c).cache_ttl_secs = 1).await;
    trigger(&server, "cache-short", "e", "d").await;
    let (_, next) = join(&server, "cache-short").await;
    assert_event(&next, "cache-short", "e", "d");
    assert_eq!(cache_info(&server, "cache-short").await["cache"]["ttl"], 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, next) = join(&server, "cache-short").await;
    assert_miss(&next, "cache-short");
    assert_eq!(cache_info(&server, "cache-short").await.get("cache"), None);
}

#[tokio::test]
async fn info_cache_is_for_cache_channels_only() {
    let server = start().await;
    let r = api_get(&server, "/apps/app-id/channels/news", &[("info", "cache")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Not an attribute of a publish.
    let r = api_post(
        &server,
        "/apps/app-id/events",
        json!({"name":"e","channel":"cache-a","data":"d","info":"cache"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn the_cache_is_shared_by_the_nodes_of_a_cluster() {
    let (a, b) = two_nodes(|_| {}).await;
    check_the_cache(&a, &b, "cache-clustered").await;
}

#[tokio::test]
async fn the_cache_is_shared_by_the_nodes_of_a_nats_cluster() {
    let (a, b, _nats) = two_nats_nodes(|_| {}).await;
    check_the_cache(&a, &b, "cache-nats").await;
}

#[tokio::test]
async fn the_cache_is_shared_by_the_nodes_of_a_split_cluster() {
    let (a, b, _servers) = two_split_nodes(Split::RedisStateNatsFanout, |_| {}).await;
    check_the_cache(&a, &b, "cache-split").await;
}

/// Subscribers join while events are published one after another: each sees the cached event
/// (or a miss) first, then every later event live, none twice or out of order and none
/// missing, up to the last event.
async fn check_publishing_while_subscribing(publish_via: &TestServer, join_via: &TestServer) {
    const EVENTS: u64 = 40;
    const JOINERS: usize = 8;
    let ch = "cache-race";
    let publisher = async {
        for i in 0..EVENTS {
            trigger(publish_via, ch, "n", &i.to_string()).await;
        }
    };
    let joiners = futures_util::future::join_all((0..JOINERS).map(|k| async move {
        tokio::time::sleep(Duration::from_millis(15 * k as u64)).await;
        let (mut s, first) = join(join_via, ch).await;
        let mut seen: Vec<u64> = Vec::new();
        let missed = first["event"] != "n";
        let mut frame = first;
        loop {
            if frame["event"] == "n" {
                let n: u64 = frame["data"]
                    .as_str()
                    .and_then(|d| d.parse().ok())
                    .expect("a number");
                seen.push(n);
                if n == EVENTS - 1 {
                    break;
                }
            } else {
                assert_miss(&frame, ch);
                assert!(seen.is_empty(), "a miss after events: {seen:?}");
            }
            frame = s.recv().await;
        }
        s.assert_silent().await;
        (missed, seen)
    }));
    let ((), seen) = tokio::join!(publisher, joiners);
    for (missed, events) in seen {
        // After the cached event, every newer one arrives, in order: consecutive numbers.
        assert!(
            events.windows(2).all(|w| w[0] + 1 == w[1]),
            "not every event after the cached one, in order: {events:?}"
        );
        // After a miss nothing was cached yet, so every event must arrive live.
        if missed {
            assert_eq!(events.first(), Some(&0), "events lost after a miss");
        }
    }
}

#[tokio::test]
async fn subscribing_while_publishing_never_goes_back_in_time() {
    let server = start().await;
    check_publishing_while_subscribing(&server, &server).await;
}

#[tokio::test]
async fn subscribing_while_publishing_never_goes_back_in_time_across_nodes() {
    let (a, b) = two_nodes(|_| {}).await;
    check_publishing_while_subscribing(&a, &b).await;
}

#[tokio::test]
async fn subscribing_while_publishing_never_goes_back_in_time_across_nats_nodes() {
    let (a, b, _nats) = two_nats_nodes(|_| {}).await;
    check_publishing_while_subscribing(&a, &b).await;
}

#[tokio::test]
async fn subscribing_while_publishing_never_goes_back_in_time_across_split_nodes() {
    let (a, b, _servers) = two_split_nodes(Split::RedisStateNatsFanout, |_| {}).await;
    check_publishing_while_subscribing(&a, &b).await;
}
