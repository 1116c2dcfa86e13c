//! Several `warren` processes sharing Redis, as operators run them: delivery across nodes,
//! presence across nodes, `kill -9` of a node, and a Redis restart.
//!
//! The shared Redis comes from `REDIS_URL` (default redis://127.0.0.1:6379, with a unique key
//! prefix per test); the Redis-restart test starts its own `redis-server` on a free port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warren_client::{Client, ClientConfig};
use warren_protocol::auth::sign_channel;

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";
const WAIT: Duration = Duration::from_secs(5);
/// The node timeout these tests run with; the bound a dead node is cleaned up within.
const NODE_TIMEOUT_MS: u64 = 2000;

fn shared_redis() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{tag}{}x{nanos:x}", std::process::id())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

mod common;

/// A cluster node: `warren serve` with the Redis backend.
struct Node(common::Served);

impl Node {
    fn start(redis_url: &str, prefix: &str, node_id: &str) -> Node {
        Self::with_role(redis_url, prefix, node_id, "all")
    }

    fn with_role(redis_url: &str, prefix: &str, node_id: &str, role: &str) -> Node {
        let timeout = NODE_TIMEOUT_MS.to_string();
        Node(common::Served::start(
            &[],
            &[
                ("WARREN_CLUSTER__BACKEND", "redis"),
                ("WARREN_CLUSTER__REDIS_URL", redis_url),
                ("WARREN_CLUSTER__PREFIX", prefix),
                ("WARREN_CLUSTER__NODE_TIMEOUT_MS", &timeout),
                ("WARREN_SERVER__NODE_ID", node_id),
                ("WARREN_SERVER__ROLE", role),
            ],
        ))
    }

    fn port(&self) -> u16 {
        self.0.port
    }

    fn kill9(&mut self) {
        self.0.kill9();
    }

    fn api(&self) -> Client {
        Client::new(ClientConfig::new(self.0.url(), "app-id", KEY, SECRET)).expect("client")
    }
}

/// A `redis-server` of the test's own, on a fixed port so it can be restarted in place.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (the test command installs it)");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis {
            child: Some(child),
            port,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Conn {
    ws: Ws,
    socket_id: String,
}

impl Conn {
    async fn open(node: &Node) -> Conn {
        let url = format!("ws://127.0.0.1:{}/app/{KEY}?protocol=7", node.port());
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connects");
        let est = next_json(&mut ws).await;
        let data: Value = serde_json::from_str(est["data"].as_str().expect("data")).expect("json");
        let socket_id = data["socket_id"].as_str().expect("socket id").to_owned();
        Conn { ws, socket_id }
    }

    async fn subscribe(&mut self, channel: &str, channel_data: Option<Value>) -> Value {
        let cd = channel_data.map(|v| v.to_string());
        let auth = if channel.starts_with("presence-") || channel.starts_with("private-") {
            sign_channel(KEY, SECRET, &self.socket_id, channel, cd.as_deref())
        } else {
            String::new()
        };
        let mut data = json!({"channel": channel, "auth": auth});
        if let Some(cd) = cd {
            data["channel_data"] = json!(cd);
        }
        let msg = json!({"event":"pusher:subscribe","data":data}).to_string();
        self.ws.send(Message::text(msg)).await.expect("send");
        let reply = self.next().await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
        reply
    }

    async fn next(&mut self) -> Value {
        next_json(&mut self.ws).await
    }

