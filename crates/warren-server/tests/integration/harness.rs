//! A running server and a small Pusher client for the tests.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warren_protocol::auth::sign_channel;
use warren_server::config::{AppConfig, Config};
use warren_server::{RunningServer, Server};

pub const KEY: &str = "app-key";
pub const SECRET: &str = "app-secret";
/// Long enough for a loaded CI machine, short enough that a broken server fails quickly.
pub const WAIT: Duration = Duration::from_secs(5);

pub type TestServer = RunningServer;

/// The demo configuration on a free port, changed by `edit`.
pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::default();
    config.server.port = 0;
    edit(&mut config);
    Server::start(config).await.expect("server starts")
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// Changes the demo app.
pub fn demo_app(config: &mut Config) -> &mut AppConfig {
    &mut config.apps[0]
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub socket_id: String,
}

/// Opens a raw WebSocket to `path_and_query`.
pub async fn raw(server: &TestServer, path_and_query: &str) -> Ws {
    let url = format!("ws://{}{}", server.addr, path_and_query);
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    ws
}

/// Connects as pusher-js would and waits for `connection_established`.
pub async fn connect(server: &TestServer) -> Client {
    let mut ws = raw(
        server,
        &format!("/app/{KEY}?protocol=7&client=js&version=8.4.0&flash=false"),
    )
    .await;
    let est = recv(&mut ws).await;
    assert_eq!(est["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(est["data"].as_str().expect("data is a string"))
        .expect("data is JSON");
    let socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
    Client { ws, socket_id }
}

/// The next text message as JSON, skipping nothing.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("valid frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Asserts that nothing arrives for a short while.
pub async fn assert_silent(ws: &mut Ws) {
    if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        panic!("expected silence, got {msg:?}");
    }
}

/// Reads until the server closes; returns the close code.
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

/// Expects `pusher:error` with `code`, then a close frame with the same code.
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

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.expect("send");
}

impl Client {
    pub async fn recv(&mut self) -> Value {
        recv(&mut self.ws).await
    }

    pub async fn send(&mut self, v: Value) {
        send(&mut self.ws, v).await
    }

    /// Subscribes with correct auth (and channel_data for presence) and returns the reply.
    pub async fn subscribe(&mut self, channel: &str, channel_data: Option<&str>) -> Value {
        let needs_auth = channel.starts_with("private-") || channel.starts_with("presence-");
        let auth = if needs_auth {
            sign_channel(KEY, SECRET, &self.socket_id, channel, channel_data)
        } else {
            String::new()
        };
        let mut data = json!({"channel": channel, "auth": auth});
        if let Some(cd) = channel_data {
            data["channel_data"] = json!(cd);
        }
        self.send(json!({"event":"pusher:subscribe","data": data}))
            .await;
        self.recv().await
    }

    /// Subscribes and asserts success; returns the decoded `data` of subscription_succeeded.
    pub async fn subscribed(&mut self, channel: &str, channel_data: Option<&str>) -> Value {
        let reply = self.subscribe(channel, channel_data).await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        assert_eq!(reply["channel"], channel);
        decode_data(&reply)
    }

    pub async fn assert_silent(&mut self) {
        assert_silent(&mut self.ws).await
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        // Let the server see the close before the test goes on.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// The `data` of a frame, which must be a JSON-encoded string.
pub fn decode_data(v: &Value) -> Value {
    let s = v["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data must be a string: {v}"));
    serde_json::from_str(s).unwrap_or_else(|_| panic!("data must hold JSON: {v}"))
}

pub fn presence_data(user_id: Value, info: Option<Value>) -> String {
    let mut v = json!({ "user_id": user_id });
    if let Some(i) = info {
        v["user_info"] = i;
    }
    v.to_string()
}

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("JSON body expected: {}", self.body))
    }
}

/// Seconds since the epoch, as SDKs put in `auth_timestamp`.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The full request target of a signed API request, as the official SDKs build it.
pub fn signed_target(
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
    key: &str,
    secret: &str,
    timestamp: i64,
) -> String {
    use warren_protocol::auth::{body_md5_hex, sign_rest_request};
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("auth_key".into(), key.into()));
    all.push(("auth_timestamp".into(), timestamp.to_string()));
    all.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        all.push(("body_md5".into(), body_md5_hex(body.as_bytes())));
    }
    let signature = sign_rest_request(secret, method, path, &all);
    all.push(("auth_signature".into(), signature));
    let query: Vec<String> = all
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends one raw HTTP/1.1 request (Connection: close) and reads the response.
pub async fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    parse_response(&String::from_utf8_lossy(&raw))
}

pub fn parse_response(raw: &str) -> Response {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {raw}"));
    Response {
        status,
        body: body.to_owned(),
    }
}

/// A correctly signed request for the demo app.
pub async fn api(
    server: &TestServer,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
) -> Response {
    let target = signed_target(method, path, params, body, KEY, SECRET, now_secs());
    http(server.addr, method, &target, body).await
}

pub async fn api_get(server: &TestServer, path: &str, params: &[(&str, &str)]) -> Response {
    api(server, "GET", path, params, "").await
}

pub async fn api_post(server: &TestServer, path: &str, body: Value) -> Response {
    api(server, "POST", path, &[], &body.to_string()).await
}
