//! Parts of start-up that need a word of their own: which apps get webhook endpoints, and
//! what the monitor hears of webhook requests.

use std::sync::Arc;
use std::time::Duration;

use crate::app::AppRegistry;
use crate::config::{AppsBackend, Config};
use crate::monitor::{self, Monitor};
use crate::webhooks;

/// How long a node whose apps come from PostgreSQL waits at start for the first read before it
/// builds its webhook endpoints (the apps read by then are the ones that get endpoints).
const FIRST_READ_FOR_WEBHOOKS: Duration = Duration::from_secs(5);

/// The configuration whose apps' webhook endpoints the node builds: the file's, or (apps from
/// PostgreSQL) those of the first read, waited for a little.
pub(super) async fn webhook_apps(config: &Config, apps: &dyn AppRegistry) -> Config {
    if config.apps_source.backend == AppsBackend::Config {
        return config.clone();
    }
    let deadline = tokio::time::Instant::now() + FIRST_READ_FOR_WEBHOOKS;
    while !apps.is_ready() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !apps.is_ready() {
        tracing::warn!("apps not read yet: this node sends no webhooks until it restarts");
    }
    let mut config = config.clone();
    config.apps = apps
        .all()
        .iter()
        .map(|app| app.settings().clone())
        .collect();
    config
}

/// Reports every webhook request to the monitor (built only while somebody watches).
pub(super) fn webhook_observer(monitor: Arc<Monitor>) -> webhooks::Observer {
    Arc::new(move |attempt: &webhooks::Attempt<'_>| {
        monitor.emit(attempt.app, || monitor::EventKind::WebhookSent {
            url: attempt.url.to_owned(),
            events: attempt
                .batch
                .iter()
                .filter_map(|p| serde_json::from_str::<serde_json::Value>(&p.json).ok())
                .filter_map(|v| v["name"].as_str().map(str::to_owned))
                .collect(),
            status: attempt.status,
            error: attempt.error.map(str::to_owned),
        })
    })
}
