//! Apps read from PostgreSQL (`[apps_source] backend = "postgres"`), on a database of each
//! test's own: changes reach every node while clients are connected, a rotated secret keeps
//! the old one valid for its grace, and an outage of the database is served through.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use warren_server::apps_source::admin::Admin;
use warren_server::config::{AppsBackend, Config};
use warren_testkit::http::http;
use warren_testkit::postgres::{PostgresServer, TestDatabase};
use warren_testkit::redis::{unique_prefix, use_shared_redis};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::signing::{now_secs, signed_target};
use warren_testkit::webhooks::Receiver;
use warren_testkit::ws::{self, close_code, connect, Socket, PUSHER_JS_QUERY};
use warren_testkit::{APP_ID, KEY, SECRET, WAIT};

use crate::apps_reload::occupy_until;

/// Reads the apps from the database at `url`.
pub(crate) fn from_database(config: &mut Config, url: &str, refresh_secs: u64) {
    config.apps_source.backend = AppsBackend::Postgres;
    config.apps_source.url = Some(url.parse().expect("a postgres URL"));
    config.apps_source.refresh_interval_secs = refresh_secs;
}

async fn admin(url: &str) -> Admin {
    let mut config = Config::default();
    from_database(&mut config, url, 30);
    Admin::connect(&config.apps_source)
        .await
        .expect("admin connects")
}

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Waits until `/ready` answers 200.
pub(crate) async fn ready(node: &TestServer) {
    let deadline = Instant::now() + WAIT;
    while http(node, "GET", "/ready", "").await.status != 200 {
        assert!(Instant::now() < deadline, "the node became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tries to connect with `key` until `connection_established` arrives (`Some`) or the wait
/// ends (`None`): what a client sees of an app that is on its way.
async fn connect_key(node: &TestServer, key: &str, within: Duration) -> Option<Socket> {
    let deadline = Instant::now() + within;
    loop {
        let mut ws = ws::raw(node, &format!("/app/{key}?{PUSHER_JS_QUERY}")).await;
        let first = ws::recv(&mut ws).await;
        if first["event"] == "pusher:connection_established" {
            let data: Value = serde_json::from_str(first["data"].as_str().unwrap_or("{}")).unwrap();
            let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
            return Some(Socket { ws, socket_id });
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A signed GET of the channel list with this key and secret: its status.
async fn channels_status(node: &TestServer, secret: &str) -> u16 {
    let path = format!("/apps/{APP_ID}/channels");
    let target = signed_target("GET", &path, &[], "", KEY, secret, now_secs());
    http(node, "GET", &target, "").await.status
}

#[tokio::test]
async fn apps_added_changed_disabled_and_removed_reach_both_nodes() {
    let db = TestDatabase::create();
    let mut admin = admin(db.url()).await;
    admin.add(APP_ID, KEY, SECRET, Map::new()).await.unwrap();
    let prefix = unique_prefix("pg");
    let node = |c: &mut Config| {
        use_shared_redis(c, prefix.clone(), 1000);
        from_database(c, db.url(), 30);
    };
    let (a, b) = (start_with(&node).await, start_with(&node).await);
    ready(&a).await;
    ready(&b).await;
    let (mut on_a, mut on_b) = (connect(&a).await, connect(&b).await);
    on_a.subscribed("news", None).await;
    on_b.subscribed("news", None).await;

    // Added: both nodes admit the new app's clients (the 30 s refresh is not what brings it).
    admin
        .add("app-2", "key-2", "secret-2", Map::new())
        .await
        .unwrap();
    let second = connect_key(&b, "key-2", WAIT).await;
    assert!(second.is_some(), "the added app reached the other node");

    // A bad row is refused with its column and leaves the others alone.
    db.execute("INSERT INTO warren_apps (id, key, secret, max_event_payload_kb) VALUES ('bad', 'bad-key', 's', 0)");
    db.execute("UPDATE warren_apps SET max_connections = -1 WHERE id = 'app-2'");
    admin
        .set(APP_ID, fields(json!({"client_events": true})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(connect_key(&a, "bad-key", Duration::ZERO).await.is_none());
    assert!(
        connect_key(&a, "key-2", Duration::ZERO).await.is_some(),
        "app-2 keeps its last good version"
    );

    // Changed: a quota of 1 refuses a second client on a node at once (the node's count of
    // the app's connections carried over the change); the clients connected keep receiving.
    admin
        .set(APP_ID, fields(json!({"max_connections": 1})))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut ws = ws::raw(&a, &format!("/app/{KEY}?{PUSHER_JS_QUERY}")).await;
        let first = ws::recv(&mut ws).await;
        if first["event"] == "pusher:error" {
            assert_eq!(first["data"]["code"], 4004, "{first}");
            break;
        }
        drop(ws);
        assert!(Instant::now() < deadline, "the new quota reached the node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = json!({"name": "e", "channel": "news", "data": "1"}).to_string();
    let path = format!("/apps/{APP_ID}/events");
    let target = signed_target("POST", &path, &[], &body, KEY, SECRET, now_secs());
    assert_eq!(http(&b, "POST", &target, &body).await.status, 200);
    assert_eq!(on_a.next_event("e", WAIT).await["data"], "1");
    assert_eq!(on_b.next_event("e", WAIT).await["data"], "1");

    // Disabled: every node closes the app's connections with 4003.
    admin
        .set(APP_ID, fields(json!({"enabled": false})))
        .await
        .unwrap();
    assert_eq!(close_code(&mut on_a.ws).await, Some(4003));
    assert_eq!(close_code(&mut on_b.ws).await, Some(4003));

    // Removed: 4001 on every node.
    let mut second = second.unwrap();
    let mut on_a2 = connect_key(&a, "key-2", WAIT)
        .await
        .expect("app-2 still admitted");
    admin.remove("app-2").await.unwrap();
    assert_eq!(close_code(&mut second.ws).await, Some(4001));
    assert_eq!(close_code(&mut on_a2.ws).await, Some(4001));
    assert!(connect_key(&a, "key-2", Duration::ZERO).await.is_none());
}

#[tokio::test]
async fn webhook_endpoints_set_in_the_database_start_on_both_nodes() {
    let db = TestDatabase::create();
    let mut admin = admin(db.url()).await;
    admin.add(APP_ID, KEY, SECRET, Map::new()).await.unwrap();
    let prefix = unique_prefix("pg-wh");
    let node = |c: &mut Config| {
        use_shared_redis(c, prefix.clone(), 1000);
        from_database(c, db.url(), 30);
        c.webhooks.batch_window_ms = 0;
    };
    let (a, b) = (start_with(&node).await, start_with(&node).await);
    ready(&a).await;
    ready(&b).await;
    let (mut on_a, mut on_b) = (connect(&a).await, connect(&b).await);

    let mut r = Receiver::start().await;
    let hook = json!([{"url": r.url, "event_types": ["channel_occupied"]}]);
    admin
        .set(APP_ID, fields(json!({ "webhooks": hook })))
        .await
        .unwrap();
    let mut next = 0;
    occupy_until(&mut on_a, &mut next, &mut r, |_| true).await;
    occupy_until(&mut on_b, &mut next, &mut r, |_| true).await;

    // Running on both: each transition is sent once, whichever node decided it.
    on_a.subscribed("from-a", None).await;
    on_b.subscribed("from-b", None).await;
    let mut heard = Vec::new();
    while let Some(d) = r.next_or_silence(Duration::from_secs(1)).await {
        heard.extend(d.events().iter().map(|e| e["channel"].to_string()));
    }
    heard.retain(|c| c.starts_with("\"from-"));
    heard.sort();
    assert_eq!(heard, ["\"from-a\"", "\"from-b\""]);
}

#[tokio::test]
async fn a_rotated_secret_keeps_the_old_one_for_its_grace() {
    let db = TestDatabase::create();
    let mut admin = admin(db.url()).await;
    admin.add(APP_ID, KEY, SECRET, Map::new()).await.unwrap();
    let node = start_with(|c| from_database(c, db.url(), 30)).await;
    ready(&node).await;
    let mut client = connect(&node).await;
    assert_eq!(channels_status(&node, SECRET).await, 200);

    admin
        .rotate_secret(APP_ID, "new-secret", Duration::from_secs(3))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while channels_status(&node, "new-secret").await != 200 {
        assert!(Instant::now() < deadline, "the new secret reached the node");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // In the grace: both secrets sign API requests and channel authorizations.
    assert_eq!(channels_status(&node, SECRET).await, 200);
    for (channel, secret) in [("private-old", SECRET), ("private-new", "new-secret")] {
        let auth =
            warren_protocol::auth::sign_channel(KEY, secret, &client.socket_id, channel, None);
        let reply = client.subscribe_with(channel, Some(&auth), None).await;
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
    }

    // After it: only the new one.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(channels_status(&node, SECRET).await, 401);
    assert_eq!(channels_status(&node, "new-secret").await, 200);
    let auth =
        warren_protocol::auth::sign_channel(KEY, SECRET, &client.socket_id, "private-late", None);
    let reply = client
        .subscribe_with("private-late", Some(&auth), None)
        .await;
    assert_eq!(reply["event"], "pusher:subscription_error", "{reply}");
}

/// The metrics' `warren_apps_source_up` sample.
async fn source_up(node: &TestServer) -> Option<f64> {
    sample(node, "warren_apps_source_up{").await
}

/// The value of the first metrics line starting with `prefix`.
pub(crate) async fn sample(node: &TestServer, prefix: &str) -> Option<f64> {
    let addr = node.metrics_addr()?;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) async fn wait_source_up(node: &TestServer, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while source_up(node).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "warren_apps_source_up became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_database_outage_is_served_from_the_cache_and_caught_up() {
    let mut pg = PostgresServer::start();
    let db = TestDatabase::create_on(&pg.url());
    admin(db.url())
        .await
        .add(APP_ID, KEY, SECRET, Map::new())
        .await
        .unwrap();
    let node = start_with(|c| {
        from_database(c, db.url(), 1);
        c.metrics.enabled = true;
        c.metrics.port = 0;
    })
    .await;
    ready(&node).await;
    wait_source_up(&node, 1.0).await;
    let mut before = connect(&node).await;
    before.subscribed("news", None).await;

    pg.stop();
    wait_source_up(&node, 0.0).await;
    // Still serving: new connections, signed requests, and /ready.
    let mut during = connect(&node).await;
    during.subscribed("news", None).await;
    assert_eq!(channels_status(&node, SECRET).await, 200);
    assert_eq!(http(&node, "GET", "/ready", "").await.status, 200);

    pg.restart();
    // A change made right after the database returns reaches the node.
    let mut admin = admin(db.url()).await;
    admin
        .add("app-2", "key-2", "secret-2", Map::new())
        .await
        .unwrap();
    wait_source_up(&node, 1.0).await;
    assert!(connect_key(&node, "key-2", WAIT).await.is_some());
    before.assert_silent().await;
    drop(db);
}
