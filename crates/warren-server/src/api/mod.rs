//! The Pusher HTTP API (PROTOCOL.md section 10): publishing events and querying channels,
//! with Pusher's request signatures. Handlers go through the `Broker` and `ClusterState`
//! seams only, so a cluster backend makes every answer cluster-wide without changes here.
//!
//! Every request is authenticated by [`request::SignedRequest`] before its body is parsed;
//! every failure is an [`error::ApiError`] with Pusher's status code and a message saying
//! what was wrong.

mod channels;
pub mod error;
mod events;
pub mod request;
mod users;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::server::Shared;

/// Routes of the HTTP API, to merge into the server's router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/apps/{app_id}/events", post(events::trigger))
        .route("/apps/{app_id}/batch_events", post(events::trigger_batch))
        .route("/apps/{app_id}/channels", get(channels::list))
        .route("/apps/{app_id}/channels/{channel}", get(channels::info))
        .route(
            "/apps/{app_id}/channels/{channel}/users",
            get(channels::users),
        )
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(users::terminate_connections),
        )
        // pusher-http-python posts here, without the /apps prefix; the app comes from auth_key.
        .route(
            "/users/{user_id}/terminate_connections",
            post(users::terminate_connections_by_key),
        )
}
