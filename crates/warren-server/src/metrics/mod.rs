//! Prometheus metrics: what the node counts while it works, kept by the `metrics` crate's
//! recorder from `metrics-exporter-prometheus`, which renders the Prometheus text format.
//! The catalogue of names is [`catalogue`]; the listener that serves them and the values
//! read only when scraped (channels, subscriptions, the cluster backend, webhooks, the
//! `/health` counters) are in `crate::scrape`.
//!
//! Each server has a recorder of its own (never the process-wide one), so servers embedded
//! side by side, as the tests run them, count apart. With `[metrics] enabled = false` (the
//! default) [`Metrics`] is empty: every call is one branch, and no clock is read.
//!
//! The delivery path pays for the rest as little as it can: counts per app are added once
//! per event (not per subscriber) by `node::delivery`, and the delivery latency is one clock
//! read and one observation per socket write, not per frame (see [`Stamp`]).
//!
//! INVARIANT(bounded-labels): a label is an app id (only of apps that exist: events,
//! connections and API requests of unknown apps are refused before they are counted), a
//! reason, code or endpoint from a fixed set, never a channel, a socket or a user.

pub mod catalogue;
mod stamp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use parking_lot::RwLock;
use warren_protocol::{AppId, ErrorCode};

use catalogue::{Def, Kind};
pub(crate) use stamp::Stamp;

/// Buckets of the delivery latency histogram, in seconds: 100 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Buckets of the API request duration histogram, in seconds.
const API_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

/// Where an event came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Api,
    Client,
}

/// A rate limit that refused something.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Client (and custom) events per connection per second (`pusher:error` 4301).
    ClientEvents,
    /// Subscribes per connection per second (`subscription_error` 429).
    Subscriptions,
}

/// How a WebSocket connection ended, as the `reason` label says it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ended {
    ClientClosed,
    ClientGone,
    WriteFailed,
    /// The server closed it with this code.
    ServerClosed(u16),
}

/// This server's metrics; cheap to clone; empty when metrics are off.
#[derive(Clone, Default)]
pub(crate) struct Metrics(Option<Arc<Recorded>>);

struct Recorded {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    apps: RwLock<HashMap<AppId, Arc<AppMetrics>>>,
    latency: Histogram,
}

/// One app's handles, made once when the app is first counted.
pub(crate) struct AppMetrics {
    connections: Gauge,
    opened: Counter,
    messages_received: Counter,
    received_bytes: Counter,
    messages_sent: Counter,
    sent_bytes: Counter,
    published_api: Counter,
    published_client: Counter,
    slow_consumer_closes: Counter,
    rate_client_events: Counter,
    rate_subscriptions: Counter,
    channels: Gauge,
    subscriptions: Gauge,
}

/// The delivery latency histogram, for the connections' sockets.
#[derive(Clone, Default)]
pub(crate) struct DeliveryLatency(Option<Histogram>);

impl DeliveryLatency {
    /// Observes the time since `stamp`, if there is one.
    pub(crate) fn record(&self, stamp: Stamp) {
        if let (Some(h), Some(secs)) = (&self.0, stamp.elapsed_secs()) {
            h.record(secs);
        }
    }
}

impl Metrics {
    /// A recorder of this server's own, or nothing when `enabled` is false.
    pub(crate) fn new(enabled: bool) -> Self {
        if !enabled {
            return Metrics(None);
        }
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(catalogue::DELIVERY_LATENCY.name.into()),
                LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(catalogue::API_REQUEST_DURATION.name.into()),
                    API_BUCKETS,
                )
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        for def in catalogue::ALL {
            let (name, help) = (def.name.into(), SharedString::const_str(def.help));
            match def.kind {
                Kind::Counter => recorder.describe_counter(name, None, help),
                Kind::Gauge => recorder.describe_gauge(name, None, help),
                Kind::Histogram => recorder.describe_histogram(name, None, help),
            }
        }
        let handle = recorder.handle();
        let latency =
            recorder.register_histogram(&key(&catalogue::DELIVERY_LATENCY, Vec::new()), &METADATA);
        let version = Label::new("version", env!("CARGO_PKG_VERSION"));
        let info = key(&catalogue::BUILD_INFO, vec![version]);
        recorder.register_gauge(&info, &METADATA).set(1.0);
        Metrics(Some(Arc::new(Recorded {
            recorder,
            handle,
            apps: RwLock::default(),
            latency,
        })))
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Now, when metrics are on: the publish time an event carries to the socket write.
    pub(crate) fn stamp(&self) -> Stamp {
        if self.is_enabled() {
            Stamp::now()
        } else {
            Stamp::NONE
        }
    }

    /// The histogram the sockets record delivery latency into.
    pub(crate) fn delivery_latency(&self) -> DeliveryLatency {
        DeliveryLatency(self.0.as_ref().map(|r| r.latency.clone()))
    }

