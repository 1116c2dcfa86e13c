//! Node liveness on NATS: registering, heartbeating, cleaning up dead instances, and
//! registering anew (writing this node's state again) when the registration was lost.
//!
//! * An instance (`<node id>~<nonce>`) heartbeats by compare-and-set on `hb.<instance>` in
//!   the `nodes` bucket: a heartbeat that finds another revision than its last one learns
//!   that it was claimed (cleaned up) and registers anew.
//! * Every node scans the heartbeats each tick and notes, by its own monotonic clock, when
//!   each one last changed: no clocks are compared between machines. One unchanged for the
//!   heartbeat's lifetime is overdue; a node claims it by compare-and-set over the revision
//!   it saw, so exactly one node cleans up each dead instance, and never one whose heartbeat
//!   went through meanwhile. A claim whose cleaner died is itself overdue and claimed again.
//! * What an instance contributed is listed in its ledger bucket (`own_<instance>`), one key
//!   per channel, user or app, written before the contribution itself; the cleanup removes
//!   the instance from each, announcing `member_removed` and offline once (the write that
//!   removed it decides), and forgets the ledger.
//! * `own.<node id>` names the instance holding a node id, so two running nodes never share
//!   one; a restarted node waits until its previous instance is overdue, then takes over.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use warren_protocol::{AppId, ChannelName, UserId};

use super::channels::{ChannelEntry, Local, LocalCounts};
use super::features::{sync_connections, Held};
use super::keys::{decode, encode};
use super::kv::{self, Value};
use super::users::{deliver_status, status_change, sync_user, UserEntry};
use super::{Inner, Instance, ANY_NAME_LENGTH};
use crate::cluster::BackendError;

/// A heartbeat's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Beat {
    /// The node cleaning this instance up, once claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claimed_by: Option<String>,
}

impl Value for Beat {
    fn is_empty(&self) -> bool {
        false
    }
}

/// The node id's holder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Owner {
    instance: String,
}

impl Value for Owner {
    fn is_empty(&self) -> bool {
        self.instance.is_empty()
    }
}

