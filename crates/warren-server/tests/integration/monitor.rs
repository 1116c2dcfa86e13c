//! The monitor: what a tap sees (through the library and through `GET /monitor`), its
//! filters, who may watch, a slow tap's drops, and a cluster watched from one node.

use std::time::Duration;

use serde_json::{json, Value};
use warren_server::config::AppConfig;
use warren_server::monitor::{EventKind, Filter, MonitorEvent, TapItem};
use warren_testkit::api::{api_get, api_post};
use warren_testkit::monitor::{open_monitor, MonitorAuth, DEMO};
use warren_testkit::server::{start, start_with};
use warren_testkit::ws::{connect, presence_data};
use warren_testkit::{KEY, WAIT};

use crate::two_nodes::two_nodes;

const TOKEN: &str = "operator-token-0123456789";

/// Events the tap got until `last` matched, as their JSON (what `/monitor` sends).
async fn until(
    tap: &warren_server::monitor::Tap,
    last: impl Fn(&MonitorEvent) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, tap.next()).await {
            Ok(TapItem::Event(e)) => {
                seen.push(serde_json::to_value(&*e).expect("serializes"));
                if last(&e) {
                    return seen;
                }
            }
            Ok(TapItem::Dropped(n)) => panic!("{n} dropped"),
            Err(_) => panic!("did not see the last event; saw {seen:#?}"),
        }
    }
}

fn position(seen: &[Value], what: Value) -> usize {
    seen.iter()
        .position(|v| {
            what.as_object()
                .expect("object")
                .iter()
                .all(|(k, want)| &v[k] == want)
        })
        .unwrap_or_else(|| panic!("{what} not in {seen:#?}"))
}

