//! Per-app limits, answered as Pusher answers them: API requests and API events per second
//! (HTTP 429 with a JSON error; nothing of a refused request is published) and
//! `max_connections` (4004), cluster-wide on Redis, including after a node dies.
//!
//! Rates are counted per second, so a test cannot know where a window ends; each check is
//! one that holds wherever it does: at least the limit passes before the first refusal, a
//! request larger than the limit never passes, and a node that has published nothing is
//! refused because another node spent the window (retried on the rare turn of a second
//! between the two requests).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_protocol::AppId;
use warren_server::cluster::redis::{RedisCluster, RedisOptions};
use warren_server::cluster::{ChannelEvent, ClusterState, EventSink};
use warren_server::config::{Config, RedisTarget};
use warren_testkit::api::{api_get, api_post};
use warren_testkit::http::Response;
use warren_testkit::redis::{
    cli, shared_url, unique_prefix, use_redis, use_shared_redis, RedisServer,
};
use warren_testkit::server::{demo_app, start_with, TestServer};
use warren_testkit::signing::{now_secs, signed_target};
use warren_testkit::ws::{connect, expect_refusal, raw, recv};
use warren_testkit::{KEY, SECRET, WAIT};

fn event(name: &str, n: usize) -> Value {
    json!({"name": name, "channel": "rated", "data": format!("{n}")})
}

async fn batch(to: &TestServer, name: &str, size: usize) -> Response {
    let batch: Vec<Value> = (0..size).map(|n| event(name, n)).collect();
    api_post(to, "/apps/app-id/batch_events", json!({ "batch": batch })).await
}

fn assert_rate_refusal(r: &Response, says: &str) {
    assert_eq!(r.status, 429, "{}", r.body);
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains(says), "{error}");
}

/// Sends requests until one is refused; returns how many passed before it, and the refusal.
async fn until_refused<F, Fut>(mut send: F) -> (usize, Response)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    for n in 0..2000 {
        let r = send(n).await;
        if r.status != 200 {
            return (n, r);
        }
    }
    panic!("2000 requests and no refusal");
}

