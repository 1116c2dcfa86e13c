//! Ping/pong both ways and the 4201 close.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use warren_testkit::server::{start, start_with};
use warren_testkit::ws::{close_code, connect};
use warren_testkit::WAIT;

#[tokio::test]
async fn pusher_ping_gets_pusher_pong() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.send(json!({"event":"pusher:ping","data":{}})).await;
    let pong = c.recv().await;
    assert_eq!(pong, json!({"event":"pusher:pong","data":"{}"}));
}

#[tokio::test]
async fn websocket_ping_frames_are_answered() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.ws.send(Message::Ping(b"hi".to_vec().into()))
        .await
        .expect("ping");
    let got = tokio::time::timeout(WAIT, c.ws.next())
        .await
        .expect("in time");
    match got {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"hi"),
        other => panic!("expected pong, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_client_is_pinged_then_closed_with_4201() {
    let server = start_with(|c| {
        c.server.activity_timeout = 1;
        c.server.pong_timeout = 1;
    })
    .await;
    let mut c = connect(&server).await;
    let ping = c.recv().await;
    assert_eq!(ping, json!({"event":"pusher:ping","data":"{}"}));
    // No answer: pusher:error 4201, then the close frame with 4201.
    let err = c.recv().await;
    assert_eq!(err["data"]["code"], 4201, "{err}");
    assert_eq!(close_code(&mut c.ws).await, Some(4201));
}

#[tokio::test]
async fn answering_pings_keeps_the_connection_open() {
    let server = start_with(|c| {
        c.server.activity_timeout = 1;
        c.server.pong_timeout = 1;
    })
    .await;
    let mut c = connect(&server).await;
    for _ in 0..3 {
        let ping = c.recv().await;
        assert_eq!(ping["event"], "pusher:ping");
        c.send(json!({"event":"pusher:pong","data":{}})).await;
    }
    // Still open: a ping of ours is answered.
    c.send(json!({"event":"pusher:ping"})).await;
    let mut saw_pong = false;
    for _ in 0..3 {
        let m = c.recv().await;
        if m["event"] == "pusher:pong" {
            saw_pong = true;
            break;
        }
        assert_eq!(m["event"], "pusher:ping");
    }
    assert!(saw_pong);
}

#[tokio::test]
async fn any_message_counts_as_activity() {
    let server = start_with(|c| {
        c.server.activity_timeout = 1;
        c.server.pong_timeout = 1;
    })
    .await;
    let mut c = connect(&server).await;
    // Subscribing every 400 ms keeps the server from ever pinging.
    for i in 0..6 {
        c.subscribed(&format!("keepalive-{i}"), None).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    c.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(c.recv().await["event"], "pusher:pong");
}
