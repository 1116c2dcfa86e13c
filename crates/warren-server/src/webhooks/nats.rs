//! Webhooks in a NATS cluster: endpoint queues in JetStream, removal markers in a bucket.
//!
//! Each endpoint's queue is a work-queue stream (`WARREN_<prefix>_WH_<endpoint>`, the same on
//! every node with the same configuration) read through one durable pull consumer by every
//! node. A node fetches what is there; an event is acknowledged (and so leaves the stream)
//! once delivered or given up on. One a node took and did not acknowledge within
//! `cluster.node_timeout_ms` is delivered again by JetStream to whichever node fetches next;
//! while a node works on a batch (its retries included) it reports progress every third of
//! that, so a live node's batch is never taken over and a dead node's is.
//!
//! Markers are JSON in the `warren_<prefix>_whm` bucket, removed by compare-and-set, so of a
//! return and a removal racing for one marker exactly one takes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::stream::{self, RetentionPolicy};
use async_nats::jetstream::{self as js, AckKind, Context};
use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use super::queue::{take_shared, waiting, Pending, Queue};
use super::removal::Markers;
use crate::cluster::nats::keys::{encode, Keys};
use crate::cluster::nats::kv::{self, Bucket, Value};
use crate::config::{NatsAuth, NatsTarget};

/// Every request's time limit.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle endpoint looks for events other nodes wrote this often.
const POLL: Duration = Duration::from_millis(250);
/// The header carrying an event's id.
const ID_HEADER: &str = "Warren-Webhook-Id";

/// Connects a client of its own (on the runtime this runs on).
pub(crate) async fn connect(target: &NatsTarget, auth: &NatsAuth) -> anyhow::Result<Context> {
    let options = auth
        .connect_options(target)
        .await
        .map_err(anyhow::Error::msg)?
        .connection_timeout(COMMAND_TIMEOUT)
        .request_timeout(Some(COMMAND_TIMEOUT));
    let client = tokio::time::timeout(COMMAND_TIMEOUT * 3, options.connect(target.addrs()))
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach NATS at {target} for webhooks: timed out"))??;
    Ok(js::new(client))
}

/// An endpoint's queue in JetStream.
pub(crate) struct NatsQueue {
    incoming: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
}

struct Shared {
    js: Context,
    subject: String,
    consumer: async_nats::jetstream::consumer::Consumer<pull::Config>,
    /// Taken and not yet acknowledged, by stream sequence (`Pending::entry`).
    held: Mutex<HashMap<Arc<str>, js::Message>>,
    written: Notify,
    ack_wait: Duration,
}

impl NatsQueue {
    /// Makes (or finds) the endpoint's stream and consumer, and starts the task that writes
    /// into the stream.
    pub(crate) async fn start(
        js: &Context,
        prefix: &str,
        name: &str,
        capacity: usize,
        ack_wait: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let token = format!("{}_WH_{}", encode(prefix), encode(name));
        let subject = format!("warren.{}.wh.{}", encode(prefix), encode(name));
        let stream = tokio::time::timeout(
            COMMAND_TIMEOUT,
            js.get_or_create_stream(stream::Config {
                name: format!("WARREN_{token}"),
                subjects: vec![subject.clone()],
                retention: RetentionPolicy::WorkQueue,
                max_messages: i64::try_from(capacity).unwrap_or(i64::MAX),
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| anyhow::anyhow!("webhook stream for {name}: timed out"))??;
        let consumer = tokio::time::timeout(
            COMMAND_TIMEOUT,
            stream.get_or_create_consumer(
                "senders",
                pull::Config {
                    durable_name: Some("senders".into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait,
                    ..Default::default()
                },
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("webhook consumer for {name}: timed out"))??;
        let (incoming, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared {
            js: js.clone(),
            subject,
            consumer,
            held: Mutex::default(),
            written: Notify::new(),
            ack_wait,
        });
        tokio::spawn(shared.clone().write(rx));
        Ok(Arc::new(NatsQueue { incoming, shared }))
    }
}

impl Shared {
    async fn write(self: Arc<Self>, mut rx: mpsc::Receiver<Pending>) {
        while let Some(event) = rx.recv().await {
            // Kept until JetStream took it: meanwhile new events wait in `incoming`, and
            // beyond its capacity are dropped.
            while let Err(e) = self.publish(&event).await {
                tracing::warn!(error = %e, "webhook not yet written to NATS; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            self.written.notify_one();
        }
    }

    async fn publish(&self, event: &Pending) -> anyhow::Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(ID_HEADER, &*event.id);
        let payload = bytes::Bytes::copy_from_slice(event.json.as_bytes());
        let subject = self.subject.clone();
        let ack = tokio::time::timeout(COMMAND_TIMEOUT, async {
            self.js
                .publish_with_headers(subject, headers, payload)
                .await?
                .await
        })
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))??;
        let _ = ack;
        Ok(())
    }

    /// What is there now, at most `max`, without waiting for more.
    async fn read(&self, max: usize) -> anyhow::Result<Vec<Pending>> {
        let mut messages = tokio::time::timeout(
            COMMAND_TIMEOUT,
            self.consumer.fetch().max_messages(max).messages(),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))??;
        let mut batch = Vec::new();
        while let Some(message) = tokio::time::timeout(COMMAND_TIMEOUT, messages.next())
            .await
            .ok()
            .flatten()
        {
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            let sequence = message
                .info()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .stream_sequence;
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(ID_HEADER))
                .map(|v| Arc::from(v.as_str()));
            let json = std::str::from_utf8(&message.payload).ok().map(Arc::from);
            let entry: Arc<str> = Arc::from(sequence.to_string());
            match (id, json) {
                (Some(id), Some(json)) => {
                    self.held.lock().insert(entry.clone(), message);
                    batch.push(Pending { id, json, entry });
                }
                // Not written by Warren: dropped.
                _ => {
                    let _ = message.ack().await;
                }
            }
        }
        Ok(batch)
    }

    async fn each(&self, batch: &[Pending], kind: AckKind, forget: bool) {
        for p in batch {
            let message = if forget {
                self.held.lock().remove(&p.entry)
            } else {
                self.held.lock().get(&p.entry).cloned()
            };
            if let Some(message) = message {
                if let Err(e) = message.ack_with(kind).await {
                    tracing::warn!(error = %e, "webhook queue not updated in NATS");
                }
            }
        }
    }
}

#[async_trait]
impl Queue for NatsQueue {
    fn push(&self, event: Pending) -> bool {
        self.incoming.try_send(event).is_ok()
    }

