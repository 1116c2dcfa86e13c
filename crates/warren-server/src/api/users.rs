//! `POST /apps/{id}/users/{user_id}/terminate_connections` (and the prefix-less form).
//!
//! Only connections signed in as the user are closed. User sign-in is not implemented yet, so
//! no connection is signed in as anyone and there is nothing to close: the request is
//! authenticated, validated and answered, and closes nothing.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::Json;
use serde_json::{json, Value};
use warren_protocol::UserId;

use super::error::ApiError;
use super::request::{authenticate, clip, AppBy};
use super::Api;

pub async fn terminate_connections(
    State(api): State<Arc<Api>>,
    Path((app_id, user_id)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::Id(&app_id)).await?;
    check_user(&user_id, req.app.member_limits.max_user_id_length)?;
    Ok(Json(json!({})))
}

pub async fn terminate_connections_by_key(
    State(api): State<Arc<Api>>,
    Path(user_id): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let req = authenticate(&api, req, AppBy::AuthKey).await?;
    check_user(&user_id, req.app.member_limits.max_user_id_length)?;
    Ok(Json(json!({})))
}

fn check_user(user_id: &str, max_len: usize) -> Result<UserId, ApiError> {
    UserId::parse(user_id, max_len)
        .map_err(|e| ApiError::bad_request(format!("Invalid user id {:?}: {e}", clip(user_id))))
}