    /// The app's handles (made on first use); `None` when metrics are off.
    fn app(&self, app: &AppId) -> Option<Arc<AppMetrics>> {
        let r = self.0.as_ref()?;
        if let Some(found) = r.apps.read().get(app) {
            return Some(found.clone());
        }
        let made = Arc::new(AppMetrics::new(&r.recorder, app));
        Some(r.apps.write().entry(app.clone()).or_insert(made).clone())
    }

    /// An event was handed to `subscribers` connections as a frame of `frame_len` bytes.
    pub(crate) fn delivered(&self, app: &AppId, subscribers: usize, frame_len: usize) {
        if subscribers == 0 {
            return;
        }
        if let Some(a) = self.app(app) {
            a.messages_sent.increment(subscribers as u64);
            a.sent_bytes
                .increment(subscribers.saturating_mul(frame_len) as u64);
        }
    }

    /// A client sent a text message of `len` bytes.
    pub(crate) fn received(&self, app: &AppId, len: usize) {
        if let Some(a) = self.app(app) {
            a.messages_received.increment(1);
            a.received_bytes.increment(len as u64);
        }
    }

    /// An event was published (to one channel).
    pub(crate) fn published(&self, app: &AppId, source: Source) {
        if let Some(a) = self.app(app) {
            match source {
                Source::Api => a.published_api.increment(1),
                Source::Client => a.published_client.increment(1),
            }
        }
    }

    /// A connection was admitted.
    pub(crate) fn opened(&self, app: &AppId) {
        if let Some(a) = self.app(app) {
            a.opened.increment(1);
            a.connections.increment(1.0);
        }
    }

    /// An admitted connection ended.
    pub(crate) fn closed(&self, app: &AppId, how: Ended) {
        let (Some(r), Some(a)) = (&self.0, self.app(app)) else {
            return;
        };
        a.connections.decrement(1.0);
        let (reason, code) = match how {
            Ended::ClientClosed => ("client_closed", String::new()),
            Ended::ClientGone => ("client_gone", String::new()),
            Ended::WriteFailed => ("write_failed", String::new()),
            Ended::ServerClosed(code) => ("server_closed", code.to_string()),
        };
        if let Ended::ServerClosed(code) = how {
            if code == ErrorCode::OverCapacity.code() {
                a.slow_consumer_closes.increment(1);
            }
        }
        let labels = vec![
            Label::new("app_id", app.to_string()),
            Label::new("reason", reason),
            Label::new("code", code),
        ];
        counter(&r.recorder, &catalogue::CONNECTIONS_CLOSED, labels).increment(1);
    }

    /// A WebSocket upgrade was refused before a connection existed; `reason` is one of a
    /// fixed set of names.
    pub(crate) fn refused(&self, reason: &'static str) {
        if let Some(r) = &self.0 {
            let labels = vec![Label::new("reason", reason)];
            counter(&r.recorder, &catalogue::CONNECTIONS_REFUSED, labels).increment(1);
        }
    }

    /// A connection or an upgrade waits for its turn in the node's inbound budget.
    pub(crate) fn inbound_paced(&self) {
        if let Some(r) = &self.0 {
            counter(&r.recorder, &catalogue::INBOUND_PACED, Vec::new()).increment(1);
        }
    }

    /// A rate limit refused something of the app.
    pub(crate) fn rate_limited(&self, app: &AppId, limit: Limit) {
        if let Some(a) = self.app(app) {
            match limit {
                Limit::ClientEvents => a.rate_client_events.increment(1),
                Limit::Subscriptions => a.rate_subscriptions.increment(1),
            }
        }
    }

    /// An HTTP API request was answered. `app` is `None` unless it names an existing app.
    pub(crate) fn api_request(
        &self,
        app: Option<&AppId>,
        endpoint: &'static str,
        status: u16,
        took: Duration,
    ) {
        let Some(r) = &self.0 else { return };
        let app = app.map_or_else(|| "unknown".to_owned(), ToString::to_string);
        let labels = vec![
            Label::new("app_id", app),
            Label::new("endpoint", endpoint),
            Label::new("status", status.to_string()),
        ];
        counter(&r.recorder, &catalogue::API_REQUESTS, labels).increment(1);
        let labels = vec![Label::new("endpoint", endpoint)];
        let key = key(&catalogue::API_REQUEST_DURATION, labels);
        r.recorder
            .register_histogram(&key, &METADATA)
            .record(took.as_secs_f64());
    }

    /// Sets each app's channel and subscription gauges from a count of this node's hub; apps
    /// counted before and absent now are set to zero.
    pub(crate) fn set_census(&self, census: &HashMap<AppId, (usize, usize)>) {
        let Some(r) = &self.0 else { return };
        for app in census.keys() {
            self.app(app);
        }
        for (app, a) in r.apps.read().iter() {
            let (channels, subscriptions) = census.get(app).copied().unwrap_or_default();
            a.channels.set(channels as f64);
            a.subscriptions.set(subscriptions as f64);
        }
    }

