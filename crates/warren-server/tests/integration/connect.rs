//! Handshake, admission errors (4001-4008) and connection_established.

use serde_json::Value;

use warren_testkit::http::http;
use warren_testkit::server::{demo_app, start, start_with};
use warren_testkit::ws::{close_code, connect, expect_refusal, raw, recv};

#[tokio::test]
async fn connection_established_has_a_valid_socket_id_and_timeout() {
    let server = start_with(|c| c.server.activity_timeout = 77).await;
    let mut ws = raw(&server, "/app/app-key?protocol=7&client=js&version=8.4.0").await;
    let est = recv(&mut ws).await;
    assert_eq!(est["event"], "pusher:connection_established");
    let data: Value =
        serde_json::from_str(est["data"].as_str().expect("string data")).expect("json");
    let id = data["socket_id"].as_str().expect("socket_id");
    let (a, b) = id.split_once('.').expect("dot");
    assert!(
        !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    assert!(
        !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(data["activity_timeout"], 77);
}

#[tokio::test]
async fn socket_ids_are_unique() {
    let server = start().await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    assert_ne!(a.socket_id, b.socket_id);
}

#[tokio::test]
async fn older_protocols_down_to_4_are_accepted() {
    let server = start().await;
    for v in 4..=7 {
        let mut ws = raw(&server, &format!("/app/app-key?protocol={v}")).await;
        assert_eq!(
            recv(&mut ws).await["event"],
            "pusher:connection_established"
        );
    }
}

#[tokio::test]
async fn unknown_app_is_4001() {
    let server = start().await;
    let mut ws = raw(&server, "/app/nope?protocol=7").await;
    let msg = expect_refusal(&mut ws, 4001).await;
    assert!(msg.contains("nope"), "{msg}");
}

#[tokio::test]
async fn disabled_app_is_4003() {
    let server = start_with(|c| demo_app(c).enabled = false).await;
    let mut ws = raw(&server, "/app/app-key?protocol=7").await;
    expect_refusal(&mut ws, 4003).await;
}

#[tokio::test]
async fn over_quota_is_4004_and_the_slot_comes_back() {
    let server = start_with(|c| demo_app(c).max_connections = 1).await;
    let first = connect(&server).await;
    let mut ws = raw(&server, "/app/app-key?protocol=7").await;
    expect_refusal(&mut ws, 4004).await;
    first.close().await;
    // The slot is released once the server has seen the close.
    let mut admitted = false;
    for _ in 0..50 {
        let mut ws = raw(&server, "/app/app-key?protocol=7").await;
        if recv(&mut ws).await["event"] == "pusher:connection_established" {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(admitted);
}

#[tokio::test]
async fn wrong_path_is_4005() {
    let server = start().await;
    let mut ws = raw(&server, "/socket?protocol=7").await;
    expect_refusal(&mut ws, 4005).await;
}

#[tokio::test]
async fn version_errors_are_4006_4007_4008() {
    let server = start().await;
    let mut ws = raw(&server, "/app/app-key?protocol=abc").await;
    expect_refusal(&mut ws, 4006).await;
    let mut ws = raw(&server, "/app/app-key?protocol=3").await;
    expect_refusal(&mut ws, 4007).await;
    let mut ws = raw(&server, "/app/app-key?protocol=8").await;
    expect_refusal(&mut ws, 4007).await;
    let mut ws = raw(&server, "/app/app-key?client=js").await;
    expect_refusal(&mut ws, 4008).await;
}

#[tokio::test]
async fn several_apps_are_served_at_once() {
    use warren_server::config::AppConfig;
    let id = warren_protocol::AppId::parse("id-2").expect("valid id");
    let key = warren_protocol::AppKey::parse("key-2").expect("valid key");
    let server = start_with(|c| c.apps.push(AppConfig::new(id, key, "secret-2"))).await;
    let mut ws = raw(&server, "/app/key-2?protocol=7").await;
    assert_eq!(
        recv(&mut ws).await["event"],
        "pusher:connection_established"
    );
    let mut ws = raw(&server, "/app/app-key?protocol=7").await;
    assert_eq!(
        recv(&mut ws).await["event"],
        "pusher:connection_established"
    );
}

#[tokio::test]
async fn http_and_websocket_share_the_port() {
    let server = start().await;
    let _client = connect(&server).await;
    let health = http(&server, "GET", "/health", "").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.body.contains("\"status\":\"ok\""), "{}", health.body);
    assert!(health.body.contains("\"connections\":1"), "{}", health.body);
}

#[tokio::test]
async fn shutdown_closes_connections_with_4200() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.subscribed("bye", None).await;
    drop(server); // dropping the test server shuts it down gracefully
    let err = c.recv().await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], 4200, "{err}");
    assert_eq!(close_code(&mut c.ws).await, Some(4200));
}
