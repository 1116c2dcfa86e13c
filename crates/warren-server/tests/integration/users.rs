//! Users on one node: sign-in, server-to-user events, terminating a user's connections,
//! presence as the signed-in user, the authentication deadline and watchlists.

use std::time::Duration;

use serde_json::{json, Value};
use warren_testkit::api::api_post;
use warren_testkit::server::{demo_app, start, start_with, TestServer};
use warren_testkit::ws::{close_code, connect, decode_data, presence_data, Socket};
use warren_testkit::WAIT;

async fn watchlist_server() -> TestServer {
    start_with(|c| demo_app(c).watchlist_events = true).await
}

/// Asserts a `pusher:error` with `code` followed by a close with the same code.
async fn assert_closed_with(s: &mut Socket, code: u16) -> Value {
    let error = s.recv().await;
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], code, "{error}");
    assert_eq!(close_code(&mut s.ws).await, Some(code));
    error
}

/// The decoded `data` of the next message, which must be a `watchlist_events`.
async fn watchlist(s: &mut Socket) -> Value {
    let msg = s.recv().await;
    assert_eq!(msg["event"], "pusher_internal:watchlist_events", "{msg}");
    decode_data(&msg)
}

#[tokio::test]
async fn signin_success_echoes_the_user_data_string() {
    let server = start().await;
    let mut s = connect(&server).await;
    // Odd spacing and key order: the echo is the exact text signed, not a re-serialization.
    let user_data = r#"{ "user_info": {"name":"Ann"}, "id":"u-1" }"#;
    let reply = s.sign_in(user_data).await;
    assert_eq!(reply["event"], "pusher:signin_success");
    assert_eq!(decode_data(&reply), json!({ "user_data": user_data }));
    s.assert_silent().await;
}

#[tokio::test]
async fn a_bad_signature_or_bad_user_data_closes_with_4009() {
    let server = start().await;
    let mut s = connect(&server).await;
    s.send(json!({"event":"pusher:signin","data":{"auth":"app-key:00ff","user_data":"{\"id\":\"1\"}"}}))
        .await;
    let error = assert_closed_with(&mut s, 4009).await;
    let message = error["data"]["message"].as_str().unwrap();
    assert!(message.contains("::user::"), "{message}");

    for user_data in [
        r#"{"user_info":{}}"#,
        r#"{"id":""}"#,
        r#"["1"]"#,
        r#"{"id":"a b"}"#,
    ] {
        let mut s = connect(&server).await;
        let reply = s.sign_in(user_data).await;
        assert_eq!(reply["event"], "pusher:error", "{user_data}: {reply}");
        assert_eq!(reply["data"]["code"], 4009);
        assert_eq!(close_code(&mut s.ws).await, Some(4009), "{user_data}");
    }
}

