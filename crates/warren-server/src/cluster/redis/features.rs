//! Cache channels and subscription counts in Redis: a cache channel's kept event (one hash per
//! channel, expiring with it, read and written by one script each), the channel's count with
//! the version of its last change, and the throttling window of its counts (a key set with NX
//! and PX, so one caller cluster-wide opens each window). Key names are in `keys`, scripts in
//! `scripts`.

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::KeysInterface;
use fred::types::{Expiration, SetOptions, Value};
use warren_protocol::{AppId, ChannelName, EventName};

use super::{backend, value, Inner, COMMAND_TIMEOUT};
use crate::cluster::{BackendError, CachedEvent, CountVersion};

pub(super) async fn cache_put(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
    name: &EventName,
    data: &Arc<str>,
    ttl: Duration,
) -> Result<u64, BackendError> {
    let ttl_ms = ttl.as_millis().max(1).to_string();
    let reply = inner
        .eval(
            &inner.scripts.cache_put,
            vec![inner.keys.cache(app, channel)],
            vec![
                Value::from(name.as_str()),
                Value::from(&**data),
                Value::from(ttl_ms),
            ],
        )
        .await?;
    Ok(value::int(&reply, "cache put")?.max(0) as u64)
}

pub(super) async fn cache_get(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
) -> Result<Option<CachedEvent>, BackendError> {
    let reply = inner
        .eval(
            &inner.scripts.cache_get,
            vec![inner.keys.cache(app, channel)],
            Vec::<Value>::new(),
        )
        .await?;
    let items = value::array(reply, "cache get")?;
    if items.is_empty() {
        return Ok(None);
    }
    let [name, data, ..] = items.as_slice() else {
        return Err(value::bad("cache get"));
    };
    let (name, data) = (
        value::string(name, "cache get")?,
        value::string(data, "cache get")?,
    );
    // A kept event whose name no longer parses was not written by Warren: nothing cached.
    let Ok(name) = EventName::parse(&name) else {
        return Ok(None);
    };
    Ok(Some(CachedEvent {
        name,
        data: Arc::from(data),
        seq: value::count_at(&items, 2, "cache get")?,
        ttl: Duration::from_millis(value::count_at(&items, 3, "cache get")?),
    }))
}

pub(super) async fn subscription_count(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
) -> Result<CountVersion, BackendError> {
    let reply = inner
        .eval(
            &inner.scripts.count,
            vec![inner.keys.app_base(app)],
            vec![channel.to_string()],
        )
        .await?;
    let items = value::array(reply, "count")?;
    Ok(CountVersion {
        subscription_count: value::count_at(&items, 0, "count")?,
        version: value::count_at(&items, 1, "count")?,
    })
}

pub(super) async fn claim_count_window(
    inner: &Inner,
    app: &AppId,
    channel: &ChannelName,
    window: Duration,
) -> Result<bool, BackendError> {
    let client = inner.connected()?;
    let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
    let set: Value = tokio::time::timeout(
        COMMAND_TIMEOUT,
        client.set(
            inner.keys.count_window(app, channel),
            "1",
            Some(Expiration::PX(ms)),
            Some(SetOptions::NX),
            false,
        ),
    )
    .await
    .map_err(|_| BackendError("Redis command timed out".into()))?
    .map_err(backend)?;
    // SET NX answers OK when it set the key, nil when the window was already open.
    Ok(!matches!(set, Value::Null))
}
