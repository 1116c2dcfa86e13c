//! Redis killed and started again, empty, while events flow and clients on both nodes are
//! subscribed: no client misses an event without being told (closed with 4200), delivery
//! resumes, and once the clients are back the presence state is right on both nodes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use warren_testkit::api::{api_get, api_post};
use warren_testkit::redis::{unique_prefix, use_redis, RedisServer};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::{connect, presence_data, Socket};
use warren_testkit::WAIT;

const NODE_TIMEOUT_MS: u64 = 2000;

async fn node(url: &str, prefix: &str) -> TestServer {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    start_with(move |c| use_redis(c, vec![url], prefix, NODE_TIMEOUT_MS)).await
}

/// What a client saw: the numbers of the `tick` events it got, and the close code if the
/// server closed it.
#[derive(Default)]
struct Seen {
    ticks: BTreeSet<u64>,
    closed: Option<Option<u16>>,
}

/// Reads `socket` until the server closes it or `stop` is set and nothing arrived for a
/// while, recording every `tick`.
async fn record(mut socket: Socket, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), socket.ws.next()).await;
        match next {
            Err(_) if stop.load(Ordering::SeqCst) => return seen,
            Err(_) => continue,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                if v["event"] == "tick" {
                    let n = v["data"].as_str().and_then(|d| d.parse().ok());
                    seen.ticks.insert(n.expect("a numbered tick"));
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                seen.closed = Some(frame.map(|f| u16::from(f.code)));
                return seen;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => {
                seen.closed = Some(None);
                return seen;
            }
        }
    }
}

/// A client subscribed to `load` and, as `user`, to `presence-room`; retried while the
/// node refuses (503, still reconnecting to Redis), as pusher-js would.
async fn member(on: &TestServer, user: &str) -> Socket {
    let deadline = Instant::now() + WAIT * 2;
    let data = presence_data(json!(user), None);
    loop {
        let mut s = connect(on).await;
        let load = s.subscribe("load", None).await;
        let ok = "pusher_internal:subscription_succeeded";
        if load["event"] == ok && s.subscribe("presence-room", Some(&data)).await["event"] == ok {
            return s;
        }
        assert!(Instant::now() < deadline, "no subscribe: {load}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn users_of(body: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = body["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// Takes about 8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_loses_nothing_silently() {
    let mut redis = RedisServer::start();
    let prefix = unique_prefix("restart-load");
    let a = node(&redis.url(), &prefix).await;
    let b = node(&redis.url(), &prefix).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (i, on) in [&a, &b, &a, &b].into_iter().enumerate() {
        let s = member(on, &format!("u{i}")).await;
        readers.push(tokio::spawn(record(s, stop.clone())));
    }

    // Publishes numbered ticks through both nodes, every 5 ms, until told to stop; the
    // numbers accepted (200) are the events every client must have or be told it missed.
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(BTreeSet::new()));
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (accepted, refused) = (accepted.clone(), refused.clone());
        let publishing = publishing.clone();
        let nodes = [a.addr, b.addr];
        tokio::spawn(async move {
            let mut n = 0u64;
            while publishing.load(Ordering::SeqCst) {
                let to = nodes[(n % 2) as usize];
                let body = json!({"name":"tick","channel":"load","data":n.to_string()});
                let r = api_post(&to, "/apps/app-id/events", body).await;
                match r.status {
                    200 => {
                        accepted.lock().expect("lock").insert(n);
                    }
                    503 => {
                        refused.lock().expect("lock").insert(n);
                    }
                    other => panic!("publish answered {other}: {}", r.body),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.restart();
    // Publishing goes on until the last 20 publishes, through both nodes, all went through.
    let back = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let last_refused = refused.lock().expect("lock").iter().next_back().copied();
        let last_accepted = accepted.lock().expect("lock").iter().next_back().copied();
        if last_accepted > last_refused.map(|r| r + 20) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "publishing stalled"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    publishing.store(false, Ordering::SeqCst);
    publisher.await.expect("publisher");
    stop.store(true, Ordering::SeqCst);

    let accepted = accepted.lock().expect("lock").clone();
    // Publishes while Redis was away were refused (503) or, sent while the client was
    // reconnecting, went through after the restart: either way the subscriber connection was
    // new, so the clients must have been told.
    let refused = refused.lock().expect("lock").len();
    eprintln!("{} accepted, {refused} refused", accepted.len());
    let mut told = 0;
    assert!(
        accepted.len() > 10,
        "too few events got through: {accepted:?}"
    );
    for (i, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.expect("reader");
        match seen.closed {
            Some(Some(4200)) => told += 1,
            None => {
                let missed: Vec<_> = accepted.difference(&seen.ticks).collect();
                assert!(missed.is_empty(), "client {i} missed {missed:?} silently");
            }
            Some(other) => panic!("client {i} closed with {other:?}, not 4200"),
        }
    }
    assert!(told > 0, "the subscriber reconnected, yet nobody was told");

    // The clients come back, as pusher-js does after 4200; the cluster's state is whole.
    let mut again = Vec::new();
    for (i, on) in [&a, &b, &a, &b].into_iter().enumerate() {
        again.push(member(on, &format!("u{i}")).await);
    }
    let expected = ["u0", "u1", "u2", "u3"];
    for on in [&a, &b] {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = api_get(on, "/apps/app-id/channels/presence-room/users", &[]).await;
            if r.status == 200 && users_of(&r.json()) == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "members: {} {}",
                r.status,
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let r = api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"tick","channel":"load","data":"1000000"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for s in &mut again {
        assert_eq!(s.next_event("tick", WAIT).await["data"], "1000000");
    }
}