#[tokio::test]
async fn a_tap_sees_connections_subscriptions_publishes_presence_and_traffic() {
    let server = start().await;
    let tap = server.monitor().attach(Filter::default());
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribed("presence-room", Some(&presence_data(json!("ua"), None)))
        .await;
    b.subscribed("presence-room", Some(&presence_data(json!("ub"), None)))
        .await;
    b.send(json!({"event":"client-hi","channel":"presence-room","data":"hello"}))
        .await;
    a.next_event("client-hi", WAIT).await;
    let r = api_post(
        &server,
        "/apps/app-id/events",
        json!({"name":"news","channel":"presence-room","data":"{\"n\":1}"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    a.next_event("news", WAIT).await;
    let b_id = b.socket_id.clone();
    b.close().await;
    let seen = until(
        &tap,
        |e| matches!(&e.kind, EventKind::ConnectionClosed { socket_id, .. } if *socket_id == b_id),
    )
    .await;
    let (a_id, b_id) = (a.socket_id.as_str(), b_id.as_str());
    let order = [
        json!({"type":"connection_opened","socket_id":a_id,"app":"app-id"}),
        json!({"type":"subscribed","socket_id":a_id,"channel":"presence-room"}),
        json!({"type":"member_added","channel":"presence-room","user_id":"ub"}),
        json!({"type":"client_event","socket_id":b_id,"event":"client-hi","data":"hello","user_id":"ub"}),
        json!({"type":"api_publish","channel":"presence-room","event":"news","data":"{\"n\":1}"}),
        json!({"type":"unsubscribed","socket_id":b_id,"channel":"presence-room"}),
        json!({"type":"member_removed","channel":"presence-room","user_id":"ub"}),
        json!({"type":"connection_closed","socket_id":b_id,"reason":"client closed"}),
    ];
    let at: Vec<usize> = order.iter().map(|w| position(&seen, w.clone())).collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seen:#?}"
    );
    let closed = seen.last().expect("the close");
    let traffic = &closed["traffic"];
    // b sent its subscription and its client event (and the close), and received at least
    // its subscription_succeeded, member list and the API event.
    assert!(traffic["messages_in"].as_u64() >= Some(2), "{closed}");
    assert!(traffic["messages_out"].as_u64() >= Some(2), "{closed}");
    assert!(traffic["bytes_in"].as_u64() > Some(0), "{closed}");
    assert!(traffic["bytes_out"].as_u64() > Some(0), "{closed}");
}

#[tokio::test]
async fn nothing_attached_means_the_monitor_is_off_and_detaching_turns_it_off() {
    let server = start().await;
    let monitor = server.monitor();
    assert!(!monitor.is_active());
    let tap = monitor.attach(Filter::default());
    assert!(monitor.is_active());
    drop(tap);
    assert!(!monitor.is_active());
}

#[tokio::test]
async fn a_slow_tap_drops_and_counts_while_delivery_goes_on() {
    let server = start_with(|c| c.monitor.tap_queue = 2).await;
    let mut subscriber = connect(&server).await;
    subscriber.subscribed("ticks", None).await;
    let tap = server.monitor().attach(Filter {
        event: Some("tick".into()),
        ..Filter::default()
    });
    for i in 0..10 {
        let body = json!({"name":"tick","channel":"ticks","data":i.to_string()});
        assert_eq!(
            api_post(&server, "/apps/app-id/events", body).await.status,
            200
        );
    }
    for i in 0..10 {
        assert_eq!(
            subscriber.next_event("tick", WAIT).await["data"],
            i.to_string()
        );
    }
    assert_eq!(tap.try_next(), Some(TapItem::Dropped(8)));
    for i in 0..2 {
        match tap.try_next() {
            Some(TapItem::Event(e)) => {
                assert!(
                    matches!(&e.kind, EventKind::ApiPublish { data, .. } if *data == i.to_string())
                )
            }
            other => panic!("expected a kept event, got {other:?}"),
        }
    }
    assert_eq!(tap.try_next(), None);
}

async fn publish(server: &impl warren_testkit::Endpoint, channel: &str, name: &str) {
    let body = json!({"name":name,"channel":channel,"data":"{}"});
    let r = api_post(server, "/apps/app-id/events", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn the_monitor_stream_filters_by_channel_prefix_and_event_name() {
    let server = start().await;
    let params = [("channel_prefix", "orders-"), ("event", "created")];
    let mut stream = open_monitor(&server, DEMO, &params).await.expect("let in");
    publish(&server, "orders-1", "deleted").await;
    publish(&server, "invoices-1", "created").await;
    publish(&server, "orders-2", "created").await;
    let got = stream.next_of("api_publish").await;
    assert_eq!(
        (got["channel"].as_str(), got["event"].as_str()),
        (Some("orders-2"), Some("created"))
    );
    assert_eq!(got["app"], "app-id");
    assert!(stream.drain(Duration::from_millis(300)).await.is_empty());
}

#[tokio::test]
async fn a_signature_grants_its_own_app_and_the_operator_token_every_app() {
    let server = start_with(|c| {
        c.monitor.operator_token = Some(TOKEN.into());
        let id = warren_protocol::AppId::parse("other").expect("valid id");
        let key = warren_protocol::AppKey::parse("other-key").expect("valid key");
        c.apps.push(AppConfig::new(id, key, "other-secret"));
    })
    .await;
    let refused = |r: Result<_, (u16, String)>| match r {
        Err((status, body)) => (status, body),
        Ok(_) => panic!("let in"),
    };
    let (status, body) =
        refused(open_monitor(&server, MonitorAuth::Signed(KEY, "wrong"), &[]).await);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature"), "{body}");
    let (status, body) = refused(open_monitor(&server, DEMO, &[("app_id", "other")]).await);
    assert_eq!(status, 403, "{body}");
    let (status, _) =
        refused(open_monitor(&server, MonitorAuth::Token("not-the-token-at-all"), &[]).await);
    assert_eq!(status, 401);
    let no_auth = warren_testkit::http::http(&server, "GET", "/monitor", "").await;
    assert_eq!(no_auth.status, 401, "{}", no_auth.body);

    let mut operator = open_monitor(&server, MonitorAuth::Token(TOKEN), &[])
        .await
        .expect("token");
    let mut demo_only = open_monitor(&server, DEMO, &[]).await.expect("signed");
    let other = MonitorAuth::Signed("other-key", "other-secret");
    let mut other_only = open_monitor(&server, other, &[("app_id", "other")])
        .await
        .expect("signed");
    publish(&server, "news", "a").await;
    let seen = operator.next_of("api_publish").await;
    assert_eq!(seen["app"], "app-id");
    assert_eq!(demo_only.next_of("api_publish").await["app"], "app-id");
    assert!(other_only
        .drain(Duration::from_millis(300))
        .await
        .is_empty());
}

#[tokio::test]
async fn without_an_operator_token_configured_a_bearer_token_is_refused() {
    let server = start().await;
    match open_monitor(&server, MonitorAuth::Token(TOKEN), &[]).await {
        Err((status, body)) => {
            assert_eq!(status, 401);
            assert!(body.contains("operator_token"), "{body}");
        }
        Ok(_) => panic!("let in without a configured token"),
    }
}

#[tokio::test]
async fn a_monitor_on_one_node_sees_the_other_node_and_only_while_it_watches() {
    let (a, b) = two_nodes(|_| {}).await;
    assert!(!a.monitor().is_active(), "nobody watches yet");
    let mut stream = open_monitor(&b, DEMO, &[("event", "ping")])
        .await
        .expect("let in");
    // Node a learns within a poll or two that somebody elsewhere watches.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !a.monitor().is_active() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node a never switched on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(&a, "pings", "ping").await;
    let got = stream.next_of("api_publish").await;
    assert_eq!(got["channel"], "pings");
    // Once, although both nodes' relays see the message.
    assert!(stream.drain(Duration::from_millis(500)).await.is_empty());
    drop(stream);
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while a.monitor().is_active() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node a never switched off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = api_get(&a, "/apps/app-id/channels", &[]).await;
}

#[tokio::test]
async fn the_console_is_off_by_default() {
    let server = start().await;
    assert_eq!(
        warren_testkit::http::http(&server, "GET", "/console", "")
            .await
            .status,
        404
    );
    let r = api_get(&server, "/console/api/channels", &[]).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn the_console_page_and_its_queries_when_enabled() {
    let server = start_with(|c| {
        c.console.enabled = true;
        c.monitor.operator_token = Some(TOKEN.into());
    })
    .await;
    let page = warren_testkit::http::http(&server, "GET", "/console", "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/console/console.js"));
    let script = warren_testkit::http::http(&server, "GET", "/console/console.js", "").await;
    assert!(script.body.contains("crypto.subtle"));

    let mut sub = connect(&server).await;
    sub.subscribed("presence-lobby", Some(&presence_data(json!("u1"), None)))
        .await;
    let channels = api_get(&server, "/console/api/channels", &[]).await;
    assert_eq!(channels.status, 200, "{}", channels.body);
    let list = channels.json();
    assert_eq!(list["connections_here"], 1);
    assert_eq!(
        list["channels"],
        json!([{"name":"presence-lobby","subscription_count":1,"user_count":1}])
    );
    let members = api_get(
        &server,
        "/console/api/members",
        &[("channel", "presence-lobby")],
    )
    .await;
    assert_eq!(
        members.json()["users"],
        json!([{"id":"u1","user_info":null}])
    );
    let not_presence = api_get(&server, "/console/api/members", &[("channel", "news")]).await;
    assert_eq!(not_presence.status, 400);

    let params = [
        ("channel", "presence-lobby"),
        ("event", "hi"),
        ("data", "x y"),
    ];
    let sent = warren_testkit::api::api(&server, "POST", "/console/api/trigger", &params, "").await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(sub.next_event("hi", WAIT).await["data"], "x y");
    let with_body =
        warren_testkit::api::api(&server, "POST", "/console/api/trigger", &params, "{}").await;
    assert_eq!(with_body.status, 400, "{}", with_body.body);
    let bad_name = [("channel", "presence-lobby"), ("event", ""), ("data", "")];
    let refused =
        warren_testkit::api::api(&server, "POST", "/console/api/trigger", &bad_name, "").await;
    assert_eq!(refused.status, 400);
}

/// Webhooks sent show in the monitor, with the events they carried and the answer.
#[tokio::test]
async fn the_monitor_shows_webhooks_sent() {
    let mut receiver = warren_testkit::webhooks::Receiver::start().await;
    let url = receiver.url.clone();
    let server = warren_testkit::server::start_with(move |c| {
        let app = warren_testkit::server::demo_app(c);
        app.webhooks = vec![warren_server::config::WebhookConfig::new(url.as_str())];
        c.webhooks.batch_window_ms = 20;
    })
    .await;
    let tap = server.monitor().attach(Filter::default());
    let mut c = warren_testkit::ws::connect(&server).await;
    c.subscribed("hooked", None).await;
    receiver.next().await;
    let seen = until(&tap, |e| matches!(e.kind, EventKind::WebhookSent { .. })).await;
    let sent = seen.last().expect("the webhook");
    assert_eq!(
        sent["events"],
        serde_json::json!(["channel_occupied"]),
        "{sent}"
    );
    assert_eq!(sent["status"], 200, "{sent}");
    assert_eq!(sent["url"], receiver.url.as_str(), "{sent}");
}
