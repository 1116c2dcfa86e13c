//! `rediss://` with a password: a Redis of the test's own that speaks only TLS, with a
//! certificate from an authority the test made, and `requirepass`. Nodes that trust that
//! authority (`cluster.redis_tls_ca_file`) and give the password work as a cluster; a node
//! that does not trust it, or gives a wrong password, does not start.

use std::path::PathBuf;

use serde_json::json;
use warren_server::config::Config;
use warren_testkit::api::{api_get, api_post};
use warren_testkit::redis::{unique_prefix, use_redis, RedisServer};
use warren_testkit::server::{demo_config, try_start};
use warren_testkit::tls::TestCa;
use warren_testkit::ws::{connect, presence_data};
use warren_testkit::WAIT;

const PASSWORD: &str = "s3cret-pw";

fn config(url: &str, prefix: &str, ca_file: Option<PathBuf>) -> Config {
    demo_config(|c| {
        use_redis(c, vec![url.to_owned()], prefix, 2000);
        c.cluster.redis_tls_ca_file = ca_file;
    })
}

/// Takes about 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_password_and_a_private_authority() {
    let ca = TestCa::new();
    let ca_file = ca.path("redis-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("writes the CA");
    let redis = RedisServer::start_tls(&ca, PASSWORD);
    let url = redis.url();
    assert!(url.starts_with("rediss://:s3cret-pw@"), "{url}");
    let prefix = unique_prefix("tls");

    // Without the authority (the system's roots do not know it), or with a wrong password,
    // the node does not start: TLS and the password are really in force.
    let wrong = url.replace(PASSWORD, "wrong");
    let (untrusted, unauthorized) = tokio::join!(
        try_start(config(&url, &prefix, None)),
        try_start(config(&wrong, &prefix, Some(ca_file.clone()))),
    );
    let untrusted = untrusted
        .err()
        .expect("an untrusted certificate is refused");
    let unauthorized = unauthorized.err().expect("a wrong password is refused");
    let (untrusted, unauthorized) = (format!("{untrusted:#}"), format!("{unauthorized:#}"));
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
    assert!(unauthorized.contains("WRONGPASS"), "{unauthorized}");
    assert!(
        !unauthorized.contains("wrong@"),
        "the password is not shown: {unauthorized}"
    );

    let a = try_start(config(&url, &prefix, Some(ca_file.clone())))
        .await
        .expect("starts");
    let b = try_start(config(&url, &prefix, Some(ca_file)))
        .await
        .expect("starts");
    let mut alice = connect(&a).await;
    alice
        .subscribed("presence-tls", Some(&presence_data(json!("alice"), None)))
        .await;
    let mut bob = connect(&b).await;
    bob.subscribed("presence-tls", Some(&presence_data(json!("bob"), None)))
        .await;
    alice.next_event("pusher_internal:member_added", WAIT).await;
    let r = api_post(
        &a,
        "/apps/app-id/events",
        json!({"name":"e","channel":"presence-tls","data":"over tls"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bob.next_event("e", WAIT).await["data"], "over tls");
    let users = api_get(&b, "/apps/app-id/channels/presence-tls/users", &[]).await;
    assert_eq!(
        users.json()["users"].as_array().map(Vec::len),
        Some(2),
        "{}",
        users.body
    );
}
