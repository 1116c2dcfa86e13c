//! `pusher_internal:subscription_count` (apps with `subscription_count_events`): sent to a
//! non-presence channel's subscribers on every change, counted cluster-wide, at most once
//! per 5 s on channels above 100 subscribers.

use std::time::{Duration, Instant};

use serde_json::json;
use warren_server::config::Config;
use warren_testkit::server::{demo_app, start, start_with, TestServer};
use warren_testkit::ws::{connect, decode_data, presence_data, Socket};

use crate::two_nodes::{two_nats_nodes, two_nodes, two_split_nodes, Split};

fn counting(c: &mut Config) {
    demo_app(c).subscription_count_events = true;
}

/// The next message, which must be the channel's count.
async fn count(s: &mut Socket, channel: &str) -> u64 {
    let msg = s.recv().await;
    assert_eq!(msg["event"], "pusher_internal:subscription_count", "{msg}");
    assert_eq!(msg["channel"], channel, "{msg}");
    decode_data(&msg)["subscription_count"]
        .as_u64()
        .expect("a count")
}

async fn join(server: &TestServer, channel: &str) -> Socket {
    let mut s = connect(server).await;
    s.subscribed(channel, None).await;
    s
}

/// Joins and leaves on `a` and `b` (one server or two nodes): every subscriber hears each
/// change, the newcomer right after its `subscription_succeeded`.
async fn check_counts(a: &TestServer, b: &TestServer, channel: &str) {
    let mut first = join(a, channel).await;
    assert_eq!(count(&mut first, channel).await, 1);
    let mut second = join(b, channel).await;
    assert_eq!(count(&mut second, channel).await, 2);
    assert_eq!(count(&mut first, channel).await, 2);
    let mut third = join(a, channel).await;
    assert_eq!(count(&mut third, channel).await, 3);
    for s in [&mut first, &mut second] {
        assert_eq!(count(s, channel).await, 3);
    }
    second
        .send(json!({"event":"pusher:unsubscribe","data":{"channel":channel}}))
        .await;
    for s in [&mut first, &mut third] {
        assert_eq!(count(s, channel).await, 2);
    }
    third.close().await;
    assert_eq!(count(&mut first, channel).await, 1);
    first.assert_silent().await;
    second.assert_silent().await;
}

#[tokio::test]
async fn every_change_is_counted() {
    let server = start_with(counting).await;
    check_counts(&server, &server, "news").await;
    check_counts(&server, &server, "private-news").await;
    check_counts(&server, &server, "private-encrypted-news").await;
}

#[tokio::test]
async fn counts_are_cluster_wide() {
    let (a, b) = two_nodes(counting).await;
    check_counts(&a, &b, "news").await;
}

#[tokio::test]
async fn counts_are_cluster_wide_on_nats() {
    let (a, b, _nats) = two_nats_nodes(counting).await;
    check_counts(&a, &b, "news").await;
}

#[tokio::test]
async fn counts_are_cluster_wide_when_split() {
    let (a, b, _servers) = two_split_nodes(Split::RedisStateNatsFanout, counting).await;
    check_counts(&a, &b, "news").await;
}

#[tokio::test]
async fn presence_channels_and_other_apps_get_no_counts() {
    let server = start_with(counting).await;
    let mut a = connect(&server).await;
    a.subscribed("presence-room", Some(&presence_data(json!("a"), None)))
        .await;
    let mut b = connect(&server).await;
    b.subscribed("presence-room", Some(&presence_data(json!("b"), None)))
        .await;
    assert_eq!(a.recv().await["event"], "pusher_internal:member_added");
    a.assert_silent().await;
    b.assert_silent().await;

    let plain = start().await;
    let mut c = join(&plain, "news").await;
    let _d = join(&plain, "news").await;
    c.assert_silent().await;
}

