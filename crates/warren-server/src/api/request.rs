//! Authenticating an API request: Pusher's signature over method, path and query, the body's
//! MD5, the timestamp window, and the app's key (docs/PROTOCOL.md, "HTTP API").

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::StatusCode;
use bytes::Bytes;
use warren_protocol::auth::verify_rest_request;

use super::error::ApiError;
use super::Api;
use crate::app::App;
use crate::extend::{ApiRefusal, ApiRequest};

/// Room for everything in a request besides event data: names, ids, JSON punctuation.
const BODY_OVERHEAD: usize = 64 * 1024;
/// Events per batch, as Pusher.
pub const MAX_BATCH: usize = 10;

/// A request whose signature checked out, for the app it names.
pub struct SignedRequest {
    pub app: Arc<App>,
    /// Decoded query parameters, keys lowercased (`info`, `filter_by_prefix`, `socket_id`...).
    pub params: Vec<(String, String)>,
    pub body: Bytes,
}

impl SignedRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which app a request is for: from the path, or (prefix-less routes) from its `auth_key`.
pub enum AppBy<'a> {
    Id(&'a str),
    AuthKey,
}

/// Reads the body (bounded before it is buffered) and verifies the request.
pub async fn authenticate(
    api: &Api,
    req: Request,
    app_by: AppBy<'_>,
) -> Result<SignedRequest, ApiError> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let app = match app_by {
        AppBy::Id(id) => api.apps.by_id(id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("Unknown app: {}", clip(id)))
        })?,
        AppBy::AuthKey => app_from_auth_key(api, query)?,
    };
    let body = read_body(body, body_limit(&app), api.request_timeout).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let tolerance = i64::try_from(api.timestamp_tolerance_secs).unwrap_or(i64::MAX);
    let params = app
        .verify_with(|secret| {
            verify_rest_request(
                parts.method.as_str(),
                parts.uri.path(),
                query,
                &body,
                |key| (key == app.key.as_str()).then(|| secret.to_owned()),
                now,
                tolerance,
            )
        })
        .map_err(|e| {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            ApiError::new(status, e.to_string())
        })?;
    if !app.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Application is disabled",
        ));
    }
    super::limits::count_request(api, &app).await?;
    // INVARIANT(extensions-off-the-path): one check per request without API extensions.
    if let Some(extensions) = &api.extensions {
        let request = ApiRequest {
            app: &app,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            params: &params,
            body: &body,
        };
        extensions.check(&request).await.map_err(refused)?;
    }
    Ok(SignedRequest { app, params, body })
}

/// An extension's refusal as the API answers it.
pub fn refused(refusal: ApiRefusal) -> ApiError {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
    ApiError::new(status, refusal.message)
}

fn app_from_auth_key(api: &Api, query: &str) -> Result<Arc<App>, ApiError> {
    let params = warren_protocol::auth::parse_query(query)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let key = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("auth_key"))
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Missing auth_key"))?;
    api.apps.by_key(key).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Unknown app key: {}", clip(key)),
        )
    })
}

/// The largest body an app's requests may have: a full batch of maximal events, with every
/// byte of data JSON-escaped to two, plus the rest of the request.
fn body_limit(app: &App) -> usize {
    app.max_event_payload_bytes
        .saturating_mul(2 * MAX_BATCH)
        .saturating_add(BODY_OVERHEAD)
}

/// Reads the body whole, refusing one larger than `limit` or slower than `deadline`
/// (`server.request_timeout_ms`): a trickled body must not hold a connection.
async fn read_body(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(deadline, to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "Request body not received within {} ms",
                    deadline.as_millis()
                ),
            )
        })?;
    read.map_err(|_| {
        ApiError::too_large(format!(
            "Request body larger than {limit} bytes (or unreadable)"
        ))
    })
}

pub fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}
