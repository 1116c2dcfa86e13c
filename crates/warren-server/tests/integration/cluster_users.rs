//! Users across two nodes sharing a real Redis (see `cluster.rs`): events to a user,
//! terminating a user's connections and watchlists reach every node.

use serde_json::{json, Value};
use warren_server::config::Role;
use warren_testkit::api::api_post;
use warren_testkit::redis::{unique_prefix, use_shared_redis};
use warren_testkit::server::{demo_app, start_with, TestServer};
use warren_testkit::ws::{close_code, connect, decode_data, presence_data, Socket};

async fn pair() -> (TestServer, TestServer) {
    let p = unique_prefix("wu");
    let node = |p: String| async move {
        start_with(move |c| {
            use_shared_redis(c, p, 1000);
            c.server.role = Role::All;
            demo_app(c).watchlist_events = true;
        })
        .await
    };
    (node(p.clone()).await, node(p).await)
}

async fn watchlist(s: &mut Socket) -> Value {
    let msg = s.recv().await;
    assert_eq!(msg["event"], "pusher_internal:watchlist_events", "{msg}");
    decode_data(&msg)
}

#[tokio::test]
async fn events_to_a_user_reach_its_connections_on_every_node() {
    let (a, b) = pair().await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    let mut other = connect(&b).await;
    on_a.signed_in_as("1").await;
    on_b.signed_in_as("1").await;
    other.signed_in_as("2").await;
    for via in [&a, &b] {
        let r = api_post(
            via,
            "/apps/app-id/users/1/events",
            json!({"name":"hi","data":"x"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        for s in [&mut on_a, &mut on_b] {
            assert_eq!(
                s.recv().await,
                json!({"event":"hi","channel":"#server-to-user-1","data":"x"})
            );
        }
    }
    on_a.assert_silent().await;
    other.assert_silent().await;
}

#[tokio::test]
async fn terminate_closes_the_users_connections_on_every_node() {
    let (a, b) = pair().await;
    let mut observer = connect(&b).await;
    observer
        .subscribed("presence-t", Some(&presence_data(json!("obs"), None)))
        .await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    let mut bystander = connect(&a).await;
    on_a.signed_in(&json!({"id":"1"})).await;
    on_b.signed_in(&json!({"id":"1"})).await;
    bystander.signed_in(&json!({"id":"2"})).await;
    on_a.subscribed("presence-t", None).await;
    assert_eq!(
        observer.recv().await["event"],
        "pusher_internal:member_added"
    );
    // Sent to the node without the presence member: it must reach the other one.
    let r = api_post(&b, "/apps/app-id/users/1/terminate_connections", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for s in [&mut on_a, &mut on_b] {
        let error = s.recv().await;
        assert_eq!(error["data"]["code"], 4009, "{error}");
        assert_eq!(close_code(&mut s.ws).await, Some(4009));
    }
    let removed = observer.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(decode_data(&removed), json!({"user_id":"1"}));
    bystander.assert_silent().await;
}

#[tokio::test]
async fn a_user_is_online_from_its_first_connection_anywhere_to_its_last() {
    let (a, b) = pair().await;
    let mut watcher = connect(&a).await;
    watcher
        .signed_in(&json!({"id":"w","watchlist":["u"]}))
        .await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"offline","user_ids":["u"]}]})
    );
    let mut u_on_b = connect(&b).await;
    u_on_b.signed_in(&json!({"id":"u"})).await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"online","user_ids":["u"]}]})
    );
    let mut u_on_a = connect(&a).await;
    u_on_a.signed_in(&json!({"id":"u"})).await;
    u_on_b.close().await;
    watcher.assert_silent().await;
    // A watcher signing in later, on the other node, sees u online.
    let mut late = connect(&b).await;
    late.signed_in(&json!({"id":"late","watchlist":["u","w"]}))
        .await;
    assert_eq!(
        watchlist(&mut late).await,
        json!({"events":[{"name":"online","user_ids":["u","w"]}]})
    );
    u_on_a.close().await;
    for s in [&mut watcher, &mut late] {
        assert_eq!(
            watchlist(s).await,
            json!({"events":[{"name":"offline","user_ids":["u"]}]})
        );
    }
}
