//! A small Pusher client on tokio-tungstenite, independent of `warren-client`, so that server
//! tests check the protocol byte by byte rather than through the SDK under test.
//!
//! [`connect`] opens a connection as pusher-js does and returns a [`Socket`]; [`raw`] opens
//! any path, for tests of the handshake and of refusals. [`recv`], [`send`] and the other
//! frame functions read and write single frames, panicking on anything a correct server would
//! not send.

mod data;
mod frames;
mod socket;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Endpoint, KEY, WAIT};

pub use data::{decode_data, presence_data};
pub use frames::{
    assert_silent, close_code, expect_refusal, recv, recv_message, send, send_text, try_recv,
    SILENCE,
};
pub use socket::Socket;

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The query string pusher-js 8 sends.
pub const PUSHER_JS_QUERY: &str = "protocol=7&client=js&version=8.4.0&flash=false";

/// Opens a WebSocket to `path_and_query`; the handshake's own error if it is refused (a test
/// of refusals asserts that), a panic if it does not finish in time.
pub async fn handshake(to: &impl Endpoint, path_and_query: &str) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{}{}", to.addr(), path_and_query);
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")?;
    Ok(ws)
}

/// Opens a WebSocket to `path_and_query`, which must be accepted.
pub async fn raw(to: &impl Endpoint, path_and_query: &str) -> Ws {
    handshake(to, path_and_query)
        .await
        .expect("handshake succeeds")
}

/// Connects to the demo app as pusher-js would and waits for `connection_established`.
pub async fn connect(to: &impl Endpoint) -> Socket {
    established(raw(to, &format!("/app/{KEY}?{PUSHER_JS_QUERY}")).await).await
}

/// Waits on a WebSocket just opened to the demo app for `connection_established`.
pub async fn established(mut ws: Ws) -> Socket {
    let est = recv(&mut ws).await;
    assert_eq!(est["event"], "pusher:connection_established", "{est}");
    let data: Value = serde_json::from_str(est["data"].as_str().expect("data is a string"))
        .expect("data is JSON");
    let socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
    Socket { ws, socket_id }
}
