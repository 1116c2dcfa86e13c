//! Reading and writing single frames, strictly: a test fails on any frame a correct server
//! would not send at that point.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use warren_protocol::ServerMessage;

use super::Ws;
use crate::WAIT;

/// How long "nothing arrives" is watched for: long enough for a frame already on its way.
pub const SILENCE: Duration = Duration::from_millis(300);

/// The next text message as JSON within `within`, or `None` if none came. WebSocket pings and
/// pongs are skipped (the library answers them); anything else that is not text, a closed
/// stream or a broken frame fails the test. Every message must also decode as a typed
/// [`ServerMessage`], so each test checks the server against the protocol crate's decoder (and
/// the decoder against a real server).
pub async fn try_recv(ws: &mut Ws, within: Duration) -> Option<Value> {
    let next_text = async {
        loop {
            let msg = ws.next().await.expect("stream open").expect("valid frame");
            match msg {
                Message::Text(t) => {
                    if let Err(e) = ServerMessage::parse(&t) {
                        panic!("the server sent a message clients cannot decode ({e}): {t}");
                    }
                    return serde_json::from_str(&t).expect("server sends JSON");
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(within, next_text).await.ok()
}

/// The next text message as JSON, which must come within [`WAIT`].
pub async fn recv(ws: &mut Ws) -> Value {
    try_recv(ws, WAIT).await.expect("a message in time")
}

/// The next text message, decoded as the typed [`ServerMessage`] clients see; within [`WAIT`].
pub async fn recv_message(ws: &mut Ws) -> ServerMessage {
    let json = recv(ws).await;
    ServerMessage::parse(&json.to_string()).expect("decoded above")
}

/// Asserts that nothing at all arrives for [`SILENCE`].
pub async fn assert_silent(ws: &mut Ws) {
    if let Ok(Some(msg)) = tokio::time::timeout(SILENCE, ws.next()).await {
        panic!("expected silence, got {msg:?}");
    }
}

/// Reads until the server closes; returns the close frame's code (`None` without one).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Expects `pusher:error` with `code`, then a close frame with the same code; returns the
/// error's message.
pub async fn expect_refusal(ws: &mut Ws, code: u16) -> String {
    let err = recv(ws).await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], code, "{err}");
    assert_eq!(close_code(ws).await, Some(code));
    err["data"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Sends `v` as a text frame.
pub async fn send(ws: &mut Ws, v: Value) {
    send_text(ws, &v.to_string()).await
}

/// Sends `text` as it is, for input that is not valid JSON.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.expect("send");
}
