//! Chaos with real `warren serve` processes: a node frozen (SIGSTOP) past the node timeout and
//! then resumed. The other node must reap it, and the resumed node must register again with
//! no ghost member left and no member announced twice.
//!
//! Shares the Redis at `REDIS_URL` under a key prefix of its own: nothing here harms Redis.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warren_client::Client;
use warren_testkit::api::api_client;
use warren_testkit::process::{Served, Warren};
use warren_testkit::redis::{shared_url, unique_prefix};
use warren_testkit::ws::{connect, presence_data};
use warren_testkit::{Endpoint, WAIT};

/// The node timeout these tests run with.
const NODE_TIMEOUT_MS: u64 = 2000;

struct Node(Served);

impl Node {
    fn start(prefix: &str, node_id: &str) -> Node {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let redis = shared_url();
        let env = [
            ("WARREN_CLUSTER__BACKEND", "redis"),
            ("WARREN_CLUSTER__REDIS_URL", redis.as_str()),
            ("WARREN_CLUSTER__PREFIX", prefix),
            ("WARREN_CLUSTER__NODE_TIMEOUT_MS", timeout.as_str()),
            ("WARREN_SERVER__NODE_ID", node_id),
        ];
        Node(Warren::at(env!("CARGO_BIN_EXE_warren")).serve(&[], &env))
    }

    fn signal(&self, signal: libc::c_int) {
        assert_eq!(self.try_signal(signal), 0, "signal sent");
    }

    fn try_signal(&self, signal: libc::c_int) -> libc::c_int {
        let pid = libc::pid_t::try_from(self.0.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid (not reaped before the Served is dropped);
        // no memory is involved.
        unsafe { libc::kill(pid, signal) }
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

impl Drop for Node {
    fn drop(&mut self) {
        // A test that fails while the node is stopped leaves it stopped; SIGKILL (the
        // Served's drop) ends it either way, but a resumed one also closes its sockets.
        self.try_signal(libc::SIGCONT);
    }
}

async fn members(of: &Node) -> Vec<String> {
    let mut ids = of.api().users("presence-room").await.expect("users");
    ids.sort();
    ids
}

/// The user id a member event names.
fn user_of(event: &Value) -> String {
    let data: Value =
        serde_json::from_str(event["data"].as_str().unwrap_or("{}")).unwrap_or_default();
    data["user_id"].as_str().unwrap_or_default().to_owned()
}

/// Takes about 8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_the_timeout_is_reaped_and_registers_again_without_ghosts() {
    let prefix = unique_prefix("sigstop");
    let a = Node::start(&prefix, "node-a");
    let b = Node::start(&prefix, "node-b");
    let mut watcher = connect(&a).await;
    watcher
        .subscribed("presence-room", Some(&presence_data(json!("w"), None)))
        .await;
    let mut paused = connect(&b).await;
    paused
        .subscribed("presence-room", Some(&presence_data(json!("p"), None)))
        .await;
    paused.subscribed("news", None).await;
    let added = watcher
        .next_event("pusher_internal:member_added", WAIT)
        .await;
    assert_eq!(user_of(&added), "p");

    b.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    // The other node declares it dead and announces its member gone.
    let removed = watcher
        .next_event(
            "pusher_internal:member_removed",
            Duration::from_millis(NODE_TIMEOUT_MS * 3),
        )
        .await;
    assert_eq!(user_of(&removed), "p");
    eprintln!("member_removed {:?} after SIGSTOP", stopped.elapsed());
    assert_eq!(members(&a).await, ["w"]);
    // Paused well past its timeout, then resumed.
    tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS / 2)).await;
    b.signal(libc::SIGCONT);
    let resumed = Instant::now();

    // It finds its registration gone and registers again: its member is back, announced
    // once; or, if it had to tell its clients to reconnect, the member comes back through a
    // new connection, announced once as well.
    let mut added_again = 0;
    let mut own_view = Vec::new();
    while resumed.elapsed() < Duration::from_millis(NODE_TIMEOUT_MS * 2) {
        if let Some(msg) = paused.try_recv(Duration::from_millis(50)).await {
            own_view.push(msg);
        }
        if let Some(e) = watcher.try_recv(Duration::from_millis(50)).await {
            match e["event"].as_str() {
                Some("pusher_internal:member_added") => {
                    assert_eq!(user_of(&e), "p", "{e}");
                    added_again += 1;
                }
                Some("pusher_internal:member_removed") => panic!("removed again: {e}"),
                _ => {}
            }
        }
    }
    assert_eq!(added_again, 1, "member_added after the resume");
    // The paused member heard of its own removal (the reaper told every node); it must hear
    // of its return too, or its own member list lacks itself.
    let own: Vec<(&str, String)> = own_view
        .iter()
        .map(|m| (m["event"].as_str().unwrap_or_default(), user_of(m)))
        .collect();
    assert_eq!(
        own,
        [
            ("pusher_internal:member_removed", "p".to_owned()),
            ("pusher_internal:member_added", "p".to_owned())
        ],
        "{own_view:?}"
    );
    let mut p = paused;

    // Past another node timeout nothing changes: no ghost, nothing reaped twice, delivery
    // to the resumed node works.
    tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS * 3 / 2)).await;
    assert_eq!(members(&a).await, ["p", "w"]);
    assert_eq!(members(&b).await, ["p", "w"]);
    watcher.assert_silent().await;
    a.api()
        .trigger(["news"], "e", &json!("after"), Default::default())
        .await
        .expect("trigger");
    assert_eq!(p.next_event("e", WAIT).await["data"], "after");
}