    async fn take(&self, max: usize, window: Duration) -> Option<Vec<Pending>> {
        let s = &self.shared;
        let read = |n| s.read(n);
        take_shared(read, &s.written, POLL, (max, window), "NATS").await
    }

    fn keep_every(&self) -> Option<Duration> {
        Some(self.shared.ack_wait / 3)
    }

    async fn keep(&self, batch: &[Pending]) {
        self.shared.each(batch, AckKind::Progress, false).await;
    }

    async fn done(&self, batch: &[Pending]) {
        self.shared.each(batch, AckKind::Ack, true).await;
    }

    /// What waits in the stream or is being sent (shared by every node), and what this node
    /// has yet to write to it.
    async fn depth(&self) -> Option<u64> {
        let info = tokio::time::timeout(COMMAND_TIMEOUT, self.shared.consumer.get_info())
            .await
            .ok()?
            .ok()?;
        let held = u64::try_from(info.num_ack_pending).unwrap_or(0);
        Some(info.num_pending + held + waiting(&self.incoming))
    }
}

/// A pending removal's marker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Marker {
    token: u64,
    /// When the removal was reported, Unix µs (absent, from an older node: 0).
    #[serde(default)]
    at_us: u64,
    /// Until when it counts, Unix ms.
    until_ms: u64,
}

impl Value for Marker {
    fn is_empty(&self) -> bool {
        false
    }
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Removal markers shared by the nodes: written by the removal, removed by compare-and-set
/// by a return or by the removal itself.
pub(crate) struct NatsMarkers {
    bucket: Bucket,
}

impl NatsMarkers {
    pub(crate) async fn open(js: &Context, prefix: &str) -> anyhow::Result<Self> {
        let name = Keys::new(prefix).bucket("whm");
        // Markers live no longer than a removal delay; a day bounds what a crash leaves.
        let bucket = kv::open(js, &name, Duration::from_secs(24 * 3600)).await?;
        Ok(NatsMarkers { bucket })
    }

    /// Removes the marker if `wanted` says so of the one there now; `None` when NATS could
    /// not say.
    async fn claim_if(&self, name: &str, wanted: impl Fn(&Marker) -> bool) -> Option<bool> {
        let key = encode(name);
        let (marker, revision) = self.bucket.read::<Marker>(&key).await.ok()?;
        match marker {
            Some(m) if m.until_ms > now_ms() && wanted(&m) => {
                self.bucket.delete_at(&key, revision).await.ok()
            }
            _ => Some(false),
        }
    }
}

#[async_trait]
impl Markers for NatsMarkers {
    async fn mark(&self, name: &str, token: u64, at_us: u64, ttl: Duration) {
        let marker = Marker {
            token,
            at_us,
            until_ms: now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        let Ok(bytes) = serde_json::to_vec(&marker) else {
            return;
        };
        if let Err(e) = self.bucket.put(&encode(name), bytes.into()).await {
            tracing::warn!(error = %e, "removal marker not written to NATS");
        }
    }

    async fn claim(&self, name: &str, at_us: u64) -> Option<bool> {
        self.claim_if(name, |m| m.at_us <= at_us).await
    }

    async fn claim_own(&self, name: &str, token: u64) -> Option<bool> {
        self.claim_if(name, |m| m.token == token).await
    }
}
