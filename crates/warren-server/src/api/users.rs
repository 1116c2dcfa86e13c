//! The user endpoints: `POST /apps/{id}/users/{user_id}/terminate_connections` (and the
//! prefix-less form the Python SDK uses) and `POST /apps/{id}/users/{user_id}/events`.
//!
//! Both act through the user's `#server-to-user-<id>` channel, which every node with a
//! connection signed in as the user listens to: a terminate notice closes those connections
//! (4009) wherever they are; an event reaches the connections subscribed to the channel,
//! which only connections signed in as the user can be. (The SDKs' `sendToUser` publishes to
//! that channel through `/events`, which comes to the same.)

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use warren_protocol::user::UserChannel;
use warren_protocol::UserId;

use super::error::ApiError;
use super::events::{parse_body, publish, validate};
use super::limits::count_events;
use super::request::{authenticate, clip, AppBy, SignedRequest};
use super::Api;

pub async fn terminate_connections(
    State(api): State<Arc<Api>>,
    Path((app_id, user_id)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    terminate(&api, &req, &user_id).await
}

pub async fn terminate_connections_by_key(
    State(api): State<Arc<Api>>,
    Path(user_id): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::AuthKey).await?;
    terminate(&api, &req, &user_id).await
}

async fn terminate(api: &Api, req: &SignedRequest, user_id: &str) -> Result<Json<Value>, ApiError> {
    let user = check_user(user_id, req.app.member_limits.max_user_id_length)?;
    api.node.terminate_user(&req.app.id, &user).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct UserEventBody {
    name: String,
    data: Option<Box<RawValue>>,
    socket_id: Option<String>,
}

/// An event to every connection of one user: validated like any event, published to the
/// user's channel.
pub async fn send_to_user(
    State(api): State<Arc<Api>>,
    Path((app_id, user_id)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    let user = check_user(&user_id, req.app.member_limits.max_user_id_length)?;
    let body: UserEventBody = parse_body(&req)?;
    let channel = user.channel().to_string();
    let publication = validate(
        &req.app,
        &body.name,
        vec![channel],
        body.data,
        body.socket_id,
        None,
    )?;
    count_events(&api, &req.app, 1).await?;
    publish(&api, &req.app, &publication).await?;
    Ok(Json(json!({})))
}

/// A user id as signed in users have them: within the app's length limit and able to name its
/// `#server-to-user-` channel.
fn check_user(user_id: &str, max_len: usize) -> Result<UserChannel, ApiError> {
    UserId::parse(user_id, max_len)
        .and_then(UserChannel::new)
        .map_err(|e| ApiError::bad_request(format!("Invalid user id {:?}: {e}", clip(user_id))))
}
