//! What a slow consumer costs the others on its channel: a measurement (ignored in the suite;
//! the behaviour itself, closed with 4100 while the others get every event, is
//! `bad_input::slow_consumer_is_dropped_without_hurting_others`). The figure is in
//! docs/RELIABILITY.md.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use warren_testkit::api::api_post;
use warren_testkit::raw::{masked_text, read_socket_id, upgrade_stream};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::{connect, Socket};
use warren_testkit::WAIT;

const EVENTS: usize = 400;
const SUBSCRIBERS: usize = 10;

/// Publishes `EVENTS` events of 9 KB to `load`, one after the other, each once `watched`
/// got the one before; the others subscribed drain in tasks of their own. The latencies.
async fn publish_to(server: &TestServer, watched: &mut Socket) -> Vec<Duration> {
    let data = "z".repeat(9000);
    let mut latencies = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS {
        let sent = Instant::now();
        let body = json!({"name":"e","channel":"load","data":format!("{n}:{data}")});
        let r = api_post(server, "/apps/app-id/events", body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let got = watched.next_event("e", WAIT).await;
        assert!(got["data"]
            .as_str()
            .is_some_and(|d| d.starts_with(&format!("{n}:"))));
        latencies.push(sent.elapsed());
    }
    latencies
}

async fn subscribers(server: &TestServer) -> (Socket, Vec<tokio::task::JoinHandle<()>>) {
    let mut watched = connect(server).await;
    watched.subscribed("load", None).await;
    let mut drains = Vec::new();
    for _ in 1..SUBSCRIBERS {
        let mut s = connect(server).await;
        s.subscribed("load", None).await;
        drains.push(tokio::spawn(async move {
            while s.try_recv(Duration::from_secs(30)).await.is_some() {}
        }));
    }
    (watched, drains)
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// `cargo test --release -p warren-server --test integration slow_consumer_cost -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn slow_consumer_cost() {
    let server = start_with(|c| c.server.max_outbound_queue = 64).await;
    let (mut watched, drains) = subscribers(&server).await;
    let quiet = publish_to(&server, &mut watched).await;

    // A subscriber that never reads: its socket's buffers fill, then its queue, then it is
    // closed with 4100 while the others go on.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
    let slow = socket.connect(server.addr).await.expect("connect");
    let mut slow = upgrade_stream(slow).await;
    read_socket_id(&mut slow).await;
    let sub = json!({"event":"pusher:subscribe","data":{"channel":"load"}}).to_string();
    slow.write_all(&masked_text(sub.as_bytes()))
        .await
        .expect("subscribe");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let with_slow = publish_to(&server, &mut watched).await;
    let (q, s) = (p99(quiet), p99(with_slow));
    println!(
        "others' publish-to-receive p99 over {EVENTS} events of 9 KB to {SUBSCRIBERS} subscribers: \
         quiet {q:?}, with a slow consumer being dropped {s:?} ({:.2}x)",
        s.as_secs_f64() / q.as_secs_f64()
    );
    // Whether it was dropped: the server closed it (its last frames are the 4100 close, when
    // they got through, or nothing more once the write deadline passed).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    rest.extend_from_slice(&buf[..n]);
                    let keep = rest.len().saturating_sub(64);
                    rest.drain(..keep);
                }
            }
        }
    })
    .await
    .is_ok();
    let close = rest
        .windows(4)
        .rposition(|w| w[0] == 0x88 && w[1] >= 2)
        .map(|at| u16::from_be_bytes([rest[at + 2], rest[at + 3]]));
    println!("the slow consumer was closed: {closed}, close code {close:?}");
    for d in drains {
        d.abort();
    }
}
