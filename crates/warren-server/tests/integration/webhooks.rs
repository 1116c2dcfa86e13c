//! Webhooks on one node, against a real HTTP receiver in the test process: every event type,
//! the format, headers and signature (checked with the Rust SDK's verifier), batching, the
//! removal delay, retries and endpoint isolation.

use std::time::Duration;

use serde_json::{json, Value};
use warren_client::{Client, ClientConfig};
use warren_server::config::{Config, WebhookConfig, WebhookEventType};
use warren_testkit::server::{demo_app, start_with, TestServer};
use warren_testkit::webhooks::{Answer, Delivery, Receiver};
use warren_testkit::ws::{connect, presence_data, Socket};
use warren_testkit::{KEY, SECRET};

use crate::two_nodes::{two_nats_nodes, two_nodes, two_split_nodes, Split};

/// The demo app sending every kind of event to `url`, with removals delayed by `delay_ms`.
fn hooked(c: &mut Config, urls: &[&str], delay_ms: u64) {
    let app = demo_app(c);
    app.webhooks = urls.iter().map(|u| WebhookConfig::new(*u)).collect();
    app.subscription_count_events = true;
    c.webhooks.delay_removal_ms = delay_ms;
    c.webhooks.batch_window_ms = 20;
}

/// Checks what every request must be, and returns its events.
fn verified(d: &Delivery) -> Vec<Value> {
    let names: Vec<&str> = d.headers.iter().map(|(n, _)| n.as_str()).collect();
    for title_case in ["X-Pusher-Key", "X-Pusher-Signature", "Content-Type"] {
        assert!(names.contains(&title_case), "{title_case} in {names:?}");
    }
    assert_eq!(d.header("content-type"), Some("application/json"));
    let client = Client::new(ClientConfig::new(
        "http://127.0.0.1:1",
        "app-id",
        KEY,
        SECRET,
    ))
    .expect("client");
    let key = d.header("x-pusher-key").expect("key header");
    let signature = d.header("x-pusher-signature").expect("signature header");
    let payload = client
        .verify_webhook(key, signature, &d.body)
        .expect("the SDK accepts it");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(payload.time_ms.abs_diff(now) < 60_000, "time_ms is now");
    let events = d.events();
    assert_eq!(d.ids().len(), events.len(), "one id per event");
    events
}

/// The next `n` events, from requests that all pass [`verified`].
async fn events(r: &mut Receiver, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(verified(&r.next().await));
    }
    assert_eq!(got.len(), n, "{got:?}");
    got
}

async fn member(server: &TestServer, channel: &str, user: &str) -> Socket {
    let mut s = connect(server).await;
    s.subscribed(channel, Some(&presence_data(json!(user), None)))
        .await;
    s
}

