//! `GET /apps/{id}/channels`, `/channels/{name}` and `/channels/{name}/users`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::Json;
use serde_json::{json, Map, Value};
use warren_protocol::{ChannelKind, ChannelName};

use super::error::ApiError;
use super::events::InfoAttributes;
use super::request::{authenticate, clip, AppBy};
use super::Api;

/// Occupied channels, optionally filtered by prefix; `info=user_count` needs a `presence-`
/// prefix, because only presence channels have users.
pub async fn list(
    State(api): State<Arc<Api>>,
    Path(app_id): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    let prefix = req.param("filter_by_prefix").unwrap_or("");
    let info = InfoAttributes::parse(req.param("info"))?;
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::bad_request(
            "info=user_count is only valid with filter_by_prefix=presence-",
        ));
    }
    let mut channels = api.node.channels(&req.app.id, prefix).await?;
    channels.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Map::new();
    for (name, stats) in channels {
        let mut attrs = Map::new();
        info.write(stats, &mut attrs);
        out.insert(name.to_string(), Value::Object(attrs));
    }
    Ok(Json(json!({ "channels": out })))
}

/// One channel's state: `occupied` always, and the requested attributes. `cache` (cache
/// channels only) is the kept event's `data` and its remaining `ttl` in seconds, left out
/// when nothing is kept.
pub async fn info(
    State(api): State<Arc<Api>>,
    Path((app_id, channel)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    let channel = parse_channel(&channel, req.app.max_channel_name_length)?;
    let info_param = req.param("info").unwrap_or("");
    // `cache` is an attribute of this endpoint only: the rest are shared with publishing.
    let (cache, others): (Vec<&str>, Vec<&str>) =
        info_param.split(',').partition(|a| a.trim() == "cache");
    let want_cache = !cache.is_empty();
    if want_cache && !channel.is_cache() {
        return Err(ApiError::bad_request(
            "info=cache is only valid for cache channels",
        ));
    }
    let info = InfoAttributes::parse(Some(&others.join(",")))?;
    if info.user_count && channel.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request(
            "info=user_count is only valid for presence channels",
        ));
    }
    let stats = api.node.channel(&req.app.id, &channel).await?;
    let mut out = Map::new();
    out.insert("occupied".into(), (stats.subscription_count > 0).into());
    info.write(stats, &mut out);
    if want_cache {
        if let Some(kept) = api.node.cached_event(&req.app.id, &channel).await? {
            // Whole seconds, rounded up: a kept event never shows a ttl of 0.
            let ttl = kept.ttl.as_millis().div_ceil(1000) as u64;
            out.insert("cache".into(), json!({ "data": &*kept.data, "ttl": ttl }));
        }
    }
    Ok(Json(Value::Object(out)))
}

/// The members of a presence channel.
pub async fn users(
    State(api): State<Arc<Api>>,
    Path((app_id, channel)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    let channel = parse_channel(&channel, req.app.max_channel_name_length)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request(
            "Users can only be listed for presence channels",
        ));
    }
    let members = api.node.presence_members(&req.app.id, &channel).await?;
    let users: Vec<Value> = members
        .iter()
        .map(|m| json!({ "id": m.user_id.as_str() }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

fn parse_channel(name: &str, max_len: usize) -> Result<ChannelName, ApiError> {
    ChannelName::parse(name, max_len)
        .map_err(|e| ApiError::bad_request(format!("Invalid channel name {:?}: {e}", clip(name))))
}
