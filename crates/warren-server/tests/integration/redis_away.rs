//! The WebSocket side of a node while its Redis is away or too slow, checked against what the
//! README promises: local connections stay open and served (pings answered, connections
//! accepted), whatever needs Redis is refused out loud (API `503`, `subscription_error` 503,
//! a `pusher:error` for a client event) within the command timeout, and once Redis is back
//! the clients that may have missed events are closed with 4200 and the state is whole.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warren_testkit::api::{api_get, api_post};
use warren_testkit::proxy::DelayingProxy;
use warren_testkit::redis::{unique_prefix, use_redis, RedisServer};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::{close_code, connect, presence_data, Socket};
use warren_testkit::WAIT;

/// The Redis command timeout of the server (`cluster/redis`): what a refusal may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Room on a loaded machine for a refusal past the command timeout: a bound against
/// hanging, not a performance figure.
const MARGIN: Duration = Duration::from_millis(2500);

async fn node(url: &str, prefix: &str) -> TestServer {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    start_with(move |c| use_redis(c, vec![url], prefix, 2000)).await
}

async fn publish(to: &TestServer, data: &str) -> warren_testkit::http::Response {
    let body = json!({"name":"news","channel":"news","data":data});
    api_post(to, "/apps/app-id/events", body).await
}

/// `pusher:ping` answered with `pusher:pong`, skipping whatever else arrives first.
async fn pings(s: &mut Socket) {
    s.send(json!({"event":"pusher:ping","data":{}})).await;
    s.next_event("pusher:pong", WAIT).await;
}

/// A subscribe refused because the cluster cannot record it: `subscription_error` 503.
async fn refused_subscribe(s: &mut Socket, channel: &str, data: Option<&str>) {
    let started = Instant::now();
    let reply = s.subscribe(channel, data).await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
    assert_eq!(reply["channel"], channel, "{reply}");
    assert_eq!(reply["data"]["status"], 503, "{reply}");
    assert!(started.elapsed() < COMMAND_TIMEOUT + MARGIN);
}

