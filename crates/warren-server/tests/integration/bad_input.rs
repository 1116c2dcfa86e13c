//! Bad input gets a protocol-correct answer and never hurts another connection.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use warren_testkit::raw::{
    assert_http_400, last_close_code, masked_text, raw_tcp_upgrade, read_socket_id,
    read_until_closed,
};
use warren_testkit::server::{demo_app, start, start_with};
use warren_testkit::ws::{close_code, connect};
use warren_testkit::{KEY, SECRET};

/// Each input gets `pusher:error` with code null and the socket stays usable.
#[tokio::test]
async fn garbage_messages_get_errors_and_the_socket_stays_open() {
    let server = start().await;
    let mut c = connect(&server).await;
    let inputs = [
        "not json at all",
        "[1,2,3]",
        "\"just a string\"",
        "42",
        "{}",
        r#"{"event":17}"#,
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":7}}"#,
        r#"{"event":"pusher:subscribe","data":[]}"#,
        r#"{"event":"pusher:unsubscribe","data":"nope"}"#,
        r#"{"event":"pusher:no_such_thing","data":{}}"#,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"x"}"#,
        r#"{"event":"not-a-client-event","channel":"private-x","data":{}}"#,
        r#"{"event":"client-x","data":{}}"#,
        r#"{"event":"client-x","channel":["a"],"data":{}}"#,
    ];
    for input in inputs {
        c.send_text(input).await;
        let err = c.recv().await;
        assert_eq!(err["event"], "pusher:error", "input {input}: {err}");
        assert_eq!(err["data"]["code"], json!(null), "input {input}");
        assert!(err["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    c.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(c.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn invalid_channel_names_get_subscription_errors() {
    let server = start().await;
    let mut c = connect(&server).await;
    for name in ["", "has space", "bad#hash", "ümlaut", &"x".repeat(201)] {
        c.send(json!({"event":"pusher:subscribe","data":{"channel":name,"auth":""}}))
            .await;
        let err = c.recv().await;
        assert_eq!(err["event"], "pusher:subscription_error", "{name}");
        assert_eq!(err["data"]["status"], 400);
    }
    c.subscribed("still-fine", None).await;
}

#[tokio::test]
async fn binary_frames_get_an_error() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    let err = c.recv().await;
    assert_eq!(err["event"], "pusher:error");
    c.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(c.recv().await["event"], "pusher:pong");
}

#[tokio::test]
async fn oversize_frames_close_with_1009_and_others_are_unaffected() {
    let server = start_with(|c| c.server.max_message_size_kb = 4).await;
    let mut bystander = connect(&server).await;
    bystander.subscribed("private-calm", None).await;
    let mut c = connect(&server).await;
    c.send_text(&format!(
        r#"{{"event":"pusher:ping","data":"{}"}}"#,
        "x".repeat(5000)
    ))
    .await;
    let err = c.recv().await;
    assert_eq!(err["event"], "pusher:error");
    assert_eq!(close_code(&mut c.ws).await, Some(1009));
    bystander.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(bystander.recv().await["event"], "pusher:pong");
}

/// Frames a browser could never send: unmasked, reserved bits, unknown opcodes.
#[tokio::test]
async fn websocket_protocol_violations_close_with_1002() {
    let server = start().await;
    for bad in [
        vec![0x81u8, 0x02, b'h', b'i'], // unmasked text
        vec![0xC1, 0x80, 0, 0, 0, 0],   // RSV1 set
        vec![0x83, 0x80, 0, 0, 0, 0],   // reserved opcode
        vec![0x80, 0x80, 0, 0, 0, 0],   // continuation with nothing to continue
        vec![0x09, 0x80, 0, 0, 0, 0],   // fragmented ping
    ] {
        let mut s = raw_tcp_upgrade(&server).await;
        s.write_all(&bad).await.expect("write");
        let bytes = read_until_closed(&mut s).await;
        assert_eq!(last_close_code(&bytes), 1002, "input {bad:?}");
    }
    let mut c = connect(&server).await;
    c.subscribed("after-violations", None).await;
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let server = start().await;
    let mut s = raw_tcp_upgrade(&server).await;
    s.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
        .await
        .expect("write");
    let bytes = read_until_closed(&mut s).await;
    assert_eq!(last_close_code(&bytes), 1007);
}

#[tokio::test]
async fn garbage_before_the_handshake_gets_an_http_error() {
    let server = start().await;
    assert_http_400(&server, b"\x16\x03\x01 this is not http\r\n\r\n").await;
    let mut c = connect(&server).await;
    c.subscribed("after-garbage", None).await;
}

#[tokio::test]
async fn bad_upgrade_requests_get_400() {
    let server = start().await;
    assert_http_400(&server, b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: x\r\n\r\n").await;
    assert_http_400(&server, b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    // RFC 6455 section 4.4: the refusal of another version names the one the server speaks.
    let mut s = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    s.write_all(b"GET /app/app-key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.expect("write");
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("\r\nSec-WebSocket-Version: 13\r\n"),
        "{answer}"
    );
}

/// A connection that never reads is closed when its queue fills; the publisher and the other
/// subscribers are not slowed down or hurt.
#[tokio::test]
async fn slow_consumer_is_dropped_without_hurting_others() {
    let server = start_with(|c| {
        c.server.max_outbound_queue = 16;
        c.server.max_message_size_kb = 128;
        demo_app(c).client_event_rate_per_sec = 100_000;
        demo_app(c).max_event_payload_kb = 100;
    })
    .await;
    let mut publisher = connect(&server).await;
    publisher.subscribed("private-flood", None).await;
    let mut healthy = connect(&server).await;
    healthy.subscribed("private-flood", None).await;
    // The slow one subscribes, then reads a little at a time: far slower than the flood.
    let mut slow = raw_tcp_upgrade(&server).await;
    let sid = read_socket_id(&mut slow).await;
    let auth = warren_protocol::auth::sign_channel(KEY, SECRET, &sid, "private-flood", None);
    let sub = json!({"event":"pusher:subscribe","data":{"channel":"private-flood","auth":auth}})
        .to_string();
    slow.write_all(&masked_text(sub.as_bytes()))
        .await
        .expect("subscribe");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let slow_reader = tokio::spawn(read_slowly_to_the_close(slow));

    // 200 events of 60 KB (12 MB) is more than loopback socket buffers hold for a reader
    // this slow. The publisher waits for the healthy subscriber to get each event, so
    // the healthy one never has more than one frame queued.
    let payload = "y".repeat(60_000);
    for i in 0..200 {
        publisher
            .send(json!({"event":"client-flood","channel":"private-flood","data":{"i":i,"p":payload}}))
            .await;
        let got = healthy.recv().await;
        assert_eq!(got["event"], "client-flood", "{}", got["event"]);
    }
    // Every frame the slow one got is whole (the frame cut short when its queue was dropped
    // was finished first), and the last ones are `pusher:error` 4100 and the close with 4100.
    let (error, close) = tokio::time::timeout(Duration::from_secs(60), slow_reader)
        .await
        .expect("the slow consumer is closed")
        .expect("reader");
    assert!(error.contains("\"code\":4100"), "{error}");
    assert_eq!(close, Some(4100));
    publisher.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(publisher.recv().await["event"], "pusher:pong");
}

/// Reads 4 KiB every 10 ms, parsing every frame, until the server closes: the last text
/// message and the close frame's code. Panics on a malformed frame.
async fn read_slowly_to_the_close(mut s: tokio::net::TcpStream) -> (String, Option<u16>) {
    use warren_protocol::wsframe::{Frame, FrameReader};
    let mut reader = FrameReader::new();
    let mut last_text = String::new();
    loop {
        loop {
            match reader.next().expect("well-formed frames") {
                Some(Frame::Text(t)) => last_text = String::from_utf8_lossy(t).into_owned(),
                Some(Frame::Close(p)) => {
                    return (
                        last_text,
                        (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])),
                    )
                }
                Some(Frame::Ping(_)) => {}
                None => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let spare = reader.spare();
        let room = spare.len().min(4096);
        match s.read(&mut spare[..room]).await {
            Ok(0) | Err(_) => return (last_text, None),
            Ok(n) => reader.filled(n),
        }
    }
}
