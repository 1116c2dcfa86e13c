//! A scripted Pusher server: it completes the handshake and sends connection_established,
//! then hands the socket to the test's script. For client behaviour that the real server
//! does not produce on demand (unanswered pings, chosen close codes).

use std::future::Future;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A server-side WebSocket.
pub type ServerWs = WebSocketStream<TcpStream>;

/// Starts the server; each accepted connection `n` (from 0) gets socket id `1.n` and runs
/// `script(n, ws)`.
pub async fn fake_server<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(usize, ServerWs) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await {
                let established = json!({
                    "event": "pusher:connection_established",
                    "data": json!({"socket_id": format!("1.{n}"), "activity_timeout": 120}).to_string(),
                });
                if ws
                    .send(Message::text(established.to_string()))
                    .await
                    .is_ok()
                {
                    tokio::spawn(script(n, ws));
                }
            }
            n += 1;
        }
    });
    addr
}

/// Closes with `code`, then reads until the client has closed too.
pub async fn close_with(mut ws: ServerWs, code: u16) {
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "scripted".into(),
        }))
        .await;
    while let Some(Ok(_)) = ws.next().await {}
}