#[tokio::test]
async fn every_event_type_arrives_signed_in_pushers_format() {
    let mut r = Receiver::start().await;
    let server = start_with(|c| hooked(c, &[&r.url], 100)).await;

    let mut a = member(&server, "presence-room", "u1").await;
    let got = events(&mut r, 2).await;
    assert_eq!(
        got[0],
        json!({"name":"channel_occupied","channel":"presence-room"})
    );
    assert_eq!(
        got[1],
        json!({"name":"member_added","channel":"presence-room","user_id":"u1"})
    );

    let mut b = member(&server, "presence-room", "u2").await;
    a.recv().await; // member_added
    let got = events(&mut r, 1).await;
    assert_eq!(got[0]["name"], "member_added");
    b.send(json!({"event":"client-hi","channel":"presence-room","data":{"x":1}}))
        .await;
    assert_eq!(a.recv().await["event"], "client-hi");
    let got = events(&mut r, 1).await;
    assert_eq!(
        got[0],
        json!({"name":"client_event","channel":"presence-room","event":"client-hi",
               "data":"{\"x\":1}","socket_id":b.socket_id,"user_id":"u2"})
    );

    a.subscribed("private-chat", None).await;
    let got = events(&mut r, 2).await;
    assert_eq!(
        got[0],
        json!({"name":"channel_occupied","channel":"private-chat"})
    );
    assert_eq!(
        got[1],
        json!({"name":"subscription_count","channel":"private-chat","subscription_count":1})
    );
    a.recv().await; // the subscription count to the subscriber
    a.send(json!({"event":"client-typing","channel":"private-chat","data":"plain"}))
        .await;
    let got = events(&mut r, 1).await;
    assert_eq!(
        got[0],
        json!({"name":"client_event","channel":"private-chat","event":"client-typing",
               "data":"plain","socket_id":a.socket_id})
    );

    a.subscribed("cache-news", None).await;
    let got = events(&mut r, 3).await;
    assert_eq!(got[0], json!({"name":"cache_miss","channel":"cache-news"}));
    assert_eq!(got[1]["name"], "channel_occupied");
    assert_eq!(got[2]["name"], "subscription_count");

    b.close().await;
    let got = events(&mut r, 1).await;
    assert_eq!(
        got[0],
        json!({"name":"member_removed","channel":"presence-room","user_id":"u2"})
    );
    a.close().await;
    let mut got = events(&mut r, 6).await;
    got.sort_by_key(|e| e.to_string());
    let mut want = vec![
        json!({"name":"channel_vacated","channel":"cache-news"}),
        json!({"name":"channel_vacated","channel":"presence-room"}),
        json!({"name":"channel_vacated","channel":"private-chat"}),
        json!({"name":"member_removed","channel":"presence-room","user_id":"u1"}),
        json!({"name":"subscription_count","channel":"cache-news","subscription_count":0}),
        json!({"name":"subscription_count","channel":"private-chat","subscription_count":0}),
    ];
    want.sort_by_key(|e| e.to_string());
    assert_eq!(got, want);
    r.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn events_are_batched_up_to_batch_max() {
    let mut r = Receiver::start().await;
    let server = start_with(|c| {
        hooked(c, &[&r.url], 0);
        c.webhooks.batch_max = 3;
        c.webhooks.batch_window_ms = 400;
    })
    .await;
    let mut a = connect(&server).await;
    a.subscribed("private-batch", None).await;
    // channel_occupied, subscription_count, then 5 client events: 7 in batches of 3, 3, 1.
    for i in 0..5 {
        a.send(json!({"event":"client-n","channel":"private-batch","data":i.to_string()}))
            .await;
    }
    let sizes: Vec<usize> = [r.next().await, r.next().await, r.next().await]
        .iter()
        .map(|d| verified(d).len())
        .collect();
    assert_eq!(sizes, vec![3, 3, 1]);
}

#[tokio::test]
async fn a_quick_return_cancels_the_removal_and_the_return() {
    let mut r = Receiver::start().await;
    let server = start_with(|c| hooked(c, &[&r.url], 600)).await;
    let a = member(&server, "presence-reload", "u1").await;
    assert_eq!(events(&mut r, 2).await.len(), 2);

    // A page reload: the connection goes, a new one comes back within the delay.
    a.close().await;
    let a = member(&server, "presence-reload", "u1").await;
    r.assert_silent(Duration::from_millis(1200)).await;

    // Leaving for good: after the delay, both removals.
    a.close().await;
    r.assert_silent(Duration::from_millis(300)).await;
    let mut got = events(&mut r, 2).await;
    got.sort_by_key(|e| e.to_string());
    assert_eq!(
        got,
        vec![
            json!({"name":"channel_vacated","channel":"presence-reload"}),
            json!({"name":"member_removed","channel":"presence-reload","user_id":"u1"}),
        ]
    );
}

/// Reloads in a row: each removal is cancelled by its own return, never decided by a marker
/// a later removal left. A channel that keeps coming back within the delay sends one
/// `channel_occupied` and, once it stays empty, one `channel_vacated` (found by the webhook
/// benchmark, where the first removal's deadline took the second removal's marker and sent
/// `channel_vacated` while the channel was briefly empty, then the next return its own
/// `channel_occupied`).
#[tokio::test]
async fn each_removal_is_cancelled_only_by_its_own_return() {
    let mut r = Receiver::start().await;
    let server = start_with(|c| hooked(c, &[&r.url], 2000)).await;
    reloads_in_a_row(&mut r, [&server, &server, &server]).await;
}

#[tokio::test]
async fn each_removal_is_cancelled_only_by_its_own_return_across_nodes() {
    let mut r = Receiver::start().await;
    let (a, b) = two_nodes(|c| hooked(c, &[&r.url], 2000)).await;
    reloads_in_a_row(&mut r, [&a, &b, &a]).await;
}

/// Three members in turn on `nodes`, each leaving before the next comes, the removal delay
/// being 2 s: the first return within the delay, the second just after the first removal's
/// deadline (but within its own removal's).
async fn reloads_in_a_row(r: &mut Receiver, nodes: [&TestServer; 3]) {
    let delay = Duration::from_millis(2000);
    let c = "presence-reloads";
    let a = member(nodes[0], c, "u1").await;
    assert_eq!(events(r, 2).await.len(), 2);
    let start = tokio::time::Instant::now();
    a.close().await; // removal 1: due at 1.0 delay
    let b = member(nodes[1], c, "u2").await; // cancels removal 1
    tokio::time::sleep_until(start + delay.mul_f64(0.7)).await;
    b.close().await; // removal 2: due at 1.7 delays
                     // Between removal 1's deadline and removal 2's, with the channel empty.
    tokio::time::sleep_until(start + delay.mul_f64(1.35)).await;
    let c3 = member(nodes[2], c, "u3").await; // cancels removal 2
    c3.close().await;
    let got: Vec<Value> = all_events(r, Duration::from_millis(2600))
        .await
        .into_iter()
        .filter(|e| e["name"] != "member_added" && e["name"] != "member_removed")
        .collect();
    assert_eq!(got, vec![json!({"name":"channel_vacated","channel":c})]);
}

#[tokio::test]
async fn a_member_who_stays_connected_elsewhere_is_not_removed() {
    let mut r = Receiver::start().await;
    let server = start_with(|c| hooked(c, &[&r.url], 100)).await;
    let _a = member(&server, "presence-two-tabs", "u1").await;
    let b = member(&server, "presence-two-tabs", "u1").await;
    assert_eq!(events(&mut r, 2).await.len(), 2, "occupied and added, once");
    b.close().await;
    r.assert_silent(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_the_same_event_ids() {
    let mut r = Receiver::start().await;
    r.answer_next(2, Answer::Status(503));
    let server = start_with(|c| hooked(c, &[&r.url], 0)).await;
    let mut a = connect(&server).await;
    a.subscribed("presence-x", Some(&presence_data(json!("u"), None)))
        .await;
    let first = r.next().await;
    assert_eq!(first.answered, Some(503));
    let second = r.next().await;
    assert_eq!(second.answered, Some(503));
    let third = r.next().await;
    assert_eq!(third.answered, Some(200));
    assert_eq!(first.ids(), third.ids());
    assert_eq!(verified(&first), verified(&third));
    assert_eq!(second.events(), third.events());
}

#[tokio::test]
async fn a_request_that_times_out_is_retried() {
    let mut r = Receiver::start().await;
    r.answer_next(1, Answer::Silence);
    let server = start_with(|c| {
        hooked(c, &[&r.url], 0);
        c.webhooks.timeout_ms = 300;
    })
    .await;
    let _a = connect(&server).await.subscribed("public-t", None).await;
    assert_eq!(r.next().await.answered, None);
    let again = r.next().await;
    assert_eq!(again.answered, Some(200));
    assert_eq!(verified(&again)[0]["name"], "channel_occupied");
}

#[tokio::test]
async fn after_retry_for_secs_the_batch_is_dropped_and_delivery_goes_on() {
    let mut r = Receiver::start().await;
    r.answer_next(1000, Answer::Status(500));
    let server = start_with(|c| {
        hooked(c, &[&r.url], 0);
        demo_app(c).subscription_count_events = false;
        c.webhooks.retry_for_secs = 1;
    })
    .await;
    let mut a = connect(&server).await;
    a.subscribed("public-first", None).await;
    let mut tries = 0;
    while let Some(d) = r.next_or_silence(Duration::from_millis(1500)).await {
        assert_eq!(d.events()[0]["channel"], "public-first");
        tries += 1;
    }
    assert!(
        (2..=5).contains(&tries),
        "retried with backoff for a second: {tries}"
    );
    r.answer_all(Answer::Status(200));
    a.subscribed("public-second", None).await;
    let got = events(&mut r, 1).await;
    assert_eq!(
        got[0],
        json!({"name":"channel_occupied","channel":"public-second"})
    );
    r.assert_silent(Duration::from_millis(300)).await;
}

/// Up to `requests_in_flight` requests to one endpoint are under way at once, never more;
/// the next batch waits for one of them to end.
#[tokio::test]
async fn requests_in_flight_bounds_the_requests_under_way() {
    let mut r = Receiver::start().await;
    r.answer_all(Answer::Silence);
    let server = start_with(|c| {
        hooked(c, &[&r.url], 0);
        demo_app(c).subscription_count_events = false;
        c.webhooks.batch_max = 1;
        c.webhooks.requests_in_flight = 3;
        c.webhooks.timeout_ms = 2000;
    })
    .await;
    let mut a = connect(&server).await;
    for i in 0..6 {
        a.subscribed(&format!("public-{i}"), None).await;
    }
    for _ in 0..3 {
        assert_eq!(r.next().await.answered, None, "three at once");
    }
    r.assert_silent(Duration::from_millis(1000)).await;
    // Once answers come, the unanswered ones are sent again and the rest follow.
    r.answer_all(Answer::Status(200));
    let mut ids = std::collections::BTreeSet::new();
    let mut channels = std::collections::BTreeSet::new();
    while let Some(d) = r.next_or_silence(Duration::from_millis(3000)).await {
        for (id, event) in d.ids().into_iter().zip(verified(&d)) {
            ids.insert(id);
            channels.insert(event["channel"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!((ids.len(), channels.len()), (6, 6), "{channels:?}");
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_another() {
    let mut dead = Receiver::start().await;
    dead.answer_all(Answer::Silence);
    let mut alive = Receiver::start().await;
    let server = start_with(|c| {
        hooked(c, &[&dead.url, &alive.url], 0);
        demo_app(c).subscription_count_events = false;
        c.webhooks.timeout_ms = 10_000;
    })
    .await;
    let mut a = connect(&server).await;
    for i in 0..5 {
        a.subscribed(&format!("public-{i}"), None).await;
        let got = events(&mut alive, 1).await;
        assert_eq!(got[0]["channel"], format!("public-{i}"));
    }
    assert_eq!(
        dead.next().await.answered,
        None,
        "the dead one got its first request"
    );
}

#[tokio::test]
async fn each_endpoint_gets_only_the_kinds_it_asked_for() {
    let mut all = Receiver::start().await;
    let mut clients = Receiver::start().await;
    let server = start_with(|c| {
        hooked(c, &[&all.url, &clients.url], 0);
        let mut only = WebhookConfig::new(clients.url.clone());
        only.event_types = Some(vec![WebhookEventType::ClientEvent]);
        only.headers.insert("X-Custom".into(), "v".into());
        demo_app(c).webhooks[1] = only;
    })
    .await;
    let mut a = connect(&server).await;
    a.subscribed("private-k", None).await;
    a.send(json!({"event":"client-k","channel":"private-k","data":"d"}))
        .await;
    let got = events(&mut all, 3).await;
    let names: Vec<&str> = got.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["channel_occupied", "subscription_count", "client_event"]
    );
    let d = clients.next().await;
    assert_eq!(d.header("x-custom"), Some("v"));
    let got = verified(&d);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["name"], "client_event");
    clients.assert_silent(Duration::from_millis(300)).await;
}

/// The events of the next requests until `silence` passes without one, sorted.
async fn all_events(r: &mut Receiver, silence: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(d) = r.next_or_silence(silence).await {
        got.extend(verified(&d));
    }
    got.sort_by_key(|e| e.to_string());
    got
}

#[tokio::test]
async fn two_nodes_send_each_event_once() {
    let mut r = Receiver::start().await;
    let (a, b) = two_nodes(|c| hooked(c, &[&r.url], 200)).await;
    each_event_once(&mut r, &a, &b).await;
}

/// On NATS the endpoint's queue is a JetStream stream the nodes share.
#[tokio::test]
async fn two_nats_nodes_send_each_event_once() {
    let mut r = Receiver::start().await;
    let (a, b, _nats) = two_nats_nodes(|c| hooked(c, &[&r.url], 200)).await;
    each_event_once(&mut r, &a, &b).await;
}

/// Split, the queue and the markers are with the state (Redis), the events on NATS.
#[tokio::test]
async fn two_split_nodes_send_each_event_once() {
    let mut r = Receiver::start().await;
    let setup = Split::RedisStateNatsFanout;
    let (a, b, _servers) = two_split_nodes(setup, |c| hooked(c, &[&r.url], 200)).await;
    each_event_once(&mut r, &a, &b).await;
}

async fn each_event_once(r: &mut Receiver, a: &TestServer, b: &TestServer) {
    let c = "presence-both";
    let mut on_a = member(a, c, "u1").await;
    let mut on_b = member(b, c, "u2").await;
    assert_eq!(on_a.recv().await["event"], "pusher_internal:member_added");
    on_b.send(json!({"event":"client-x","channel":c,"data":"d"}))
        .await;
    assert_eq!(on_a.recv().await["event"], "client-x");
    let sender = on_b.socket_id.clone();
    on_a.close().await;
    on_b.close().await;
    let mut want = vec![
        json!({"name":"channel_occupied","channel":c}),
        json!({"name":"member_added","channel":c,"user_id":"u1"}),
        json!({"name":"member_added","channel":c,"user_id":"u2"}),
        json!({"name":"client_event","channel":c,"event":"client-x","data":"d",
               "socket_id":sender,"user_id":"u2"}),
        json!({"name":"member_removed","channel":c,"user_id":"u1"}),
        json!({"name":"member_removed","channel":c,"user_id":"u2"}),
        json!({"name":"channel_vacated","channel":c}),
    ];
    want.sort_by_key(|e| e.to_string());
    assert_eq!(all_events(r, Duration::from_millis(1500)).await, want);
}

/// A join and the leave right after it are a short visit, not a reload: both are sent. The
/// node reports the two often within one millisecond, and a return once took the marker of
/// a removal reported in its own millisecond as one from before it, dropping both (in a
/// cluster, where returns look again for markers after a short settle).
#[tokio::test]
async fn a_leave_right_after_its_join_is_sent_with_it() {
    let mut r = Receiver::start().await;
    let (a, _b) = two_nodes(|c| {
        hooked(c, &[&r.url], 200);
        demo_app(c).subscription_count_events = false;
    })
    .await;
    let c = "presence-visits";
    // Keeps the channel occupied: only member events follow.
    let _stays = member(&a, c, "stays").await;
    assert_eq!(events(&mut r, 2).await.len(), 2);
    let mut s = connect(&a).await;
    let mut want = Vec::new();
    for n in 0..8 {
        let user = format!("visitor-{n}");
        let data = presence_data(json!(user), None);
        let auth = warren_protocol::auth::sign_channel(KEY, SECRET, &s.socket_id, c, Some(&data));
        // Both frames at once: the server handles the leave right after the join.
        s.send(json!({"event":"pusher:subscribe",
            "data":{"channel":c,"auth":auth,"channel_data":data}}))
            .await;
        s.send(json!({"event":"pusher:unsubscribe","data":{"channel":c}}))
            .await;
        assert_eq!(
            s.recv().await["event"],
            "pusher_internal:subscription_succeeded"
        );
        want.push(json!({"name":"member_added","channel":c,"user_id":user}));
        want.push(json!({"name":"member_removed","channel":c,"user_id":user}));
    }
    want.sort_by_key(|e| e.to_string());
    assert_eq!(all_events(&mut r, Duration::from_millis(1500)).await, want);
}

#[tokio::test]
async fn leaving_node_a_and_returning_on_node_b_within_the_delay_sends_nothing() {
    let mut r = Receiver::start().await;
    let (a, b) = two_nodes(|c| hooked(c, &[&r.url], 800)).await;
    moving_within_the_delay_sends_nothing(&mut r, &a, &b).await;
}

/// On NATS the removal markers are in a bucket the nodes share.
#[tokio::test]
async fn moving_between_nats_nodes_within_the_delay_sends_nothing() {
    let mut r = Receiver::start().await;
    let (a, b, _nats) = two_nats_nodes(|c| hooked(c, &[&r.url], 800)).await;
    moving_within_the_delay_sends_nothing(&mut r, &a, &b).await;
}

async fn moving_within_the_delay_sends_nothing(r: &mut Receiver, a: &TestServer, b: &TestServer) {
    let c = "presence-move";
    let first = member(a, c, "u1").await;
    assert_eq!(events(r, 2).await.len(), 2);
    first.close().await;
    let back = member(b, c, "u1").await;
    r.assert_silent(Duration::from_millis(1500)).await;
    back.close().await;
    let want = vec![
        json!({"name":"channel_vacated","channel":c}),
        json!({"name":"member_removed","channel":c,"user_id":"u1"}),
    ];
    assert_eq!(all_events(r, Duration::from_millis(1500)).await, want);
}
