//! The configuration file's apps applied to a running server (what `SIGHUP` does, through
//! `Reloader`): added, changed, disabled and removed apps, with clients connected.

use std::time::Duration;

use warren_protocol::{AppId, AppKey};
use warren_server::config::{AppConfig, Config};
use warren_testkit::server::{demo_config, start_with};
use warren_testkit::ws::{self, close_code, connect, PUSHER_JS_QUERY};

fn app(id: &str, key: &str) -> AppConfig {
    AppConfig::new(
        AppId::parse(id).unwrap(),
        AppKey::parse(key).unwrap(),
        "s3cret",
    )
}

#[tokio::test]
async fn reloaded_apps_apply_at_once_and_close_what_they_retire() {
    let with_second = |c: &mut Config| c.apps.push(app("second", "second-key"));
    let node = start_with(with_second).await;
    let mut demo = connect(&node).await;
    demo.subscribed("news", None).await;
    let path = |key: &str| format!("/app/{key}?{PUSHER_JS_QUERY}");
    let mut second = ws::established(ws::raw(&node, &path("second-key")).await).await;

    // The second app removed, a third added, a server key changed: the first two apply now,
    // the last is reported and keeps its running value.
    let next = demo_config(|c| {
        c.apps.push(app("third", "third-key"));
        c.server.activity_timeout = 7;
    });
    let report = node.reloader().reload(next.clone());
    let change = report.apps.expect("the apps come from the file");
    assert_eq!(change.removed, [AppId::parse("second").unwrap()]);
    assert_eq!(change.added, [AppId::parse("third").unwrap()]);
    assert_eq!(report.needs_restart, ["server.activity_timeout"]);
    assert_eq!(close_code(&mut second.ws).await, Some(4001));
    let mut refused = ws::raw(&node, &path("second-key")).await;
    ws::expect_refusal(&mut refused, 4001).await;
    let third = ws::established(ws::raw(&node, &path("third-key")).await).await;
    demo.assert_silent().await;
    drop(third);

    // Disabled: its connections close with 4003, and new ones are refused.
    let mut disabled = next;
    disabled.apps[0].enabled = false;
    let report = node.reloader().reload(disabled);
    assert_eq!(report.apps.unwrap().disabled.len(), 1);
    assert_eq!(close_code(&mut demo.ws).await, Some(4003));
    let mut refused = ws::raw(&node, &path(warren_testkit::KEY)).await;
    ws::expect_refusal(&mut refused, 4003).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
