//! Several `warren` processes sharing Redis or NATS, as operators run them: delivery across
//! nodes, presence and watchlists across nodes, `kill -9` of a node, and a restart of Redis
//! or NATS under the nodes.
//!
//! The shared Redis comes from `REDIS_URL` (default redis://127.0.0.1:6379), the shared NATS
//! from `warren_testkit::nats::shared`, each test under a unique prefix; the restart tests
//! start their own `redis-server` or `nats-server` on a free port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use warren_client::Client;
use warren_testkit::api::api_client;
use warren_testkit::http::http;
use warren_testkit::nats::NatsServer;
use warren_testkit::process::{Served, Warren};
use warren_testkit::redis::{cli, cli_ok, shared_url, unique_prefix, RedisServer};
use warren_testkit::ws::{connect, decode_data, handshake, presence_data, Socket, SILENCE};
use warren_testkit::{Endpoint, WAIT};

/// The node timeout these tests run with; the bound a dead node is cleaned up within.
const NODE_TIMEOUT_MS: u64 = 2000;

/// The backend the nodes of a test share: Redis (a URL, as most tests pass it) or NATS.
#[derive(Clone)]
enum Shared {
    Redis(String),
    Nats(String),
    /// State in Redis (its URL), fan-out on NATS (its URL): `[cluster.state]`, `[cluster.fanout]`.
    Split(String, String),
}

impl From<&str> for Shared {
    fn from(redis_url: &str) -> Shared {
        Shared::Redis(redis_url.to_owned())
    }
}

impl From<&String> for Shared {
    fn from(redis_url: &String) -> Shared {
        Shared::Redis(redis_url.clone())
    }
}

impl From<&Shared> for Shared {
    fn from(shared: &Shared) -> Shared {
        shared.clone()
    }
}

impl Shared {
    /// `cluster.backend` (or the jobs' backends) and the URLs' variables.
    fn env(&self) -> Vec<(&'static str, &str)> {
        match self {
            Shared::Redis(url) => vec![
                ("WARREN_CLUSTER__BACKEND", "redis"),
                ("WARREN_CLUSTER__REDIS_URL", url),
            ],
            Shared::Nats(url) => vec![
                ("WARREN_CLUSTER__BACKEND", "nats"),
                ("WARREN_CLUSTER__NATS_URL", url),
            ],
            Shared::Split(redis, nats) => vec![
                ("WARREN_CLUSTER__STATE__BACKEND", "redis"),
                ("WARREN_CLUSTER__STATE__REDIS_URL", redis),
                ("WARREN_CLUSTER__FANOUT__BACKEND", "nats"),
                ("WARREN_CLUSTER__FANOUT__NATS_URL", nats),
            ],
        }
    }

    /// State in the shared Redis, fan-out on `nats`.
    fn split(nats: &warren_testkit::nats::SharedNats) -> Shared {
        Shared::Split(shared_url(), nats.url())
    }
}

/// A cluster node: `warren serve` with the Redis or NATS backend.
struct Node(Served);

impl Node {
    fn start(shared: impl Into<Shared>, prefix: &str, node_id: &str) -> Node {
        Self::with_role(shared, prefix, node_id, "all")
    }

    fn with_role(shared: impl Into<Shared>, prefix: &str, node_id: &str, role: &str) -> Node {
        Self::with_env(shared, prefix, node_id, &[("WARREN_SERVER__ROLE", role)])
    }

    /// A node whose demo app sends watchlist events.
    fn with_watchlists(shared: impl Into<Shared>, prefix: &str, node_id: &str) -> Node {
        let env = [("WARREN_APPS__0__WATCHLIST_EVENTS", "true")];
        Self::with_env(shared, prefix, node_id, &env)
    }

    fn with_env(
        shared: impl Into<Shared>,
        prefix: &str,
        node_id: &str,
        extra: &[(&str, &str)],
    ) -> Node {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let shared = shared.into();
        let mut env = shared.env();
        env.extend([
            ("WARREN_CLUSTER__PREFIX", prefix),
            ("WARREN_CLUSTER__NODE_TIMEOUT_MS", &timeout),
            ("WARREN_SERVER__NODE_ID", node_id),
        ]);
        env.extend_from_slice(extra);
        Node(Warren::at(env!("CARGO_BIN_EXE_warren")).serve(&[], &env))
    }

