//! Prometheus metrics (`[metrics]`): the listener is scraped over real HTTP after known
//! traffic, and what it answers is read with a Prometheus text-format parser
//! (`prometheus-parse`), so the checks see exactly what a Prometheus server would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_server::config::{Config, WebhookConfig};
use warren_testkit::api::api_post;
use warren_testkit::http::http;
use warren_testkit::raw::{masked_text, raw_tcp_upgrade, read_socket_id};
use warren_testkit::redis::{unique_prefix, use_shared_redis};
use warren_testkit::server::{demo_app, start_with, TestServer};
use warren_testkit::webhooks::Receiver;
use warren_testkit::ws::connect;
use warren_testkit::{Endpoint, KEY, SECRET, WAIT};

const EVENTS: &str = "/apps/app-id/events";

/// The metrics listener, as something the kit's HTTP client can talk to.
struct MetricsEndpoint(SocketAddr);

impl Endpoint for MetricsEndpoint {
    fn addr(&self) -> SocketAddr {
        self.0
    }
}

/// Metrics on, on a free port of their own.
fn metered(c: &mut Config) {
    c.metrics.enabled = true;
    c.metrics.port = 0;
}

/// One scrape, parsed.
async fn scrape(server: &TestServer) -> Vec<Sample> {
    let addr = server.metrics_addr().expect("metrics are enabled");
    assert_ne!(addr, server.addr, "a listener of its own");
    let r = http(&MetricsEndpoint(addr), "GET", "/metrics", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let lines = r.body.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines)
        .expect("the Prometheus text format")
        .samples
}

fn labels_match(s: &Sample, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

/// The value of the one sample of `name` with `labels` (counters and gauges).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.metric == name && labels_match(s, labels))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a counter or gauge"),
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: several samples");
    found.first().copied()
}