#[tokio::test]
async fn api_requests_over_the_rate_get_429() {
    let server = start_with(|c| demo_app(c).api_request_rate_per_sec = 5).await;
    let (passed, refused) = until_refused(|_| api_get(&server, "/apps/app-id/channels", &[])).await;
    assert!(passed >= 5, "only {passed} passed");
    assert_rate_refusal(&refused, "5 per second");
    // The whole answer, headers included, of a request that is refused too (or, if a new
    // second began, of one of the requests after it).
    let mut tries = 0;
    let head = loop {
        tries += 1;
        assert!(tries < 2000, "no refusal");
        let target = signed_target(
            "GET",
            "/apps/app-id/channels",
            &[],
            "",
            KEY,
            SECRET,
            now_secs(),
        );
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        if raw.starts_with("http/1.1 429") {
            break raw;
        }
    };
    assert!(head.contains("retry-after: 1\r\n"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
}

#[tokio::test]
async fn api_events_count_each_event_of_a_batch() {
    let server = start_with(|c| demo_app(c).api_event_rate_per_sec = 9).await;
    let mut watcher = connect(&server).await;
    watcher.subscribed("rated", None).await;
    // Ten events never fit in nine per second, and nothing of them is published.
    assert_rate_refusal(&batch(&server, "refused", 10).await, "this request has 10");
    // The first nine of a fresh app's window do.
    assert_eq!(batch(&server, "passed", 9).await.status, 200);
    let first = watcher.next_event("passed", WAIT).await;
    assert_eq!(first["data"], "0", "the refused batch was not published");
    let (_, refused) =
        until_refused(|n| api_post(&server, "/apps/app-id/events", event("single", n))).await;
    assert_rate_refusal(&refused, "9 per second");
    // Other requests are not events.
    assert_eq!(
        api_get(&server, "/apps/app-id/channels", &[]).await.status,
        200
    );
}

/// Points a node at a shared backend under a prefix.
type OnBackend = fn(&mut Config, String, &str);

fn on_redis(c: &mut Config, prefix: String, _: &str) {
    use_shared_redis(c, prefix, 2000);
}

fn on_nats(c: &mut Config, prefix: String, url: &str) {
    warren_testkit::nats::use_nats(c, url, prefix, 2000);
}

#[tokio::test]
async fn api_rates_are_cluster_wide_on_redis() {
    api_rates_are_cluster_wide(on_redis, "").await;
}

#[tokio::test]
async fn api_rates_are_cluster_wide_on_nats() {
    let nats = warren_testkit::nats::shared();
    api_rates_are_cluster_wide(on_nats, &nats.url()).await;
}

async fn api_rates_are_cluster_wide(on: OnBackend, url: &str) {
    let prefix = unique_prefix("rates");
    let node = |prefix: String| {
        let url = url.to_owned();
        start_with(move |c| {
            on(c, prefix, &url);
            demo_app(c).api_event_rate_per_sec = 10;
        })
    };
    let (a, b) = (node(prefix.clone()).await, node(prefix).await);
    // `b` publishes one event per round, far below the limit for one node: only what `a`
    // spent in the same second can make it refuse.
    let mut refused_on_b = None;
    for _ in 0..20 {
        if batch(&a, "a", 10).await.status != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let r = api_post(&b, "/apps/app-id/events", event("b", 0)).await;
        if r.status == 429 {
            refused_on_b = Some(r);
            break;
        }
    }
    let refused = refused_on_b.expect("b refused an event because a spent the window");
    assert_rate_refusal(&refused, "10 per second");
}

/// Connects to the demo app; the answer's first message (established or refused).
async fn try_connect(to: &TestServer) -> (warren_testkit::ws::Ws, Value) {
    let mut ws = raw(to, "/app/app-key?protocol=7").await;
    let first = recv(&mut ws).await;
    (ws, first)
}

/// Connects until admitted (a given-back connection is counted again in the background).
async fn admitted_eventually(to: &TestServer) {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let (_ws, first) = try_connect(to).await;
        if first["event"] == "pusher:connection_established" {
            return;
        }
        assert_eq!(first["data"]["code"], 4004, "{first}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never admitted again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn max_connections_is_cluster_wide_on_redis() {
    max_connections_is_cluster_wide(on_redis, "").await;
}

#[tokio::test]
async fn max_connections_is_cluster_wide_on_nats() {
    let nats = warren_testkit::nats::shared();
    max_connections_is_cluster_wide(on_nats, &nats.url()).await;
}

async fn max_connections_is_cluster_wide(on: OnBackend, url: &str) {
    let prefix = unique_prefix("conns");
    let node = |prefix: String| {
        let url = url.to_owned();
        start_with(move |c: &mut Config| {
            on(c, prefix, &url);
            demo_app(c).max_connections = 3;
        })
    };
    let (a, b) = (node(prefix.clone()).await, node(prefix).await);
    let _a1 = connect(&a).await;
    let a2 = connect(&a).await;
    let _b1 = connect(&b).await;
    for full in [&a, &b] {
        let mut ws = raw(full, "/app/app-key?protocol=7").await;
        let message = expect_refusal(&mut ws, 4004).await;
        assert_eq!(message, "Application is over connection quota");
    }
    // A connection closed on one node makes room on the other.
    a2.close().await;
    admitted_eventually(&b).await;
}

/// What a node of these tests hears from the others: nothing needed.
struct Deaf;

impl EventSink for Deaf {
    fn deliver(&self, _: &ChannelEvent) {}
    fn resync(&self, _: &str) {}
}

async fn backend(prefix: &str, id: &str) -> RedisCluster {
    let options = RedisOptions {
        target: RedisTarget::parse(&shared_url()).expect("REDIS_URL"),
        prefix: prefix.to_owned(),
        node_id: id.to_owned(),
        node_timeout: Duration::from_millis(2000),
    };
    RedisCluster::connect(options, Arc::new(Deaf))
        .await
        .expect("Redis answers at REDIS_URL")
}

/// Nodes racing for the last connections get exactly the limit between them.
#[tokio::test]
async fn racing_nodes_take_exactly_the_limit() {
    let prefix = unique_prefix("race");
    let (a, b) = (backend(&prefix, "a").await, backend(&prefix, "b").await);
    let app = AppId::parse("app-1").expect("id");
    let takes = (0..40).map(|i| {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let app = app.clone();
        tokio::spawn(async move { node.take_connection(&app, 7).await })
    });
    let mut taken = 0;
    for t in takes {
        taken += usize::from(t.await.expect("task").expect("Redis"));
    }
    assert_eq!(taken, 7);
    a.release_connection(&app).await;
    assert!(b.take_connection(&app, 7).await.expect("Redis"));
    assert!(!a.take_connection(&app, 7).await.expect("Redis"));
}

/// A node that dies holding connections gives them back through the cleanup of dead nodes.
#[tokio::test]
async fn a_dead_nodes_connections_are_given_back() {
    let prefix = unique_prefix("deadconns");
    let (a, b) = (backend(&prefix, "a").await, backend(&prefix, "b").await);
    let app = AppId::parse("app-1").expect("id");
    assert!(a.take_connection(&app, 2).await.expect("Redis"));
    assert!(a.take_connection(&app, 2).await.expect("Redis"));
    assert!(!b.take_connection(&app, 2).await.expect("Redis"));
    a.halt().await;
    // Reaped within the node timeout (2 s) after the last heartbeat.
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while !b.take_connection(&app, 2).await.expect("Redis") {
        assert!(tokio::time::Instant::now() < deadline, "never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis restarted empty: each node records the connections it holds again, under the new
/// registration it makes, so the limit still counts them.
#[tokio::test]
async fn connections_are_recorded_again_after_redis_lost_them() {
    let mut redis = RedisServer::start();
    let prefix = unique_prefix("reconns");
    let node = |prefix: String, url: String| {
        start_with(move |c: &mut Config| {
            use_redis(c, vec![url], prefix, 2000);
            demo_app(c).max_connections = 2;
        })
    };
    let a = node(prefix.clone(), redis.url()).await;
    let b = node(prefix.clone(), redis.url()).await;
    let _held = [connect(&a).await, connect(&a).await];
    redis.kill();
    redis.restart();
    let key = format!("{{{prefix}:app-id}}:cc");
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while cli(redis.port(), &["HVALS", &key]).trim() != "2" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recorded again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = raw(&b, "/app/app-key?protocol=7").await;
    expect_refusal(&mut ws, 4004).await;
}
