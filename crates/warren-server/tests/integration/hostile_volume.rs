//! Hostile clients at volume, all at once, beside one well-behaved subscriber: 1,000
//! connections flooding subscribes and client events, trickled heads, trickled bodies, idle
//! keep-alive connections and frames that never finish. The subscriber gets every event, in
//! order; each flood is answered with its rate limit's refusals (the connection stays); every
//! socket that only holds resources is closed within its bound.
//!
//! The publish-to-receive latency of the well-behaved subscriber under this load, against a
//! quiet run, is a measurement (`hostile_volume_latency`, ignored), recorded in
//! docs/RELIABILITY.md.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use warren_protocol::wsframe::{Frame, FrameReader};
use warren_testkit::api::api_post;
use warren_testkit::raw::{masked_text, raw_tcp_upgrade, read_socket_id};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::{connect, Socket};
use warren_testkit::{KEY, SECRET, WAIT};

/// The bounds of this server: heads and bodies within 2 s (more would cut off the
/// well-behaved publisher's own requests on a machine this test overloads), idle
/// keep-alive 1 s, a client
/// silent for 1 s is pinged and must answer within 5 s (generous: the test's own tasks
/// answer for 1,000 connections on a loaded machine).
async fn bounded_server() -> TestServer {
    start_with(|c| {
        c.server.handshake_timeout_ms = 2000;
        c.server.request_timeout_ms = 2000;
        c.server.http_idle_timeout_secs = 1;
        c.server.activity_timeout = 1;
        c.server.pong_timeout = 5;
    })
    .await
}

/// The longest any bound here allows (6 s: the ping, then the pong) with room for a machine
/// loaded by this very test: a correctness bound, not a performance figure.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);

const FLOODERS: usize = 1000;
const SUBSCRIBES_EACH: usize = 120;
const CLIENT_EVENTS_EACH: usize = 60;
const EVENTS: usize = 200;

/// What one flooding connection saw: refusals of its rate limit, and whether it stayed open.
struct Flood {
    refused: usize,
    open: bool,
}

/// Subscribes to `SUBSCRIBES_EACH` channels in one burst, or (`client_events`) to one
/// private channel and then sends `CLIENT_EVENTS_EACH` client events in one burst; reads the
/// answers for `listen`, answering pings, and counts the refusals (429 / 4301).
async fn flood(
    server: std::net::SocketAddr,
    i: usize,
    client_events: bool,
    listen: Duration,
) -> Flood {
    let mut s = raw_tcp_upgrade(&server).await;
    let sid = read_socket_id(&mut s).await;
    let mut burst = Vec::new();
    if client_events {
        let channel = format!("private-flood-{i}");
        let auth = warren_protocol::auth::sign_channel(KEY, SECRET, &sid, &channel, None);
        let sub = json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}});
        burst.extend(masked_text(sub.to_string().as_bytes()));
        for n in 0..CLIENT_EVENTS_EACH {
            let e = json!({"event":"client-flood","channel":channel,"data":{"n":n}});
            burst.extend(masked_text(e.to_string().as_bytes()));
        }
    } else {
        for n in 0..SUBSCRIBES_EACH {
            let sub = json!({"event":"pusher:subscribe","data":{"channel":format!("f{i}-{n}")}});
            burst.extend(masked_text(sub.to_string().as_bytes()));
        }
    }
    s.write_all(&burst).await.expect("the burst is taken");
    let mut reader = FrameReader::new();
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + listen;
    loop {
        while let Some(frame) = reader.next().expect("well-formed frames") {
            match frame {
                Frame::Text(t) => {
                    let t = String::from_utf8_lossy(t);
                    if t.contains("\\\"status\\\":429")
                        || t.contains("\"status\":429")
                        || t.contains("4301")
                    {
                        refused += 1;
                    }
                    if t.contains("pusher:ping") {
                        let pong = masked_text(br#"{"event":"pusher:pong","data":{}}"#);
                        if s.write_all(&pong).await.is_err() {
                            return Flood {
                                refused,
                                open: false,
                            };
                        }
                    }
                }
                Frame::Close(_) => {
                    return Flood {
                        refused,
                        open: false,
                    }
                }
                Frame::Ping(_) => {}
            }
        }
        let read = tokio::time::timeout_at(deadline, s.read(reader.spare())).await;
        match read {
            Err(_) => {
                return Flood {
                    refused,
                    open: true,
                }
            }
            Ok(Ok(0) | Err(_)) => {
                return Flood {
                    refused,
                    open: false,
                }
            }
            Ok(Ok(n)) => reader.filled(n),
        }
    }
}