    /// A counter to set from a count kept elsewhere (`Counter::absolute`), at a scrape.
    pub(crate) fn counter(&self, def: &Def, labels: &[(&'static str, String)]) -> Counter {
        match &self.0 {
            Some(r) => counter(&r.recorder, def, label_list(labels)),
            None => Counter::noop(),
        }
    }

    /// A gauge to set at a scrape.
    pub(crate) fn gauge(&self, def: &Def, labels: &[(&'static str, String)]) -> Gauge {
        match &self.0 {
            Some(r) => r
                .recorder
                .register_gauge(&key(def, label_list(labels)), &METADATA),
            None => Gauge::noop(),
        }
    }

    /// Everything, in the Prometheus text format (empty when metrics are off).
    pub(crate) fn render(&self) -> String {
        self.0
            .as_ref()
            .map_or_else(String::new, |r| r.handle.render())
    }

    /// Folds recorded histogram samples into their buckets, so that they take no memory
    /// between scrapes; run periodically.
    pub(crate) fn upkeep(&self) {
        if let Some(r) = &self.0 {
            r.handle.run_upkeep();
        }
    }
}

fn label_list(labels: &[(&'static str, String)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect()
}

fn counter(recorder: &PrometheusRecorder, def: &Def, labels: Vec<Label>) -> Counter {
    recorder.register_counter(&key(def, labels), &METADATA)
}

/// The key of one series of `def`, whose labels must be the catalogue's, in its order.
fn key(def: &Def, labels: Vec<Label>) -> Key {
    debug_assert!(
        labels.iter().map(Label::key).eq(def.labels.iter().copied()),
        "{}: labels {labels:?}, the catalogue says {:?}",
        def.name,
        def.labels
    );
    Key::from_parts(def.name, labels)
}

impl AppMetrics {
    fn new(recorder: &PrometheusRecorder, app: &AppId) -> Self {
        let id = || Label::new("app_id", app.to_string());
        let key = |def: &Def, more: &[(&'static str, &'static str)]| {
            let mut labels = vec![id()];
            labels.extend(more.iter().map(|(k, v)| Label::new(*k, *v)));
            key(def, labels)
        };
        let counter = |def: &Def, more| recorder.register_counter(&key(def, more), &METADATA);
        let gauge = |def: &Def| recorder.register_gauge(&key(def, &[]), &METADATA);
        use catalogue::*;
        AppMetrics {
            connections: gauge(&CONNECTIONS),
            opened: counter(&CONNECTIONS_OPENED, &[]),
            messages_received: counter(&MESSAGES_RECEIVED, &[]),
            received_bytes: counter(&RECEIVED_BYTES, &[]),
            messages_sent: counter(&MESSAGES_SENT, &[]),
            sent_bytes: counter(&SENT_BYTES, &[]),
            published_api: counter(&EVENTS_PUBLISHED, &[("source", "api")]),
            published_client: counter(&EVENTS_PUBLISHED, &[("source", "client")]),
            slow_consumer_closes: counter(&SLOW_CONSUMER_CLOSES, &[]),
            rate_client_events: counter(&RATE_LIMITED, &[("limit", "client_events")]),
            rate_subscriptions: counter(&RATE_LIMITED, &[("limit", "subscriptions")]),
            channels: gauge(&CHANNELS),
            subscriptions: gauge(&SUBSCRIPTIONS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppId {
        AppId::parse("a1").unwrap()
    }

    #[test]
    fn off_records_nothing_and_reads_no_clock() {
        let m = Metrics::new(false);
        m.opened(&app());
        m.delivered(&app(), 3, 10);
        assert_eq!(m.stamp(), Stamp::NONE);
        assert_eq!(m.render(), "");
    }

    #[test]
    fn counts_per_app_and_gauges_go_back_to_zero() {
        let m = Metrics::new(true);
        m.opened(&app());
        m.opened(&app());
        m.closed(&app(), Ended::ServerClosed(4100));
        m.delivered(&app(), 3, 10);
        m.set_census(&HashMap::from([(app(), (2, 5))]));
        let text = m.render();
        for line in [
            "warren_connections{app_id=\"a1\"} 1",
            "warren_connections_opened_total{app_id=\"a1\"} 2",
            "warren_connections_closed_total{app_id=\"a1\",reason=\"server_closed\",code=\"4100\"} 1",
            "warren_slow_consumer_closes_total{app_id=\"a1\"} 1",
            "warren_messages_sent_total{app_id=\"a1\"} 3",
            "warren_sent_bytes_total{app_id=\"a1\"} 30",
            "warren_channels{app_id=\"a1\"} 2",
            "warren_subscriptions{app_id=\"a1\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        m.set_census(&HashMap::new());
        let text = m.render();
        assert!(
            text.lines()
                .any(|l| l == "warren_channels{app_id=\"a1\"} 0"),
            "{text}"
        );
    }
}
