//! One endpoint's delivery: its own queue and task, so a slow or dead endpoint holds up
//! nobody else. Events are batched (`batch_max` / `batch_window_ms`); each request is signed
//! afresh (its `time_ms` is when it is sent, so a late retry is not refused as stale) and a
//! failure (not 2xx, or no answer within `timeout_ms`) is retried with exponential backoff and
//! jitter until `retry_for_secs` have passed since the first try; then the batch is dropped
//! with a warning and counted.
//!
//! Up to `requests_in_flight` batches are under way at once: one at a time, a request's round
//! trip and not the endpoint's capacity would bound the rate. So batches are not promised to
//! arrive in the order they were taken, as with several nodes they never were.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::event::body;
use super::queue::{Pending, Queue};
use crate::config::{WebhookConfig, WebhooksConfig};

/// The first retry waits about this long; each next one twice as long as the one before.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// No retry waits longer than this.
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// Counters of one endpoint, shared with whoever reports them.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub delivered: AtomicU64,
    /// Given up on after `retry_for_secs`.
    pub given_up: AtomicU64,
    /// Refused because the endpoint's queue was full.
    pub queue_full: AtomicU64,
}

/// Told of every request sent (the monitor's `webhook_sent`); set by the server.
pub(crate) type Observer = Arc<dyn Fn(&Attempt<'_>) + Send + Sync>;

/// One request to an endpoint and how it went.
pub(crate) struct Attempt<'a> {
    pub app: &'a str,
    pub url: &'a str,
    pub batch: &'a [Pending],
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub error: Option<&'a str>,
}

/// The current secret of an app, by id: a rotated secret signs the next request (the server
/// passes its registry's lookup; `None` from it keeps the secret the endpoint started with).
pub(crate) type CurrentSecret = Arc<dyn Fn(&str) -> Option<Arc<str>> + Send + Sync>;

/// Who the requests say they come from and what they carry besides the events: the app's key
/// and secret and the endpoint's own headers. Replaced whole when the app changes, while the
/// endpoint's task and queue go on (`fleet`).
pub(crate) struct Signing {
    pub key: String,
    pub secret: String,
    pub headers: HeaderMap,
}

impl Signing {
    /// `config` was validated: its headers parse.
    pub(crate) fn new(config: &WebhookConfig, key: &str, secret: &str) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        Ok(Signing {
            key: key.to_owned(),
            secret: secret.to_owned(),
            headers,
        })
    }
}

/// What an endpoint's task needs to send.
pub(crate) struct Endpoint {
    pub app: String,
    pub observer: Option<Observer>,
    pub current_secret: Option<CurrentSecret>,
    pub url: reqwest::Url,
    pub signing: Arc<ArcSwap<Signing>>,
    pub client: reqwest::Client,
    pub batch_max: usize,
    pub batch_window: Duration,
    pub requests_in_flight: usize,
    pub retry_for: Duration,
    pub stats: Arc<Stats>,
}

impl Endpoint {
    /// `config` was validated: its URL parses.
    pub(crate) fn new(
        config: &WebhookConfig,
        settings: &WebhooksConfig,
        signing: Arc<ArcSwap<Signing>>,
        client: reqwest::Client,
    ) -> anyhow::Result<Self> {
        Ok(Endpoint {
            app: String::new(),
            observer: None,
            current_secret: None,
            url: reqwest::Url::parse(&config.url)?,
            signing,
            client,
            batch_max: settings.batch_max.max(1),
            batch_window: Duration::from_millis(settings.batch_window_ms),
            requests_in_flight: settings.requests_in_flight.max(1),
            retry_for: Duration::from_secs(settings.retry_for_secs),
            stats: Arc::default(),
        })
    }

    /// Sends what `queue` holds, up to `requests_in_flight` batches at once, until it closes
    /// (then finishes what is under way) or `stop`'s sender is dropped (the endpoint was
    /// removed). Batches being sent then are left to their queue: a shared or spooled queue
    /// keeps them (and sends them if the endpoint comes back), memory forgets them.
    pub(crate) async fn run(self, queue: Arc<dyn Queue>, mut stop: watch::Receiver<()>) {
        let stopped = async move { while stop.changed().await.is_ok() {} };
        tokio::pin!(stopped);
        let me = Arc::new(self);
        // Dropped on the way out, which aborts what is still being sent.
        let mut sending = JoinSet::new();
        loop {
            while sending.len() >= me.requests_in_flight {
                tokio::select! {
                    _ = sending.join_next() => {}
                    _ = &mut stopped => return,
                }
            }
            let batch = tokio::select! {
                batch = queue.take(me.batch_max, me.batch_window) => batch,
                _ = &mut stopped => return,
            };
            let Some(batch) = batch else { break };
            sending.spawn(me.clone().send(queue.clone(), batch));
        }
        loop {
            tokio::select! {
                more = sending.join_next() => if more.is_none() { return },
                _ = &mut stopped => return,
            }
        }
    }

