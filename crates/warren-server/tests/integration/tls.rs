//! Native TLS (`server.tls`): the protocol and the API over `wss://` and `https://` with a
//! certificate authority the test makes, every bound of the plain path kept over TLS (the
//! handshake within the head deadline, write deadlines, the connection cap), and the
//! certificate reloaded while connections carry traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use warren_testkit::server::{demo_app, start_with, try_start, TestServer};
use warren_testkit::tls::{https_api_post, peer_certificate, TestCa};
use warren_testkit::ws::{self, established, Socket, PUSHER_JS_QUERY};
use warren_testkit::{Endpoint, KEY, WAIT};

/// Far beyond every bound configured here: a socket still open after this is a failure.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

async fn tls_server(ca: &TestCa, edit: impl FnOnce(&mut warren_server::Config)) -> TestServer {
    let files = ca.install(&ca.issue("first"));
    start_with(|c| {
        c.server.tls = Some(files);
        edit(c);
    })
    .await
}

/// Publishes a `tick` with `data` over HTTPS: the status and body.
async fn publish(
    client: &reqwest::Client,
    to: &impl Endpoint,
    channel: &str,
    data: &str,
) -> reqwest::Result<(u16, String)> {
    let event = json!({"name": "tick", "channel": channel, "data": data});
    https_api_post(client, to, "/apps/app-id/events", &event).await
}

