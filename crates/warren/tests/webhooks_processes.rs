//! Webhooks survive the death of the node that was sending them: `warren` processes on a
//! shared Redis (or NATS), one killed with SIGKILL while it retries, and a real HTTP receiver
//! in the test process.

use std::time::Duration;

use serde_json::{json, Value};
use warren_testkit::process::{Served, Warren};
use warren_testkit::redis::{shared_url, unique_prefix};
use warren_testkit::webhooks::{Answer, Receiver};
use warren_testkit::ws::{connect, presence_data};

/// A node's silence before others clean up after it and take over its webhooks.
const NODE_TIMEOUT_MS: &str = "1000";

/// `cluster.backend` and the variable of its URL.
type Backend<'a> = [(&'static str, &'a str); 2];

fn redis(url: &str) -> Backend<'_> {
    [
        ("WARREN_CLUSTER__BACKEND", "redis"),
        ("WARREN_CLUSTER__REDIS_URL", url),
    ]
}

fn nats(url: &str) -> Backend<'_> {
    [
        ("WARREN_CLUSTER__BACKEND", "nats"),
        ("WARREN_CLUSTER__NATS_URL", url),
    ]
}

fn node(backend: Backend, prefix: &str, id: &str, hook_url: &str) -> Served {
    let mut env = backend.to_vec();
    env.extend([
        ("WARREN_CLUSTER__PREFIX", prefix),
        ("WARREN_CLUSTER__NODE_TIMEOUT_MS", NODE_TIMEOUT_MS),
        ("WARREN_SERVER__NODE_ID", id),
        ("WARREN_APPS__0__WEBHOOKS__0__URL", hook_url),
        ("WARREN_WEBHOOKS__DELAY_REMOVAL_MS", "200"),
        ("WARREN_WEBHOOKS__BATCH_WINDOW_MS", "20"),
    ]);
    Warren::at(env!("CARGO_BIN_EXE_warren")).serve(&[], &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_pending_on_a_killed_node_are_delivered_by_another() {
    pending_on_a_killed_node_are_delivered_by_another(redis(&shared_url())).await;
}

/// On NATS, JetStream delivers the killed node's unacknowledged batch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_webhooks_pending_on_a_killed_node_are_delivered_by_another() {
    let shared = warren_testkit::nats::shared();
    pending_on_a_killed_node_are_delivered_by_another(nats(&shared.url())).await;
}

async fn pending_on_a_killed_node_are_delivered_by_another(backend: Backend<'_>) {
    let prefix = unique_prefix("whk9");
    let mut r = Receiver::start().await;
    r.answer_all(Answer::Status(500));
    let mut a = node(backend, &prefix, "node-a", &r.url);
    let mut ws = connect(&a).await;
    ws.subscribed("presence-k9", Some(&presence_data(json!("u1"), None)))
        .await;
    // Node A is retrying them now.
    let failed = r.next().await;
    assert_eq!(failed.answered, Some(500));
    let ids = failed.ids();
    a.kill9();
    drop(ws);

    let _b = node(backend, &prefix, "node-b", &r.url);
    r.answer_all(Answer::Status(200));
    let mut delivered: Vec<Value> = Vec::new();
    let mut delivered_ids = Vec::new();
    while delivered.len() < 4 {
        let d = r.next_within(Duration::from_secs(10)).await;
        if d.answered == Some(200) {
            delivered_ids.extend(d.ids());
            delivered.extend(d.events());
        }
    }
    let c = "presence-k9";
    // A's pending pair, under the ids A gave them, and B's cleanup of A's member, in either
    // order.
    let mut got: Vec<(String, String)> = delivered
        .iter()
        .map(Value::to_string)
        .zip(delivered_ids)
        .collect();
    got.sort();
    let sent_by_a: Vec<(String, String)> = failed
        .events()
        .iter()
        .map(Value::to_string)
        .zip(ids)
        .collect();
    for pending in &sent_by_a {
        assert!(got.contains(pending), "{pending:?} in {got:?}");
    }
    let mut events: Vec<Value> = got
        .iter()
        .map(|(e, _)| serde_json::from_str(e).unwrap())
        .collect();
    events.sort_by_key(|e| e.to_string());
    let mut want = vec![
        json!({"name":"channel_occupied","channel":c}),
        json!({"name":"member_added","channel":c,"user_id":"u1"}),
        json!({"name":"channel_vacated","channel":c}),
        json!({"name":"member_removed","channel":c,"user_id":"u1"}),
    ];
    want.sort_by_key(|e| e.to_string());
    assert_eq!(events, want);
    assert!(
        r.next_or_silence(Duration::from_millis(1500))
            .await
            .is_none(),
        "each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_restarted_with_a_spool_sends_what_was_pending() {
    let spool = std::env::temp_dir().join(format!("warren-spool-{}", rand_suffix()));
    let spool_dir = spool.to_string_lossy().into_owned();
    let mut r = Receiver::start().await;
    r.answer_all(Answer::Status(500));
    let url = r.url.clone();
    let env = [
        ("WARREN_APPS__0__WEBHOOKS__0__URL", url.as_str()),
        ("WARREN_WEBHOOKS__SPOOL_DIR", spool_dir.as_str()),
        ("WARREN_WEBHOOKS__BATCH_WINDOW_MS", "20"),
    ];
    let warren = Warren::at(env!("CARGO_BIN_EXE_warren"));
    let mut first = warren.serve(&[], &env);
    let mut ws = connect(&first).await;
    ws.subscribed("presence-spool", Some(&presence_data(json!("u1"), None)))
        .await;
    let failed = r.next().await;
    assert_eq!(failed.answered, Some(500));
    first.kill9();
    drop(ws);

    r.answer_all(Answer::Status(200));
    let _second = warren.serve(&[], &env);
    let mut got = Vec::new();
    let mut ids = Vec::new();
    while got.len() < failed.events().len() {
        let d = r.next_within(Duration::from_secs(10)).await;
        if d.answered == Some(200) {
            got.extend(d.events());
            ids.extend(d.ids());
        }
    }
    assert_eq!(got, failed.events());
    assert_eq!(ids, failed.ids(), "the same events, under their ids");
    assert_eq!(
        got[0],
        json!({"name":"channel_occupied","channel":"presence-spool"})
    );
    let _ = std::fs::remove_dir_all(&spool);
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}
