//! Per-app counters shared by the nodes: connections held (for `apps[].max_connections`) and
//! the one-second windows of the API rates.
//!
//! * Connections: `<base>:cc` is a hash of instance -> connections that instance holds. A
//!   script sums it and takes a connection only below the limit, so nodes racing for the
//!   last one cannot both get it. Counting per instance is what makes it survive a node's
//!   death: the cleanup of a dead instance (the reap script) deletes its field, as it
//!   removes its subscriptions; a node that registers anew records its count under the new
//!   instance (`record_again`, under the instance lock, so no take or release straddles it).
//! * Rates: `<base>:rl:<counter>:<second>` counts what was taken in that second; a script
//!   takes from it only up to the limit. Nodes take in chunks (see `node::rates`), so a
//!   busy app costs a node about ten scripts per second per counter, not one per request.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use fred::interfaces::{ClientLike, HashesInterface};
use fred::types::scripts::Script;
use fred::types::Value;
use warren_protocol::AppId;

use super::{value, Inner};
use crate::cluster::{BackendError, RateCounter};

/// KEYS[1] connection counts; ARGV instance, limit -> 1 taken, 0 at the limit.
const TAKE_CONNECTION: &str = r#"
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(n) end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"#;

/// KEYS[1] connection counts; ARGV instance. The field goes when it reaches 0.
const RELEASE_CONNECTION: &str = r#"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"#;

/// KEYS[1] the window's counter; ARGV need, want, limit -> units taken (0: fewer than
/// `need` left). The counter outlives its second a little, for nodes whose clocks lag.
const TAKE_RATE: &str = r#"
local free = tonumber(ARGV[3]) - tonumber(redis.call('GET', KEYS[1]) or '0')
if free < tonumber(ARGV[1]) then return 0 end
local taken = math.min(tonumber(ARGV[2]), free)
redis.call('INCRBY', KEYS[1], taken)
redis.call('PEXPIRE', KEYS[1], 5000)
return taken
"#;

/// What the reap script runs for each app of a dead instance (`b`: the app base): its
/// connections are given back.
pub(super) const REAP_CONNECTIONS: &str = "redis.call('HDEL', b .. ':cc', ARGV[1])";

pub(super) struct QuotaScripts {
    take_connection: Script,
    release_connection: Script,
    take_rate: Script,
}

impl QuotaScripts {
    pub(super) fn new() -> Self {
        Self {
            take_connection: Script::from_lua(TAKE_CONNECTION),
            release_connection: Script::from_lua(RELEASE_CONNECTION),
            take_rate: Script::from_lua(TAKE_RATE),
        }
    }
}

fn connection_counts(inner: &Inner, app: &AppId) -> String {
    format!("{}:cc", inner.keys.app_base(app))
}

pub(super) async fn take_connection(
    inner: &Inner,
    app: &AppId,
    limit: u64,
) -> Result<bool, BackendError> {
    let instance = inner.instance.read().await;
    inner.announce_app(app, &instance).await?;
    let reply = inner
        .eval(
            &inner.quotas.take_connection,
            vec![connection_counts(inner, app)],
            vec![instance.clone(), limit.to_string()],
        )
        .await;
    // A script that timed out may have counted the connection: record the count again.
    let taken = value::int(&inner.note_failure(reply)?, "take connection")? == 1;
    if taken {
        *inner.connections.lock().entry(app.clone()).or_default() += 1;
    }
    Ok(taken)
}

pub(super) async fn release_connection(inner: &Inner, app: &AppId) {
    let instance = inner.instance.read().await;
    {
        let mut counts = inner.connections.lock();
        match counts.get_mut(app) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                counts.remove(app);
            }
            None => return,
        }
    }
    let reply = inner
        .eval(
            &inner.quotas.release_connection,
            vec![connection_counts(inner, app)],
            vec![instance.clone()],
        )
        .await;
    if let Err(e) = inner.note_failure(reply) {
        tracing::debug!(error = %e, "could not give a connection back; recording counts again");
    }
}

/// Records this node's connections under a new `instance`; the caller holds the instance
/// lock for writing, so the counts cannot change meanwhile.
pub(super) async fn record_again(inner: &Inner, instance: &str) -> Result<(), BackendError> {
    let counts: HashMap<AppId, u64> = inner.connections.lock().clone();
    for (app, n) in counts {
        inner.announce_app(&app, instance).await?;
        let client = inner.client();
        let set = client.hset::<i64, _, _>(
            connection_counts(inner, &app),
            (instance.to_owned(), n.to_string()),
        );
        tokio::time::timeout(super::COMMAND_TIMEOUT, set)
            .await
            .map_err(|_| BackendError("Redis command timed out".into()))?
            .map_err(super::backend)?;
    }
    Ok(())
}

pub(super) async fn take_rate(
    inner: &Inner,
    app: &AppId,
    counter: RateCounter,
    window: u64,
    (need, want, limit): (u32, u32, u32),
) -> Result<u32, BackendError> {
    let key = format!(
        "{}:rl:{}:{window}",
        inner.keys.app_base(app),
        counter.as_str()
    );
    let reply = inner
        .eval(
            &inner.quotas.take_rate,
            vec![key],
            vec![
                Value::from(need.to_string()),
                Value::from(want.to_string()),
                Value::from(limit.to_string()),
            ],
        )
        .await?;
    let taken = value::int(&reply, "take rate")?;
    Ok(u32::try_from(taken).unwrap_or(0))
}

/// Whether the node is in touch with Redis: its connections are up and its last heartbeat
/// went through recently enough that no other node takes it for dead.
pub(super) fn health(inner: &Inner) -> Result<(), BackendError> {
    if !inner.client().is_connected() || !inner.subscriber.is_connected() {
        return Err(BackendError("Redis is unreachable".into()));
    }
    let since = inner
        .clock_ms()
        .saturating_sub(inner.last_beat.load(Ordering::Acquire));
    let limit = super::registry::alive_for_ms(inner);
    if since > limit {
        return Err(BackendError(format!(
            "no heartbeat went through to Redis for {since} ms"
        )));
    }
    Ok(())
}