fn new_instance(node_id: &str) -> String {
    format!(
        "{node_id}~{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

fn beat_key(instance: &str) -> String {
    format!("hb.{}", encode(instance))
}

fn owner_key(node_id: &str) -> String {
    format!("own.{}", encode(node_id))
}

/// How long a heartbeat may stay unchanged before its instance is overdue: 70% of the node
/// timeout. With heartbeats and scans every 10% of it, an instance killed right after a
/// heartbeat is overdue by 80% (the scan noting the last change lags by up to a tick) and
/// found by 90%: cleaned up within the node timeout.
pub(super) fn alive_for(inner: &Inner) -> Duration {
    inner.options.node_timeout * 7 / 10
}

fn tick(inner: &Inner) -> Duration {
    (inner.options.node_timeout / 10).max(Duration::from_millis(100))
}

fn beat(inner: &Inner) {
    inner.last_beat.store(inner.clock_ms(), Ordering::Release);
}

fn encoded<T: Serialize>(value: &T) -> Result<bytes::Bytes, BackendError> {
    serde_json::to_vec(value)
        .map(Into::into)
        .map_err(|e| BackendError(e.to_string()))
}

/// A new instance with its ledger and first heartbeat; not yet holding the node id.
async fn start_instance(inner: &Inner) -> Result<(Instance, u64), BackendError> {
    let id = new_instance(&inner.options.node_id);
    let ledger = kv::open(&inner.js, &inner.keys.ledger_bucket(&id), Duration::ZERO).await?;
    let revision = inner
        .buckets
        .nodes
        .write_over(&beat_key(&id), encoded(&Beat::default())?, 0)
        .await?
        .ok_or_else(|| BackendError(format!("instance {id} exists already")))?;
    let instance = Instance {
        id,
        ledger,
        written: Mutex::default(),
    };
    Ok((instance, revision))
}

/// Registers a fresh instance under this node id. Waits while another instance holding the
/// id still heartbeats, up to one node timeout; fails if it keeps doing so.
pub(super) async fn register_at_start(inner: &Arc<Inner>) -> Result<(), BackendError> {
    let (instance, revision) = start_instance(inner).await?;
    let deadline = Instant::now() + inner.options.node_timeout + tick(inner);
    let key = owner_key(&inner.options.node_id);
    // The holder's heartbeat revision, and since when it has not changed.
    let mut watched: Option<(u64, Instant)> = None;
    loop {
        let (owner, owner_revision) = inner.buckets.nodes.read::<Owner>(&key).await?;
        let holder_alive = match &owner {
            None => false,
            Some(o) => {
                let (holder_beat, beat_revision) = inner
                    .buckets
                    .nodes
                    .read::<Beat>(&beat_key(&o.instance))
                    .await?;
                match holder_beat {
                    Some(b) if b.claimed_by.is_none() => {
                        let since = match watched {
                            Some((r, since)) if r == beat_revision => since,
                            _ => Instant::now(),
                        };
                        watched = Some((beat_revision, since));
                        since.elapsed() < alive_for(inner)
                    }
                    _ => false,
                }
            }
        };
        if !holder_alive {
            let mine = Owner {
                instance: instance.id.clone(),
            };
            let taken = (inner.buckets.nodes)
                .write_over(&key, encoded(&mine)?, owner_revision)
                .await?;
            if taken.is_some() {
                break;
            }
            continue;
        }
        if Instant::now() >= deadline {
            inner.buckets.nodes.remove(&beat_key(&instance.id)).await;
            let holder = owner.map(|o| o.instance).unwrap_or_default();
            return Err(BackendError(format!(
                "node id {:?} is in use by a running node (instance {holder}); give each node its own server.node_id",
                inner.options.node_id
            )));
        }
        tracing::warn!(node = %inner.options.node_id, "node id is held by another instance; waiting for it to expire");
        tokio::time::sleep(tick(inner)).await;
    }
    *inner.live.lock() = (instance.id.clone(), revision);
    *inner.instance.write().await = Arc::new(instance);
    beat(inner);
    Ok(())
}

/// Keeps the live instance registered: a task of its own, so no cleanup delays it.
pub(super) async fn heartbeats(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(tick(&inner));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        if !inner.connected() {
            continue;
        }
        let (id, revision) = inner.live.lock().clone();
        let value = match encoded(&Beat::default()) {
            Ok(v) => v,
            Err(_) => continue,
        };
        match inner
            .buckets
            .nodes
            .write_over(&beat_key(&id), value, revision)
            .await
        {
            Ok(Some(next)) => {
                let mut live = inner.live.lock();
                if live.0 == id {
                    live.1 = next;
                }
                drop(live);
                beat(&inner);
            }
            Ok(None) => inner.lost.store(true, Ordering::Release),
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
    }
}

/// Re-registers when needed and cleans up dead instances.
pub(super) async fn maintenance(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(tick(&inner));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashMap<String, (u64, Instant)> = HashMap::new();
    loop {
        ticker.tick().await;
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        if !inner.connected() {
            continue;
        }
        let lost = inner.lost.swap(false, Ordering::AcqRel);
        let dirty = inner.dirty.swap(false, Ordering::AcqRel);
        if lost || dirty {
            let why = if lost {
                "registration lost"
            } else {
                "NATS may have missed state changes"
            };
            if let Err(e) = reregister(&inner, why).await {
                inner.dirty.store(true, Ordering::Release);
                tracing::warn!(error = %e, "re-registration failed; will retry");
                continue;
            }
        }
        if let Err(e) = reap_overdue(&inner, &mut seen).await {
            tracing::debug!(error = %e, "cleanup scan failed");
        }
    }
}

/// Claims and cleans up every instance whose heartbeat has not changed for too long.
async fn reap_overdue(
    inner: &Inner,
    seen: &mut HashMap<String, (u64, Instant)>,
) -> Result<(), BackendError> {
    let beats = inner.buckets.nodes.scan_revisions("hb.").await?;
    let current = inner.live.lock().0.clone();
    seen.retain(|key, _| beats.iter().any(|(k, _, _)| k == key));
    for (key, revision, bytes) in beats {
        let Some(instance) = key.strip_prefix("hb.").and_then(decode) else {
            continue;
        };
        if instance == current {
            continue;
        }
        let since = match seen.get(&key) {
            Some((r, since)) if *r == revision => *since,
            _ => {
                seen.insert(key.clone(), (revision, Instant::now()));
                continue;
            }
        };
        if since.elapsed() < alive_for(inner) {
            continue;
        }
        let mut claim: Beat = serde_json::from_slice(&bytes).unwrap_or_default();
        claim.claimed_by = Some(inner.origin.clone());
        let claimed = (inner.buckets.nodes)
            .write_over(&key, encoded(&claim)?, revision)
            .await?;
        let Some(claimed) = claimed else { continue };
        // The claim is a change: a cleaner that dies is found overdue again from here.
        seen.insert(key.clone(), (claimed, Instant::now()));
        if let Err(e) = reap_instance(inner, &instance).await {
            tracing::warn!(%instance, error = %e, "cleanup of a node instance failed; will retry");
        }
    }
    Ok(())
}

/// Removes everything `instance` recorded, announcing what that changed, then forgets it.
async fn reap_instance(inner: &Inner, instance: &str) -> Result<(), BackendError> {
    let ledger = kv::open(
        &inner.js,
        &inner.keys.ledger_bucket(instance),
        Duration::ZERO,
    )
    .await?;
    let held = ledger.scan("").await?;
    let mut removed_members = 0usize;
    let gone = |i: &str| i == instance;
    for (key, _) in held {
        let Some((kind, rest)) = key.split_once('.') else {
            continue;
        };
        match kind {
            "c" => removed_members += reap_channel(inner, rest, &gone).await?,
            "u" => reap_user(inner, rest, &gone).await?,
            "q" => {
                (inner.buckets.connections)
                    .modify(rest, |held: &mut Held| {
                        held.refs.retain(|i, _| !gone(i));
                        Ok::<_, BackendError>(())
                    })
                    .await?;
            }
            _ => {}
        }
    }
    forget(inner, instance).await;
    tracing::info!(%instance, removed_members, "cleaned up a dead node instance");
    Ok(())
}

/// `<app>.<item>` decoded.
fn app_item(key: &str) -> Option<(AppId, String)> {
    let (app, item) = key.split_once('.')?;
    Some((AppId::parse(&decode(app)?).ok()?, decode(item)?))
}

async fn reap_channel(
    inner: &Inner,
    key: &str,
    gone: &(impl Fn(&str) -> bool + Sync),
) -> Result<usize, BackendError> {
    let Some((app, name)) = app_item(key) else {
        return Ok(0);
    };
    let Ok(channel) = ChannelName::parse(&name, ANY_NAME_LENGTH) else {
        return Ok(0);
    };
    let written = (inner.buckets.channels)
        .modify(key, |entry: &mut ChannelEntry| {
            entry.set_contribution("", &LocalCounts::default(), gone);
            Ok::<_, BackendError>(())
        })
        .await?;
    Ok(inner
        .announce_changes(&app, &channel, &written, None, true)
        .await)
}

async fn reap_user(
    inner: &Inner,
    key: &str,
    gone: &(impl Fn(&str) -> bool + Sync),
) -> Result<(), BackendError> {
    let Some((app, name)) = app_item(key) else {
        return Ok(());
    };
    let Ok(user) = UserId::parse(&name, ANY_NAME_LENGTH) else {
        return Ok(());
    };
    let written = (inner.buckets.users)
        .modify(key, |entry: &mut UserEntry| {
            entry.refs.retain(|i, _| !gone(i));
            Ok::<_, BackendError>(())
        })
        .await?;
    if let Some(status) = status_change(&written) {
        super::users::announce_status(inner, &app, &user, &written).await;
        deliver_status(inner, &app, user, status);
    }
    Ok(())
}

/// Forgets an instance: its ledger, its heartbeat, and its hold on the node id.
async fn forget(inner: &Inner, instance: &str) {
    let bucket = inner.keys.ledger_bucket(instance);
    let _ = tokio::time::timeout(super::COMMAND_TIMEOUT, inner.js.delete_key_value(&bucket)).await;
    inner.buckets.nodes.remove(&beat_key(instance)).await;
    let node_id = instance.rsplit_once('~').map_or(instance, |(n, _)| n);
    let key = owner_key(node_id);
    let freed = (inner.buckets.nodes)
        .modify(&key, |o: &mut Owner| {
            if o.instance == instance {
                o.instance.clear();
            }
            Ok::<_, BackendError>(())
        })
        .await;
    if let Err(e) = freed {
        tracing::debug!(error = %e, "could not free the node id; it expires with its heartbeat");
    }
}

/// Registers a new instance and writes every local subscription, sign-in and connection
/// count under it again. The earlier instance is left to the normal cleanup, which finds
/// nothing of it left where this node wrote again.
///
/// INVARIANT(rebuild-beside-traffic): the instance lock is held only to switch instances;
/// changes go on under the new instance while the rebuild runs (each channel under this
/// node's lock of it, so the rebuild and a change never interleave on one channel).
async fn reregister(inner: &Inner, why: &str) -> Result<(), BackendError> {
    // A NATS that lost its store (restarted without persistence) lost the buckets too.
    super::open_buckets(&inner.js, &inner.keys).await?;
    let (instance, revision) = start_instance(inner).await?;
    let instance = Arc::new(instance);
    {
        let mut current = inner.instance.write().await;
        let mine = Owner {
            instance: instance.id.clone(),
        };
        let key = owner_key(&inner.options.node_id);
        let (_, owner_revision) = inner.buckets.nodes.read::<Owner>(&key).await?;
        (inner.buckets.nodes)
            .write_over(&key, encoded(&mine)?, owner_revision)
            .await?
            .ok_or_else(|| BackendError("the node id changed hands meanwhile".into()))?;
        *inner.live.lock() = (instance.id.clone(), revision);
        inner.lost.store(false, Ordering::Release);
        *current = instance.clone();
        beat(inner);
    }
    let started = Instant::now();
    let apps: Vec<AppId> = inner.connections.lock().keys().cloned().collect();
    for app in apps {
        let _local = inner.stripe(&["#conn", app.as_str()]).await;
        sync_connections(inner, &instance, &app, 0, u64::MAX).await?;
    }
    let channels: Vec<(AppId, ChannelName)> = inner.mirror.lock().keys().cloned().collect();
    let subscriptions = channels.len();
    tracing::warn!(reason = why, channels = subscriptions, instance = %instance.id, "registering this node again");
    for (app, channel) in channels {
        let _local = inner.stripe(&[app.as_str(), channel.as_str()]).await;
        let written = inner
            .sync_channel(&instance, &app, &channel, Local::Again, usize::MAX)
            .await
            .map_err(|e| BackendError(e.to_string()))?;
        inner
            .announce_changes(&app, &channel, &written, None, false)
            .await;
    }
    let users: Vec<(AppId, UserId)> = inner.signed_in.lock().keys().cloned().collect();
    for (app, user) in users {
        let _local = inner.stripe(&["#user", app.as_str(), user.as_str()]).await;
        let written = sync_user(inner, &instance, &app, &user, true).await?;
        if let Some(status) = status_change(&written) {
            super::users::announce_status(inner, &app, &user, &written).await;
            deliver_status(inner, &app, user, status);
        }
    }
    tracing::info!(
        channels = subscriptions,
        elapsed_ms = started.elapsed().as_millis() as u64,
        instance = %instance.id,
        "registered again"
    );
    Ok(())
}

/// A graceful stop, once every connection has left: stop the background tasks, remove and
/// announce anything still recorded under this instance, and leave the registry.
pub(super) async fn deregister(inner: &Inner) {
    inner.stop_tasks();
    let instance = inner.instance.read().await.id.clone();
    match reap_instance(inner, &instance).await {
        Ok(()) => tracing::info!(%instance, "left the cluster"),
        Err(e) => {
            tracing::warn!(%instance, error = %e, "could not deregister; the others will clean up")
        }
    }
    let _ = tokio::time::timeout(super::COMMAND_TIMEOUT, inner.client.flush()).await;
}

/// Whether the node is in touch with NATS: connected, and its last heartbeat went through
/// recently enough that no other node takes it for dead.
pub(super) fn health(inner: &Inner) -> Result<(), BackendError> {
    if let Some(e) = inner.unavailable() {
        return Err(e);
    }
    let since = inner
        .clock_ms()
        .saturating_sub(inner.last_beat.load(Ordering::Acquire));
    let limit = u64::try_from(alive_for(inner).as_millis()).unwrap_or(u64::MAX);
    if since > limit {
        return Err(BackendError(format!(
            "no heartbeat went through to NATS for {since} ms"
        )));
    }
    Ok(())
}
