//! TLS to the apps' database: a PostgreSQL of the test's own that offers TLS under a
//! certificate from an authority the test made, then lets TCP clients in over TLS only. With
//! `sslmode=require` and that authority (`apps_source.tls_ca_file`) a node reads its apps and
//! `warren apps` manages them; another authority, the system's roots, or an address the
//! certificate does not name are refused, and so is a plain connection (`disable`, `prefer`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Map;
use warren_server::apps_source::admin::Admin;
use warren_server::config::Config;
use warren_testkit::http::http;
use warren_testkit::postgres::{PostgresServer, TestDatabase};
use warren_testkit::server::{start_with, TestServer};
use warren_testkit::tls::TestCa;
use warren_testkit::ws::connect;
use warren_testkit::{APP_ID, KEY, SECRET, WAIT};

use crate::apps_postgres::{from_database, ready, sample, wait_source_up};

/// `url` with `sslmode`, read through `ca_file` when given.
fn source(config: &mut Config, url: &str, sslmode: &str, ca_file: Option<&Path>) {
    from_database(config, &format!("{url}?sslmode={sslmode}"), 30);
    config.apps_source.tls_ca_file = ca_file.map(Path::to_path_buf);
}

/// `warren apps`' connection with these settings: the error's text when it is refused.
async fn admin(url: &str, sslmode: &str, ca_file: Option<&Path>) -> Result<Admin, String> {
    let mut config = Config::default();
    source(&mut config, url, sslmode, ca_file);
    Admin::connect(&config.apps_source)
        .await
        .map_err(|e| e.to_string())
}

fn refused(result: Result<Admin, String>) -> String {
    match result {
        Ok(_) => panic!("the connection was let in"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified_against_the_configured_authority() {
    let ca = TestCa::new();
    let pg = PostgresServer::start_tls(&ca);
    let db = TestDatabase::create_on(&pg.url());
    // The default (`prefer`) is plain, as before: it works while plain is allowed.
    admin(db.url(), "prefer", None)
        .await
        .expect("plain connects")
        .add(APP_ID, KEY, SECRET, Map::new())
        .await
        .expect("app added");
    pg.require_tls();
    let ca_file = ca.path("pg-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("writes the CA");
    let stranger = TestCa::new();
    let stranger_file = stranger.path("other-ca.pem");
    std::fs::write(&stranger_file, stranger.pem()).expect("writes the other CA");

    // Plain is refused by the server: `disable`, and `prefer`, which Warren keeps plain.
    for mode in ["disable", "prefer"] {
        let e = refused(admin(db.url(), mode, None).await);
        assert!(e.contains("no pg_hba.conf entry"), "{mode}: {e}");
        assert!(e.contains("no encryption"), "{mode}: {e}");
    }
    // TLS whose certificate does not check out is refused by Warren, saying why.
    // (Both authorities have the same name: rustls finds the "issuer" and its signature fails.)
    let e = refused(admin(db.url(), "require", Some(&stranger_file)).await);
    assert!(e.contains("invalid peer certificate: BadSignature"), "{e}");
    let e = refused(admin(db.url(), "require", None).await);
    assert!(e.contains("UnknownIssuer"), "the system's roots: {e}");
    let elsewhere = db.url().replace("127.0.0.1", "127.0.0.2");
    let e = refused(admin(&elsewhere, "require", Some(&ca_file)).await);
    assert!(
        e.contains("certificate not valid for name \"127.0.0.2\""),
        "{e}"
    );

    // With the authority: `warren apps` sees the app, and a node serves it.
    let listed = admin(db.url(), "require", Some(&ca_file))
        .await
        .expect("TLS connects")
        .list()
        .await
        .expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, APP_ID);
    let node = start_with(|c| {
        source(c, db.url(), "require", Some(&ca_file));
        c.metrics.enabled = true;
        c.metrics.port = 0;
    })
    .await;
    ready(&node).await;
    wait_source_up(&node, 1.0).await;
    connect(&node).await;
}

/// A node whose database's certificate is not from the authority it trusts gets no apps:
/// it keeps failing, and `/ready` stays 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_verify_the_database_serves_no_apps() {
    let ca = TestCa::new();
    let pg = PostgresServer::start_tls(&ca);
    let db = TestDatabase::create_on(&pg.url());
    admin(db.url(), "disable", None)
        .await
        .expect("plain connects")
        .add(APP_ID, KEY, SECRET, Map::new())
        .await
        .expect("app added");
    let stranger = TestCa::new();
    let stranger_file = stranger.path("other-ca.pem");
    std::fs::write(&stranger_file, stranger.pem()).expect("writes the other CA");
    let node = start_with(|c| {
        source(c, db.url(), "require", Some(&stranger_file));
        c.metrics.enabled = true;
        c.metrics.port = 0;
    })
    .await;
    let failures = "warren_apps_source_failures_total{";
    wait_for(&node, failures, |n| n >= 2.0).await;
    assert_eq!(sample(&node, "warren_apps_source_up{").await, Some(0.0));
    assert_eq!(http(&node, "GET", "/ready", "").await.status, 503);
}

/// Waits until the metric line starting with `prefix` has a value that `wanted` accepts.
async fn wait_for(node: &TestServer, prefix: &str, wanted: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !sample(node, prefix).await.is_some_and(&wanted) {
        assert!(Instant::now() < deadline, "{prefix} never as wanted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
