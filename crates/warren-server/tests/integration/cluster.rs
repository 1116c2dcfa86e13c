//! Several nodes in one process sharing a real Redis (or NATS, the `nats` tests): they must
//! behave as one server. Redis comes from `REDIS_URL` (default redis://127.0.0.1:6379), NATS
//! from `warren_testkit::nats::shared`; every test uses its own prefix, so tests never see
//! each other's state.

use serde_json::json;
use warren_server::config::{Backend, RedisTarget, Role};
use warren_testkit::api::{api_get, api_post};
use warren_testkit::net::free_port;
use warren_testkit::redis::{unique_prefix, use_redis, use_shared_redis};
use warren_testkit::server::{demo_app, demo_config, start_with, try_start, TestServer};
use warren_testkit::ws::{connect, decode_data, handshake, presence_data};

use crate::two_nodes::{two_split_nodes, Split};

/// A short node timeout, so that dead nodes are noticed quickly (tests override it where
/// they need).
const NODE_TIMEOUT_MS: u64 = 1000;

async fn node(prefix: &str, role: Role) -> TestServer {
    let prefix = prefix.to_owned();
    start_with(move |c| {
        use_shared_redis(c, prefix, NODE_TIMEOUT_MS);
        c.server.role = role;
    })
    .await
}

async fn pair() -> (TestServer, TestServer) {
    let p = unique_prefix("wt");
    (node(&p, Role::All).await, node(&p, Role::All).await)
}

#[tokio::test]
async fn events_published_on_one_node_reach_subscribers_on_every_node_once() {
    let (a, b) = pair().await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    on_a.subscribed("news", None).await;
    on_b.subscribed("news", None).await;
    for (i, via) in [&a, &b].into_iter().enumerate() {
        let r = api_post(
            via,
            "/apps/app-id/events",
            json!({"name":"e","channel":"news","data":i.to_string()}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(on_a.recv().await["data"], i.to_string());
        assert_eq!(on_b.recv().await["data"], i.to_string());
    }
    on_a.assert_silent().await;
    on_b.assert_silent().await;
}

#[tokio::test]
async fn publish_order_is_kept_across_nodes() {
    let (a, b) = pair().await;
    let mut on_b = connect(&b).await;
    on_b.subscribed("ordered", None).await;
    let mut sender = connect(&a).await;
    sender.subscribed("private-ordered", None).await;
    on_b.subscribed("private-ordered", None).await;
    for i in 0..5 {
        api_post(
            &a,
            "/apps/app-id/events",
            json!({"name":"e","channel":"ordered","data":i.to_string()}),
        )
        .await;
    }
    for i in 0..5 {
        assert_eq!(on_b.recv().await["data"], i.to_string());
    }
}

#[tokio::test]
async fn socket_id_exclusion_works_across_nodes() {
    let (a, b) = pair().await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    on_a.subscribed("ex", None).await;
    on_b.subscribed("ex", None).await;
    let r = api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"e","channel":"ex","data":"d","socket_id":on_b.socket_id}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(on_a.recv().await["event"], "e");
    on_b.assert_silent().await;
}

#[tokio::test]
async fn client_events_cross_nodes_and_are_not_echoed() {
    let (a, b) = pair().await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    on_a.subscribed("private-chat", None).await;
    on_b.subscribed("private-chat", None).await;
    on_a.send(json!({"event":"client-hi","channel":"private-chat","data":{"x":1}}))
        .await;
    let got = on_b.recv().await;
    assert_eq!(got["event"], "client-hi");
    assert_eq!(decode_data(&got), json!({"x":1}));
    on_a.assert_silent().await;
}

#[tokio::test]
async fn presence_is_one_truth_across_nodes() {
    let (a, b) = pair().await;
    check_presence_is_one_truth(&a, &b).await;
}

#[tokio::test]
async fn presence_is_one_truth_across_nats_nodes() {
    let (a, b, _nats) = crate::two_nodes::two_nats_nodes(|_| {}).await;
    check_presence_is_one_truth(&a, &b).await;
}

#[tokio::test]
async fn presence_is_one_truth_across_split_nodes() {
    for setup in [Split::RedisStateNatsFanout, Split::TwoRedis] {
        let (a, b, _servers) = two_split_nodes(setup, |_| {}).await;
        check_presence_is_one_truth(&a, &b).await;
    }
}

#[tokio::test]
async fn events_cross_nats_nodes_once_and_in_order() {
    let (a, b, _nats) = crate::two_nodes::two_nats_nodes(|_| {}).await;
    check_events_cross_once_and_in_order(&a, &b).await;
}

#[tokio::test]
async fn events_cross_split_nodes_once_and_in_order() {
    for setup in [Split::RedisStateNatsFanout, Split::TwoRedis] {
        let (a, b, _servers) = two_split_nodes(setup, |_| {}).await;
        check_events_cross_once_and_in_order(&a, &b).await;
    }
}

async fn check_events_cross_once_and_in_order(a: &TestServer, b: &TestServer) {
    let mut on_a = connect(a).await;
    let mut on_b = connect(b).await;
    on_a.subscribed("news", None).await;
    on_b.subscribed("news", None).await;
    for i in 0..5 {
        let via = if i % 2 == 0 { a } else { b };
        let body = json!({"name":"e","channel":"news","data":i.to_string()});
        let r = api_post(via, "/apps/app-id/events", body).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(on_a.recv().await["data"], i.to_string());
        assert_eq!(on_b.recv().await["data"], i.to_string());
    }
    on_a.assert_silent().await;
    on_b.assert_silent().await;
}

pub(crate) async fn check_presence_is_one_truth(a: &TestServer, b: &TestServer) {
    let mut alice = connect(a).await;
    alice
        .subscribed("presence-room", Some(&presence_data(json!("alice"), None)))
        .await;
    let mut bob = connect(b).await;
    let data = bob
        .subscribed(
            "presence-room",
            Some(&presence_data(json!("bob"), Some(json!({"n":"B"})))),
        )
        .await;
    assert_eq!(data["presence"]["count"], 2);
    let added = alice.recv().await;
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(
        decode_data(&added),
        json!({"user_id":"bob","user_info":{"n":"B"}})
    );

    for via in [a, b] {
        let users = api_get(via, "/apps/app-id/channels/presence-room/users", &[])
            .await
            .json();
        let mut ids: Vec<String> = users["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["id"].as_str().unwrap_or("").to_owned())
            .collect();
        ids.sort();
        assert_eq!(ids, ["alice", "bob"]);
        let info = api_get(
            via,
            "/apps/app-id/channels/presence-room",
            &[("info", "user_count,subscription_count")],
        )
        .await
        .json();
        assert_eq!(
            info,
            json!({"occupied":true,"user_count":2,"subscription_count":2})
        );
    }

    // bob's second socket, on the other node: no second member_added.
    let mut bob2 = connect(a).await;
    bob2.subscribed(
        "presence-room",
        Some(&presence_data(json!("bob"), Some(json!({"n":"B"})))),
    )
    .await;
    alice.assert_silent().await;
    bob.close().await;
    alice.assert_silent().await;
    bob2.close().await;
    let removed = alice.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(decode_data(&removed), json!({"user_id":"bob"}));
}

#[tokio::test]
async fn channel_lists_and_counts_are_cluster_wide() {
    let (a, b) = pair().await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    on_a.subscribed("shared", None).await;
    on_b.subscribed("shared", None).await;
    on_b.subscribed("only-b", None).await;
    let list = api_get(
        &a,
        "/apps/app-id/channels",
        &[("info", "subscription_count")],
    )
    .await
    .json();
    assert_eq!(
        list,
        json!({"channels":{"only-b":{"subscription_count":1},"shared":{"subscription_count":2}}})
    );
    let r = api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"e","channels":["shared","only-b"],"data":"d","info":"subscription_count"}),
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"channels":{"shared":{"subscription_count":2},"only-b":{"subscription_count":1}}})
    );
}

