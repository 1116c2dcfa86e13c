//! Readiness, for load balancers and orchestrators. `/up` (in `http`) says the process is
//! alive; `/ready` says this node should be sent traffic: its apps are loaded, the cluster
//! backend is reachable and it is not stopping; `/up/{app_id}` says the same for one app
//! (404 for an app it does not know, 503 for a disabled one).
//!
//! A probe costs no I/O: the stop flag is the server's shutdown channel itself (so `/ready`
//! answers 503 from the moment a stop is asked for), and the backend's health is what it
//! already knows (Redis: its connections' state and when its last heartbeat went through).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::app::AppRegistry;
use crate::node::Node;

/// What readiness is judged from.
pub(crate) struct Readiness {
    pub apps: Arc<dyn AppRegistry>,
    pub node: Arc<Node>,
    /// The server's stop flag: true from the moment a stop is asked for.
    pub stopping: watch::Receiver<bool>,
}

/// Why the node should not get traffic.
enum NotReady {
    Draining,
    AppsLoading,
    Backend(String),
}

impl Readiness {
    fn check(&self) -> Result<(), NotReady> {
        if *self.stopping.borrow() {
            return Err(NotReady::Draining);
        }
        if !self.apps.is_ready() {
            return Err(NotReady::AppsLoading);
        }
        self.node
            .backend_health()
            .map_err(|e| NotReady::Backend(e.to_string()))
    }
}

type Answer = (StatusCode, Json<Value>);

fn not_ready(why: NotReady) -> Answer {
    let (status, reason) = match why {
        NotReady::Draining => ("draining", "the server is shutting down".to_owned()),
        NotReady::AppsLoading => ("loading", "the apps are not loaded yet".to_owned()),
        NotReady::Backend(e) => ("unavailable", e),
    };
    let body = json!({ "status": status, "reason": reason });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

pub(crate) fn routes(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/up/{app_id}", get(app_up))
        .with_state(readiness)
}

async fn ready(State(r): State<Arc<Readiness>>) -> Answer {
    match r.check() {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(why) => not_ready(why),
    }
}

async fn app_up(State(r): State<Arc<Readiness>>, Path(app_id): Path<String>) -> Answer {
    let Some(app) = r.apps.by_id(&app_id) else {
        let id: String = app_id.chars().take(100).collect();
        let body = json!({ "error": format!("Unknown app: {id}") });
        return (StatusCode::NOT_FOUND, Json(body));
    };
    if !app.enabled {
        let body = json!({ "status": "disabled", "app_id": app.id.as_str() });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    match r.check() {
        Ok(()) => {
            let body = json!({ "status": "ok", "app_id": app.id.as_str() });
            (StatusCode::OK, Json(body))
        }
        Err(why) => not_ready(why),
    }
}
