//! Extension points that reach beyond one connection: HTTP API middlewares and `x-` routes
//! (the `tenant_quota` example) and custom broadcasts on one node and on two over Redis (the
//! `announce` example).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warren_server::Server;
use warren_testkit::api::{api_get, api_post};
use warren_testkit::http::http;
use warren_testkit::redis::{unique_prefix, use_shared_redis};
use warren_testkit::server::{demo_config, start_built};
use warren_testkit::WAIT;

#[allow(dead_code)]
#[path = "../../examples/announce.rs"]
mod announce;
#[allow(dead_code)]
#[path = "../../examples/tenant_quota.rs"]
mod tenant_quota;

fn event(n: u32) -> serde_json::Value {
    json!({"name": "e", "channel": "c", "data": n.to_string()})
}

#[tokio::test]
async fn tenant_quota_example_refuses_past_the_quota_and_reports_on_its_route() {
    let quota = tenant_quota::Quota::new(2);
    let server = start_built(tenant_quota::extend(
        Server::builder(demo_config(|_| {})),
        quota,
    ))
    .await;
    let path = format!("/apps/{}/events", warren_testkit::APP_ID);
    for n in 0..2 {
        assert_eq!(api_post(&server, &path, event(n)).await.status, 200);
    }
    let refused = api_post(&server, &path, event(3)).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body, "Quota of published events spent\n");
    // Queries are not publishes: the middleware lets them through.
    let channels = format!("/apps/{}/channels", warren_testkit::APP_ID);
    assert_eq!(api_get(&server, &channels, &[]).await.status, 200);

    let route = format!("/apps/{}/x-quota", warren_testkit::APP_ID);
    let report = api_get(&server, &route, &[]).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    assert_eq!(report["limit"], 2);
    assert_eq!(report["used"], 2);
    assert!(report["node"].as_str().is_some_and(|n| !n.is_empty()));

    // Routes are authenticated as the API is, and only registered names exist.
    assert_eq!(http(&server, "GET", &route, "").await.status, 401);
    let unknown = format!("/apps/{}/x-other", warren_testkit::APP_ID);
    assert_eq!(api_get(&server, &unknown, &[]).await.status, 404);
    assert_eq!(
        api_get(&server, "/apps/nope/x-quota", &[]).await.status,
        404
    );
}

/// Waits until `heard` holds `n` announcements, then a little longer for any extra one.
async fn heard_exactly(heard: &announce::Heard, n: usize) -> Vec<String> {
    let waited = tokio::time::timeout(WAIT, async {
        while heard.all().len() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "heard {:?}, expected {n}", heard.all());
    tokio::time::sleep(Duration::from_millis(300)).await;
    heard.all()
}

#[tokio::test]
async fn announce_example_reaches_this_node_once() {
    let heard = Arc::new(announce::Heard::default());
    let builder = announce::extend(Server::builder(demo_config(|_| {})), heard.clone());
    let server = start_built(builder).await;
    server
        .handle()
        .broadcast("announce", "hello")
        .await
        .unwrap();
    server
        .handle()
        .broadcast("other-type", "ignored")
        .await
        .unwrap();
    assert_eq!(heard_exactly(&heard, 1).await, vec!["hello".to_owned()]);
    let bad = server.handle().broadcast("not a type", "x").await;
    assert!(bad.is_err(), "{bad:?}");
}

#[tokio::test]
async fn announce_example_reaches_every_node_through_redis_once() {
    let prefix = unique_prefix("xb");
    let node = |heard: &Arc<announce::Heard>| {
        let config = demo_config(|c| use_shared_redis(c, prefix.clone(), 1000));
        announce::extend(Server::builder(config), heard.clone())
    };
    let (heard_a, heard_b) = (Arc::default(), Arc::default());
    let a = start_built(node(&heard_a)).await;
    let b = start_built(node(&heard_b)).await;
    // A third node without the handler: the broadcast passes it by.
    let config = demo_config(|c| use_shared_redis(c, prefix.clone(), 1000));
    let _plain = start_built(Server::builder(config)).await;

    a.handle().broadcast("announce", "from a").await.unwrap();
    assert_eq!(heard_exactly(&heard_a, 1).await, vec!["from a".to_owned()]);
    assert_eq!(heard_exactly(&heard_b, 1).await, vec!["from a".to_owned()]);
    b.handle()
        .broadcast("announce", vec![0xff_u8, 0])
        .await
        .unwrap();
    assert_eq!(heard_exactly(&heard_a, 2).await[1], "<binary>");
    assert_eq!(heard_exactly(&heard_b, 2).await[1], "<binary>");
}
