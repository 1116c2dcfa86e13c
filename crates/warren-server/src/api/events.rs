//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`.
//!
//! Each event is validated completely before anything is published (a batch is all or
//! nothing), then handed to the `Node` once per channel: the request path does no work per
//! subscriber.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use warren_protocol::{ChannelKind, ChannelName, EventName, SocketId};

use super::error::ApiError;
use super::limits::count_events;
use super::request::{authenticate, clip, AppBy, SignedRequest, MAX_BATCH};
use super::Api;
use crate::app::App;
use crate::cluster::{ChannelEvent, ChannelMessage, ChannelStats};

/// Channels one event may be published to, as Pusher.
const MAX_CHANNELS: usize = 100;

#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: Option<Box<RawValue>>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<BatchEvent>,
}

#[derive(Deserialize)]
struct BatchEvent {
    name: String,
    data: Option<Box<RawValue>>,
    channel: String,
    socket_id: Option<String>,
    info: Option<String>,
}

/// Which channel attributes the caller asked to get back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct InfoAttributes {
    pub user_count: bool,
    pub subscription_count: bool,
}

impl InfoAttributes {
    pub(super) fn parse(info: Option<&str>) -> Result<Self, ApiError> {
        let mut attrs = Self::default();
        for attr in info
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match attr {
                "user_count" => attrs.user_count = true,
                "subscription_count" => attrs.subscription_count = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Unsupported info attribute {:?}: use user_count or subscription_count",
                        clip(other)
                    )))
                }
            }
        }
        Ok(attrs)
    }

    fn any(self) -> bool {
        self.user_count || self.subscription_count
    }

    /// Adds the requested attributes of `stats` to a JSON object.
    pub(super) fn write(self, stats: ChannelStats, out: &mut Map<String, Value>) {
        if self.user_count {
            out.insert("user_count".into(), stats.user_count.into());
        }
        if self.subscription_count {
            out.insert("subscription_count".into(), stats.subscription_count.into());
        }
    }
}

/// One event, validated, ready to publish.
pub(super) struct Publication {
    name: EventName,
    channels: Vec<ChannelName>,
    data: Arc<str>,
    except: Option<SocketId>,
    info: InfoAttributes,
}

pub async fn trigger(
    State(api): State<Arc<Api>>,
    Path(app_id): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    let body: EventBody = parse_body(&req)?;
    let channels = match (body.channels, body.channel) {
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Give either `channels` or `channel`, not both",
            ))
        }
        (None, None) => return Err(ApiError::bad_request("Missing `channels`")),
    };
    // `socket_id` and `info` may also come in the query string.
    let socket_id = body
        .socket_id
        .or_else(|| req.param("socket_id").map(str::to_owned));
    let info = body.info.or_else(|| req.param("info").map(str::to_owned));
    let publication = validate(&req.app, &body.name, channels, body.data, socket_id, info)?;
    count_events(&api, &req.app, 1).await?;
    publish(&api, &req.app, &publication).await?;
    let mut response = Map::new();
    if publication.info.any() {
        let mut per_channel = Map::new();
        for channel in &publication.channels {
            let attrs = channel_attributes(&api, &req.app, channel, publication.info).await?;
            per_channel.insert(channel.to_string(), Value::Object(attrs));
        }
        response.insert("channels".into(), Value::Object(per_channel));
    }
    Ok(Json(Value::Object(response)))
}

