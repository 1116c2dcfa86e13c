//! The Pusher HTTP API (docs/PROTOCOL.md, "HTTP API"): publishing events and querying
//! channels, with Pusher's request signatures. Handlers go through the `Node` only, so a
//! cluster backend makes every answer cluster-wide without changes here.
//!
//! Every request is authenticated by [`request::SignedRequest`] before its body is parsed;
//! every failure is an [`error::ApiError`] with Pusher's status code and a message saying
//! what was wrong.

mod channels;
mod error;
mod events;
mod extension;
mod limits;
mod metered;
mod request;
mod users;

use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppRegistry;
use crate::extend::ApiExtensions;
use crate::metrics::Metrics;
use crate::node::Node;

/// What the API's handlers use.
pub(crate) struct Api {
    pub apps: Arc<dyn AppRegistry>,
    pub node: Arc<Node>,
    /// Allowed difference between a request's `auth_timestamp` and this server's clock.
    pub timestamp_tolerance_secs: u64,
    /// How long a request's body may take to arrive (`server.request_timeout_ms`).
    pub request_timeout: std::time::Duration,
    /// API middlewares and `x-` routes, when any are registered.
    pub extensions: Option<Arc<ApiExtensions>>,
    pub metrics: Metrics,
}

/// Routes of the HTTP API, to merge into the server's router.
pub(crate) fn routes(api: Arc<Api>) -> Router {
    extension::routes(&api, Router::new())
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
        .route(
            "/apps/{app_id}/users/{user_id}/events",
            post(users::send_to_user),
        )
        // pusher-http-python posts here, without the /apps prefix; the app comes from auth_key.
        .route(
            "/users/{user_id}/terminate_connections",
            post(users::terminate_connections_by_key),
        )
        .route_layer(middleware::from_fn_with_state(
            api.clone(),
            metered::metered,
        ))
        .with_state(api)
}
