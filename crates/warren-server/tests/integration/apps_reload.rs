//! The configuration file's apps applied to a running server (what `SIGHUP` does, through
//! `Reloader`): added, changed, disabled and removed apps, with clients connected.

use std::time::{Duration, Instant};

use warren_protocol::{AppId, AppKey};
use warren_server::config::{AppConfig, Config, WebhookConfig, WebhookEventType};
use warren_testkit::server::{demo_app, demo_config, start_with};
use warren_testkit::webhooks::{Delivery, Receiver};
use warren_testkit::ws::{self, close_code, connect, Socket, PUSHER_JS_QUERY};
use warren_testkit::WAIT;

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

/// The demo app with one endpoint at `url` for `channel_occupied`, sending `X-Custom: custom`.
fn hooked_at(url: &str, custom: &str) -> Config {
    demo_config(|c| {
        let mut hook = WebhookConfig::new(url);
        hook.event_types = Some(vec![WebhookEventType::ChannelOccupied]);
        hook.headers.insert("X-Custom".into(), custom.into());
        demo_app(c).webhooks = vec![hook];
        c.webhooks.batch_window_ms = 0;
    })
}

/// Occupies channel after channel (`next` numbers them) until `r` gets a request that `wanted`
/// accepts, and returns it with the name of the channel it was for. A change applied by a reload
/// reaches the endpoints a moment after `reload` returns; this waits for that moment.
pub(crate) async fn occupy_until(
    client: &mut Socket,
    next: &mut u32,
    r: &mut Receiver,
    wanted: impl Fn(&Delivery) -> bool,
) -> (Delivery, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no such webhook request came");
        *next += 1;
        client.subscribed(&format!("room-{next}"), None).await;
        while let Some(d) = r.next_or_silence(Duration::from_millis(100)).await {
            if wanted(&d) {
                let channel = d.events()[0]["channel"].as_str().unwrap_or("").to_owned();
                return (d, channel);
            }
        }
    }
}

#[tokio::test]
async fn reloaded_webhook_endpoints_apply_at_once() {
    let (mut first, mut second) = (Receiver::start().await, Receiver::start().await);
    // `[webhooks]` itself needs a restart; the apps' endpoints do not.
    let node = start_with(|c| c.webhooks.batch_window_ms = 0).await;
    let mut client = connect(&node).await;
    let mut next = 0;

    // Added: the endpoint starts without a restart.
    let report = node.reloader().reload(hooked_at(&first.url, "one"));
    assert_eq!(report.needs_restart, Vec::<String>::new());
    let (d, _) = occupy_until(&mut client, &mut next, &mut first, |_| true).await;
    assert_eq!(d.header("x-custom"), Some("one"));

    // Changed: the same endpoint (its queue and task) sends the new header from then on.
    node.reloader().reload(hooked_at(&first.url, "two"));
    let two = |d: &Delivery| d.header("x-custom") == Some("two");
    occupy_until(&mut client, &mut next, &mut first, two).await;

    // Moved to another URL: once the new one hears of a channel, the old one hears of no
    // later channel (both change in one step).
    node.reloader().reload(hooked_at(&second.url, "three"));
    let (_, moved_at) = occupy_until(&mut client, &mut next, &mut second, |_| true).await;
    let moved_at: u32 = moved_at.trim_start_matches("room-").parse().unwrap();
    client.subscribed("room-last", None).await;
    let last = second.next().await;
    assert_eq!(last.events()[0]["channel"], "room-last");
    while let Some(d) = first.next_or_silence(Duration::from_millis(300)).await {
        for event in d.events() {
            let channel = event["channel"].as_str().unwrap_or_default();
            let n: u32 = channel
                .trim_start_matches("room-")
                .parse()
                .unwrap_or(u32::MAX);
            assert!(n < moved_at, "the removed endpoint heard of {channel}");
        }
    }
}
