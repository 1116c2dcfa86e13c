//! Counts every API request answered, by app, endpoint and status, and times it
//! (`warren_api_requests_total`, `warren_api_request_duration_seconds`). A middleware around
//! the API's routes only, so the labels come from a fixed set: a request that matches no route
//! is not counted, and an app is named only when it exists.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use warren_protocol::AppId;

use super::Api;

/// Times and counts the request (one branch when metrics are off).
pub(super) async fn metered(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    if !api.metrics.is_enabled() {
        return next.run(request).await;
    }
    let endpoint = endpoint(request.uri().path());
    let app = app_of(&api, request.uri().path(), request.uri().query());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    api.metrics
        .api_request(app.as_ref(), endpoint, status, started.elapsed());
    response
}

/// The app a request is for, if it exists: from the path, or from `auth_key` where the path
/// has none.
fn app_of(api: &Api, path: &str, query: Option<&str>) -> Option<AppId> {
    if let Some(rest) = path.strip_prefix("/apps/") {
        let id = rest.split('/').next()?;
        return api.apps.by_id(id).map(|app| app.id.clone());
    }
    let key = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("auth_key="))?;
    api.apps.by_key(key).map(|app| app.id.clone())
}

/// The route a path matched, as the `endpoint` label names it.
fn endpoint(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["apps", _, "events"] => "events",
        ["apps", _, "batch_events"] => "batch_events",
        ["apps", _, "channels"] => "channels",
        ["apps", _, "channels", _] => "channel",
        ["apps", _, "channels", _, "users"] => "channel_users",
        ["apps", _, "users", _, "terminate_connections"]
        | ["users", _, "terminate_connections"] => "terminate_connections",
        ["apps", _, "users", _, "events"] => "user_events",
        ["apps", _, x, ..] if x.starts_with("x-") => "extension",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn every_route_has_its_name() {
        for (path, name) in [
            ("/apps/1/events", "events"),
            ("/apps/1/batch_events", "batch_events"),
            ("/apps/1/channels", "channels"),
            ("/apps/1/channels/presence-a", "channel"),
            ("/apps/1/channels/presence-a/users", "channel_users"),
            (
                "/apps/1/users/u/terminate_connections",
                "terminate_connections",
            ),
            ("/users/u/terminate_connections", "terminate_connections"),
            ("/apps/1/users/u/events", "user_events"),
            ("/apps/1/x-quota", "extension"),
            ("/somewhere/else", "other"),
        ] {
            assert_eq!(endpoint(path), name, "{path}");
        }
    }
}