pub async fn trigger_batch(
    State(api): State<Arc<Api>>,
    Path(app_id): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    let body: BatchBody = parse_body(&req)?;
    if body.batch.is_empty() {
        return Err(ApiError::bad_request("Batch is empty"));
    }
    if body.batch.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "Batch has {} events; at most {MAX_BATCH} are allowed",
            body.batch.len()
        )));
    }
    let publications = body
        .batch
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            validate(
                &req.app,
                &e.name,
                vec![e.channel],
                e.data,
                e.socket_id,
                e.info,
            )
            .map_err(|err| ApiError::new(err.status, format!("batch[{i}]: {}", err.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    count_events(&api, &req.app, publications.len()).await?;
    for p in &publications {
        publish(&api, &req.app, p).await?;
    }
    let mut response = Map::new();
    if publications.iter().any(|p| p.info.any()) {
        let mut items = Vec::with_capacity(publications.len());
        for p in &publications {
            let attrs = match p.channels.first() {
                Some(channel) if p.info.any() => {
                    channel_attributes(&api, &req.app, channel, p.info).await?
                }
                _ => Map::new(),
            };
            items.push(Value::Object(attrs));
        }
        response.insert("batch".into(), Value::Array(items));
    }
    Ok(Json(Value::Object(response)))
}

pub(super) fn parse_body<T: for<'de> Deserialize<'de>>(req: &SignedRequest) -> Result<T, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "Request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

pub(super) fn validate(
    app: &App,
    name: &str,
    channels: Vec<String>,
    data: Option<Box<RawValue>>,
    socket_id: Option<String>,
    info: Option<String>,
) -> Result<Publication, ApiError> {
    let name = EventName::parse(name)
        .map_err(|e| ApiError::bad_request(format!("Invalid event name: {e}")))?;
    if channels.is_empty() {
        return Err(ApiError::bad_request("`channels` is empty"));
    }
    if channels.len() > MAX_CHANNELS {
        return Err(ApiError::bad_request(format!(
            "{} channels given; at most {MAX_CHANNELS} are allowed",
            channels.len()
        )));
    }
    let mut parsed: Vec<ChannelName> = Vec::with_capacity(channels.len());
    for c in &channels {
        let channel = ChannelName::parse(c, app.max_channel_name_length).map_err(|e| {
            ApiError::bad_request(format!("Invalid channel name {:?}: {e}", clip(c)))
        })?;
        // The same channel twice would deliver the event twice.
        if !parsed.contains(&channel) {
            parsed.push(channel);
        }
    }
    if parsed.len() > 1
        && parsed
            .iter()
            .any(|c| c.kind() == ChannelKind::PrivateEncrypted)
    {
        return Err(ApiError::bad_request(
            "Events to an encrypted channel must be published to that channel alone",
        ));
    }
    let data = data.ok_or_else(|| ApiError::bad_request("Missing `data`"))?;
    let data: Arc<str> = string_or_raw(&data).into();
    if data.len() > app.max_event_payload_bytes {
        return Err(ApiError::too_large(format!(
            "Event data is {} bytes; the limit is {} bytes",
            data.len(),
            app.max_event_payload_bytes
        )));
    }
    let except = socket_id
        .filter(|s| !s.is_empty())
        .map(|s| SocketId::parse(&s))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("Invalid socket_id: {e}")))?;
    let info = InfoAttributes::parse(info.as_deref())?;
    Ok(Publication {
        name,
        channels: parsed,
        data,
        except,
        info,
    })
}

/// Event data is normally a string and is forwarded as it is; any other JSON value is
/// forwarded as its JSON text.
fn string_or_raw(raw: &RawValue) -> String {
    let text = raw.get();
    if text.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(text) {
            return s;
        }
    }
    text.to_owned()
}

pub(super) async fn publish(api: &Api, app: &App, p: &Publication) -> Result<(), ApiError> {
    for channel in &p.channels {
        let event = ChannelEvent {
            app: app.id.clone(),
            channel: channel.clone(),
            except: p.except,
            message: ChannelMessage::Event {
                name: p.name.clone(),
                data: p.data.clone(),
                user_id: None,
            },
        };
        api.node.trigger(&event, app.cache_ttl).await?;
    }
    Ok(())
}

/// The requested attributes of one channel; `user_count` exists for presence channels only.
async fn channel_attributes(
    api: &Api,
    app: &App,
    channel: &ChannelName,
    info: InfoAttributes,
) -> Result<Map<String, Value>, ApiError> {
    let stats = api.node.channel(&app.id, channel).await?;
    let mut attrs = Map::new();
    let applicable = InfoAttributes {
        user_count: info.user_count && channel.kind() == ChannelKind::Presence,
        ..info
    };
    applicable.write(stats, &mut attrs);
    Ok(attrs)
}