#[tokio::test]
async fn member_limit_is_cluster_wide() {
    let p = unique_prefix("wt");
    let mk = |p: String| async move {
        start_with(move |c| {
            use_shared_redis(c, p, NODE_TIMEOUT_MS);
            demo_app(c).max_presence_members = 1;
        })
        .await
    };
    let a = mk(p.clone()).await;
    let b = mk(p).await;
    let mut one = connect(&a).await;
    one.subscribed("presence-full", Some(&presence_data(json!("1"), None)))
        .await;
    let mut two = connect(&b).await;
    let err = two
        .subscribe("presence-full", Some(&presence_data(json!("2"), None)))
        .await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["type"], "LimitReached");
}

#[tokio::test]
async fn api_only_nodes_hold_no_connections_but_answer_for_the_cluster() {
    let p = unique_prefix("wt");
    let push = node(&p, Role::Push).await;
    let api = node(&p, Role::Api).await;
    // No WebSocket on the api node.
    assert!(handshake(&api, "/app/app-key?protocol=7").await.is_err());
    // No HTTP API on the push node.
    assert_eq!(
        api_get(&push, "/apps/app-id/channels", &[]).await.status,
        404
    );
    let mut c = connect(&push).await;
    c.subscribed("presence-r", Some(&presence_data(json!("u"), None)))
        .await;
    let users = api_get(&api, "/apps/app-id/channels/presence-r/users", &[])
        .await
        .json();
    assert_eq!(users, json!({"users":[{"id":"u"}]}));
    let r = api_post(
        &api,
        "/apps/app-id/events",
        json!({"name":"e","channel":"presence-r","data":"via api node"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.recv().await["data"], "via api node");
}

#[tokio::test]
async fn two_clusters_can_share_one_redis() {
    let a = node(&unique_prefix("wt"), Role::All).await;
    let b = node(&unique_prefix("wt"), Role::All).await;
    let mut on_a = connect(&a).await;
    let mut on_b = connect(&b).await;
    on_a.subscribed("same-name", None).await;
    on_b.subscribed("same-name", None).await;
    api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"e","channel":"same-name","data":"a"}),
    )
    .await;
    assert_eq!(on_a.recv().await["data"], "a");
    on_b.assert_silent().await;
    assert_eq!(
        api_get(
            &b,
            "/apps/app-id/channels/same-name",
            &[("info", "subscription_count")]
        )
        .await
        .json()["subscription_count"],
        1
    );
}

