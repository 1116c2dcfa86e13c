//! Cache channels, count windows and the shared per-app counters in their buckets.
//!
//! NATS 2.9 has no per-key expiry, so what expires carries its expiry (Unix milliseconds, by
//! the writer's clock) and is taken as absent past it: nodes' clocks must agree to well
//! within a cache TTL or a count window (NTP does). Sequence numbers and windows use
//! revisions and compare-and-set, so they hold whatever the clocks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use warren_protocol::{AppId, ChannelName, EventName};

use super::keys::{encode, Keys};
use super::kv::Value;
use super::Inner;
use crate::cluster::{BackendError, CachedEvent, RateCounter};

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A cache channel's last event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cached {
    #[serde(rename = "n")]
    name: String,
    #[serde(rename = "d")]
    data: String,
    /// Expiry, Unix ms.
    #[serde(rename = "e")]
    expires: u64,
}

impl Value for Cached {
    fn is_empty(&self) -> bool {
        self.name.is_empty()
    }
}

/// The sequence number is the write's revision: larger for every write of the bucket.
pub(super) async fn cache_put(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
    name: &EventName,
    data: &Arc<str>,
    ttl: Duration,
) -> Result<u64, BackendError> {
    let cached = Cached {
        name: name.as_str().to_owned(),
        data: data.to_string(),
        expires: now_ms().saturating_add(ms(ttl)),
    };
    let bytes = serde_json::to_vec(&cached).map_err(|e| BackendError(e.to_string()))?;
    let key = Keys::app_item(app, channel.as_str());
    inner.buckets.cache.put(&key, bytes.into()).await
}

pub(super) async fn cache_get(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
) -> Result<Option<CachedEvent>, BackendError> {
    let key = Keys::app_item(app, channel.as_str());
    let (cached, seq) = inner.buckets.cache.read::<Cached>(&key).await?;
    let Some(cached) = cached else {
        return Ok(None);
    };
    let left = cached.expires.saturating_sub(now_ms());
    // A kept event whose name no longer parses was not written by Warren: nothing cached.
    let (true, Ok(name)) = (left > 0, EventName::parse(&cached.name)) else {
        return Ok(None);
    };
    Ok(Some(CachedEvent {
        name,
        data: Arc::from(cached.data),
        seq,
        ttl: Duration::from_millis(left),
    }))
}

/// An open window of throttled subscription counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// When it closes, Unix ms.
    #[serde(rename = "e")]
    closes: u64,
}

impl Value for Window {
    fn is_empty(&self) -> bool {
        false
    }
}

/// Opens the window unless one is open: the compare-and-set over the closed (or missing)
/// one lets exactly one caller open it.
pub(super) async fn claim_window(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
    window: Duration,
) -> Result<bool, BackendError> {
    let key = Keys::app_item(app, channel.as_str());
    let (open, revision) = inner.buckets.windows.read::<Window>(&key).await?;
    let now = now_ms();
    if open.is_some_and(|w| w.closes > now) {
        return Ok(false);
    }
    let next = Window {
        closes: now.saturating_add(ms(window)),
    };
    let bytes = serde_json::to_vec(&next).map_err(|e| BackendError(e.to_string()))?;
    Ok(inner
        .buckets
        .windows
        .write_over(&key, bytes.into(), revision)
        .await?
        .is_some())
}

/// Connections held per instance, for an app's cluster-wide limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Held {
    #[serde(default, rename = "r")]
    pub refs: BTreeMap<String, u64>,
}

impl Value for Held {
    fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

/// Writes this node's connections of `app` (its local count plus `delta`) unless that
/// takes the total past `limit`; whether it was written.
pub(super) async fn sync_connections(
    inner: &Inner,
    instance: &super::Instance,
    app: &AppId,
    delta: i64,
    limit: u64,
) -> Result<bool, BackendError> {
    let local = inner.connections.lock().get(app).copied().unwrap_or(0);
    let wanted = local.saturating_add_signed(delta);
    let key = encode(app.as_str());
    let ledger_key = format!("q.{key}");
    if wanted > 0 {
        inner.ledger_write(instance, &ledger_key).await?;
    }
    let written = inner
        .buckets
        .connections
        .modify(&key, |held: &mut Held| {
            // A re-registration (delta 0) takes over earlier instances' counts.
            let takeover = delta == 0;
            let others = |i: &String| {
                *i != instance.id && !(takeover && inner.earlier_instance(i, &instance.id))
            };
            let total: u64 = (held.refs.iter())
                .filter(|(i, _)| others(i))
                .map(|(_, n)| n)
                .sum();
            // Refused: nothing is written.
            if delta > 0 && total + wanted > limit {
                return Ok(false);
            }
            held.refs.retain(|i, _| others(i));
            if wanted > 0 {
                held.refs.insert(instance.id.clone(), wanted);
            }
            Ok::<_, BackendError>(true)
        })
        .await?;
    if written.out {
        let mut counts = inner.connections.lock();
        if wanted == 0 {
            counts.remove(app);
        } else {
            counts.insert(app.clone(), wanted);
        }
    }
    Ok(written.out)
}

pub(super) async fn take_connection(
    inner: &Inner,
    app: &AppId,
    limit: u64,
) -> Result<bool, BackendError> {
    let _local = inner.stripe(&["#conn", app.as_str()]).await;
    let instance = inner.instance.read().await.clone();
    let taken = sync_connections(inner, &instance, app, 1, limit).await;
    inner.note_failure(taken)
}

pub(super) async fn release_connection(inner: &Inner, app: &AppId) {
    let _local = inner.stripe(&["#conn", app.as_str()]).await;
    if !inner.connections.lock().contains_key(app) {
        return;
    }
    let instance = inner.instance.read().await.clone();
    let released = sync_connections(inner, &instance, app, -1, u64::MAX).await;
    if let Err(e) = inner.note_failure(released) {
        tracing::debug!(error = %e, "could not give a connection back; recording counts again");
    }
}

/// Units taken in one second window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    #[serde(rename = "n")]
    taken: u32,
}

impl Value for Taken {
    fn is_empty(&self) -> bool {
        self.taken == 0
    }
}

/// Takes from the window's counter by compare-and-set; the bucket forgets windows after
/// ten seconds.
pub(super) async fn take_rate(
    inner: &Inner,
    app: &AppId,
    counter: RateCounter,
    window: u64,
    (need, want, limit): (u32, u32, u32),
) -> Result<u32, BackendError> {
    let key = format!("{}.{}.{window}", encode(app.as_str()), counter.as_str());
    let written = inner
        .buckets
        .rates
        .modify(&key, |t: &mut Taken| {
            let free = limit.saturating_sub(t.taken);
            if free < need || free == 0 {
                return Ok::<_, BackendError>(0);
            }
            let taken = want.min(free);
            t.taken += taken;
            Ok(taken)
        })
        .await?;
    Ok(written.out)
}
