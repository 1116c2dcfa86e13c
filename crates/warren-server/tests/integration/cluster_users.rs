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

/// Apps with watchlists.
fn watchlists(c: &mut warren_server::config::Config) {
    demo_app(c).watchlist_events = true;
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
    check_online_from_first_to_last(&a, &b).await;
}

/// Split, the scripts announce nothing: the node sends each status notice after the change.
#[tokio::test]
async fn a_user_is_online_from_first_to_last_when_split() {
    let setup = crate::two_nodes::Split::RedisStateNatsFanout;
    let (a, b, _servers) = crate::two_nodes::two_split_nodes(setup, watchlists).await;
    check_online_from_first_to_last(&a, &b).await;
}

async fn check_online_from_first_to_last(a: &TestServer, b: &TestServer) {
    let mut watcher = connect(a).await;
    watcher
        .signed_in(&json!({"id":"w","watchlist":["u"]}))
        .await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"offline","user_ids":["u"]}]})
    );
    let mut u_on_b = connect(b).await;
    u_on_b.signed_in(&json!({"id":"u"})).await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"online","user_ids":["u"]}]})
    );
    let mut u_on_a = connect(a).await;
    u_on_a.signed_in(&json!({"id":"u"})).await;
    u_on_b.close().await;
    watcher.assert_silent().await;
    // A watcher signing in later, on the other node, sees u online.
    let mut late = connect(b).await;
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

/// INVARIANT(user-status-versioned): another node's notice that is not newer than what a
/// watcher holds (its "offline" still in transit when this node's sign-in brought the user
/// back) does not override the newer status; a newer notice does. The late notices are
/// published on the user's relay channel as another node's would be.
#[tokio::test]
async fn a_late_notice_from_another_node_does_not_override_a_newer_status() {
    let prefix = unique_prefix("wl");
    let p = prefix.clone();
    let a = start_with(move |c| {
        use_shared_redis(c, p, 1000);
        demo_app(c).watchlist_events = true;
    })
    .await;
    let mut watcher = connect(&a).await;
    watcher
        .signed_in(&json!({"id":"w","watchlist":["u"]}))
        .await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"offline","user_ids":["u"]}]})
    );
    let mut u = connect(&a).await;
    u.signed_in(&json!({"id":"u"})).await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"online","user_ids":["u"]}]})
    );
    // The app's last user version: u's coming online (w's sign-in was no transition for u,
    // and versions are per app, so it is at least u's).
    let base = format!("{{{prefix}:app-id}}");
    let reply = redis(&[b"GET", format!("{base}:uv").as_bytes()]).await;
    let online: u64 = resp_bulk(&reply).parse().expect("a version");
    let relay = format!("{base}:pev:#server-to-user-u");
    for late in [online - 1, online] {
        let n = redis(&[b"PUBLISH", relay.as_bytes(), &offline_envelope("u", late)]).await;
        assert_eq!(n, b":1\r\n", "node a listens to u's channel");
    }
    watcher.assert_silent().await;
    redis(&[
        b"PUBLISH",
        relay.as_bytes(),
        &offline_envelope("u", online + 1),
    ])
    .await;
    assert_eq!(
        watchlist(&mut watcher).await,
        json!({"events":[{"name":"offline","user_ids":["u"]}]}),
        "a newer notice is applied"
    );
}

/// The relay envelope (`cluster::envelope`) of another node's "user went offline".
fn offline_envelope(user: &str, version: u64) -> Vec<u8> {
    let mut out = vec![2];
    let channel = format!("#server-to-user-{user}");
    for s in ["elsewhere~1", "", "app-id", &channel] {
        out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.push(7);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// Sends one command to the shared Redis; its raw reply.
async fn redis(args: &[&[u8]]) -> Vec<u8> {
    redis_at(&warren_testkit::redis::shared_url(), args).await
}

/// Sends one command to the Redis at `url`; its raw reply.
pub(crate) async fn redis_at(url: &str, args: &[&[u8]]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a);
        cmd.extend_from_slice(b"\r\n");
    }
    conn.write_all(&cmd).await.unwrap();
    let mut reply = vec![0; 512];
    let n = conn.read(&mut reply).await.unwrap();
    reply.truncate(n);
    reply
}

/// The text of a bulk-string reply (`$len\r\ntext\r\n`).
pub(crate) fn resp_bulk(reply: &[u8]) -> String {
    let text = std::str::from_utf8(reply).unwrap();
    text.lines().nth(1).unwrap_or_default().to_owned()
}
