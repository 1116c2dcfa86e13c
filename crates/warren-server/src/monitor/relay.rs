//! The monitor across a cluster: nodes exchange their events over one Redis pub/sub channel,
//! `<prefix>:monitor`, only while some node has a tap attached.
//!
//! A node with a tap SUBSCRIBEs to the channel; every node asks Redis, twice a second, how many
//! subscribers it has (`PUBSUB NUMSUB`), its own subscription not counted. While somebody else
//! listens the node's monitor is switched on and its events are PUBLISHed (as
//! `{"origin": .., "event": ..}`), in order, from a bounded queue that drops (and logs the count)
//! rather than wait; nobody listening, nothing is published. A node skips its own messages:
//! its taps had them directly. In Redis Cluster, `PUBSUB NUMSUB` counts the subscribers of the
//! node asked only, so the relay is meant for a single Redis (or Sentinel) deployment.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::{Monitor, MonitorEvent};
use crate::config::RedisTarget;

/// How often a node asks whether anybody elsewhere watches.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Events waiting to be published before new ones are dropped.
const OUTGOING_QUEUE: usize = 8192;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The pub/sub channel of a deployment's monitor events.
pub fn channel_name(prefix: &str) -> String {
    format!("{prefix}:monitor")
}

/// What the monitor holds of the relay.
pub(crate) struct Link {
    others_watch: AtomicBool,
    outgoing: mpsc::Sender<Arc<MonitorEvent>>,
    watching: watch::Sender<bool>,
    dropped: AtomicU64,
}

impl Link {
    pub(super) fn others_watch(&self) -> bool {
        self.others_watch.load(Ordering::Relaxed)
    }

    /// Queues the event for the other nodes if any watches; never waits.
    pub(super) fn forward(&self, event: &Arc<MonitorEvent>) {
        if self.others_watch() && self.outgoing.try_send(event.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn set_watching(&self, local: bool) {
        self.watching
            .send_if_modified(|w| std::mem::replace(w, local) != local);
    }
}

#[derive(Serialize, Deserialize)]
struct Relayed {
    origin: String,
    event: MonitorEvent,
}

/// Connects to Redis and starts relaying `monitor`'s events; spawns its tasks on the current
/// runtime. Fails when Redis cannot be reached.
pub(crate) async fn start(
    monitor: &Arc<Monitor>,
    target: &RedisTarget,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut builder = fred::types::Builder::from_config(target.client_config().clone());
    builder
        .set_policy(fred::types::config::ReconnectPolicy::new_exponential(
            0, 100, 1000, 2,
        ))
        .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
        .with_connection_config(|c| {
            c.connection_timeout = COMMAND_TIMEOUT;
            c.max_command_attempts = 1;
        });
    let client = builder.build()?;
    let subscriber = builder.build_subscriber_client()?;
    tokio::time::timeout(COMMAND_TIMEOUT * 3, async {
        client.init().await?;
        subscriber.init().await
    })
    .await
    .map_err(|_| anyhow::anyhow!("monitor relay: cannot reach Redis at {target}: timed out"))??;
    subscriber.manage_subscriptions();

    let (outgoing, rx) = mpsc::channel(OUTGOING_QUEUE);
    let (watching, watching_rx) = watch::channel(false);
    let link = Link {
        others_watch: AtomicBool::new(false),
        outgoing,
        watching,
        dropped: AtomicU64::new(0),
    };
    if monitor.relay.set(link).is_err() {
        anyhow::bail!("monitor relay started twice");
    }
    monitor.recompute();
    let origin = format!("{}~{:08x}", monitor.node, rand::random::<u32>());
    let channel = channel_name(prefix);
    tokio::spawn(publish_forever(
        client.clone(),
        channel.clone(),
        origin.clone(),
        rx,
    ));
    tokio::spawn(receive_forever(
        subscriber.clone(),
        Arc::downgrade(monitor),
        origin,
    ));
    tokio::spawn(watch_forever(
        client,
        subscriber,
        channel,
        Arc::downgrade(monitor),
        watching_rx,
    ));
    Ok(())
}

async fn publish_forever(
    client: Client,
    channel: String,
    origin: String,
    mut rx: mpsc::Receiver<Arc<MonitorEvent>>,
) {
    while let Some(event) = rx.recv().await {
        let relayed = Relayed {
            origin: origin.clone(),
            event: (*event).clone(),
        };
        let Ok(json) = serde_json::to_string(&relayed) else {
            continue;
        };
        if let Err(e) = client.publish::<(), _, _>(channel.as_str(), json).await {
            tracing::debug!(error = %e, "monitor relay: publish failed");
        }
    }
}

async fn receive_forever(subscriber: SubscriberClient, monitor: Weak<Monitor>, origin: String) {
    let mut rx = subscriber.message_rx();
    loop {
        let msg = match rx.recv().await {
            Ok(msg) => msg,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(dropped = n, "monitor relay: receiver fell behind");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(monitor) = monitor.upgrade() else {
            return;
        };
        let bytes: &[u8] = match &msg.value {
            Value::Bytes(b) => b,
            Value::String(s) => s.as_bytes(),
            _ => continue,
        };
        match serde_json::from_slice::<Relayed>(bytes) {
            Ok(r) if r.origin != origin => monitor.deliver_here(&Arc::new(r.event)),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "monitor relay: ignoring a malformed message"),
        }
    }
}

/// Subscribes while a tap is attached here, and watches whether anybody else listens.
async fn watch_forever(
    client: Client,
    subscriber: SubscriberClient,
    channel: String,
    monitor: Weak<Monitor>,
    mut watching: watch::Receiver<bool>,
) {
    let mut subscribed = false;
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = watching.changed() => if changed.is_err() { return },
        }
        let Some(monitor) = monitor.upgrade() else {
            return;
        };
        let want = *watching.borrow_and_update();
        if want != subscribed {
            let done = if want {
                subscriber.subscribe(channel.as_str()).await
            } else {
                subscriber.unsubscribe(channel.as_str()).await
            };
            match done {
                Ok(()) => subscribed = want,
                Err(e) => tracing::warn!(error = %e, "monitor relay: (un)subscribe failed"),
            }
        }
        let others = match numsub(&client, &channel).await {
            Ok(n) => n.saturating_sub(u64::from(subscribed)) > 0,
            Err(e) => {
                tracing::debug!(error = %e, "monitor relay: PUBSUB NUMSUB failed");
                continue;
            }
        };
        if let Some(link) = monitor.relay.get() {
            let dropped = link.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(dropped, "monitor relay: events dropped, Redis too slow");
            }
            if link.others_watch.swap(others, Ordering::Relaxed) != others {
                monitor.recompute();
            }
        }
    }
}

async fn numsub(client: &Client, channel: &str) -> Result<u64, fred::error::Error> {
    let answer: Vec<Value> = client.pubsub_numsub(channel).await?;
    Ok(match answer.get(1) {
        Some(Value::Integer(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    })
}