/// Reads and drops until the server closes `s`; how long that took, `None` past the bound.
async fn time_to_close(mut s: TcpStream, started: Instant) -> Option<Duration> {
    crate::hostile::closed_within(&mut s, CLOSED_WITHIN)
        .await
        .then(|| started.elapsed())
}

/// The kinds of sockets that only hold resources, `each` of every kind, started now; each
/// task answers how long the server took to close its socket.
async fn holders(
    server: std::net::SocketAddr,
    each: usize,
    set: &mut JoinSet<(&'static str, Option<Duration>)>,
) {
    for _ in 0..each {
        // A head that never ends (the last header line is never finished).
        let mut s = TcpStream::connect(server).await.expect("connects");
        s.write_all(b"GET /apps/app-id/channels HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("writes");
        set.spawn(async move { ("trickled head", time_to_close(s, Instant::now()).await) });
        // A body that never arrives.
        let mut s = TcpStream::connect(server).await.expect("connects");
        s.write_all(
            b"POST /apps/app-id/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .expect("writes");
        set.spawn(async move { ("trickled body", time_to_close(s, Instant::now()).await) });
        // A keep-alive connection idle after one request.
        let mut s = TcpStream::connect(server).await.expect("connects");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("writes");
        set.spawn(async move { ("idle keep-alive", time_to_close(s, Instant::now()).await) });
        // A WebSocket frame header declaring 64 KiB, and nothing after it (nor any pong).
        let mut s = raw_tcp_upgrade(&server).await;
        read_socket_id(&mut s).await;
        s.write_all(&[0x81, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4])
            .await
            .expect("writes");
        set.spawn(async move { ("header-only frame", time_to_close(s, Instant::now()).await) });
    }
}

/// The well-behaved subscriber's loop: publishes `EVENTS` numbered events one after the
/// other through the API and waits for each (answering pings meanwhile); the latencies.
async fn publish_and_receive(server: &TestServer, good: &mut Socket) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS {
        let sent = Instant::now();
        // The request runs beside the reading, so that a ping is answered at once.
        let addr = server.addr;
        let post = tokio::spawn(async move {
            let body = json!({"name":"tick","channel":"quiet","data":n.to_string()});
            api_post(&addr, "/apps/app-id/events", body).await
        });
        loop {
            let msg = good.try_recv(WAIT).await.expect("the event arrives");
            match msg["event"].as_str() {
                Some("tick") => {
                    assert_eq!(msg["data"], n.to_string(), "every event, in order");
                    break;
                }
                Some("pusher:ping") => good.send(json!({"event":"pusher:pong","data":{}})).await,
                _ => panic!("unexpected {msg}"),
            }
        }
        let r = post.await.expect("the request");
        assert_eq!(r.status, 200, "{}", r.body);
        latencies.push(sent.elapsed());
    }
    latencies
}

/// Runs the whole load; the well-behaved subscriber's latencies under it.
async fn under_hostile_load(server: &TestServer, good: &mut Socket) -> Vec<Duration> {
    let addr = server.addr;
    let mut floods = JoinSet::new();
    for i in 0..FLOODERS {
        floods.spawn(flood(addr, i, i % 2 == 1, Duration::from_secs(4)));
    }
    // Set up beside the subscriber's loop, which must go on reading (and answering pings).
    let held = tokio::spawn(async move {
        let mut set = JoinSet::new();
        holders(addr, 50, &mut set).await;
        set
    });
    let latencies = publish_and_receive(server, good).await;

    let (mut refused_subscribes, mut refused_events) = (0, 0);
    let mut i = 0;
    while let Some(f) = answering_pings(good, floods.join_next()).await {
        let f = f.expect("flooder");
        assert!(f.open, "a flooder that answers pings stays connected");
        assert!(f.refused > 0, "a flood is answered with refusals");
        if i % 2 == 1 {
            refused_events += f.refused;
        } else {
            refused_subscribes += f.refused;
        }
        i += 1;
    }
    let mut held = held.await.expect("holders set up");
    eprintln!("refused: {refused_subscribes} subscribes, {refused_events} client events");
    let mut slowest: std::collections::BTreeMap<&str, Duration> = Default::default();
    while let Some(h) = answering_pings(good, held.join_next()).await {
        let (kind, took) = h.expect("holder");
        let took =
            took.unwrap_or_else(|| panic!("a {kind} socket still open after {CLOSED_WITHIN:?}"));
        let slowest = slowest.entry(kind).or_default();
        *slowest = (*slowest).max(took);
    }
    eprintln!("slowest close per kind: {slowest:?}");
    latencies
}

/// Waits for `until` while answering the subscriber's pings (nothing else may arrive).
async fn answering_pings<T>(good: &mut Socket, until: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(until);
    loop {
        tokio::select! {
            done = &mut until => return done,
            msg = good.try_recv(Duration::from_millis(100)) => match msg {
                Some(m) if m["event"] == "pusher:ping" => {
                    good.send(json!({"event":"pusher:pong","data":{}})).await
                }
                Some(m) => panic!("unexpected {m}"),
                None => {}
            },
        }
    }
}

async fn good_subscriber(server: &TestServer) -> Socket {
    let mut good = connect(server).await;
    good.subscribed("quiet", None).await;
    good
}

/// Takes about 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_behaved_client_is_served_through_a_thousand_hostile_ones() {
    let server = bounded_server().await;
    let mut good = good_subscriber(&server).await;
    under_hostile_load(&server, &mut good).await;
    // Still served after it all.
    good.send(json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(
        good.next_event("pusher:pong", WAIT).await["event"],
        "pusher:pong"
    );
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// The figure of docs/RELIABILITY.md: the well-behaved subscriber's publish-to-receive p99,
/// quiet and then under the hostile load above. Run with
/// `cargo test --release -p warren-server --test integration hostile_volume_latency -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn hostile_volume_latency() {
    let server = bounded_server().await;
    let mut good = good_subscriber(&server).await;
    let quiet = publish_and_receive(&server, &mut good).await;
    let loaded = under_hostile_load(&server, &mut good).await;
    let (q, l) = (p99(quiet), p99(loaded));
    println!(
        "publish-to-receive p99: quiet {q:?}, under {FLOODERS} flooders and {} holders {l:?} ({:.2}x)",
        50 * 4,
        l.as_secs_f64() / q.as_secs_f64()
    );
}

/// The same hostile load, wave after wave, against a server in another process
/// (`WARREN_HOSTILE_TARGET=host:port`, for `WARREN_HOSTILE_SECS`, default 20), so that a
/// well-behaved client's latency can be measured from a process of its own while this one
/// runs at low priority: the load from "another machine" on this one
/// (`bench/hostile.sh`, docs/RELIABILITY.md). Does nothing without the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn hostile_load_against_another_process() {
    let Ok(target) = std::env::var("WARREN_HOSTILE_TARGET") else {
        return;
    };
    let addr: std::net::SocketAddr = target.parse().expect("WARREN_HOSTILE_TARGET: host:port");
    let secs = std::env::var("WARREN_HOSTILE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut wave = 0;
    while Instant::now() < until {
        let mut floods = JoinSet::new();
        for i in 0..FLOODERS {
            let n = wave * FLOODERS + i;
            floods.spawn(flood(addr, n, i % 2 == 1, Duration::from_secs(4)));
        }
        let mut held = JoinSet::new();
        holders(addr, 50, &mut held).await;
        let mut refused = 0;
        while let Some(f) = floods.join_next().await {
            refused += f.map_or(0, |f| f.refused);
        }
        while held.join_next().await.is_some() {}
        eprintln!("wave {wave}: {refused} refusals");
        wave += 1;
    }
}
