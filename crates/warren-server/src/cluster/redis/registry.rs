//! Node liveness: registering, heartbeating, cleaning up dead instances, and registering
//! anew (and recording this node's state again) when the registration was lost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, KeysInterface, SetsInterface};
use fred::types::Value;
use futures_util::stream::{self, TryStreamExt};
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, SocketId, UserId};

use super::announce::{deliver_member_added, deliver_member_removed, deliver_user};
use super::{backend, value, Inner, COMMAND_TIMEOUT};
use crate::cluster::{BackendError, ChannelEvent, ChannelMessage, Reaped, UserStatus};

/// Subscriptions a cleanup script removes per call.
const REAP_BATCH: usize = 500;
/// Scripts in flight at once while a re-registration records the node's state again.
const REBUILD_IN_FLIGHT: usize = 256;

/// One entry of the mirror: a local subscription and its presence member.
type Subscription = ((AppId, ChannelName, SocketId), Option<PresenceMember>);

fn new_instance(node_id: &str) -> String {
    format!(
        "{node_id}~{:012x}",
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

/// How long a heartbeat keeps an instance alive: 70% of the node timeout. With a heartbeat
/// and a cleanup scan every 10% of it, an instance killed right after a heartbeat is overdue
/// at 70% and found by 80%: it is cleaned up within the node timeout, with room for the
/// cleanup itself.
fn timeout_ms(inner: &Inner) -> String {
    (inner.options.node_timeout.as_millis() * 7 / 10).to_string()
}

/// How long after its last heartbeat went through the instance may be taken for dead (and
/// so, for readiness, how stale the last one may be): the heartbeat's lifetime.
pub(super) fn alive_for_ms(inner: &Inner) -> u64 {
    u64::try_from(inner.options.node_timeout.as_millis() * 7 / 10).unwrap_or(u64::MAX)
}

/// Notes that the live instance's registration or heartbeat just went through.
fn beat(inner: &Inner) {
    inner.last_beat.store(inner.clock_ms(), Ordering::Release);
}

/// How often heartbeats and cleanup scans run: ten times per node timeout.
pub(super) fn tick(inner: &Inner) -> Duration {
    (inner.options.node_timeout / 10).max(Duration::from_millis(100))
}

/// Registers a fresh instance under this node id. Waits up to one node timeout if another
/// instance holds the id (a previous run of this node that has not expired yet); fails if a
/// live node keeps it.
pub(super) async fn register_at_start(inner: &Arc<Inner>) -> Result<(), BackendError> {
    let deadline = tokio::time::Instant::now() + inner.options.node_timeout + tick(inner);
    let instance = new_instance(&inner.options.node_id);
    let mut warned = false;
    loop {
        match try_register(inner, &instance, "").await? {
            None => break,
            Some(holder) if tokio::time::Instant::now() < deadline => {
                if !warned {
                    tracing::warn!(
                        node = %inner.options.node_id,
                        %holder,
                        "node id is held by another instance; waiting for it to expire"
                    );
                    warned = true;
                }
                tokio::time::sleep(tick(inner)).await;
            }
            Some(holder) => {
                return Err(BackendError(format!(
                    "node id {:?} is in use by a running node (instance {holder}); give each node its own server.node_id",
                    inner.options.node_id
                )))
            }
        }
    }
    *inner.live_instance.lock() = instance.clone();
    *inner.instance.write().await = instance;
    beat(inner);
    Ok(())
}

/// `None` when registered; `Some(holder)` when another live instance holds the node id.
/// `previous` is this process's own instance being replaced ('' at start-up).
async fn try_register(
    inner: &Inner,
    instance: &str,
    previous: &str,
) -> Result<Option<String>, BackendError> {
    let reply = inner
        .eval(
            &inner.scripts.register,
            vec![
                inner.keys.nodes(),
                inner.keys.node_owner(&inner.options.node_id),
            ],
            vec![instance.to_owned(), timeout_ms(inner), previous.to_owned()],
        )
        .await?;
    let items = value::array(reply, "register")?;
    if value::flag_at(&items, 0, "register")? {
        Ok(None)
    } else {
        Ok(Some(value::string(
            items.get(1).ok_or_else(|| value::bad("register"))?,
            "register",
        )?))
    }
}

/// Keeps the live instance registered. A task of its own, so that no rebuild or cleanup,
/// however long, delays a heartbeat.
///
/// It also watches the command client: heartbeats that fail [`WEDGED_AFTER`] times in a row
/// while the client says it is connected mean a client that takes commands and answers none
/// (seen with fred 10.1 on a Redis Cluster whose slot moved under pipelined scripts: after
/// ASK and MOVED replies it answered nothing, for good, and a forced reconnection hung as
/// well). The client is then replaced by a new one, with fresh connections and slot map,
/// and the state recorded again. At most once per node timeout, so a Redis that is merely
/// slow is not reconnected to over and over.
pub(super) async fn heartbeats(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(tick(&inner));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed_in_a_row = 0u32;
    let mut forced_at: Option<tokio::time::Instant> = None;
    loop {
        ticker.tick().await;
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        if !inner.client().is_connected() {
            failed_in_a_row = 0;
            continue;
        }
        match heartbeat(&inner).await {
            Ok(true) => {
                failed_in_a_row = 0;
                beat(&inner)
            }
            Ok(false) => {
                failed_in_a_row = 0;
                inner.lost.store(true, Ordering::Release)
            }
            Err(e) => {
                failed_in_a_row += 1;
                tracing::debug!(error = %e, "heartbeat failed");
                let quiet = forced_at.is_none_or(|t| t.elapsed() >= inner.options.node_timeout);
                if failed_in_a_row >= WEDGED_AFTER && quiet {
                    tracing::warn!(
                        failures = failed_in_a_row,
                        error = %e,
                        "Redis answers no command on a client that looks connected; replacing it"
                    );
                    failed_in_a_row = 0;
                    forced_at = Some(tokio::time::Instant::now());
                    match super::rebuild_client(&inner).await {
                        Ok(()) => tracing::warn!("a new Redis client is connected"),
                        Err(e) => tracing::warn!(error = %e, "the Redis client was not replaced"),
                    }
                }
            }
        }
    }
}

/// Heartbeats failed in a row, on a connection that looks up, before it is reconnected.
const WEDGED_AFTER: u32 = 3;

/// Re-registers when needed and cleans up dead instances.
pub(super) async fn maintenance(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(tick(&inner));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        if !inner.client().is_connected() {
            continue;
        }
        let lost = inner.lost.swap(false, Ordering::AcqRel);
        let dirty = inner.dirty.swap(false, Ordering::AcqRel);
        if lost || dirty {
            let why = if lost {
                "registration lost"
            } else {
                "Redis may have missed state changes"
            };
            if let Err(e) = reregister(&inner, why).await {
                inner.dirty.store(true, Ordering::Release);
                tracing::warn!(error = %e, "re-registration failed; will retry");
                continue;
            }
        }
        if let Err(e) = reap_dead(&inner).await {
            tracing::debug!(error = %e, "cleanup scan failed");
        }
    }
}

async fn heartbeat(inner: &Inner) -> Result<bool, BackendError> {
    let instance = inner.live_instance.lock().clone();
    let reply = inner
        .eval(
            &inner.scripts.heartbeat,
            vec![
                inner.keys.nodes(),
                inner.keys.node_owner(&inner.options.node_id),
                inner.keys.reaping(&instance),
            ],
            vec![instance, timeout_ms(inner)],
        )
        .await?;
    Ok(value::int(&reply, "heartbeat")? == 1)
}

/// Registers a new instance and records every local subscription and sign-in under it again. The old
/// instance is left to the normal cleanup, which only removes what is still its own.
///
/// INVARIANT(rebuild-beside-traffic): the instance lock is held only to switch instances;
/// subscribes and leaves go on under the new instance while the rebuild runs, many scripts in
/// flight at once (pipelined on the connection). A subscription that left meanwhile is
/// removed again after it was recorded, so the rebuild leaves no ghost.
async fn reregister(inner: &Inner, why: &str) -> Result<(), BackendError> {
    let instance = new_instance(&inner.options.node_id);
    {
        let mut current = inner.instance.write().await;
        if let Some(holder) = try_register(inner, &instance, &current).await? {
            return Err(BackendError(format!(
                "node id {:?} is held by another running instance ({holder}): two nodes share a node_id",
                inner.options.node_id
            )));
        }
        // Heartbeat the new instance from now on, while its state is rebuilt.
        *inner.live_instance.lock() = instance.clone();
        inner.lost.store(false, Ordering::Release);
        inner.announced_apps.lock().clear();
        *current = instance.clone();
        beat(inner);
        // Under the lock: no connection is taken or given back while the counts move over.
        super::quotas::record_again(inner, &instance).await?;
    }
    let started = std::time::Instant::now();
    let entries: Vec<_> = inner
        .mirror
        .lock()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tracing::warn!(reason = why, subscriptions = entries.len(), %instance, "registering this node again");
    let subscriptions = entries.len();
    stream::iter(entries.into_iter().map(Ok))
        .try_for_each_concurrent(REBUILD_IN_FLIGHT, |entry| rejoin(inner, &instance, entry))
        .await?;
    let sign_ins: Vec<_> = inner
        .signed_in
        .lock()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    stream::iter(sign_ins.into_iter().map(Ok))
        .try_for_each_concurrent(REBUILD_IN_FLIGHT, |entry| {
            sign_in_again(inner, &instance, entry)
        })
        .await?;
    tracing::info!(
        subscriptions,
        elapsed_ms = started.elapsed().as_millis() as u64,
        %instance,
        "registered again"
    );
    Ok(())
}

/// Records one subscription under the new instance (announcing a member that is new to the
/// cluster), and takes it back if the connection left while the rebuild ran.
async fn rejoin(inner: &Inner, instance: &str, entry: Subscription) -> Result<(), BackendError> {
    let ((app, channel, socket), member) = entry;
    let reply = inner
        .join(
            instance,
            &app,
            &channel,
            socket,
            member.as_ref(),
            usize::MAX,
        )
        .await?;
    let key = (app, channel, socket);
    let left_meanwhile = !inner.mirror.lock().contains_key(&key);
    let (app, channel, socket) = key;
    match &member {
        Some(m) if value::flag_at(&reply, 0, "join")? => {
            let version = value::count_at(&reply, super::JOIN_VERSION_AT, "join")?;
            deliver_member_added(inner, &app, &channel, m, version);
        }
        _ => {}
    }
    if left_meanwhile {
        let reply = inner.leave(&app, &channel, socket).await?;
        if let Some(m) = member {
            if value::flag_at(&reply, 0, "leave")? {
                let version = value::count_at(&reply, super::LEAVE_VERSION_AT, "leave")?;
                deliver_member_removed(inner, &app, &channel, m.user_id, version);
            }
        }
    }
    Ok(())
}

/// Records one sign-in under the new instance, and takes it back if the connection signed
/// out while the rebuild ran.
async fn sign_in_again(
    inner: &Inner,
    instance: &str,
    ((app, socket), user): ((AppId, SocketId), UserId),
) -> Result<(), BackendError> {
    if let Some(version) = inner.sign_in(instance, &app, socket, &user).await? {
        let online = UserStatus {
            online: true,
            version,
        };
        deliver_user(inner, &app, user.clone(), online);
    }
    if !inner.signed_in.lock().contains_key(&(app.clone(), socket)) {
        if let Some(version) = inner.sign_out(&app, socket).await? {
            let offline = UserStatus {
                online: false,
                version,
            };
            deliver_user(inner, &app, user, offline);
        }
    }
    Ok(())
}

/// Removes an instance from the registry (and frees its node id if it still holds it).
async fn forget(inner: &Inner, instance: &str) -> Result<(), BackendError> {
    // Instance ids are `<node id>~<nonce>`.
    let node_id = instance.rsplit_once('~').map_or(instance, |(n, _)| n);
    inner
        .eval(
            &inner.scripts.forget,
            vec![
                inner.keys.nodes(),
                inner.keys.instance_apps(instance),
                inner.keys.node_owner(node_id),
            ],
            vec![instance.to_owned()],
        )
        .await
        .map(|_| ())
}

/// A graceful stop, once every connection has left: stop the background tasks, remove and
/// announce anything still recorded under this instance (a leave that failed on the way
/// out), and leave the registry so nobody waits for this node to expire.
pub(super) async fn deregister(inner: &Inner) {
    inner.stopping.store(true, Ordering::Release);
    let instance = inner.instance.read().await.clone();
    match reap_instance(inner, &instance).await {
        Ok(()) => tracing::info!(%instance, "left the cluster"),
        Err(e) => {
            tracing::warn!(%instance, error = %e, "could not deregister; the others will clean up")
        }
    }
    let _ = inner.subscriber.quit().await;
    let _ = inner.broadcasts.quit().await;
    let _ = inner.client().quit().await;
}

/// Cleans up every instance whose heartbeat is overdue (other than our current one).
async fn reap_dead(inner: &Inner) -> Result<(), BackendError> {
    let reply = inner
        .eval(
            &inner.scripts.dead,
            vec![inner.keys.nodes()],
            Vec::<String>::new(),
        )
        .await?;
    let dead = value::array(reply, "dead")?;
    let current = inner.instance.read().await.clone();
    for d in dead {
        let instance = value::string(&d, "dead")?;
        if instance == current {
            continue;
        }
        // One node cleans up each instance, and only while it is still overdue.
        let claimed = inner
            .eval(
                &inner.scripts.claim,
                vec![inner.keys.nodes(), inner.keys.reaping(&instance)],
                vec![instance.clone(), inner.origin.clone(), "60000".to_owned()],
            )
            .await?;
        if value::int(&claimed, "claim")? != 1 {
            continue;
        }
        if let Err(e) = reap_instance(inner, &instance).await {
            // Let another node (or a later scan) try again instead of waiting out the claim.
            let _: Result<i64, _> = inner.client().del(inner.keys.reaping(&instance)).await;
            tracing::warn!(%instance, error = %e, "cleanup of a node instance failed; will retry");
        }
    }
    Ok(())
}

async fn reap_instance(inner: &Inner, instance: &str) -> Result<(), BackendError> {
    let apps: Vec<String> = tokio::time::timeout(
        COMMAND_TIMEOUT,
        inner.client().smembers(inner.keys.instance_apps(instance)),
    )
    .await
    .map_err(|_| BackendError("Redis command timed out".into()))?
    .map_err(backend)?;
    let mut removed_members = 0usize;
    for app in apps {
        let Ok(app) = AppId::parse(&app) else {
            continue;
        };
        loop {
            let reply = inner
                .eval(
                    &inner.scripts.reap,
                    vec![inner.keys.app_base(&app)],
                    vec![
                        Value::from(instance),
                        Value::from(REAP_BATCH.to_string()),
                        Value::from(inner.relay_prefix(&app)),
                        Value::Bytes(inner.departure_header(&app)?),
                        Value::from(inner.publish_command()),
                    ],
                )
                .await?;
            let items = value::array(reply, "reap")?;
            let remaining = value::count_at(&items, 0, "reap")?;
            let transitions = value::array(items.get(1).cloned().unwrap_or(Value::Null), "reap")?;
            for t in transitions.chunks_exact(4) {
                let kind = value::string(&t[0], "reap")?;
                if kind == "offline" {
                    // The script puts the offline version where other kinds have a channel.
                    let version = value::int(&t[1], "reap")?;
                    let user = value::string(&t[2], "reap")?;
                    if let (Ok(version), Ok(user)) = (
                        u64::try_from(version),
                        UserId::parse(&user, super::ANY_NAME_LENGTH),
                    ) {
                        let offline = UserStatus {
                            online: false,
                            version,
                        };
                        inner.announce_status(&app, &user, offline).await;
                        deliver_user(inner, &app, user, offline);
                    }
                    continue;
                }
                let Ok(channel) =
                    ChannelName::parse(&value::string(&t[1], "reap")?, super::ANY_NAME_LENGTH)
                else {
                    continue;
                };
                if kind == "vacated" {
                    inner.sink.reaped(&app, &channel, Reaped::Vacated);
                }
                if kind == "member_removed" {
                    let user = value::string(&t[2], "reap")?;
                    let Ok(user) = UserId::parse(&user, super::ANY_NAME_LENGTH) else {
                        continue;
                    };
                    inner
                        .sink
                        .reaped(&app, &channel, Reaped::MemberRemoved(user.clone()));
                    let version = value::count_at(t, 3, "reap")?;
                    let departure = ChannelMessage::MemberRemoved {
                        user_id: user.clone(),
                    };
                    let event = ChannelEvent::new(&app, &channel, None, departure);
                    inner.announce_member(&event, version).await;
                    deliver_member_removed(inner, &app, &channel, user, version);
                    removed_members += 1;
                }
            }
            if remaining == 0 {
                break;
            }
        }
    }
    forget(inner, instance).await?;
    let _: Result<i64, _> = inner.client().del(inner.keys.reaping(instance)).await;
    tracing::info!(%instance, removed_members, "cleaned up a dead node instance");
    Ok(())
}
