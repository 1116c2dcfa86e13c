//! What the console asks besides the stream: channels and connections of an app, a presence
//! channel's members, and publishing an event (the dashboard's "trigger" form). Parameters
//! come in the query (signed, see [`super::access`]); answers are JSON.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use warren_protocol::{ChannelKind, ChannelName, EventName};

use super::access::{authorize, Granted};
use super::{Console, Refusal};
use crate::app::App;
use crate::cluster::{BackendError, ChannelEvent, ChannelMessage};

fn unavailable(e: BackendError) -> Refusal {
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn granted(console: &Console, req: Request) -> Result<Granted, Refusal> {
    let (parts, _) = req.into_parts();
    let has_body = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    authorize(console, &parts, has_body)
}

fn channel_param(app: &App, g: &Granted) -> Result<ChannelName, Refusal> {
    let name = g
        .param("channel")
        .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "Missing channel"))?;
    ChannelName::parse(name, app.max_channel_name_length).map_err(|e| {
        let shown: String = name.chars().take(100).collect();
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid channel name {shown:?}: {e}"),
        )
    })
}

/// `GET /console/api/channels?app_id=`: occupied channels cluster-wide with their counts, and
/// the app's connections on this node.
pub(super) async fn channels(
    State(console): State<Arc<Console>>,
    req: Request,
) -> Result<Json<Value>, Refusal> {
    let g = granted(&console, req)?;
    let app = g.app(&console)?;
    let list = console
        .node
        .channels(&app.id, "")
        .await
        .map_err(unavailable)?;
    let channels: Vec<Value> = list
        .iter()
        .map(|(name, stats)| {
            let mut c = json!({
                "name": name.as_str(),
                "subscription_count": stats.subscription_count,
            });
            if name.kind() == ChannelKind::Presence {
                c["user_count"] = stats.user_count.into();
            }
            c
        })
        .collect();
    Ok(Json(json!({
        "app_id": app.id.as_str(),
        "connections_here": app.connection_count(),
        "channels": channels,
    })))
}

/// `GET /console/api/members?app_id=&channel=`: a presence channel's members, cluster-wide.
pub(super) async fn members(
    State(console): State<Arc<Console>>,
    req: Request,
) -> Result<Json<Value>, Refusal> {
    let g = granted(&console, req)?;
    let app = g.app(&console)?;
    let channel = channel_param(&app, &g)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "Members exist on presence- channels only",
        ));
    }
    let members = console
        .node
        .presence_members(&app.id, &channel)
        .await
        .map_err(unavailable)?;
    let users: Vec<Value> = members
        .iter()
        .map(|m| {
            let info = m
                .user_info
                .as_deref()
                .and_then(|i| serde_json::from_str::<Value>(i).ok());
            json!({ "id": m.user_id.as_str(), "user_info": info })
        })
        .collect();
    Ok(Json(json!({ "channel": channel.as_str(), "users": users })))
}

/// `POST /console/api/trigger?app_id=&channel=&event=&data=`: publishes as the HTTP API does.
pub(super) async fn trigger(
    State(console): State<Arc<Console>>,
    req: Request,
) -> Result<Json<Value>, Refusal> {
    let g = granted(&console, req)?;
    let app = g.app(&console)?;
    let channel = channel_param(&app, &g)?;
    let name = EventName::parse(g.param("event").unwrap_or(""))
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("Invalid event name: {e}")))?;
    let data = g.param("data").unwrap_or("");
    if data.len() > app.max_event_payload_bytes {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Event data is {} bytes; the limit is {} bytes",
                data.len(),
                app.max_event_payload_bytes
            ),
        ));
    }
    let event = ChannelEvent {
        app: app.id.clone(),
        channel,
        except: None,
        message: ChannelMessage::Event {
            name,
            data: Arc::from(data),
            user_id: None,
        },
    };
    console
        .node
        .trigger(&event, app.cache_ttl)
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({})))
}
