//! `apps[].allowed_origins` on WebSocket upgrades, with the `Origin` header a browser sends:
//! an origin outside the list gets `pusher:error` 4009 and a 4009 close (pusher-js gives up
//! and reports it); one inside, or none at all (not a browser), is admitted.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_server::config::AllowedOrigins;
use warren_testkit::raw::{last_close_code, read_socket_id, read_until_closed};
use warren_testkit::server::{demo_app, start_with, TestServer};
use warren_testkit::{Endpoint, KEY};

async fn server() -> TestServer {
    start_with(|c| {
        demo_app(c).allowed_origins =
            AllowedOrigins::parse(&["https://*.example.com", "http://localhost:3000"])
                .expect("valid patterns");
    })
    .await
}

/// Upgrades by hand (with `Origin: origin` when given) and reads the answer's head, which
/// must be a `101`: refusals come after the upgrade, as Pusher's codes.
async fn upgrade(to: &impl Endpoint, origin: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect(to.addr()).await.expect("connect");
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test]
async fn an_origin_outside_the_list_is_closed_with_4009() {
    let server = server().await;
    for origin in [
        "https://evil.test",
        "https://example.com", // the wildcard takes subdomains only
        "http://app.example.com",
        "https://app.example.com.evil.test",
        "http://localhost:3001",
        "null",
    ] {
        let mut s = upgrade(&server, Some(origin)).await;
        let sent = read_until_closed(&mut s).await;
        let text = String::from_utf8_lossy(&sent);
        assert!(text.contains("\"code\":4009"), "{origin}: {text}");
        assert!(text.contains("Origin not allowed"), "{origin}: {text}");
        assert!(!text.contains("connection_established"), "{origin}: {text}");
        assert_eq!(last_close_code(&sent), 4009, "{origin}");
    }
}

#[tokio::test]
async fn an_origin_in_the_list_or_none_is_admitted() {
    let server = server().await;
    for origin in [
        Some("https://app.example.com"),
        Some("HTTPS://Deep.App.Example.com"),
        Some("http://localhost:3000"),
        None,
    ] {
        let mut s = upgrade(&server, origin).await;
        let socket_id = read_socket_id(&mut s).await;
        assert!(socket_id.contains('.'), "{origin:?}: {socket_id}");
    }
}

#[tokio::test]
async fn without_a_list_any_origin_is_admitted() {
    let server = start_with(|_| {}).await;
    let mut s = upgrade(&server, Some("https://anywhere.test")).await;
    read_socket_id(&mut s).await;
}
