//! The metrics listener: `GET /metrics` on an address of its own (`[metrics]`), in the
//! Prometheus text format.
//!
//! Most metrics are counted where things happen (`crate::metrics`). What is cheaper to read
//! than to count is read here, at each scrape: channels and subscriptions per app (a walk of
//! this node's hub), the cluster backend's health (one PING, timed), the webhook queues and
//! their outcomes, and the counters `/health` reports. A scrape therefore costs the delivery
//! path nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::MetricsConfig;
use crate::metrics::catalogue::{self, Def};
use crate::metrics::Metrics;
use crate::node::Node;

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Histogram samples are folded into buckets this often even when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What a scrape reads.
pub(crate) struct Scrape {
    pub metrics: Metrics,
    pub node: Arc<Node>,
}

/// The listener bound, not yet serving.
pub(crate) struct MetricsListener {
    listener: TcpListener,
    scrape: Arc<Scrape>,
}

impl MetricsListener {
    /// Binds `[metrics] host:port` when metrics are enabled.
    pub(crate) async fn bind(
        config: &MetricsConfig,
        scrape: Scrape,
    ) -> anyhow::Result<Option<Self>> {
        if !config.enabled {
            return Ok(None);
        }
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        Ok(Some(MetricsListener {
            listener,
            scrape: Arc::new(scrape),
        }))
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` flips.
    pub(crate) async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let metrics = self.scrape.metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tick.tick().await;
                metrics.upkeep();
            }
        });
        let router = Router::new()
            .route("/metrics", get(scrape))
            .with_state(self.scrape);
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(self.listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
        upkeep.abort();
    }
}

async fn scrape(State(scrape): State<Arc<Scrape>>) -> impl IntoResponse {
    scrape.collect().await;
    ([(CONTENT_TYPE, TEXT_FORMAT)], scrape.metrics.render())
}

impl Scrape {
    /// Reads what is not counted as it happens into the recorder.
    async fn collect(&self) {
        let m = &self.metrics;
        m.set_census(&self.node.census());
        let (resyncs, closed) = self.node.lost_event_counts();
        m.counter(&catalogue::EVENT_LOSS_RESYNCS, &[])
            .absolute(resyncs);
        m.counter(&catalogue::EVENT_LOSS_CLOSED, &[])
            .absolute(closed);
        self.collect_backend().await;
        self.collect_webhooks().await;
    }

    async fn collect_backend(&self) {
        let m = &self.metrics;
        let health = self.node.check_backend_health().await;
        let backend = || vec![("backend", health.backend.to_owned())];
        let up = if health.up { 1.0 } else { 0.0 };
        m.gauge(&catalogue::CLUSTER_UP, &backend()).set(up);
        if let Some(rtt) = health.round_trip {
            m.gauge(&catalogue::CLUSTER_RTT, &backend())
                .set(rtt.as_secs_f64());
        }
        for (connection, n) in &health.reconnects {
            let mut labels = backend();
            labels.push(("connection", (*connection).to_owned()));
            m.counter(&catalogue::CLUSTER_RECONNECTS, &labels)
                .absolute(*n);
        }
    }

    async fn collect_webhooks(&self) {
        let m = &self.metrics;
        let (endpoints, intake_dropped) = self.node.webhooks().endpoints_report().await;
        if endpoints.is_empty() {
            return;
        }
        m.counter(&catalogue::WEBHOOK_INTAKE_DROPPED, &[])
            .absolute(intake_dropped);
        for e in endpoints {
            let labels = vec![
                ("app_id", e.app.to_string()),
                ("endpoint", e.index.to_string()),
            ];
            if let Some(depth) = e.depth {
                m.gauge(&catalogue::WEBHOOK_QUEUE_DEPTH, &labels)
                    .set(depth as f64);
            }
            let outcome = |def: &Def, outcome: &str, n: u64| {
                let mut labels = labels.clone();
                labels.push(("outcome", outcome.to_owned()));
                m.counter(def, &labels).absolute(n);
            };
            outcome(&catalogue::WEBHOOK_EVENTS, "delivered", e.delivered);
            outcome(&catalogue::WEBHOOK_EVENTS, "given_up", e.given_up);
            outcome(&catalogue::WEBHOOK_EVENTS, "queue_full", e.queue_full);
        }
    }
}