#[tokio::test]
async fn a_node_id_in_use_is_refused() {
    let p = unique_prefix("wt");
    let first = start_with({
        let p = p.clone();
        move |c| {
            use_shared_redis(c, p, NODE_TIMEOUT_MS);
            c.server.node_id = Some("twin".into());
        }
    })
    .await;
    let second = try_start(demo_config(|c| {
        use_shared_redis(c, p, NODE_TIMEOUT_MS);
        c.server.node_id = Some("twin".into());
    }))
    .await;
    let err = second
        .err()
        .expect("second node with the same id must not start")
        .to_string();
    assert!(err.contains("twin"), "{err}");
    drop(first);
}

/// Something that is not Redis at the Redis address: start-up fails with a clear error, it
/// neither hangs nor panics.
#[tokio::test]
async fn a_redis_that_answers_garbage_is_refused_at_start() {
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = fake.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = fake.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(b"%%% not redis %%%\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let config = demo_config(|c| {
        use_redis(
            c,
            vec![format!("redis://{addr}")],
            unique_prefix("wt"),
            NODE_TIMEOUT_MS,
        )
    });
    let started = tokio::time::timeout(std::time::Duration::from_secs(20), try_start(config))
        .await
        .expect("start-up gives up instead of hanging");
    let err = started
        .err()
        .expect("no server on a fake Redis")
        .to_string();
    assert!(err.contains("Redis") || err.contains("redis"), "{err}");
}

/// Nothing listening at the Redis address: a clear start-up error.
#[tokio::test]
async fn an_unreachable_redis_is_a_clear_start_up_error() {
    let port = free_port();
    // Only the URL changes: the default prefix and node timeout, as an operator's first try.
    let config = demo_config(|c| {
        c.cluster.backend = Backend::Redis;
        c.cluster.redis_url =
            RedisTarget::parse(&format!("redis://127.0.0.1:{port}")).expect("valid URL");
    });
    let started = tokio::time::timeout(std::time::Duration::from_secs(20), try_start(config))
        .await
        .expect("start-up gives up instead of hanging");
    let err = started.err().expect("no server without Redis").to_string();
    assert!(err.contains("cannot reach Redis"), "{err}");
}

/// A node that stops gracefully announces its departures itself: nobody waits for the node
/// timeout (set very long here to prove it).
#[tokio::test]
async fn a_graceful_stop_announces_departures_at_once() {
    let p = unique_prefix("wt");
    let mk = |p: String| async move {
        start_with(move |c| {
            use_shared_redis(c, p, NODE_TIMEOUT_MS);
            c.cluster.node_timeout_ms = 600_000;
        })
        .await
    };
    let a = mk(p.clone()).await;
    let b = mk(p).await;
    let mut alice = connect(&a).await;
    alice
        .subscribed("presence-g", Some(&presence_data(json!("alice"), None)))
        .await;
    let mut bob = connect(&b).await;
    bob.subscribed("presence-g", Some(&presence_data(json!("bob"), None)))
        .await;
    assert_eq!(alice.recv().await["event"], "pusher_internal:member_added");
    drop(b);
    let err = bob.recv().await;
    assert_eq!(err["data"]["code"], 4200, "{err}");
    let removed = alice.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(decode_data(&removed), json!({"user_id":"bob"}));
    let users = api_get(&a, "/apps/app-id/channels/presence-g/users", &[])
        .await
        .json();
    assert_eq!(users, json!({"users":[{"id":"alice"}]}));
}

/// Departures are announced from inside Redis: a user id with quotes, slashes and non-ASCII
/// characters must arrive exactly as it joined.
#[tokio::test]
async fn departures_announced_by_redis_keep_odd_user_ids_intact() {
    let (a, b) = pair().await;
    let odd = "o\"dd/\\ü 名";
    let mut watcher = connect(&a).await;
    watcher
        .subscribed("presence-odd", Some(&presence_data(json!("w"), None)))
        .await;
    let mut leaver = connect(&b).await;
    leaver
        .subscribed(
            "presence-odd",
            Some(&presence_data(json!(odd), Some(json!({"n":1})))),
        )
        .await;
    let added = watcher.recv().await;
    assert_eq!(
        decode_data(&added),
        json!({"user_id": odd, "user_info": {"n":1}})
    );
    leaver.close().await;
    let removed = watcher.recv().await;
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(removed["channel"], "presence-odd");
    assert_eq!(decode_data(&removed), json!({"user_id": odd}));
}
