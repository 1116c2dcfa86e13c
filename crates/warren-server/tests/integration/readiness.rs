//! `/up` (alive), `/ready` (send me traffic) and `/up/{app_id}`: on one node, while the
//! node stops, and on Redis as Redis goes away and comes back.

use std::time::Duration;

use serde_json::json;
use warren_server::config::AppConfig;
use warren_testkit::api::api_post;
use warren_testkit::http::{http, Response};
use warren_testkit::redis::{unique_prefix, use_redis, RedisServer};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::ws::connect;
use warren_testkit::{Endpoint, WAIT};

async fn get(to: &impl Endpoint, path: &str) -> Response {
    http(to, "GET", path, "").await
}

/// Asks `path` until it answers `status` (for changes the node notices on its own).
async fn until(to: &impl Endpoint, path: &str, status: u16) -> Response {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let r = get(to, path).await;
        if r.status == status || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_node_is_ready_and_answers_per_app() {
    let server = start_with(|c| {
        let mut off = AppConfig::demo();
        off.id = warren_protocol::AppId::parse("off").expect("id");
        off.key = warren_protocol::AppKey::parse("off-key").expect("key");
        off.enabled = false;
        c.apps.push(off);
    })
    .await;
    let ready = get(&server, "/ready").await;
    assert_eq!(
        (ready.status, ready.json()),
        (200, json!({"status": "ready"}))
    );
    assert_eq!(get(&server, "/up").await.status, 200);
    let app = get(&server, "/up/app-id").await;
    assert_eq!(
        (app.status, app.json()),
        (200, json!({"status": "ok", "app_id": "app-id"}))
    );
    let unknown = get(&server, "/up/nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "Unknown app: nope");
    let off = get(&server, "/up/off").await;
    assert_eq!(
        (off.status, off.json()),
        (503, json!({"status": "disabled", "app_id": "off"}))
    );
}

/// From the moment a stop is asked for, `/ready` says 503 while everything else is served as
/// before for `shutdown_grace_ms`: open connections still get their events, `/up` still
/// answers, new connections are still taken.
#[tokio::test]
async fn a_stopping_node_is_unready_at_once_and_still_serves_during_the_grace() {
    // Far longer than the test: the grace never runs out while it looks.
    let server: TestServer = start_with(|c| c.server.shutdown_grace_ms = 600_000).await;
    let mut open = connect(&server).await;
    open.subscribed("news", None).await;

    server.shutdown_handle().shutdown();

    let ready = get(&server, "/ready").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["status"], "draining");
    assert_eq!(get(&server, "/up/app-id").await.status, 503);
    let up = get(&server, "/up").await;
    assert_eq!((up.status, &up.json()["status"]), (200, &json!("ok")));
    let published = api_post(
        &server,
        "/apps/app-id/events",
        json!({"name": "still", "channel": "news", "data": "here"}),
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.body);
    assert_eq!(open.next_event("still", WAIT).await["data"], "here");
    connect(&server).await;
}

/// After the grace the connections are closed with 4200, so clients reconnect elsewhere.
#[tokio::test]
async fn after_the_grace_connections_are_closed_with_4200() {
    let server = start_with(|c| c.server.shutdown_grace_ms = 200).await;
    let mut open = connect(&server).await;
    open.subscribed("news", None).await;
    server.shutdown_handle().shutdown();
    assert_eq!(get(&server, "/ready").await.status, 503);
    let error = open.next_event("pusher:error", WAIT).await;
    assert_eq!(error["data"]["code"], 4200, "{error}");
}

/// On Redis, ready means connected to it and heartbeating; a node whose Redis is gone is
/// alive (`/up`) but not ready, and ready again once Redis is back.
#[tokio::test]
async fn readiness_follows_redis() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let prefix = unique_prefix("ready");
    let node = start_with(|c| use_redis(c, vec![url], prefix, 2000)).await;
    assert_eq!(get(&node, "/ready").await.status, 200);

    redis.kill();
    let gone = until(&node, "/ready", 503).await;
    assert_eq!(gone.status, 503, "{}", gone.body);
    assert_eq!(gone.json()["status"], "unavailable");
    assert!(
        gone.json()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Redis")),
        "{}",
        gone.body
    );
    assert_eq!(get(&node, "/up").await.status, 200, "alive all the same");
    assert_eq!(get(&node, "/up/app-id").await.status, 503);

    redis.restart();
    let back = until(&node, "/ready", 200).await;
    assert_eq!(back.status, 200, "{}", back.body);
}

/// Fan-out and state apart: a node whose fan-out server alone is gone (state still up) is not
/// ready either, and ready again once it is back.
#[tokio::test]
async fn readiness_follows_the_fanout_when_it_is_apart() {
    use warren_testkit::split::{use_split, Job};
    let mut fanout = RedisServer::start();
    let state = Job::Redis(warren_testkit::redis::shared_url());
    let jobs = (Job::Redis(fanout.url()), state);
    let prefix = unique_prefix("ready-split");
    let node = start_with(|c| use_split(c, &jobs.0, &jobs.1, prefix, 2000)).await;
    assert_eq!(get(&node, "/ready").await.status, 200);

    fanout.kill();
    let gone = until(&node, "/ready", 503).await;
    assert_eq!(gone.status, 503, "{}", gone.body);
    assert_eq!(gone.json()["status"], "unavailable");

    fanout.restart();
    let back = until(&node, "/ready", 200).await;
    assert_eq!(back.status, 200, "{}", back.body);
}