/// The counts a watcher receives within `within`.
async fn counts_within(s: &mut Socket, within: Duration) -> Vec<u64> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while let Some(msg) = s
        .try_recv(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        assert_eq!(msg["event"], "pusher_internal:subscription_count", "{msg}");
        out.push(
            decode_data(&msg)["subscription_count"]
                .as_u64()
                .unwrap_or(0),
        );
    }
    out
}

#[tokio::test]
async fn above_100_subscribers_counts_come_at_most_every_5_seconds() {
    let server = start_with(counting).await;
    let ch = "crowded";
    let mut watcher = join(&server, ch).await;
    let mut others: Vec<Socket> = Vec::new();
    for _ in 1..100 {
        others.push(join(&server, ch).await);
    }
    // 1 to 100: each change counted at once.
    let seen = counts_within(&mut watcher, Duration::from_millis(500)).await;
    assert_eq!(seen, (1..=100).collect::<Vec<u64>>());

    // 101, 102, 103 within a moment: 101 at once, then nothing until the window ends, then
    // the count as it is by then.
    let started = Instant::now();
    for _ in 0..3 {
        let mut s = connect(&server).await;
        s.subscribed(ch, None).await;
        others.push(s);
    }
    assert_eq!(count(&mut watcher, ch).await, 101);
    let quiet = counts_within(&mut watcher, Duration::from_secs(4)).await;
    assert_eq!(quiet, Vec::<u64>::new(), "throttled");
    assert_eq!(count(&mut watcher, ch).await, 103);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    // Back at 100 and below, every change is sent again.
    for s in others.drain(..3) {
        s.close().await;
    }
    let seen = counts_within(&mut watcher, Duration::from_secs(1)).await;
    assert_eq!(seen.last(), Some(&100), "{seen:?}");
    assert!(seen.iter().all(|n| *n <= 102), "{seen:?}");
}

/// The window is cluster-wide: with subscribers spread over two nodes, changes on either node
/// while the window is open send nothing to anyone, and its end sends the count as it is.
#[tokio::test]
async fn above_100_subscribers_the_window_holds_across_nodes() {
    let (a, b) = two_nodes(counting).await;
    let nodes = [&a, &b];
    let ch = "crowded-cluster";
    let mut on_a = join(&a, ch).await;
    let mut on_b = join(&b, ch).await;
    let mut others: Vec<Socket> = Vec::new();
    for i in 2..100 {
        others.push(join(nodes[i % 2], ch).await);
    }
    let seen_a = counts_within(&mut on_a, Duration::from_millis(1000)).await;
    assert_eq!(seen_a, (1..=100).collect::<Vec<u64>>());
    let seen_b = counts_within(&mut on_b, Duration::from_millis(200)).await;
    assert_eq!(seen_b, (2..=100).collect::<Vec<u64>>());

    // 101 on a, then 102 on b and 103 on a within the window: 101 everywhere at once, then
    // nothing from either node until the window ends, then 103.
    let started = Instant::now();
    for node in [&a, &b, &a] {
        let mut s = connect(node).await;
        s.subscribed(ch, None).await;
        others.push(s);
    }
    for s in [&mut on_a, &mut on_b] {
        assert_eq!(count(s, ch).await, 101);
    }
    let until = Duration::from_secs(4).saturating_sub(started.elapsed());
    let (quiet_a, quiet_b) = tokio::join!(
        counts_within(&mut on_a, until),
        counts_within(&mut on_b, until)
    );
    assert_eq!(quiet_a, Vec::<u64>::new(), "throttled on a");
    assert_eq!(quiet_b, Vec::<u64>::new(), "throttled on b");
    for s in [&mut on_a, &mut on_b] {
        assert_eq!(count(s, ch).await, 103);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    let (after_a, after_b) = tokio::join!(
        counts_within(&mut on_a, Duration::from_millis(500)),
        counts_within(&mut on_b, Duration::from_millis(500))
    );
    assert_eq!((after_a, after_b), (vec![], vec![]), "one count per window");
}