#[tokio::test]
async fn a_connection_signs_in_as_one_user_only() {
    let server = start().await;
    let mut s = connect(&server).await;
    s.signed_in(&json!({"id":"1"})).await;
    let reply = s.sign_in(r#"{"id":"2"}"#).await;
    assert_eq!(reply["event"], "pusher:error");
    assert_eq!(
        reply["data"]["code"],
        Value::Null,
        "the connection stays open"
    );
    // Signing in again as the same user is confirmed.
    s.signed_in(&json!({"id":"1","user_info":{"x":1}})).await;
    s.subscribed("#server-to-user-1", None).await;
    let refused = s.subscribe("#server-to-user-2", None).await;
    assert_eq!(refused["event"], "pusher:subscription_error");
}

#[tokio::test]
async fn only_the_signed_in_user_may_subscribe_to_its_channel() {
    let server = start().await;
    let mut s = connect(&server).await;
    let refused = s.subscribe("#server-to-user-7", None).await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(refused["data"]["status"], 403);
    s.signed_in(&json!({"id":"8"})).await;
    let refused = s.subscribe("#server-to-user-7", None).await;
    assert_eq!(refused["data"]["status"], 403);
    s.subscribed("#server-to-user-8", None).await;
}

#[tokio::test]
async fn events_to_a_user_reach_all_its_connections_and_nobody_else() {
    let server = start().await;
    let mut one_a = connect(&server).await;
    let mut one_b = connect(&server).await;
    let mut two = connect(&server).await;
    one_a.signed_in_as("1").await;
    one_b.signed_in_as("1").await;
    two.signed_in_as("2").await;
    let r = api_post(
        &server,
        "/apps/app-id/users/1/events",
        json!({"name":"hello","data":"{\"n\":1}"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // What the SDKs' sendToUser does: an event to the user's channel.
    let r = api_post(
        &server,
        "/apps/app-id/events",
        json!({"name":"hello","channel":"#server-to-user-1","data":"{\"n\":2}"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for s in [&mut one_a, &mut one_b] {
        for n in [1, 2] {
            let got = s.recv().await;
            assert_eq!(
                got,
                json!({"event":"hello","channel":"#server-to-user-1","data":format!("{{\"n\":{n}}}")})
            );
        }
    }
    two.assert_silent().await;
    let bad = api_post(
        &server,
        "/apps/app-id/users/a%20b/events",
        json!({"name":"hello","data":"x"}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn terminate_closes_the_users_connections_and_ends_their_presence() {
    let server = start().await;
    let mut observer = connect(&server).await;
    observer
        .subscribed(
            "presence-room",
            Some(&presence_data(json!("watcher"), None)),
        )
        .await;
    let mut one_a = connect(&server).await;
    let mut one_b = connect(&server).await;
    let mut two = connect(&server).await;
    one_a
        .signed_in(&json!({"id":"1","user_info":{"name":"One"}}))
        .await;
    one_b.signed_in(&json!({"id":"1"})).await;
    two.signed_in(&json!({"id":"2"})).await;
    // Joined as the signed-in user: no channel_data, signature over socket_id:channel.
    let members = one_a.subscribed("presence-room", None).await;
    assert_eq!(members["presence"]["hash"]["1"], json!({"name":"One"}));
    let added = observer.recv().await;
    assert_eq!(added["event"], "pusher_internal:member_added");

    let r = api_post(
        &server,
        "/apps/app-id/users/1/terminate_connections",
        json!({}),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    for s in [&mut one_a, &mut one_b] {
        assert_closed_with(s, 4009).await;
    }
    let removed = observer.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(decode_data(&removed), json!({"user_id":"1"}));
    two.assert_silent().await;

    // The Python SDK's route: no /apps prefix, the app found by its key.
    let r = api_post(&server, "/users/2/terminate_connections", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_closed_with(&mut two, 4009).await;
    observer.assert_silent().await;
}

#[tokio::test]
async fn presence_without_channel_data_needs_a_sign_in_and_a_signature() {
    let server = start().await;
    let mut s = connect(&server).await;
    let refused = s.subscribe("presence-p", None).await;
    assert_eq!(refused["data"]["status"], 400, "{refused}");
    s.signed_in(&json!({"id":"5"})).await;
    let unsigned = s
        .subscribe_with("presence-p", Some("app-key:00"), None)
        .await;
    assert_eq!(unsigned["data"]["status"], 401, "{unsigned}");
    let members = s.subscribed("presence-p", None).await;
    assert_eq!(
        members,
        json!({"presence":{"ids":["5"],"hash":{"5":null},"count":1}})
    );
}

#[tokio::test]
async fn unauthenticated_connections_are_closed_after_the_timeout() {
    let server = start_with(|c| demo_app(c).user_authentication_timeout = 1).await;
    let mut idle = connect(&server).await;
    let mut public_only = connect(&server).await;
    public_only.subscribed("news", None).await;
    let mut signed_in = connect(&server).await;
    signed_in.signed_in(&json!({"id":"1"})).await;
    let mut private = connect(&server).await;
    private.subscribed("private-x", None).await;
    for s in [&mut idle, &mut public_only] {
        let error = s.try_recv(WAIT).await.expect("closed after the timeout");
        assert_eq!(error["data"]["code"], 4009, "{error}");
        assert_eq!(close_code(&mut s.ws).await, Some(4009));
    }
    for s in [&mut signed_in, &mut private] {
        assert_eq!(s.try_recv(Duration::from_millis(1500)).await, None);
    }
}

#[tokio::test]
async fn watchers_get_the_initial_state_then_each_change() {
    let server = watchlist_server().await;
    let mut online_user = connect(&server).await;
    online_user.signed_in(&json!({"id":"a"})).await;
    let mut watcher = connect(&server).await;
    watcher
        .signed_in(&json!({"id":"w","watchlist":["a","b"]}))
        .await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"online","user_ids":["a"]},{"name":"offline","user_ids":["b"]}]})
    );
    // b needs no watchlist of its own; its second connection changes nothing.
    let mut b1 = connect(&server).await;
    b1.signed_in(&json!({"id":"b"})).await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"online","user_ids":["b"]}]})
    );
    let mut b2 = connect(&server).await;
    b2.signed_in(&json!({"id":"b"})).await;
    b1.close().await;
    watcher.assert_silent().await;
    b2.close().await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"offline","user_ids":["b"]}]})
    );
    online_user.close().await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"offline","user_ids":["a"]}]})
    );
}

#[tokio::test]
async fn a_watchlist_over_100_keeps_the_first_100_and_warns_with_4302() {
    let server = watchlist_server().await;
    let ids: Vec<String> = (0..120).map(|i| format!("u{i}")).collect();
    let mut s = connect(&server).await;
    s.signed_in(&json!({"id":"me","watchlist":ids})).await;
    let warning = s.recv().await;
    assert_eq!(warning["event"], "pusher:error");
    assert_eq!(warning["data"]["code"], 4302);
    let state = watchlist(&mut s).await;
    assert_eq!(state["events"][0]["name"], "offline");
    assert_eq!(state["events"][0]["user_ids"], json!(ids[..100]));
    // The connection stays open: u99 is watched, u100 is not.
    let mut u99 = connect(&server).await;
    u99.signed_in(&json!({"id":"u99"})).await;
    assert_eq!(
        watchlist(&mut s).await,
        json!({"events":[{"name":"online","user_ids":["u99"]}]})
    );
    let mut u100 = connect(&server).await;
    u100.signed_in(&json!({"id":"u100"})).await;
    s.assert_silent().await;
}

#[tokio::test]
async fn without_the_switch_there_are_no_watchlist_events() {
    let server = start().await;
    let mut s = connect(&server).await;
    s.signed_in(&json!({"id":"w","watchlist":["a"]})).await;
    let mut a = connect(&server).await;
    a.signed_in(&json!({"id":"a"})).await;
    s.assert_silent().await;
}
