//! `private-encrypted-` channels: the server relays what it cannot read, byte for byte, and
//! refuses what Pusher refuses (client events; one event to several channels, one of them
//! encrypted).

use serde_json::json;
use warren_testkit::api::api_post;
use warren_testkit::server::{start, TestServer};
use warren_testkit::ws::{connect, Socket};

use crate::two_nodes::two_nodes;

/// An encrypted payload as the server SDKs make it, with escapes and spacing that any
/// re-serialization would change.
const PAYLOAD: &str =
    r#"{"nonce":"4SIvUFH+0FR8Y2/5Yld5CZ3ySYcNtUMs","ciphertext":"kHkG1 a\/b\u00e9+==" }"#;

async fn subscribed(server: &TestServer, channel: &str) -> Socket {
    let mut s = connect(server).await;
    s.subscribed(channel, None).await;
    s
}

async fn check_payloads_and_refusals(publish_via: &TestServer, a: &mut Socket, b: &mut Socket) {
    let ch = "private-encrypted-room";
    let r = api_post(
        publish_via,
        "/apps/app-id/events",
        json!({"name":"secret","channel":ch,"data":PAYLOAD}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for s in [&mut *a, &mut *b] {
        let got = s.recv().await;
        assert_eq!(got["event"], "secret");
        assert_eq!(got["data"].as_str(), Some(PAYLOAD), "relayed byte for byte");
    }

    a.send(json!({"event":"client-x","channel":ch,"data":{"nonce":"n","ciphertext":"c"}}))
        .await;
    let err = a.recv().await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], serde_json::Value::Null);
    let message = err["data"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("encrypted"), "{message}");
    b.assert_silent().await;

    // The socket stays usable.
    a.subscribed("after-refusal", None).await;
}

#[tokio::test]
async fn encrypted_payloads_pass_untouched_and_client_events_are_refused() {
    let server = start().await;
    let mut a = subscribed(&server, "private-encrypted-room").await;
    let mut b = subscribed(&server, "private-encrypted-room").await;
    check_payloads_and_refusals(&server, &mut a, &mut b).await;
}

#[tokio::test]
async fn one_event_to_an_encrypted_channel_and_others_is_refused_whole() {
    let server = start().await;
    let mut plain = subscribed(&server, "plain").await;
    for channels in [
        json!(["private-encrypted-a", "plain"]),
        json!(["plain", "private-encrypted-a"]),
        json!(["private-encrypted-a", "private-encrypted-b"]),
    ] {
        let r = api_post(
            &server,
            "/apps/app-id/events",
            json!({"name":"e","channels":channels,"data":PAYLOAD}),
        )
        .await;
        assert_eq!(r.status, 400, "{channels} -> {}", r.body);
        assert!(r.body.contains("encrypted"), "{}", r.body);
    }
    plain.assert_silent().await;
    // The same channel twice is one channel.
    let r = api_post(
        &server,
        "/apps/app-id/events",
        json!({"name":"e","channels":["private-encrypted-a","private-encrypted-a"],"data":PAYLOAD}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn encrypted_channels_behave_alike_across_nodes() {
    let (n1, n2) = two_nodes(|_| {}).await;
    let mut a = subscribed(&n1, "private-encrypted-room").await;
    let mut b = subscribed(&n2, "private-encrypted-room").await;
    check_payloads_and_refusals(&n2, &mut a, &mut b).await;
}
