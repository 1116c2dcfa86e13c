//! Presence semantics: one member per user, member_added/removed on first join / last leave.

use serde_json::json;
use warren_protocol::{ChannelName, ServerMessage};

use warren_testkit::server::{demo_app, start, start_with};
use warren_testkit::ws::{connect, decode_data, presence_data};
use warren_testkit::{KEY, SECRET};

#[tokio::test]
async fn presence_succeeded_lists_members_with_null_info() {
    let server = start().await;
    let mut a = connect(&server).await;
    let data = a
        .subscribed("presence-room", Some(&presence_data(json!("1"), None)))
        .await;
    assert_eq!(
        data,
        json!({"presence":{"ids":["1"],"hash":{"1":null},"count":1}})
    );
    let mut b = connect(&server).await;
    let data = b
        .subscribed(
            "presence-room",
            Some(&presence_data(json!("2"), Some(json!({"name":"B"})))),
        )
        .await;
    assert_eq!(data["presence"]["count"], 2);
    assert_eq!(data["presence"]["hash"]["1"], json!(null));
    assert_eq!(data["presence"]["hash"]["2"], json!({"name":"B"}));
    let mut ids: Vec<String> =
        serde_json::from_value(data["presence"]["ids"].clone()).expect("ids");
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
}

#[tokio::test]
async fn member_added_goes_to_others_only_and_once_per_user() {
    let server = start().await;
    let mut a = connect(&server).await;
    a.subscribed("presence-m", Some(&presence_data(json!("a"), None)))
        .await;
    let mut b1 = connect(&server).await;
    b1.subscribed(
        "presence-m",
        Some(&presence_data(json!("b"), Some(json!({"n":1})))),
    )
    .await;
    let added = a.recv().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(added["channel"], "presence-m");
    assert_eq!(
        decode_data(&added),
        json!({"user_id":"b","user_info":{"n":1}})
    );
    b1.assert_silent().await; // never to the joining socket

    // A second socket of the same user: no member_added, member count stays 2.
    let mut b2 = connect(&server).await;
    let data = b2
        .subscribed(
            "presence-m",
            Some(&presence_data(json!("b"), Some(json!({"n":1})))),
        )
        .await;
    assert_eq!(data["presence"]["count"], 2);
    a.assert_silent().await;

    // The first of b's sockets leaves: b is still present, nothing is announced.
    b1.close().await;
    a.assert_silent().await;
    // The last one leaves: member_removed.
    b2.close().await;
    let removed = a.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(decode_data(&removed), json!({"user_id":"b"}));
}

#[tokio::test]
async fn unsubscribe_removes_the_member() {
    let server = start().await;
    let mut a = connect(&server).await;
    a.subscribed("presence-u", Some(&presence_data(json!("a"), None)))
        .await;
    let mut b = connect(&server).await;
    b.subscribed("presence-u", Some(&presence_data(json!("b"), None)))
        .await;
    let channel = ChannelName::parse("presence-u", 200).unwrap();
    let added = a.recv_message().await;
    assert!(
        matches!(&added, ServerMessage::MemberAdded { channel: c, member } if *c == channel && member.user_id.as_str() == "b" && member.user_info.is_none()),
        "{added:?}"
    );
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-u"}}))
        .await;
    let removed = a.recv_message().await;
    assert!(
        matches!(&removed, ServerMessage::MemberRemoved { channel: c, user_id } if *c == channel && user_id.as_str() == "b"),
        "{removed:?}"
    );
    b.assert_silent().await;
}

#[tokio::test]
async fn numeric_user_ids_are_stringified() {
    let server = start().await;
    let mut a = connect(&server).await;
    let data = a
        .subscribed(
            "presence-n",
            Some(&presence_data(json!(42), Some(json!({"x":1})))),
        )
        .await;
    assert_eq!(data["presence"]["ids"], json!(["42"]));
    let mut b = connect(&server).await;
    b.subscribed("presence-n", Some(&presence_data(json!(7), None)))
        .await;
    let added = a.recv().await;
    assert_eq!(decode_data(&added)["user_id"], "7");
}

#[tokio::test]
async fn member_limit_refuses_new_users_but_not_known_ones() {
    let server = start_with(|c| demo_app(c).max_presence_members = 1).await;
    let mut a = connect(&server).await;
    a.subscribed("presence-full", Some(&presence_data(json!("a"), None)))
        .await;
    let mut a2 = connect(&server).await;
    a2.subscribed("presence-full", Some(&presence_data(json!("a"), None)))
        .await;
    let mut b = connect(&server).await;
    let err = b
        .subscribe("presence-full", Some(&presence_data(json!("b"), None)))
        .await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["type"], "LimitReached");
    a.assert_silent().await;
}

#[tokio::test]
async fn presence_requires_valid_channel_data() {
    let server = start().await;
    let mut c = connect(&server).await;
    // Missing channel_data.
    let auth = warren_protocol::auth::sign_channel(KEY, SECRET, &c.socket_id, "presence-x", None);
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth}}))
        .await;
    assert_eq!(c.recv().await["event"], "pusher:subscription_error");
    // channel_data without user_id (correctly signed).
    let err = c.subscribe("presence-x", Some("{\"user_info\":{}}")).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["status"], 400);
    // Not JSON at all.
    let err = c.subscribe("presence-x", Some("nope")).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    // Signed channel_data that differs from what is sent.
    let auth = warren_protocol::auth::sign_channel(
        KEY,
        SECRET,
        &c.socket_id,
        "presence-x",
        Some("{\"user_id\":\"1\"}"),
    );
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth,"channel_data":"{\"user_id\":\"2\"}"}})).await;
    assert_eq!(c.recv().await["data"]["type"], "AuthError");
}

#[tokio::test]
async fn oversize_user_info_is_refused() {
    let server = start().await;
    let mut c = connect(&server).await;
    let big = presence_data(json!("u"), Some(json!({"blob": "x".repeat(2000)})));
    let err = c.subscribe("presence-big", Some(&big)).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["status"], 400);
}
