//! Request authentication of the HTTP API: every failure with its status and a clear message.

use serde_json::json;
use warren_protocol::auth::{body_md5_hex, sign_rest_request};

use warren_testkit::api::api_post;
use warren_testkit::http::http;
use warren_testkit::server::{demo_app, start, start_with};
use warren_testkit::signing::{now_secs, signed_target};
use warren_testkit::ws::{connect, presence_data};
use warren_testkit::{KEY, SECRET};

const EVENTS: &str = "/apps/app-id/events";

fn body() -> String {
    json!({"name":"e","channel":"c","data":"d"}).to_string()
}

/// Builds a query from explicit params (already including auth params) and signs it.
fn target_with(
    method: &str,
    path: &str,
    mut params: Vec<(String, String)>,
    secret: &str,
) -> String {
    let sig = sign_rest_request(secret, method, path, &params);
    params.push(("auth_signature".into(), sig));
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", q.join("&"))
}

fn base_params(body: &str, timestamp: i64) -> Vec<(String, String)> {
    let mut p = vec![
        ("auth_key".to_owned(), KEY.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
    ];
    if !body.is_empty() {
        p.push(("body_md5".to_owned(), body_md5_hex(body.as_bytes())));
    }
    p
}

#[tokio::test]
async fn wrong_secret_is_401_with_the_expected_string() {
    let server = start().await;
    let target = signed_target("POST", EVENTS, &[], &body(), KEY, "wrong", now_secs());
    let r = http(&server, "POST", &target, &body()).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Invalid signature"), "{}", r.body);
}

#[tokio::test]
async fn expired_timestamps_both_ways() {
    let server = start().await;
    for skew in [-601, 601] {
        let target = signed_target("POST", EVENTS, &[], &body(), KEY, SECRET, now_secs() + skew);
        let r = http(&server, "POST", &target, &body()).await;
        assert_eq!(r.status, 401);
        assert!(
            r.body.starts_with("Timestamp expired: Given timestamp ("),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("not within 600s of server time"),
            "{}",
            r.body
        );
    }
    let ok = signed_target("POST", EVENTS, &[], &body(), KEY, SECRET, now_secs() - 500);
    assert_eq!(http(&server, "POST", &ok, &body()).await.status, 200);
}

#[tokio::test]
async fn timestamp_tolerance_is_configurable() {
    let server = start_with(|c| c.server.api_timestamp_tolerance_secs = 5).await;
    let target = signed_target("POST", EVENTS, &[], &body(), KEY, SECRET, now_secs() - 60);
    let r = http(&server, "POST", &target, &body()).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("not within 5s"), "{}", r.body);
}

#[tokio::test]
async fn body_md5_is_required_and_checked() {
    let server = start().await;
    // Missing body_md5 with a body.
    let params = base_params("", now_secs());
    let r = http(
        &server,
        "POST",
        &target_with("POST", EVENTS, params, SECRET),
        &body(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    // body_md5 of another body, correctly signed.
    let mut params = base_params("", now_secs());
    params.push(("body_md5".into(), body_md5_hex(b"something else")));
    let r = http(
        &server,
        "POST",
        &target_with("POST", EVENTS, params, SECRET),
        &body(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.to_lowercase().contains("body_md5"), "{}", r.body);
}

#[tokio::test]
async fn python_sends_body_md5_on_get_and_php_sends_json_content_type() {
    let server = start().await;
    let mut params = base_params("", now_secs());
    params.push(("body_md5".into(), body_md5_hex(b"")));
    let target = target_with("GET", "/apps/app-id/channels", params, SECRET);
    // `http` always sends Content-Type: application/json, as PHP does on GETs.
    let r = http(&server, "GET", &target, "").await;
    assert_eq!((r.status, r.json()), (200, json!({"channels":{}})));
}

#[tokio::test]
async fn php_array_params_and_percent_encoded_values() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.subscribed("presence-php", Some(&presence_data(json!("1"), None)))
        .await;
    // info=user_count%2Csubscription_count, signed over the decoded value.
    let mut params = base_params("", now_secs());
    params.push(("info".into(), "user_count,subscription_count".into()));
    let sig = sign_rest_request(SECRET, "GET", "/apps/app-id/channels/presence-php", &params);
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(',', "%2C")))
        .collect();
    let target = format!(
        "/apps/app-id/channels/presence-php?{}&auth_signature={sig}",
        q.join("&")
    );
    let r = http(&server, "GET", &target, "").await;
    assert_eq!(
        r.json(),
        json!({"occupied":true,"user_count":1,"subscription_count":1}),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn missing_or_foreign_credentials() {
    let server = start_with(|c| {
        c.apps.push(warren_server::config::AppConfig::new(
            warren_protocol::AppId::parse("other").expect("valid id"),
            warren_protocol::AppKey::parse("other-key").expect("valid key"),
            "other-secret",
        ));
    })
    .await;
    let r = http(&server, "POST", EVENTS, &body()).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("auth_key"), "{}", r.body);
    // A valid signature by another app's credentials does not open this app.
    let target = signed_target(
        "POST",
        EVENTS,
        &[],
        &body(),
        "other-key",
        "other-secret",
        now_secs(),
    );
    assert_eq!(http(&server, "POST", &target, &body()).await.status, 401);
    // Unknown app id.
    let r = api_post(
        &server,
        "/apps/nope/events",
        json!({"name":"e","channel":"c","data":"d"}),
    )
    .await;
    assert_eq!(r.status, 404);
    // Missing signature, garbage timestamp.
    let params = base_params(&body(), now_secs());
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = http(
        &server,
        "POST",
        &format!("{EVENTS}?{}", q.join("&")),
        &body(),
    )
    .await;
    assert_eq!(r.status, 401);
    let mut params = base_params(&body(), 0);
    params[1].1 = "yesterday".into();
    let r = http(
        &server,
        "POST",
        &target_with("POST", EVENTS, params, SECRET),
        &body(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn disabled_apps_are_403() {
    let server = start_with(|c| demo_app(c).enabled = false).await;
    let r = api_post(
        &server,
        EVENTS,
        json!({"name":"e","channel":"c","data":"d"}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn garbage_queries_never_500() {
    let server = start().await;
    for target in [
        "/apps/app-id/events?%ff%fe=1",
        "/apps/app-id/events?auth_key=app-key&auth_key=app-key",
        "/apps/app-id/events?&&&=&=",
        "/apps/app-id/channels?auth_key=app-key&auth_timestamp=99999999999999999999999",
    ] {
        let r = http(&server, "POST", target, "{}").await;
        assert!(
            (400..500).contains(&r.status),
            "{target} -> {} {}",
            r.status,
            r.body
        );
    }
}
