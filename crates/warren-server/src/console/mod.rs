//! The operator's side of the HTTP port: the monitor stream (`GET /monitor`, Server-Sent
//! Events, always served) and, when `[console] enabled`, the web debug console at `/console`
//! (static assets compiled into the binary) with the queries it makes.
//!
//! Both are authenticated the same way ([`access`]): an app's key and secret, signed like a
//! REST API request (that app only), or the operator token (every app).

mod access;
mod assets;
mod queries;
mod stream;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppRegistry;
use crate::node::Node;

/// What the handlers use.
pub(crate) struct Console {
    pub apps: Arc<dyn AppRegistry>,
    pub node: Arc<Node>,
    /// `[monitor] operator_token`: grants every app.
    pub operator_token: Option<String>,
    /// Allowed difference between a signed request's `auth_timestamp` and this server's clock.
    pub timestamp_tolerance_secs: u64,
    /// `[console] enabled`: serve the page and its queries.
    pub page: bool,
}

/// `/monitor` always; `/console` and its queries when the console is enabled.
pub(crate) fn routes(console: Arc<Console>) -> Router {
    let router = Router::new().route("/monitor", get(stream::monitor));
    let router = if console.page {
        router
            .route("/console", get(assets::page))
            .route("/console/", get(assets::page))
            .route("/console/console.js", get(assets::script))
            .route("/console/console.css", get(assets::style))
            .route("/console/api/channels", get(queries::channels))
            .route("/console/api/members", get(queries::members))
            .route("/console/api/trigger", post(queries::trigger))
    } else {
        router
    };
    router.with_state(console)
}

/// A refused or failed request: the status and a message saying why, as `{"error": ...}`.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