/// Takes about 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_connections_are_served_and_refusals_are_said() {
    let mut redis = RedisServer::start();
    let prefix = unique_prefix("away");
    let a = node(&redis.url(), &prefix).await;
    let b = node(&redis.url(), &prefix).await;
    let mut alice = connect(&a).await;
    alice.subscribed("news", None).await;
    alice
        .subscribed("presence-room", Some(&presence_data(json!("alice"), None)))
        .await;
    alice.subscribed("private-chat", None).await;
    let mut carol = connect(&a).await;
    carol.subscribed("private-chat", None).await;

    redis.kill();
    // The node notices at once or at its next command; the API refuses meanwhile.
    let deadline = Instant::now() + WAIT;
    loop {
        let started = Instant::now();
        let r = publish(&a, "lost").await;
        assert!(started.elapsed() < COMMAND_TIMEOUT + MARGIN);
        if r.status == 503 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(Instant::now() < deadline, "publishing still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Local connections stay open and served; new ones are accepted.
    pings(&mut alice).await;
    let mut dave = connect(&a).await;
    pings(&mut dave).await;
    // What needs Redis is refused out loud.
    refused_subscribe(&mut dave, "news", None).await;
    refused_subscribe(
        &mut dave,
        "presence-room",
        Some(&presence_data(json!("dave"), None)),
    )
    .await;
    alice
        .send(json!({"event":"client-hi","channel":"private-chat","data":{}}))
        .await;
    let error = alice.next_event("pusher:error", WAIT).await;
    let message = error["data"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not published"), "{error}");
    // Leaving needs no answer; the connection goes on.
    alice
        .send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}))
        .await;
    pings(&mut alice).await;

    redis.restart();
    // Events published until the subscribers are back may be lost: the subscribed clients
    // are told; dave, subscribed to nothing, stays.
    for client in [&mut alice, &mut carol] {
        let error = client.next_event("pusher:error", WAIT * 2).await;
        assert_eq!(error["data"]["code"], 4200, "{error}");
        assert_eq!(close_code(&mut client.ws).await, Some(4200));
    }
    pings(&mut dave).await;
    // Subscribing works again, and nobody is left over from before: not alice (closed) in
    // presence-room, whose leave could not be recorded while Redis was away.
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let reply = dave.subscribe("news", None).await;
        if reply["event"] == "pusher_internal:subscription_succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no subscribe after Redis came back: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Node b may still be reconnecting (503) for a moment.
    let members = loop {
        let members = api_get(&b, "/apps/app-id/channels/presence-room/users", &[]).await;
        if members.status == 200 {
            break members;
        }
        assert!(
            Instant::now() < deadline,
            "{} {}",
            members.status,
            members.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(members.json()["users"], json!([]), "{}", members.body);
    // Delivery works again. (A node may resync once more while its connections settle:
    // then dave is told with 4200 and comes back, as pusher-js would.)
    let r = publish(&b, "back").await;
    assert_eq!(r.status, 200, "{}", r.body);
    match dave.try_recv(WAIT).await {
        Some(m) if m["event"] == "news" => assert_eq!(m["data"], "back"),
        Some(m) if m["event"] == "pusher:error" && m["data"]["code"] == 4200 => {
            let mut again = connect(&a).await;
            again.subscribed("news", None).await;
            assert_eq!(publish(&b, "again").await.status, 200);
            assert_eq!(again.next_event("news", WAIT).await["data"], "again");
        }
        other => panic!("expected the event: {other:?}"),
    }
}

/// Redis slower than the command timeout (a proxy holds every byte back 3 s): API calls and
/// subscribes are refused with 503 once the timeout has passed, not left hanging, while the
/// node's connections stay served; once Redis is fast again, delivery resumes.
/// Takes about 12 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_gets_503_after_the_timeout_and_connections_stay_served() {
    let redis = RedisServer::start();
    let redis_addr = std::net::SocketAddr::from(([127, 0, 0, 1], redis.port()));
    let proxy = DelayingProxy::start(redis_addr).await;
    let prefix = unique_prefix("slow");
    let a = node(&proxy.redis_url(), &prefix).await;
    let b = node(&proxy.redis_url(), &prefix).await;
    let mut alice = connect(&a).await;
    alice.subscribed("news", None).await;
    let mut bob = connect(&b).await;
    bob.subscribed("news", None).await;
    assert_eq!(publish(&a, "fast").await.status, 200);
    assert_eq!(alice.next_event("news", WAIT).await["data"], "fast");
    assert_eq!(bob.next_event("news", WAIT).await["data"], "fast");

    proxy.set(COMMAND_TIMEOUT + Duration::from_secs(1));
    for (what, call) in [("publish", 0), ("channels", 1)] {
        let started = Instant::now();
        let r: warren_testkit::http::Response = match call {
            0 => publish(&a, "slow").await,
            _ => api_get(&a, "/apps/app-id/channels", &[]).await,
        };
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{what}: {}", r.body);
        assert!(
            took < COMMAND_TIMEOUT + MARGIN,
            "{what} answered after {took:?}"
        );
    }
    // The node's own connections are served meanwhile.
    let started = Instant::now();
    pings(&mut alice).await;
    let mut dave = connect(&a).await;
    pings(&mut dave).await;
    assert!(
        started.elapsed() < MARGIN,
        "pings took {:?}",
        started.elapsed()
    );
    refused_subscribe(&mut dave, "news", None).await;

    proxy.set(Duration::ZERO);
    // Once the delayed bytes are through, publishing and delivery work again on both nodes.
    // Clients may have been closed with 4200 (a connection of the node to Redis given up):
    // they come back as pusher-js would.
    let deadline = Instant::now() + WAIT * 3;
    loop {
        if publish(&a, "probe").await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "publishing did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut receivers = Vec::new();
    for (on, old) in [(&a, alice), (&b, bob)] {
        receivers.push(reconnected_if_told(on, old).await);
    }
    assert_eq!(publish(&b, "final").await.status, 200);
    for r in &mut receivers {
        loop {
            let got: Value = r.next_event("news", WAIT).await;
            if got["data"] == "final" {
                break;
            }
        }
    }
}

/// `old` if it is still open and subscribed to `news`; a new subscriber on `on` if the
/// server closed it with 4200 meanwhile. Any other close fails the test.
async fn reconnected_if_told(on: &TestServer, mut old: Socket) -> Socket {
    while let Some(msg) = old.try_recv(Duration::from_millis(300)).await {
        if msg["event"] == "pusher:error" {
            assert_eq!(msg["data"]["code"], 4200, "{msg}");
            assert_eq!(close_code(&mut old.ws).await, Some(4200));
            let mut s = connect(on).await;
            s.subscribed("news", None).await;
            return s;
        }
    }
    old
}
