//! Raw HTTP/1.1 over a TCP socket: the request goes out exactly as written, which tests of
//! the server's parsing and of what SDKs really send need.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Endpoint, WAIT};

/// An HTTP response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// The body as JSON, which it must be.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("JSON body expected: {}", self.body))
    }
}

/// Sends one request (Content-Type: application/json, as PHP sends even on GETs;
/// Connection: close) and reads the whole response.
pub async fn http(to: &impl Endpoint, method: &str, target: &str, body: &str) -> Response {
    let mut s = TcpStream::connect(to.addr()).await.expect("connect");
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

/// The status and body of a raw response.
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