    /// Delivers one batch (or gives up on it), then takes it off the queue. A shared queue is
    /// told meanwhile that this node is still at it; the others never are (an hour's tick
    /// that never fires).
    async fn send(self: Arc<Self>, queue: Arc<dyn Queue>, batch: Vec<Pending>) {
        let delivery = self.deliver(&batch);
        tokio::pin!(delivery);
        let keep_every = queue.keep_every();
        let mut ticks = tokio::time::interval(keep_every.unwrap_or(Duration::from_secs(3600)));
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = &mut delivery => break,
                _ = ticks.tick(), if keep_every.is_some() => queue.keep(&batch).await,
            }
        }
        queue.done(&batch).await;
    }

    /// Sends one batch until it is accepted or `retry_for` has passed.
    async fn deliver(&self, batch: &[Pending]) {
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            let outcome = self.post(batch).await;
            if let Some(observe) = &self.observer {
                let (status, error) = match &outcome {
                    Ok(status) => (Some(*status), None),
                    Err((status, why)) => (*status, Some(why.as_str())),
                };
                observe(&Attempt {
                    app: &self.app,
                    url: self.url.as_str(),
                    batch,
                    status,
                    error,
                });
            }
            let why = match outcome {
                Ok(_) => {
                    self.stats
                        .delivered
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err((_, why)) => why,
            };
            failures += 1;
            let wait = backoff(failures, &mut rand::thread_rng());
            if started.elapsed() + wait > self.retry_for {
                let total = self
                    .stats
                    .given_up
                    .fetch_add(batch.len() as u64, Ordering::Relaxed)
                    + batch.len() as u64;
                tracing::warn!(url = %self.url, events = batch.len(), dropped_total = total,
                    error = %why, "webhooks dropped: endpoint failed for retry_for_secs");
                return;
            }
            tracing::debug!(url = %self.url, error = %why, ?wait, "webhook failed; will retry");
            tokio::time::sleep(wait).await;
        }
    }

    /// One request: `Ok` with the status of a 2xx answer; otherwise the status (if an answer
    /// came) and why.
    async fn post(&self, batch: &[Pending]) -> Result<u16, (Option<u16>, String)> {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let body = body(time_ms, batch.iter().map(|p| &*p.json));
        let signing = self.signing.load_full();
        let current = self.current_secret.as_ref().and_then(|f| f(&self.app));
        let secret = current.as_deref().unwrap_or(&signing.secret);
        let signature = warren_protocol::auth::sign_webhook(secret, body.as_bytes());
        let ids = batch.iter().map(|p| &*p.id).collect::<Vec<_>>().join(",");
        let answer = self
            .client
            .post(self.url.clone())
            .header("X-Pusher-Key", &signing.key)
            .header("X-Pusher-Signature", signature)
            .header(CONTENT_TYPE, "application/json")
            .header("X-Warren-Webhook-Id", ids)
            .headers(signing.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| (None, e.to_string()))?;
        match answer.status() {
            s if s.is_success() => Ok(s.as_u16()),
            s => Err((Some(s.as_u16()), format!("answered {s}"))),
        }
    }
}

/// How long to wait after the `failures`-th failure in a row: doubling from [`FIRST_RETRY`] up
/// to [`LONGEST_RETRY`], then a random point in its upper half, so that endpoints (and nodes)
/// that failed together do not retry together.
pub(crate) fn backoff(failures: u32, rng: &mut impl Rng) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let full = FIRST_RETRY
        .saturating_mul(1 << doublings)
        .min(LONGEST_RETRY);
    rng.gen_range(full / 2..=full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_cap() {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let first = backoff(1, &mut rng);
            assert!(
                first >= FIRST_RETRY / 2 && first <= FIRST_RETRY,
                "{first:?}"
            );
            let third = backoff(3, &mut rng);
            assert!(
                third >= FIRST_RETRY * 2 && third <= FIRST_RETRY * 4,
                "{third:?}"
            );
            let late = backoff(40, &mut rng);
            assert!(
                late >= LONGEST_RETRY / 2 && late <= LONGEST_RETRY,
                "{late:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| backoff(5, &mut rng)).collect();
        assert!(spread.len() > 1, "jittered");
    }
}