    fn kill9(&mut self) {
        self.0.kill9();
    }

    fn api(&self) -> Client {
        api_client(self)
    }
}

impl Endpoint for Node {
    fn addr(&self) -> SocketAddr {
        self.0.addr()
    }
}

fn user_ids(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_takes_its_users_offline_for_watchers_elsewhere() {
    kill_9_takes_users_offline_for_watchers_elsewhere(Shared::Redis(shared_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kill_9_of_a_node_takes_its_users_offline_for_watchers_elsewhere() {
    let nats = warren_testkit::nats::shared();
    kill_9_takes_users_offline_for_watchers_elsewhere(Shared::Nats(nats.url())).await;
}

#[tokio::test]
async fn split_kill_9_of_a_node_takes_its_users_offline_for_watchers_elsewhere() {
    let nats = warren_testkit::nats::shared();
    kill_9_takes_users_offline_for_watchers_elsewhere(Shared::split(&nats)).await;
}

async fn kill_9_takes_users_offline_for_watchers_elsewhere(shared: Shared) {
    let prefix = unique_prefix("k9w");
    let a = Node::with_watchlists(&shared, &prefix, "node-a");
    let mut b = Node::with_watchlists(&shared, &prefix, "node-b");
    let mut watcher = connect(&a).await;
    watcher
        .signed_in(&json!({"id": "w", "watchlist": ["u", "v"]}))
        .await;
    let initial = watcher
        .next_event("pusher_internal:watchlist_events", WAIT)
        .await;
    assert_eq!(
        decode_data(&initial),
        json!({"events": [{"name": "offline", "user_ids": ["u", "v"]}]})
    );
    let mut u = connect(&b).await;
    u.signed_in(&json!({"id": "u"})).await;
    let mut v = connect(&b).await;
    v.signed_in(&json!({"id": "v"})).await;
    let mut online = Vec::new();
    while online.len() < 2 {
        let e = watcher
            .next_event("pusher_internal:watchlist_events", WAIT)
            .await;
        for entry in decode_data(&e)["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            assert_eq!(entry["name"], "online", "{e}");
            online.extend(entry["user_ids"].as_array().cloned().unwrap_or_default());
        }
    }
    assert_eq!(user_ids(&strings(&online)), ["u", "v"]);

    b.kill9();
    // Both users were on the dead node: the cleanup takes them offline, in one batch.
    let gone = watcher
        .next_event(
            "pusher_internal:watchlist_events",
            Duration::from_millis(NODE_TIMEOUT_MS * 3),
        )
        .await;
    let events = decode_data(&gone);
    assert_eq!(events["events"].as_array().map(Vec::len), Some(1), "{gone}");
    assert_eq!(events["events"][0]["name"], "offline", "{gone}");
    let ids = events["events"][0]["user_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(user_ids(&strings(&ids)), ["u", "v"]);
}

fn strings(values: &[serde_json::Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_removes_its_members_within_the_bound() {
    kill_9_removes_members_within_the_bound(Shared::Redis(shared_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kill_9_of_a_node_removes_its_members_within_the_bound() {
    let nats = warren_testkit::nats::shared();
    kill_9_removes_members_within_the_bound(Shared::Nats(nats.url())).await;
}

#[tokio::test]
async fn split_kill_9_of_a_node_removes_its_members_within_the_bound() {
    let nats = warren_testkit::nats::shared();
    kill_9_removes_members_within_the_bound(Shared::split(&nats)).await;
}

async fn kill_9_removes_members_within_the_bound(shared: Shared) {
    let prefix = unique_prefix("k9");
    let a = Node::start(&shared, &prefix, "node-a");
    let mut b = Node::start(&shared, &prefix, "node-b");

    let mut alice = connect(&a).await;
    alice
        .subscribed("presence-room", Some(&presence_data(json!("alice"), None)))
        .await;
    let mut bob = connect(&b).await;
    let ok = bob
        .subscribed("presence-room", Some(&presence_data(json!("bob"), None)))
        .await;
    assert!(
        ok["presence"]["ids"]
            .as_array()
            .is_some_and(|ids| ids.contains(&json!("alice"))),
        "{ok}"
    );
    let added = alice.next_event("pusher_internal:member_added", WAIT).await;
    assert!(added["data"].as_str().unwrap_or("").contains("bob"));
    // Cross-node delivery works before the kill, through either node's API.
    bob.subscribed("news", None).await;
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
    // The promise: declared dead after the node timeout, cleaned up by the next cleanup tick
    // (a fifth of it); twice the timeout leaves room for a loaded machine, and fails a
    // cleanup that waits for some later event.
    assert!(
        took < Duration::from_millis(NODE_TIMEOUT_MS * 2),
        "cleanup took {took:?} with a node timeout of {NODE_TIMEOUT_MS} ms"
    );
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

/// A backend server of the test's own, to kill and restart under the nodes.
trait OwnServer {
    fn shared(&self) -> Shared;
    fn kill(&mut self);
    fn restart(&mut self);
}

impl OwnServer for RedisServer {
    fn shared(&self) -> Shared {
        Shared::Redis(self.url())
    }
    fn kill(&mut self) {
        RedisServer::kill(self);
    }
    fn restart(&mut self) {
        RedisServer::restart(self);
    }
}

impl OwnServer for NatsServer {
    fn shared(&self) -> Shared {
        Shared::Nats(self.url())
    }
    fn kill(&mut self) {
        NatsServer::kill(self);
    }
    fn restart(&mut self) {
        NatsServer::restart(self);
    }
}

/// A NATS that comes back without its store (no buckets, no streams).
struct EmptiedNats(NatsServer);

impl OwnServer for EmptiedNats {
    fn shared(&self) -> Shared {
        self.0.shared()
    }
    fn kill(&mut self) {
        self.0.kill();
    }
    fn restart(&mut self) {
        self.0.restart_empty();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_without_its_store_is_survived() {
    let nats = EmptiedNats(NatsServer::start());
    a_restart_is_survived_and_state_is_registered_again(nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_state_is_registered_again() {
    a_restart_is_survived_and_state_is_registered_again(RedisServer::start()).await;
}

/// NATS keeps its JetStream store across the restart; what was published while it was away
/// is lost all the same, so the clients get 4200 as with Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_is_survived_and_state_is_registered_again() {
    a_restart_is_survived_and_state_is_registered_again(NatsServer::start()).await;
}

async fn a_restart_is_survived_and_state_is_registered_again(mut redis: impl OwnServer) {
    let prefix = unique_prefix("rr");
    let a = Node::start(redis.shared(), &prefix, "node-a");
    let b = Node::start(redis.shared(), &prefix, "node-b");
    let mut alice = connect(&a).await;
    alice
        .subscribed("presence-r", Some(&presence_data(json!("alice"), None)))
        .await;
    let mut bob = connect(&b).await;
    bob.subscribed("presence-r", Some(&presence_data(json!("bob"), None)))
        .await;
    alice.next_event("pusher_internal:member_added", WAIT).await;

    redis.kill();
    // Publishing fails fast once the node knows the backend is away (a NATS client may take a
    // moment to notice a dead server; until then a core publish is buffered, and the 4200s
    // below tell the subscribers what it may have cost).
    let deadline = Instant::now() + WAIT;
    while http(&a, "GET", "/ready", "").await.status != 503 {
        assert!(
            Instant::now() < deadline,
            "/ready never said the backend is away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let err = a
        .api()
        .trigger(["presence-r"], "e", &json!("lost"), Default::default())
        .await
        .expect_err("no backend, no publish");
    assert_eq!(err.status(), Some(503), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "503 took {:?}",
        started.elapsed()
    );

    // The backend comes back (Redis empty) and the nodes reconnect. What was published until their
    // subscribers were back may be lost, so every subscribed client is closed with 4200, and
    // reconnects (as pusher-js does at once) to find the cluster whole again.
    redis.restart();
    let restarted = Instant::now();
    for client in [&mut alice, &mut bob] {
        let error = client.next_event("pusher:error", WAIT * 3).await;
        assert_eq!(error["data"]["code"], 4200, "{error}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let (_alice, mut bob) = loop {
        let mut alice = connect(&a).await;
        let mut bob = connect(&b).await;
        let joined = [
            alice
                .subscribe("presence-r", Some(&presence_data(json!("alice"), None)))
                .await,
            bob.subscribe("presence-r", Some(&presence_data(json!("bob"), None)))
                .await,
        ];
        if joined
            .iter()
            .all(|r| r["event"] == "pusher_internal:subscription_succeeded")
        {
            break (alice, bob);
        }
        assert!(Instant::now() < deadline, "no resubscribe: {joined:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
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
                "publishing and presence state back {:?} after the backend restarted",
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

/// Redis comes back empty: a node records its sign-ins again, so its users are online for
/// watchers elsewhere and can be terminated from another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_signed_in_users_online_and_terminable() {
    let mut redis = RedisServer::start();
    let prefix = unique_prefix("rru");
    let a = Node::with_watchlists(&redis.url(), &prefix, "node-a");
    let b = Node::with_watchlists(&redis.url(), &prefix, "node-b");
    let mut u = connect(&b).await;
    u.signed_in(&json!({"id": "u"})).await;
    redis.kill();
    redis.restart();
    let restarted = Instant::now();
    // Notices about u may have been lost while b's subscriber was away: u is closed with 4200
    // and signs in again, as a reconnecting client does.
    let error = u.next_event("pusher:error", WAIT * 3).await;
    assert_eq!(error["data"]["code"], 4200, "{error}");
    let deadline = restarted + Duration::from_secs(15);
    let mut u = loop {
        let mut u = connect(&b).await;
        if u.sign_in(&json!({"id": "u"}).to_string()).await["event"] == "pusher:signin_success" {
            break u;
        }
        assert!(Instant::now() < deadline, "u cannot sign in again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let online = json!({"events": [{"name": "online", "user_ids": ["u"]}]});
    loop {
        // While the nodes recover, a sign-in or its watchlist may be refused: try again.
        let mut watcher = connect(&a).await;
        let user_data = json!({"id": "w", "watchlist": ["u"]}).to_string();
        let mut seen = vec![watcher.sign_in(&user_data).await];
        if seen[0]["event"] == "pusher:signin_success" {
            seen.extend(watcher.try_recv(WAIT).await);
        }
        let state = seen
            .iter()
            .find(|m| m["event"] == "pusher_internal:watchlist_events");
        if state.is_some_and(|m| decode_data(m) == online) {
            eprintln!(
                "u online again {:?} after Redis restarted",
                restarted.elapsed()
            );
            break;
        }
        assert!(Instant::now() < deadline, "u never online again: {seen:?}");
        watcher.close().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.api()
        .terminate_user_connections("u")
        .await
        .expect("terminates");
    let error = u.next_event("pusher:error", WAIT).await;
    assert_eq!(error["data"]["code"], 4009, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_client_events_and_counts_across_processes() {
    roles_client_events_and_counts(Shared::Redis(shared_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_roles_client_events_and_counts_across_processes() {
    let nats = warren_testkit::nats::shared();
    roles_client_events_and_counts(Shared::Nats(nats.url())).await;
}

#[tokio::test]
async fn split_roles_client_events_and_counts_across_processes() {
    let nats = warren_testkit::nats::shared();
    roles_client_events_and_counts(Shared::split(&nats)).await;
}

async fn roles_client_events_and_counts(shared: Shared) {
    let prefix = unique_prefix("ro");
    let push = Node::with_role(&shared, &prefix, "push-1", "push");
    let all = Node::with_role(&shared, &prefix, "all-1", "all");
    let api = Node::with_role(&shared, &prefix, "api-1", "api");

    // The api node takes no WebSocket clients; the push node serves no API.
    let refused = handshake(&api, "/app/app-key?protocol=7").await;
    assert!(refused.is_err(), "an api node accepted a WebSocket");
    let err = push
        .api()
        .channels(Default::default())
        .await
        .expect_err("no API on a push node");
    assert_eq!(err.status(), Some(404), "{err}");

    // Client events cross from the push node to the all node, and are not echoed.
    let mut alice = connect(&push).await;
    let mut bob = connect(&all).await;
    alice.subscribed("private-chat", None).await;
    bob.subscribed("private-chat", None).await;
    alice
        .send(json!({"event":"client-typing","channel":"private-chat","data":{"who":"alice"}}))
        .await;
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
    let redis = RedisServer::start();
    let prefix = unique_prefix("cut");
    let a = Node::start(&redis.url(), &prefix, "node-a");
    let b = Node::start(&redis.url(), &prefix, "node-b");
    let mut alice = connect(&a).await;
    alice
        .subscribed("presence-c", Some(&presence_data(json!("alice"), None)))
        .await;
    let mut bob = connect(&b).await;
    bob.subscribed("presence-c", Some(&presence_data(json!("bob"), None)))
        .await;
    alice.next_event("pusher_internal:member_added", WAIT).await;
    let instances = || {
        let out = cli(
            redis.port(),
            &["zrange", &format!("{{{prefix}}}:nodes"), "0", "-1"],
        );
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    let before = instances();
    assert_eq!(before.len(), 2, "{before:?}");

    // The state connections only: a cut subscriber connection closes clients with 4200
    // instead (warren-server's chaos tests), which would hide what this test looks at.
    cli_ok(redis.port(), &["client", "kill", "type", "normal"]);
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
    while let Some(msg) = alice.try_recv(SILENCE).await {
        assert_ne!(msg["event"], "pusher_internal:member_removed", "{msg}");
    }
}

/// Sends `signal` to the node's process and waits for it to exit; its exit status.
fn signal_and_wait(node: &mut Node, signal: libc::c_int) -> std::process::ExitStatus {
    let pid = libc::pid_t::try_from(node.0.child.id()).expect("a pid");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal sent");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = node.0.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nodes `node-a` and `node-b` on `prefix`; a watcher `w` on node a and the member
/// `user` on node b in `presence-room`, the watcher told of its arrival.
async fn watched_member(shared: &Shared, prefix: &str, user: &str) -> (Node, Node, Socket, Socket) {
    let a = Node::start(shared, prefix, "node-a");
    let b = Node::start(shared, prefix, "node-b");
    let mut watcher = connect(&a).await;
    watcher
        .subscribed("presence-room", Some(&presence_data(json!("w"), None)))
        .await;
    let mut member = connect(&b).await;
    member
        .subscribed("presence-room", Some(&presence_data(json!(user), None)))
        .await;
    watcher
        .next_event("pusher_internal:member_added", WAIT)
        .await;
    (a, b, watcher, member)
}

/// SIGTERM (systemd, Kubernetes) and SIGINT (Ctrl-C) stop a node gracefully: its clients are
/// closed with 4200 so they reconnect elsewhere, its members leave at once rather than after
/// the node timeout (the other node announces it well within it), and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_a_node_gracefully() {
    signals_stop_a_node_gracefully(Shared::Redis(shared_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sigterm_and_sigint_stop_a_node_gracefully() {
    let nats = warren_testkit::nats::shared();
    signals_stop_a_node_gracefully(Shared::Nats(nats.url())).await;
}

#[tokio::test]
async fn split_sigterm_and_sigint_stop_a_node_gracefully() {
    let nats = warren_testkit::nats::shared();
    signals_stop_a_node_gracefully(Shared::split(&nats)).await;
}

async fn signals_stop_a_node_gracefully(shared: Shared) {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let prefix = unique_prefix("signals");
        let (a, mut b, mut watcher, mut leaving) = watched_member(&shared, &prefix, "l").await;

        let sent = Instant::now();
        let status = signal_and_wait(&mut b, signal);
        assert!(status.success(), "{name}: exit status {status:?}");
        assert_eq!(
            warren_testkit::ws::close_code(&mut leaving.ws).await,
            Some(4200),
            "{name}: its clients are told to reconnect"
        );
        let removed = watcher
            .next_event(
                "pusher_internal:member_removed",
                Duration::from_millis(NODE_TIMEOUT_MS),
            )
            .await;
        assert!(
            removed["data"].as_str().unwrap_or("").contains("\"l\""),
            "{name}: {removed}"
        );
        eprintln!(
            "{name}: member_removed {:?} after the signal",
            sent.elapsed()
        );
        assert_eq!(
            user_ids(&a.api().users("presence-room").await.expect("users")),
            ["w"],
            "{name}"
        );
    }
}

/// A node killed with SIGKILL and started again at once under the same `node_id` (a process
/// supervisor's restart): what its old instance held is cleaned up within the bound, and
/// nothing of what the new one registers is lost in that cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_node_id_after_kill_9_keeps_no_ghosts() {
    restarted_under_its_node_id_keeps_no_ghosts(Shared::Redis(shared_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_node_restarted_under_its_node_id_after_kill_9_keeps_no_ghosts() {
    let nats = warren_testkit::nats::shared();
    restarted_under_its_node_id_keeps_no_ghosts(Shared::Nats(nats.url())).await;
}

#[tokio::test]
async fn split_a_node_restarted_under_its_node_id_after_kill_9_keeps_no_ghosts() {
    let nats = warren_testkit::nats::shared();
    restarted_under_its_node_id_keeps_no_ghosts(Shared::split(&nats)).await;
}

async fn restarted_under_its_node_id_keeps_no_ghosts(shared: Shared) {
    let prefix = unique_prefix("restart-id");
    let (a, mut b, mut watcher, _ghost) = watched_member(&shared, &prefix, "ghost").await;

    b.kill9();
    let killed_at = Instant::now();
    let b = Node::start(&shared, &prefix, "node-b");
    let mut back = connect(&b).await;
    // "news" first: the ghost's member_removed may reach `back` any time after it joined the
    // presence channel, and must not be read as the answer to another subscribe.
    back.subscribed("news", None).await;
    back.subscribed("presence-room", Some(&presence_data(json!("back"), None)))
        .await;

    // The ghost goes within the bound; the newcomer arrives and stays.
    let mut removed_ghost = false;
    let mut added_back = false;
    let deadline = Duration::from_millis(NODE_TIMEOUT_MS * 3);
    while !(removed_ghost && added_back) {
        let left = deadline.saturating_sub(killed_at.elapsed());
        let e = watcher.try_recv(left).await.expect("member events in time");
        let data = e["data"].as_str().unwrap_or_default().to_owned();
        match e["event"].as_str() {
            Some("pusher_internal:member_removed") => {
                assert!(data.contains("ghost"), "only the ghost leaves: {e}");
                removed_ghost = true;
            }
            Some("pusher_internal:member_added") => {
                assert!(data.contains("back"), "{e}");
                assert!(!added_back, "added once: {e}");
                added_back = true;
            }
            _ => {}
        }
    }
    let took = killed_at.elapsed();
    eprintln!(
        "ghost removed {took:?} after kill -9 and restart (node timeout {NODE_TIMEOUT_MS} ms)"
    );
    assert!(
        took < Duration::from_millis(NODE_TIMEOUT_MS * 2),
        "took {took:?}"
    );
    // Past another node timeout, the new instance's subscriptions are all still there.
    tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS * 3 / 2)).await;
    assert_eq!(
        user_ids(&a.api().users("presence-room").await.expect("users")),
        ["back", "w"]
    );
    a.api()
        .trigger(["news"], "e", &json!("still here"), Default::default())
        .await
        .expect("trigger");
    assert_eq!(back.next_event("e", WAIT).await["data"], "still here");
    watcher.assert_silent().await;
}