    /// The next message with this event name, skipping others (e.g. repeated member_added
    /// announcements after a re-registration).
    async fn next_event(&mut self, event: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.next())
                .await
                .unwrap_or_else(|_| panic!("no {event} within {within:?}"));
            if msg["event"] == event {
                return msg;
            }
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

fn user_ids(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_removes_its_members_within_the_bound() {
    let prefix = unique("k9");
    let a = Node::start(&shared_redis(), &prefix, "node-a");
    let mut b = Node::start(&shared_redis(), &prefix, "node-b");

    let mut alice = Conn::open(&a).await;
    alice
        .subscribe("presence-room", Some(json!({"user_id":"alice"})))
        .await;
    let mut bob = Conn::open(&b).await;
    let ok = bob
        .subscribe("presence-room", Some(json!({"user_id":"bob"})))
        .await;
    assert!(ok["data"].as_str().unwrap_or("").contains("alice"));
    let added = alice.next_event("pusher_internal:member_added", WAIT).await;
    assert!(added["data"].as_str().unwrap_or("").contains("bob"));
    // Cross-node delivery works before the kill, through either node's API.
    bob.subscribe("news", None).await;
    a.api()
        .trigger(["news"], "e", &json!("via a"), Default::default())
        .await
        .expect("trigger");
    assert_eq!(bob.next_event("e", WAIT).await["data"], "via a");
    assert_eq!(
        user_ids(&a.api().users("presence-room").await.expect("users")),
        ["alice", "bob"]
    );

    let killed_at = Instant::now();
    b.kill9();
    let removed = alice
        .next_event(
            "pusher_internal:member_removed",
            Duration::from_millis(NODE_TIMEOUT_MS * 3),
        )
        .await;
    let took = killed_at.elapsed();
    assert!(
        removed["data"].as_str().unwrap_or("").contains("bob"),
        "{removed}"
    );
    eprintln!("member_removed arrived {took:?} after kill -9 (node timeout {NODE_TIMEOUT_MS} ms)");
    assert_eq!(
        user_ids(&a.api().users("presence-room").await.expect("users")),
        ["alice"]
    );
    let info = a
        .api()
        .channels(Default::default())
        .await
        .expect("channels");
    let names: Vec<&String> = info.channels.keys().collect();
    assert_eq!(
        names,
        ["presence-room"],
        "news was only subscribed on the dead node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_state_is_registered_again() {
    let mut redis = OwnRedis::start(free_port());
    let prefix = unique("rr");
    let a = Node::start(&redis.url(), &prefix, "node-a");
    let b = Node::start(&redis.url(), &prefix, "node-b");
    let mut alice = Conn::open(&a).await;
    alice
        .subscribe("presence-r", Some(json!({"user_id":"alice"})))
        .await;
    let mut bob = Conn::open(&b).await;
    bob.subscribe("presence-r", Some(json!({"user_id":"bob"})))
        .await;
    alice.next_event("pusher_internal:member_added", WAIT).await;

    redis.kill();
    // Publishing fails fast while Redis is away.
    let started = Instant::now();
    let err = a
        .api()
        .trigger(["presence-r"], "e", &json!("lost"), Default::default())
        .await
        .expect_err("no Redis, no publish");
    assert_eq!(err.status(), Some(503), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "503 took {:?}",
        started.elapsed()
    );

    // Redis comes back empty; the nodes reconnect, resubscribe and register their state again.
    let _redis = OwnRedis::start(redis.port);
    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sent = a
            .api()
            .trigger(["presence-r"], "after", &json!("back"), Default::default())
            .await;
        let members = b
            .api()
            .users("presence-r")
            .await
            .map(|u| user_ids(&u))
            .unwrap_or_default();
        if sent.is_ok() && members == ["alice", "bob"] {
            eprintln!(
                "publishing and presence state back {:?} after Redis restarted",
                restarted.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not recover: {sent:?} {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Delivery across nodes works again.
    a.api()
        .trigger(
            ["presence-r"],
            "check",
            &json!("delivered"),
            Default::default(),
        )
        .await
        .expect("trigger");
    assert_eq!(bob.next_event("check", WAIT).await["data"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_client_events_and_counts_across_processes() {
    let prefix = unique("ro");
    let push = Node::with_role(&shared_redis(), &prefix, "push-1", "push");
    let all = Node::with_role(&shared_redis(), &prefix, "all-1", "all");
    let api = Node::with_role(&shared_redis(), &prefix, "api-1", "api");

    // The api node takes no WebSocket clients; the push node serves no API.
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/app/{KEY}?protocol=7",
        api.port()
    ))
    .await;
    assert!(refused.is_err(), "an api node accepted a WebSocket");
    let err = push
        .api()
        .channels(Default::default())
        .await
        .expect_err("no API on a push node");
    assert_eq!(err.status(), Some(404), "{err}");

    // Client events cross from the push node to the all node, and are not echoed.
    let mut alice = Conn::open(&push).await;
    let mut bob = Conn::open(&all).await;
    alice.subscribe("private-chat", None).await;
    bob.subscribe("private-chat", None).await;
    let event = json!({"event":"client-typing","channel":"private-chat","data":{"who":"alice"}})
        .to_string();
    alice.ws.send(Message::text(event)).await.expect("send");
    let got = bob.next_event("client-typing", WAIT).await;
    assert_eq!(got["data"], json!({"who":"alice"}).to_string());

    // Counts seen through the api node are cluster-wide.
    let info = api
        .api()
        .channel(
            "private-chat",
            &[warren_client::ChannelAttribute::SubscriptionCount],
        )
        .await
        .expect("channel info");
    assert!(info.occupied);
    assert_eq!(info.subscription_count, Some(2));
    // And a publish through the api node reaches both.
    api.api()
        .trigger(
            ["private-chat"],
            "server-event",
            &json!("hi"),
            Default::default(),
        )
        .await
        .expect("trigger");
    assert_eq!(alice.next_event("server-event", WAIT).await["data"], "hi");
    assert_eq!(bob.next_event("server-event", WAIT).await["data"], "hi");
}

/// Every Redis connection of every node is cut: the nodes reconnect, record their state
/// again under new instances, and the cleanup of their old instances removes nothing that is
/// still connected (no member_removed, members intact, delivery working).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_are_rebuilt_without_losing_anyone() {
    let redis = OwnRedis::start(free_port());
    let prefix = unique("cut");
    let a = Node::start(&redis.url(), &prefix, "node-a");
    let b = Node::start(&redis.url(), &prefix, "node-b");
    let mut alice = Conn::open(&a).await;
    alice
        .subscribe("presence-c", Some(json!({"user_id":"alice"})))
        .await;
    let mut bob = Conn::open(&b).await;
    bob.subscribe("presence-c", Some(json!({"user_id":"bob"})))
        .await;
    alice.next_event("pusher_internal:member_added", WAIT).await;
    let instances = || {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "zrange",
                &format!("{{{prefix}}}:nodes"),
                "0",
                "-1",
            ])
            .output()
            .expect("redis-cli");
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let before = instances();
    assert_eq!(before.len(), 2, "{before:?}");

    for kind in ["normal", "pubsub"] {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &redis.port.to_string(),
                "client",
                "kill",
                "type",
                kind,
            ])
            .output()
            .expect("redis-cli");
        assert!(out.status.success());
    }
    // Wait past the node timeout, so the old instances are overdue and cleaned up.
    tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS * 2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = a
            .api()
            .trigger(
                ["presence-c"],
                "after-cut",
                &json!("ok"),
                Default::default(),
            )
            .await;
        if sent.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {sent:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(bob.next_event("after-cut", WAIT).await["data"], "ok");
    assert_eq!(
        user_ids(&b.api().users("presence-c").await.expect("users")),
        ["alice", "bob"]
    );
    let info = a
        .api()
        .channel(
            "presence-c",
            &[warren_client::ChannelAttribute::SubscriptionCount],
        )
        .await
        .expect("info");
    assert_eq!(info.subscription_count, Some(2));
    // Both nodes registered anew, and their old instances were cleaned up.
    let after = instances();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|i| !before.contains(i)),
        "{before:?} -> {after:?}"
    );
    // Nobody was announced as gone.
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(300), alice.next()).await {
        assert_ne!(msg["event"], "pusher_internal:member_removed", "{msg}");
    }
}
