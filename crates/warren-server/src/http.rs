//! The HTTP side of the port: the Pusher REST API (`api`) and health endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::server::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route(
            "/",
            get(|| async { "Warren: Pusher-compatible push server\n" }),
        )
        .route("/up", get(health))
        .route("/health", get(health));
    // A push-only node answers 404 to the API: requests belong on an api node.
    if shared.config.role.serves_api() {
        router = router.merge(crate::api::routes());
    }
    router.with_state(shared)
}

/// Liveness plus the numbers an operator looks at first.
async fn health(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let connections: u64 = shared.apps.all().iter().map(|a| a.connection_count()).sum();
    Json(json!({
        "status": "ok",
        "node_id": shared.node_id,
        "role": shared.config.role.as_str(),
        "connections": connections,
        "local_channels": shared.hub.channel_count(),
    }))
}
