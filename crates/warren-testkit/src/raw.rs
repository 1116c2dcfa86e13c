//! WebSocket bytes written and read by hand, for tests that send what no client library
//! would (unmasked frames, reserved bits, a reader that never reads) and read close codes
//! that a library would swallow.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Endpoint, KEY, WAIT};

/// Upgrades a TCP connection to the demo app by hand and reads the 101 response head.
pub async fn raw_tcp_upgrade(to: &impl Endpoint) -> TcpStream {
    upgrade_stream(TcpStream::connect(to.addr()).await.expect("connect")).await
}

/// Upgrades an already connected `s` (one with socket options of the test's choosing) to the
/// demo app by hand and reads the 101 response head.
pub async fn upgrade_stream(mut s: TcpStream) -> TcpStream {
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("write");
    // Byte by byte, so that nothing after the head is consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("response");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// Reads the connection_established frame (short, so a 7-bit length) and returns the
/// socket id.
pub async fn read_socket_id(s: &mut TcpStream) -> String {
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).await.expect("frame header");
    let len = (hdr[1] & 0x7f) as usize;
    assert!(len < 126);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.expect("payload");
    let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
    let data: serde_json::Value =
        serde_json::from_str(v["data"].as_str().expect("data")).expect("json");
    data["socket_id"].as_str().expect("socket id").to_owned()
}

/// A masked text frame, as a client must send it (payloads up to 64 KiB).
pub fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![0x81u8];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Everything the server sends until it closes the connection (or [`WAIT`] passes).
pub async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    out
}

/// The code of the last close frame in what the server sent.
pub fn last_close_code(bytes: &[u8]) -> u16 {
    let at = bytes
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .expect("close frame");
    u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])
}

/// Sends raw bytes as the first request on a connection and expects an HTTP 400 answer.
pub async fn assert_http_400(to: &impl Endpoint, request: &[u8]) {
    let mut s = TcpStream::connect(to.addr()).await.expect("connect");
    s.write_all(request).await.expect("write");
    let out = read_until_closed(&mut s).await;
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}
