//! Client events: flag, channel kinds, membership, no echo, user_id, limits, rate.

use serde_json::json;

use warren_testkit::server::{demo_app, start, start_with, TestServer};
use warren_testkit::ws::{connect, decode_data, presence_data, Socket};

async fn pair(server: &TestServer, channel: &str) -> (Socket, Socket) {
    let mut a = connect(server).await;
    let mut b = connect(server).await;
    if channel.starts_with("presence-") {
        a.subscribed(channel, Some(&presence_data(json!("ua"), None)))
            .await;
        b.subscribed(channel, Some(&presence_data(json!("ub"), None)))
            .await;
        assert_eq!(a.recv().await["event"], "pusher_internal:member_added");
    } else {
        a.subscribed(channel, None).await;
        b.subscribed(channel, None).await;
    }
    (a, b)
}

#[tokio::test]
async fn client_event_reaches_others_as_a_string_and_is_not_echoed() {
    let server = start().await;
    let (mut a, mut b) = pair(&server, "private-chat").await;
    a.send(json!({"event":"client-typing","channel":"private-chat","data":{"who":"a","n":1}}))
        .await;
    let got = b.recv().await;
    assert_eq!(got["event"], "client-typing");
    assert_eq!(got["channel"], "private-chat");
    assert_eq!(decode_data(&got), json!({"who":"a","n":1}));
    assert!(got.get("user_id").is_none());
    a.assert_silent().await;
}

#[tokio::test]
async fn presence_client_events_carry_the_user_id() {
    let server = start().await;
    let (mut a, mut b) = pair(&server, "presence-chat").await;
    b.send(json!({"event":"client-hi","channel":"presence-chat","data":"plain text"}))
        .await;
    let got = a.recv().await;
    assert_eq!(got["user_id"], "ub");
    assert_eq!(got["data"], "plain text");
}

#[tokio::test]
async fn client_events_on_public_channels_are_refused() {
    let server = start().await;
    let (mut a, mut b) = pair(&server, "public-chat").await;
    a.send(json!({"event":"client-x","channel":"public-chat","data":{}}))
        .await;
    let err = a.recv().await;
    assert_eq!(err["event"], "pusher:error");
    assert_eq!(err["data"]["code"], json!(null));
    b.assert_silent().await;
}

#[tokio::test]
async fn client_events_need_a_subscription() {
    let server = start().await;
    let (_a, mut b) = pair(&server, "private-members").await;
    let mut outsider = connect(&server).await;
    outsider
        .send(json!({"event":"client-x","channel":"private-members","data":{}}))
        .await;
    let err = outsider.recv().await;
    assert_eq!(err["event"], "pusher:error");
    b.assert_silent().await;
}

#[tokio::test]
async fn client_events_can_be_disabled_per_app() {
    let server = start_with(|c| demo_app(c).client_events = false).await;
    let (mut a, mut b) = pair(&server, "private-off").await;
    a.send(json!({"event":"client-x","channel":"private-off","data":{}}))
        .await;
    let err = a.recv().await;
    assert_eq!(
        err["data"]["message"],
        "To send client events, you must enable this feature in the Settings page of your dashboard."
    );
    b.assert_silent().await;
}

#[tokio::test]
async fn oversize_client_event_is_refused_and_the_socket_stays_open() {
    let server = start_with(|c| demo_app(c).max_event_payload_kb = 1).await;
    let (mut a, mut b) = pair(&server, "private-big").await;
    a.send(json!({"event":"client-x","channel":"private-big","data":"x".repeat(1100)}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    b.assert_silent().await;
    a.send(json!({"event":"client-x","channel":"private-big","data":"small"}))
        .await;
    assert_eq!(b.recv().await["data"], "small");
}

#[tokio::test]
async fn overlong_event_names_are_refused() {
    let server = start().await;
    let (mut a, mut b) = pair(&server, "private-name").await;
    let name = format!("client-{}", "e".repeat(200));
    a.send(json!({"event":name,"channel":"private-name","data":{}}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    b.assert_silent().await;
}

#[tokio::test]
async fn rate_limit_gives_4301_and_keeps_the_connection() {
    let server = start_with(|c| demo_app(c).client_event_rate_per_sec = 3).await;
    let (mut a, mut b) = pair(&server, "private-rate").await;
    for i in 0..5 {
        a.send(json!({"event":"client-n","channel":"private-rate","data":{"i":i}}))
            .await;
    }
    // The first three pass (or, on a very slow machine, at least one window's worth).
    let mut delivered = 0;
    let mut limited = 0;
    for _ in 0..5 {
        tokio::select! {
            m = b.recv() => { assert_eq!(m["event"], "client-n"); delivered += 1; }
            e = a.recv() => {
                assert_eq!(e["event"], "pusher:error");
                assert_eq!(e["data"]["code"], 4301);
                limited += 1;
            }
        }
    }
    assert_eq!(delivered + limited, 5);
    assert!(limited >= 1, "the limit was never hit");
    assert!(delivered >= 3);
    // Still open and working.
    a.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(a.recv().await["event"], "pusher:pong");
}
