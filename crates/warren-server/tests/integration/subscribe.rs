//! Public and private subscriptions, signatures, unsubscribe.

use serde_json::json;
use warren_protocol::auth::sign_channel;

use warren_testkit::server::{demo_app, start, start_with};
use warren_testkit::ws::connect;
use warren_testkit::{KEY, SECRET};

#[tokio::test]
async fn public_subscribe_succeeds_with_empty_object_data() {
    let server = start().await;
    let mut c = connect(&server).await;
    let reply = c.subscribe("news", None).await;
    assert_eq!(
        reply,
        json!({"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"})
    );
}

#[tokio::test]
async fn subscribe_data_may_arrive_json_encoded() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.send(json!({"event":"pusher:subscribe","data":"{\"channel\":\"news\",\"auth\":\"\"}"}))
        .await;
    assert_eq!(
        c.recv().await["event"],
        "pusher_internal:subscription_succeeded"
    );
}

#[tokio::test]
async fn private_subscribe_with_a_valid_signature() {
    let server = start().await;
    let mut c = connect(&server).await;
    assert_eq!(c.subscribed("private-room", None).await, json!({}));
    let mut e = connect(&server).await;
    assert_eq!(
        e.subscribed("private-encrypted-room", None).await,
        json!({})
    );
}

#[tokio::test]
async fn private_subscribe_without_auth_is_an_auth_error() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-x"}}))
        .await;
    let err = c.recv().await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["channel"], "private-x");
    assert_eq!(err["data"]["type"], "AuthError");
    assert_eq!(err["data"]["status"], 401);
    assert_eq!(
        err["data"]["error"],
        "Auth info required to subscribe to private-x"
    );
}

#[tokio::test]
async fn bad_signature_names_the_expected_string() {
    let server = start().await;
    let mut c = connect(&server).await;
    let wrong = sign_channel(KEY, "not-the-secret", &c.socket_id, "private-x", None);
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":wrong}}))
        .await;
    let err = c.recv().await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["status"], 401);
    let msg = err["data"]["error"].as_str().expect("message");
    let expected = format!(
        "Invalid signature: Expected HMAC SHA256 hex digest of {}:private-x, but got",
        c.socket_id
    );
    assert!(msg.starts_with(&expected), "{msg}");
    // The failed subscription left no trace: a correct one still succeeds.
    c.subscribed("private-x", None).await;
}

#[tokio::test]
async fn signature_for_another_socket_or_key_is_refused() {
    let server = start().await;
    let mut c = connect(&server).await;
    let other_socket = sign_channel(KEY, SECRET, "1.1", "private-x", None);
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":other_socket}}))
        .await;
    assert_eq!(c.recv().await["data"]["type"], "AuthError");
    let other_key = sign_channel("other-key", SECRET, &c.socket_id, "private-x", None);
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":other_key}}))
        .await;
    assert_eq!(c.recv().await["data"]["type"], "AuthError");
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":"no-colon"}}))
        .await;
    assert_eq!(c.recv().await["data"]["type"], "AuthError");
}

#[tokio::test]
async fn server_to_user_channels_need_a_signed_in_user() {
    let server = start().await;
    let mut c = connect(&server).await;
    let err = c.subscribe("#server-to-user-1", None).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["status"], 403);
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_unknown_channels_are_ignored() {
    let server = start().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribed("private-u", None).await;
    b.subscribed("private-u", None).await;
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"private-u"}}))
        .await;
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"never-subscribed"}}))
        .await;
    // Make sure the server processed b's unsubscribe before a publishes.
    b.send(json!({"event":"pusher:ping"})).await;
    assert_eq!(b.recv().await["event"], "pusher:pong");
    a.send(json!({"event":"client-x","channel":"private-u","data":{}}))
        .await;
    b.assert_silent().await;
}

#[tokio::test]
async fn channel_name_length_limit_is_configurable() {
    let server = start_with(|c| demo_app(c).max_channel_name_length = 10).await;
    let mut c = connect(&server).await;
    c.subscribed("ten-chars!".replace('!', "x").as_str(), None)
        .await;
    let err = c.subscribe("eleven-char", None).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["status"], 400);
}

#[tokio::test]
async fn subscribing_twice_answers_again() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.subscribed("twice", None).await;
    c.subscribed("twice", None).await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let server = start_with(|c| demo_app(c).max_subscriptions_per_connection = 2).await;
    let mut c = connect(&server).await;
    c.subscribed("one", None).await;
    c.subscribed("two", None).await;
    let err = c.subscribe("three", None).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["type"], "LimitReached");
    // Leaving one makes room again.
    c.send(json!({"event":"pusher:unsubscribe","data":{"channel":"one"}}))
        .await;
    c.subscribed("three", None).await;
}

/// Subscribe churn is bounded per connection: past `subscribe_rate_per_sec` in one second a
/// subscribe is refused with status 429 (nothing reaches the cluster state), the socket stays
/// open, and the next second has room again.
#[tokio::test]
async fn subscribes_per_second_are_limited() {
    let server = start_with(|c| demo_app(c).subscribe_rate_per_sec = 3).await;
    let mut c = connect(&server).await;
    let mut refused = None;
    for i in 0..10 {
        let reply = c.subscribe(&format!("churn-{i}"), None).await;
        if reply["event"] == "pusher:subscription_error" {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("a subscribe past the rate is refused");
    assert_eq!(refused["data"]["status"], 429, "{refused}");
    assert_eq!(refused["data"]["type"], "LimitReached", "{refused}");
    let channels = warren_testkit::api::api_get(&server, "/apps/app-id/channels", &[]).await;
    let listed = channels.json()["channels"]
        .as_object()
        .map_or(0, |m| m.len());
    assert!(
        listed <= 3 * 2,
        "refused subscribes made no channel: {listed}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.subscribed("after-a-second", None).await;
}

/// A repeated subscribe is answered again (with the member list, for presence) but counts
/// against the same rate as a first one: a flood of them reaches shared state no more often.
#[tokio::test]
async fn repeated_presence_subscribes_count_against_the_rate() {
    let server = start_with(|c| demo_app(c).subscribe_rate_per_sec = 3).await;
    let mut c = connect(&server).await;
    let data = warren_testkit::ws::presence_data(json!("u1"), None);
    let first = c.subscribe("presence-again", Some(&data)).await;
    assert_eq!(
        first["event"], "pusher_internal:subscription_succeeded",
        "{first}"
    );
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(c.subscribe("presence-again", Some(&data)).await);
    }
    let events: Vec<&str> = answers
        .iter()
        .map(|a| a["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        events,
        [
            "pusher_internal:subscription_succeeded",
            "pusher_internal:subscription_succeeded",
            "pusher:subscription_error",
            "pusher:subscription_error"
        ],
        "{answers:?}"
    );
    assert_eq!(answers[2]["data"]["status"], 429, "{}", answers[2]);
    assert!(
        answers[0]["data"].as_str().unwrap_or("").contains("u1"),
        "the member list again: {}",
        answers[0]
    );
}