/// Scrapes until `check` holds (the server counts a close after the client saw it).
async fn scrape_until(server: &TestServer, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let samples = scrape(server).await;
        if check(&samples) || tokio::time::Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const APP: (&str, &str) = ("app_id", "app-id");

#[tokio::test]
async fn counts_after_known_traffic_are_scraped_and_parsed() {
    let server = start_with(|c| {
        metered(c);
        demo_app(c).subscribe_rate_per_sec = 2;
    })
    .await;
    // Three sockets on `news`; the first also on `sport`, and one subscribe over the rate.
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&server).await;
        s.subscribed("news", None).await;
        sockets.push(s);
    }
    sockets[0].subscribed("sport", None).await;
    let refused = sockets[0].subscribe("weather", None).await;
    assert_eq!(refused["data"]["status"], 429, "{refused}");

    for _ in 0..2 {
        let r = api_post(
            &server,
            EVENTS,
            json!({"name":"flash","channel":"news","data":"d"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for s in &mut sockets {
        for _ in 0..2 {
            assert_eq!(s.recv().await["event"], "flash");
        }
    }
    // A request with a wrong signature: counted with its status.
    let bad = http(
        &server,
        "POST",
        "/apps/app-id/events?auth_key=app-key",
        "{}",
    )
    .await;
    assert_eq!(bad.status, 401, "{}", bad.body);

    let samples = scrape(&server).await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    assert_eq!(v("warren_build_info", &[]), Some(1.0));
    assert_eq!(v("warren_connections", &[APP]), Some(3.0));
    assert_eq!(v("warren_connections_opened_total", &[APP]), Some(3.0));
    assert_eq!(v("warren_subscriptions", &[APP]), Some(4.0));
    assert_eq!(v("warren_channels", &[APP]), Some(2.0));
    // Two events, three subscribers each; every frame is the same bytes.
    let frame = r#"{"event":"flash","channel":"news","data":"d"}"#.len() + 2;
    assert_eq!(v("warren_messages_sent_total", &[APP]), Some(6.0));
    assert_eq!(
        v("warren_sent_bytes_total", &[APP]),
        Some(6.0 * frame as f64)
    );
    // Five subscribes (three, one, one refused) and nothing else.
    assert_eq!(v("warren_messages_received_total", &[APP]), Some(5.0));
    let published = [APP, ("source", "api")];
    assert_eq!(v("warren_events_published_total", &published), Some(2.0));
    let ok = [APP, ("endpoint", "events"), ("status", "200")];
    assert_eq!(v("warren_api_requests_total", &ok), Some(2.0));
    let unauthorized = [APP, ("endpoint", "events"), ("status", "401")];
    assert_eq!(v("warren_api_requests_total", &unauthorized), Some(1.0));
    let limit = [APP, ("limit", "subscriptions")];
    assert_eq!(v("warren_rate_limited_total", &limit), Some(1.0));
    let local = [("backend", "local")];
    assert_eq!(v("warren_cluster_backend_up", &local), Some(1.0));
    assert_eq!(v("warren_event_loss_resyncs_total", &[]), Some(0.0));

    // Each socket wrote its two frames in one or two writes: 3 to 6 observations, each the
    // time from the API request reaching the node to the write.
    let latency = samples
        .iter()
        .find(|s| s.metric == "warren_delivery_latency_seconds")
        .expect("the delivery latency histogram");
    let Value::Histogram(buckets) = &latency.value else {
        panic!("a histogram: {:?}", latency.value)
    };
    let count = buckets.last().expect("+Inf bucket").count;
    assert!((3.0..=6.0).contains(&count), "{count} observations");
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    let sum = value(&samples, "warren_delivery_latency_seconds_sum", &[]).expect("_sum");
    assert!(sum > 0.0, "{sum}");
    let counted = value(&samples, "warren_delivery_latency_seconds_count", &[]);
    assert_eq!(counted, Some(count), "_count is the +Inf bucket");

    // One client leaves: the gauge goes down, the close is counted with its reason.
    sockets.pop().expect("a socket").close().await;
    let closed = [APP, ("reason", "client_closed")];
    let samples = scrape_until(&server, |s| {
        value(s, "warren_connections_closed_total", &closed) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&samples, "warren_connections_closed_total", &closed),
        Some(1.0)
    );
    assert_eq!(value(&samples, "warren_connections", &[APP]), Some(2.0));
    assert_eq!(value(&samples, "warren_subscriptions", &[APP]), Some(3.0));
}

#[tokio::test]
async fn metrics_are_off_unless_enabled() {
    let server = start_with(|_| {}).await;
    assert_eq!(server.metrics_addr(), None);
}

/// Refusals before a connection exists are counted by reason.
#[tokio::test]
async fn refused_upgrades_are_counted() {
    let server = start_with(metered).await;
    let refused = warren_testkit::ws::handshake(&server, "/app/no-such-key?protocol=7").await;
    drop(refused);
    let samples = scrape_until(&server, |s| {
        value(
            s,
            "warren_connections_refused_total",
            &[("reason", "app_not_found")],
        )
        .is_some()
    })
    .await;
    let reason = [("reason", "app_not_found")];
    assert_eq!(
        value(&samples, "warren_connections_refused_total", &reason),
        Some(1.0)
    );
}

/// A connection that never reads is closed as a slow consumer (4100), and counted.
#[tokio::test]
async fn a_slow_consumer_close_is_counted() {
    let server = start_with(|c| {
        metered(c);
        c.server.max_outbound_queue = 16;
        c.server.max_message_size_kb = 128;
        demo_app(c).client_event_rate_per_sec = 100_000;
        demo_app(c).max_event_payload_kb = 100;
    })
    .await;
    let mut publisher = connect(&server).await;
    publisher.subscribed("private-flood", None).await;
    let mut slow = raw_tcp_upgrade(&server).await;
    let sid = read_socket_id(&mut slow).await;
    let auth = warren_protocol::auth::sign_channel(KEY, SECRET, &sid, "private-flood", None);
    let sub = json!({"event":"pusher:subscribe","data":{"channel":"private-flood","auth":auth}})
        .to_string();
    slow.write_all(&masked_text(sub.as_bytes()))
        .await
        .expect("subscribe");
    // Subscribed once the census says two subscriptions.
    scrape_until(&server, |s| {
        value(s, "warren_subscriptions", &[APP]) == Some(2.0)
    })
    .await;
    // More than loopback buffers hold for a reader that never reads (see bad_input.rs).
    let payload = "y".repeat(60_000);
    let slow_closes = |s: &[Sample]| value(s, "warren_slow_consumer_closes_total", &[APP]);
    for i in 0..200 {
        publisher
            .send(json!({"event":"client-flood","channel":"private-flood","data":{"i":i,"p":payload}}))
            .await;
        if i % 50 == 49 && slow_closes(&scrape(&server).await) == Some(1.0) {
            break;
        }
    }
    let mut buf = vec![0u8; 1 << 16];
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while matches!(slow.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    let samples = scrape_until(&server, |s| slow_closes(s) == Some(1.0)).await;
    assert_eq!(slow_closes(&samples), Some(1.0));
    let closed = [APP, ("reason", "server_closed"), ("code", "4100")];
    assert_eq!(
        value(&samples, "warren_connections_closed_total", &closed),
        Some(1.0)
    );
    let sent = [APP, ("source", "client")];
    assert!(value(&samples, "warren_events_published_total", &sent) >= Some(1.0));
}

/// With the Redis backend and a webhook endpoint: the backend's health and round trip, and
/// the webhook's outcome and queue.
#[tokio::test]
async fn the_cluster_backend_and_webhooks_are_reported() {
    let receiver = Receiver::start().await;
    let prefix = unique_prefix("metrics");
    let server = start_with(|c| {
        metered(c);
        use_shared_redis(c, prefix, 5000);
        demo_app(c).webhooks = vec![WebhookConfig::new(&receiver.url)];
        c.webhooks.batch_window_ms = 20;
    })
    .await;
    let mut receiver = receiver;
    let mut s = connect(&server).await;
    s.subscribed("hooked", None).await;
    let got = receiver.next().await;
    assert_eq!(got.events()[0]["name"], "channel_occupied");
    let delivered = [APP, ("endpoint", "0"), ("outcome", "delivered")];
    let samples = scrape_until(&server, |s| {
        value(s, "warren_webhook_events_total", &delivered) == Some(1.0)
    })
    .await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    assert_eq!(v("warren_webhook_events_total", &delivered), Some(1.0));
    let given_up = [APP, ("endpoint", "0"), ("outcome", "given_up")];
    assert_eq!(v("warren_webhook_events_total", &given_up), Some(0.0));
    let queue = [APP, ("endpoint", "0")];
    assert!(v("warren_webhook_queue_depth", &queue).is_some());
    let redis = [("backend", "redis")];
    assert_eq!(v("warren_cluster_backend_up", &redis), Some(1.0));
    let rtt = v("warren_cluster_rtt_seconds", &redis).expect("a round trip");
    assert!(rtt > 0.0, "{rtt}");
    let reconnects = [("backend", "redis"), ("connection", "subscriber")];
    assert_eq!(v("warren_cluster_reconnects_total", &reconnects), Some(0.0));
}

/// Every metric the scrape shows is in the catalogue of docs/METRICS.md, with a HELP and a
/// TYPE line.
#[tokio::test]
async fn every_exported_metric_is_documented() {
    let server = start_with(metered).await;
    let mut s = connect(&server).await;
    s.subscribed("doc", None).await;
    api_post(
        &server,
        EVENTS,
        json!({"name":"e","channel":"doc","data":"d"}),
    )
    .await;
    s.recv().await;
    let addr = server.metrics_addr().expect("enabled");
    let text = http(&MetricsEndpoint(addr), "GET", "/metrics", "")
        .await
        .body;
    let doc = include_str!("../../../../docs/METRICS.md");
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            types.insert(name.to_owned(), kind.to_owned());
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not documented"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
    }
    assert_eq!(
        types
            .get("warren_delivery_latency_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        types.get("warren_messages_sent_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        types.get("warren_connections").map(String::as_str),
        Some("gauge")
    );
}
