//! Parts of start-up that need a word of their own: what the monitor hears of webhook
//! requests.

use std::sync::Arc;

use crate::monitor::{self, Monitor};
use crate::webhooks;

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