#[tokio::test]
async fn wss_and_https_carry_the_protocol_and_the_api() {
    let ca = TestCa::new();
    let server = tls_server(&ca, |_| {}).await;
    let mut socket = ca.connect(&server).await;
    assert!(socket.socket_id.contains('.'), "{}", socket.socket_id);
    socket.subscribed("tls-public", None).await;
    socket.subscribed("private-tls", None).await;

    let https = ca.https_client();
    let (status, body) = publish(&https, &server, "private-tls", "over https")
        .await
        .expect("HTTPS request");
    assert_eq!(status, 200, "{body}");
    let event = socket.recv().await;
    assert_eq!(event["event"], "tick", "{event}");
    assert_eq!(event["channel"], "private-tls");
    assert_eq!(event["data"], "over https");

    // Client events and pings go both ways over the same TLS session.
    socket
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    assert_eq!(socket.recv().await["event"], "pusher:pong");
    let health = https
        .get(format!("https://{}/health", server.addr()))
        .send()
        .await
        .expect("GET /health over HTTPS");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn a_plain_client_on_a_tls_port_is_refused_without_hanging() {
    let ca = TestCa::new();
    let server = tls_server(&ca, |_| {}).await;
    let refused = tokio::time::timeout(WAIT, ws::handshake(&server, &format!("/app/{KEY}")))
        .await
        .expect("an answer in time, not a hang");
    assert!(refused.is_err(), "ws:// must not be upgraded on a TLS port");

    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut s).await.expect("closed in time");
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP is not served");
    // The server is fine for TLS clients afterwards.
    ca.connect(&server).await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped_at_the_head_deadline() {
    let ca = TestCa::new();
    let server = tls_server(&ca, |c| c.server.handshake_timeout_ms = 300).await;
    // Nothing at all, and the first bytes of a ClientHello that never completes.
    let mut silent = TcpStream::connect(server.addr()).await.expect("connect");
    let mut partial = TcpStream::connect(server.addr()).await.expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    assert!(read_until_closed(&mut silent).await.is_some());
    assert!(read_until_closed(&mut partial).await.is_some());
}

/// What arrives until the server closes `s`; `None` if it is still open after
/// [`CLOSED_WITHIN`].
async fn read_until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(CLOSED_WITHIN, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(all)
}

#[tokio::test]
async fn the_node_cap_holds_over_tls() {
    let ca = TestCa::new();
    let server = tls_server(&ca, |c| c.server.max_connections = 1).await;
    let _first = ca.connect(&server).await;
    let path = format!("/app/{KEY}?{PUSHER_JS_QUERY}");
    match ca.handshake(&server, &path).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
}

/// A presence member whose socket takes no bytes is dropped after `write_timeout_ms` over
/// TLS as over TCP, and the other members hear `member_removed`.
#[tokio::test]
async fn a_reader_that_never_reads_over_tls_is_dropped_at_the_write_deadline() {
    let ca = TestCa::new();
    let server = tls_server(&ca, |c| {
        c.server.write_timeout_ms = 500;
        // Far more than the flood below: the slow-consumer close must not be what ends it.
        c.server.max_outbound_queue = 100_000;
        demo_app(c).max_event_payload_kb = 20;
    })
    .await;
    let channel = "presence-stuck-tls";
    let mut watcher = ca.connect(&server).await;
    watcher
        .subscribed(channel, Some(&json!({"user_id": "watcher"}).to_string()))
        .await;

    let tcp = TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(1024).expect("SO_RCVBUF");
    let tcp = tcp.connect(server.addr()).await.expect("connect");
    let path = format!("/app/{KEY}?{PUSHER_JS_QUERY}");
    let mut stuck = established(ca.handshake_over(tcp, &path).await.expect("wss")).await;
    stuck
        .subscribed(channel, Some(&json!({"user_id": "stuck"}).to_string()))
        .await;
    let added = watcher
        .next_event("pusher_internal:member_added", CLOSED_WITHIN)
        .await;
    assert!(added["data"].as_str().unwrap_or_default().contains("stuck"));

    // The watcher reads all along (the flood reaches it too, and it must not stall itself).
    let removed = tokio::spawn(async move {
        let within = CLOSED_WITHIN * 3;
        watcher
            .next_event("pusher_internal:member_removed", within)
            .await
    });
    // From here on `stuck` is never read. 400 events of 15 KB: far more than a small window,
    // the kernel's buffers and the TLS session's buffer hold.
    let https = ca.https_client();
    let data = "z".repeat(15_000);
    for _ in 0..40 {
        let batch: Vec<_> = (0..10)
            .map(|_| json!({"channel": channel, "name": "flood", "data": data}))
            .collect();
        let batch = json!({ "batch": batch });
        let (status, body) = https_api_post(&https, &server, "/apps/app-id/batch_events", &batch)
            .await
            .expect("publish");
        assert_eq!(status, 200, "{body}");
    }
    let removed = removed.await.expect("the watcher's task");
    assert!(
        removed["data"]
            .as_str()
            .unwrap_or_default()
            .contains("stuck"),
        "{removed}"
    );
    drop(stuck);
}

#[tokio::test]
async fn a_certificate_that_does_not_load_stops_start_up() {
    let ca = TestCa::new();
    let mut files = ca.install(&ca.issue("first"));
    std::fs::write(&files.cert_file, "not a certificate").expect("write");
    let config = |files: &warren_server::config::TlsConfig| {
        warren_testkit::server::demo_config(|c| c.server.tls = Some(files.clone()))
    };
    let e = start_error(config(&files)).await;
    assert!(e.contains("server.tls.cert_file"), "{e}");
    files.key_file = ca.path("missing.pem");
    ca.install(&ca.issue("again"));
    let e = start_error(config(&files)).await;
    assert!(
        e.contains("server.tls.key_file") && e.contains("missing.pem"),
        "{e}"
    );
}

async fn start_error(config: warren_server::Config) -> String {
    match try_start(config).await {
        Ok(_) => panic!("started with a broken certificate"),
        Err(e) => format!("{e:#}"),
    }
}

/// Ticks `n`, `n + 1`, ... read from `socket` until one is at least `until`; every tick must
/// follow the one before (no event lost or reordered across a reload). Returns the last.
async fn ticks_until(socket: &mut Socket, mut last: Option<u64>, until: u64) -> u64 {
    loop {
        let event = socket.recv().await;
        assert_eq!(event["event"], "tick", "{event}");
        let n: u64 = event["data"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("a numbered tick: {event}"));
        if let Some(before) = last {
            assert_eq!(n, before + 1, "ticks in order, none lost");
        }
        last = Some(n);
        if n >= until {
            return n;
        }
    }
}

/// Publishes numbered ticks over one HTTPS client (its keep-alive connection lives through
/// the reloads too) until `stop`; counts them in `published`.
fn publisher(
    ca: &TestCa,
    to: std::net::SocketAddr,
    channel: &'static str,
    published: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let https = ca.https_client();
    tokio::spawn(async move {
        let mut n = 0u64;
        while !*stop.borrow() {
            match publish(&https, &to, channel, &n.to_string()).await {
                Ok((200, _)) => {}
                Ok((status, body)) => return Err(format!("tick {n}: {status} {body}")),
                Err(e) => return Err(format!("tick {n}: {e}")),
            }
            published.store(n, Ordering::Release);
            n += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(())
    })
}

#[tokio::test]
async fn a_reload_under_load_keeps_connections_and_new_ones_get_the_new_certificate() {
    const CHANNEL: &str = "tls-load";
    let ca = TestCa::new();
    let first = ca.issue("first");
    let files = ca.install(&first);
    let server = start_with(|c| c.server.tls = Some(files)).await;
    let reloader = server.tls_reloader().expect("a TLS server has a reloader");

    let mut old = Vec::new();
    for _ in 0..3 {
        let mut socket = ca.connect(&server).await;
        assert!(
            peer_certificate(&socket.ws) == first.der,
            "the first certificate"
        );
        socket.subscribed(CHANNEL, None).await;
        old.push((socket, None));
    }
    let published = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let load = publisher(&ca, server.addr(), CHANNEL, published.clone(), stopped);
    let flowing = |old: &mut Vec<(Socket, Option<u64>)>, until: u64| {
        let old = std::mem::take(old);
        async move {
            let mut out = Vec::new();
            for (mut socket, last) in old {
                let last = ticks_until(&mut socket, last, until).await;
                out.push((socket, Some(last)));
            }
            out
        }
    };
    old = flowing(&mut old, 5).await;

    // The new certificate: old connections go on, new ones get it.
    let second = ca.issue("second");
    ca.install(&second);
    reloader.reload().expect("the new certificate loads");
    let mut new = ca.connect(&server).await;
    assert!(first.der != second.der);
    assert!(
        peer_certificate(&new.ws) == second.der,
        "a new connection gets the new certificate"
    );
    new.subscribed(CHANNEL, None).await;
    let after = published.load(Ordering::Acquire);
    old = flowing(&mut old, after + 20).await;
    let seen = ticks_until(&mut new, None, after + 20).await;

    // A broken file, then a key that is not the certificate's: refused, the current one stays.
    let files = ca.files();
    std::fs::write(&files.cert_file, "-----BEGIN CERTIFICATE-----\nbroken\n").expect("write");
    let e = reloader
        .reload()
        .expect_err("a broken certificate")
        .to_string();
    assert!(e.contains("server.tls.cert_file"), "{e}");
    let third = ca.issue("third");
    std::fs::write(&files.cert_file, &third.cert_pem).expect("write");
    let e = reloader
        .reload()
        .expect_err("a key of another certificate")
        .to_string();
    assert!(e.contains("do not go together"), "{e}");
    let mut later = ca.connect(&server).await;
    assert!(
        peer_certificate(&later.ws) == second.der,
        "a failed reload keeps the current certificate"
    );
    later.subscribed(CHANNEL, None).await;

    let after = published.load(Ordering::Acquire);
    old = flowing(&mut old, after + 20).await;
    ticks_until(&mut new, Some(seen), after + 20).await;
    ticks_until(&mut later, None, after + 20).await;

    stop.send(true).expect("publisher running");
    let outcome = load.await.expect("publisher task");
    assert_eq!(outcome, Ok(()), "every publish over HTTPS succeeded");
    assert_eq!(old.len(), 3);
}
