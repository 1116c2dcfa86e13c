//! Clients that hold resources without using them: trickled request heads and bodies, idle
//! keep-alive connections, a reader that never reads. Each is closed within its configured
//! bound (`[server]` timeouts, set short here), and what it held is given back.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use warren_testkit::api::api_post;
use warren_testkit::raw::masked_text;
use warren_testkit::server::{demo_app, start_with, TestServer};
use warren_testkit::ws::connect;
use warren_testkit::{Endpoint, KEY, SECRET};

/// Far beyond every bound configured here: a socket still open after this is a failure.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

async fn short_timeouts() -> TestServer {
    start_with(|c| {
        c.server.handshake_timeout_ms = 500;
        c.server.request_timeout_ms = 500;
        c.server.http_idle_timeout_secs = 1;
        c.server.write_timeout_ms = 500;
    })
    .await
}

/// Whether the server closes `s` within [`CLOSED_WITHIN`] (reading and dropping what comes).
async fn closed_by_server(s: &mut TcpStream) -> bool {
    closed_within(s, CLOSED_WITHIN).await
}

/// Whether the server closes `s` within `bound` (reading and dropping what comes).
pub(crate) async fn closed_within(s: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(bound, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends `head_start`, then one more header line every 100 ms for as long as the socket
/// takes them; returns once the server has closed the connection (or after the bound).
async fn trickle_head(mut s: TcpStream, head_start: &[u8]) -> bool {
    s.write_all(head_start).await.expect("write");
    let (mut read, mut write) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if write.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(CLOSED_WITHIN, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    trickle.abort();
    closed
}

/// Reads one response with a `Content-Length` body; returns its status line.
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("response head");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.expect("response body");
    head.lines().next().unwrap_or_default().to_owned()
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_trickled_first_head_is_cut_off() {
    let server = short_timeouts().await;
    let s = TcpStream::connect(server.addr()).await.expect("connect");
    assert!(trickle_head(s, b"GET /health HTTP/1.1\r\nHost: x\r\n").await);
}

#[tokio::test]
async fn a_trickled_upgrade_head_is_cut_off() {
    let server = short_timeouts().await;
    let s = TcpStream::connect(server.addr()).await.expect("connect");
    let start = format!("GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n");
    assert!(trickle_head(s, start.as_bytes()).await);
}

#[tokio::test]
async fn a_trickled_head_after_a_keep_alive_request_is_cut_off() {
    let server = short_timeouts().await;
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(HEALTH).await.expect("write");
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    assert!(trickle_head(s, b"GET /health HTTP/1.1\r\n").await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = short_timeouts().await;
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(HEALTH).await.expect("write");
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    assert!(closed_by_server(&mut s).await);
}

/// The control for the tests above: with the default idle timeout, a keep-alive connection
/// quiet for longer than the short bounds is still served.
#[tokio::test]
async fn a_keep_alive_connection_within_its_idle_timeout_is_kept() {
    let server = start_with(|c| c.server.handshake_timeout_ms = 500).await;
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(HEALTH).await.expect("write");
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(HEALTH).await.expect("write");
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_trickled_body_gets_408() {
    let server = short_timeouts().await;
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    let head = "POST /apps/app-id/events?auth_key=k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"na";
    s.write_all(head.as_bytes()).await.expect("write");
    let status = tokio::time::timeout(CLOSED_WITHIN, read_response(&mut s))
        .await
        .expect("an answer in time");
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
}

/// A presence member whose socket takes no bytes (a zero receive window) is dropped after
/// `write_timeout_ms`, and the other members hear `member_removed`: it cannot hold its
/// membership, its slot or its queue.
#[tokio::test]
async fn a_reader_that_never_reads_loses_its_presence_membership() {
    let server = start_with(|c| {
        c.server.write_timeout_ms = 500;
        // Far more than the flood below: the slow-consumer close must not be what ends it.
        c.server.max_outbound_queue = 100_000;
        demo_app(c).max_event_payload_kb = 20;
    })
    .await;
    let channel = "presence-stuck";
    let mut watcher = connect(&server).await;
    let watcher_data = json!({"user_id": "watcher"}).to_string();
    watcher.subscribed(channel, Some(&watcher_data)).await;

    let mut stuck = zero_window_upgrade(&server).await;
    let sid = warren_testkit::raw::read_socket_id(&mut stuck).await;
    let stuck_data = json!({"user_id": "stuck"}).to_string();
    let auth = warren_protocol::auth::sign_channel(KEY, SECRET, &sid, channel, Some(&stuck_data));
    let sub = json!({"event":"pusher:subscribe",
        "data":{"channel":channel,"auth":auth,"channel_data":stuck_data}})
    .to_string();
    stuck
        .write_all(&masked_text(sub.as_bytes()))
        .await
        .expect("subscribe");
    let added = watcher
        .next_event("pusher_internal:member_added", CLOSED_WITHIN)
        .await;
    assert!(added["data"].as_str().unwrap_or_default().contains("stuck"));

    // The watcher reads all along: the flood reaches it too, and a watcher that stalled
    // would meet the write deadline itself on a loaded machine.
    let removed = tokio::spawn(async move {
        watcher
            .next_event("pusher_internal:member_removed", CLOSED_WITHIN * 2)
            .await
    });
    // 400 events of 15 KB: far more than a zero window and the server's send buffer hold.
    let data = "z".repeat(15_000);
    for _ in 0..40 {
        let batch: Vec<_> = (0..10)
            .map(|_| json!({"channel": channel, "name": "flood", "data": data}))
            .collect();
        let r = api_post(
            &server,
            "/apps/app-id/batch_events",
            json!({ "batch": batch }),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let removed = removed.await.expect("the watcher's task");
    assert!(
        removed["data"]
            .as_str()
            .unwrap_or_default()
            .contains("stuck"),
        "{removed}"
    );
}

/// Upgrades a connection whose receive buffer is as small as the kernel allows, and which
/// the test never reads after the first frame.
async fn zero_window_upgrade(to: &impl Endpoint) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
    let s = socket.connect(to.addr()).await.expect("connect");
    warren_testkit::raw::upgrade_stream(s).await
}

/// The status line of the answer to an upgrade request sent with `extra` headers.
async fn upgrade_status(to: &impl Endpoint, extra: &str) -> String {
    let mut s = TcpStream::connect(to.addr()).await.expect("connect");
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte).await.expect("answer");
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).trim().to_owned()
}

#[tokio::test]
async fn at_the_node_cap_upgrades_get_503_until_a_connection_leaves() {
    let server = start_with(|c| c.server.max_connections = 2).await;
    let a = connect(&server).await;
    let _b = connect(&server).await;
    assert!(upgrade_status(&server, "")
        .await
        .starts_with("HTTP/1.1 503"));
    // HTTP requests are not WebSocket connections: still served.
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(HEALTH).await.expect("write");
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    a.close().await;
    let mut admitted = false;
    for _ in 0..50 {
        if upgrade_status(&server, "")
            .await
            .starts_with("HTTP/1.1 101")
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "the freed slot is taken again");
}

/// Behind a trusted proxy (the test's own address), each forwarded client has its own cap;
/// the same header from an untrusted peer would be ignored.
#[tokio::test]
async fn per_address_caps_follow_forwarded_for_from_trusted_proxies() {
    let server = start_with(|c| {
        c.server.max_connections_per_ip = 1;
        c.server.trusted_proxies =
            warren_server::config::Networks(vec!["127.0.0.0/8".parse().expect("cidr")]);
    })
    .await;
    let mut held = TcpStream::connect(server.addr()).await.expect("connect");
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
    );
    held.write_all(request.as_bytes()).await.expect("write");
    let mut first = [0u8; 12];
    held.read_exact(&mut first).await.expect("answer");
    assert_eq!(&first, b"HTTP/1.1 101");
    let same = upgrade_status(&server, "X-Forwarded-For: 203.0.113.7\r\n").await;
    assert!(same.starts_with("HTTP/1.1 429"), "{same}");
    let other = upgrade_status(&server, "X-Forwarded-For: 203.0.113.8\r\n").await;
    assert!(other.starts_with("HTTP/1.1 101"), "{other}");
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = start_with(|c| c.server.max_connections_per_ip = 1).await;
    let _held = connect(&server).await;
    let spoofed = upgrade_status(&server, "X-Forwarded-For: 203.0.113.9\r\n").await;
    assert!(spoofed.starts_with("HTTP/1.1 429"), "{spoofed}");
}
