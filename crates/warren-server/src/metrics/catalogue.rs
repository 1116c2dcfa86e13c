//! Every metric Warren exports: name, type, labels and meaning, in one list. docs/METRICS.md
//! names each of them (a unit test checks it), and the recorder is described from it, so the
//! `# HELP` lines and the documentation cannot drift apart.
//!
//! Names follow Prometheus' conventions: the `warren_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` on counters. Labels are bounded: an app id (apps are configured), a
//! reason or code from a fixed set, an endpoint of the API; never a channel, a socket or a
//! user.

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! catalogue {
    ($($id:ident: $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(pub const $id: Def = Def {
            name: $name,
            kind: Kind::$kind,
            labels: &[$($label),*],
            help: $help,
        };)*
        /// Every metric, in the order of docs/METRICS.md.
        pub const ALL: &[Def] = &[$($id),*];
    };
}

catalogue! {
    BUILD_INFO: Gauge "warren_build_info" ["version"]
        "Always 1; the version of the running warren.";
    CONNECTIONS: Gauge "warren_connections" ["app_id"]
        "WebSocket connections open on this node.";
    CONNECTIONS_OPENED: Counter "warren_connections_opened_total" ["app_id"]
        "WebSocket connections admitted (connection_established sent).";
    CONNECTIONS_CLOSED: Counter "warren_connections_closed_total" ["app_id", "reason", "code"]
        "WebSocket connections ended, by reason (client_closed, client_gone, write_failed, server_closed) and, when the server closed, the close code.";
    CONNECTIONS_REFUSED: Counter "warren_connections_refused_total" ["reason"]
        "WebSocket upgrades refused before a connection existed, by reason.";
    INBOUND_PACED: Counter "warren_inbound_paced_total" []
        "Waits for a turn in the node's inbound budget (server.max_inbound_messages_per_sec): a connection not read for a while, or an upgrade answered a little later.";
    SUBSCRIPTIONS: Gauge "warren_subscriptions" ["app_id"]
        "Channel subscriptions of this node's connections.";
    CHANNELS: Gauge "warren_channels" ["app_id"]
        "Channels with at least one subscriber on this node (occupied here).";
    MESSAGES_RECEIVED: Counter "warren_messages_received_total" ["app_id"]
        "WebSocket text messages received from clients.";
    RECEIVED_BYTES: Counter "warren_received_bytes_total" ["app_id"]
        "Payload bytes of the WebSocket text messages received from clients.";
    MESSAGES_SENT: Counter "warren_messages_sent_total" ["app_id"]
        "Channel messages handed to connections: one per event and subscriber.";
    SENT_BYTES: Counter "warren_sent_bytes_total" ["app_id"]
        "Bytes (WebSocket frames) of the channel messages handed to connections.";
    EVENTS_PUBLISHED: Counter "warren_events_published_total" ["app_id", "source"]
        "Events published by this node, by source (api, client), one per channel.";
    API_REQUESTS: Counter "warren_api_requests_total" ["app_id", "endpoint", "status"]
        "HTTP API requests answered, by endpoint and status code.";
    API_REQUEST_DURATION: Histogram "warren_api_request_duration_seconds" ["endpoint"]
        "Time to answer an HTTP API request, by endpoint.";
    DELIVERY_LATENCY: Histogram "warren_delivery_latency_seconds" []
        "From the publish entering this node to the write of its frame to a socket (the oldest frame of each write).";
    SLOW_CONSUMER_CLOSES: Counter "warren_slow_consumer_closes_total" ["app_id"]
        "Connections closed (4100) because their outbound queue was full.";
    RATE_LIMITED: Counter "warren_rate_limited_total" ["app_id", "limit"]
        "Requests refused by a rate limit, by limit (client_events, subscriptions).";
    CLUSTER_UP: Gauge "warren_cluster_backend_up" ["backend"]
        "1 when the cluster backend answered the last scrape's check, else 0.";
    CLUSTER_RTT: Gauge "warren_cluster_rtt_seconds" ["backend"]
        "Round trip of one PING to the cluster backend, measured at the scrape.";
    CLUSTER_RECONNECTS: Counter "warren_cluster_reconnects_total" ["backend", "connection"]
        "Reconnections of the cluster backend's connections.";
    EVENT_LOSS_RESYNCS: Counter "warren_event_loss_resyncs_total" []
        "Times events may have been lost on the way to this node (the node resynced).";
    EVENT_LOSS_CLOSED: Counter "warren_event_loss_closed_connections_total" []
        "Connections closed with 4200 because events may have been lost.";
    WEBHOOK_QUEUE_DEPTH: Gauge "warren_webhook_queue_depth" ["app_id", "endpoint"]
        "Webhook events waiting for an endpoint (the index of the app's endpoint in the configuration).";
    WEBHOOK_EVENTS: Counter "warren_webhook_events_total" ["app_id", "endpoint", "outcome"]
        "Webhook events by outcome: delivered, given_up (failed for retry_for_secs), queue_full.";
    WEBHOOK_INTAKE_DROPPED: Counter "warren_webhook_intake_dropped_total" []
        "Webhook events dropped before routing because the node's intake was full.";
    APPS_SOURCE_UP: Gauge "warren_apps_source_up" ["backend"]
        "1 while the apps source (PostgreSQL) answers, else 0: the node serves the apps it read last.";
    APPS_SOURCE_FAILURES: Counter "warren_apps_source_failures_total" ["backend"]
        "Failed connections to, or reads of, the apps source.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions_and_are_documented() {
        let doc = include_str!("../../../../docs/METRICS.md");
        let mut seen = std::collections::HashSet::new();
        for def in ALL {
            assert!(seen.insert(def.name), "{} twice", def.name);
            assert!(def.name.starts_with("warren_"), "{}", def.name);
            assert_eq!(
                def.kind == Kind::Counter,
                def.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                def.name
            );
            assert!(
                doc.contains(&format!("`{}`", def.name)),
                "{} is not in docs/METRICS.md",
                def.name
            );
        }
    }

    /// Every query expression of a Grafana dashboard, wherever it sits.
    fn expressions(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => expressions(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
            _ => {}
        }
    }

    /// `deploy/grafana/warren.json` is a well-formed dashboard whose queries name only
    /// metrics that exist, and every metric has a panel.
    #[test]
    fn the_grafana_dashboard_uses_every_metric_and_no_other() {
        let text = include_str!("../../../../deploy/grafana/warren.json");
        let dashboard: serde_json::Value = serde_json::from_str(text).expect("well-formed JSON");
        assert!(dashboard["title"].is_string() && dashboard["panels"].is_array());
        let mut exprs = Vec::new();
        expressions(&dashboard, &mut exprs);
        let mut used = std::collections::HashSet::new();
        for expr in &exprs {
            for (i, _) in expr.match_indices("warren_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        let base = name.strip_suffix(suffix)?;
                        ALL.iter()
                            .any(|d| d.name == base && d.kind == Kind::Histogram)
                            .then_some(base)
                    })
                    .unwrap_or(&name);
                assert!(
                    ALL.iter().any(|d| d.name == base),
                    "the dashboard queries {name}, which does not exist: {expr}"
                );
                used.insert(base.to_owned());
            }
        }
        for def in ALL {
            assert!(used.contains(def.name), "no panel shows {}", def.name);
        }
    }
}
