//! The HTTP side of the port: the Pusher REST API (`api`) and health endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::{self, Api};
use crate::config::Role;
use crate::connections::Connections;
use crate::node::Node;

/// What the health endpoint reports.
pub(crate) struct Health {
    pub node_id: String,
    pub role: Role,
    pub connections: Arc<Connections>,
    pub node: Arc<Node>,
}

/// Health endpoints, and the REST API when `api` is given (a push-only node answers 404 to
/// it: API requests belong on an api node).
pub(crate) fn router(health: Arc<Health>, api: Option<Arc<Api>>) -> Router {
    let router = Router::new()
        .route(
            "/",
            get(|| async { "Warren: Pusher-compatible push server\n" }),
        )
        .route("/up", get(health_report))
        .route("/health", get(health_report))
        .with_state(health);
    match api {
        Some(api) => router.merge(api::routes(api)),
        None => router,
    }
}

/// Liveness plus the numbers an operator looks at first.
async fn health_report(State(health): State<Arc<Health>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "node_id": health.node_id,
        "role": health.role.as_str(),
        "connections": health.connections.len(),
        "local_channels": health.node.local_channel_count(),
        "event_loss_resyncs": health.node.lost_event_counts().0,
        "event_loss_closed_connections": health.node.lost_event_counts().1,
    }))
}
