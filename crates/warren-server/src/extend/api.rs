//! HTTP API extensions: middlewares that inspect (or refuse) authenticated API requests, and
//! routes of the program's own under `/apps/{app_id}/x-{name}`, signed as any API request.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::handle::ServerHandle;
use crate::app::App;

/// An API request whose signature checked out, as middlewares and `x-` routes see it.
pub struct ApiRequest<'a> {
    pub(crate) app: &'a App,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) params: &'a [(String, String)],
    pub(crate) body: &'a [u8],
}

impl ApiRequest<'_> {
    pub fn app(&self) -> &App {
        self.app
    }

    /// `GET`, `POST`, ...
    pub fn method(&self) -> &str {
        self.method
    }

    /// The path, without the query (`/apps/1/events`).
    pub fn path(&self) -> &str {
        self.path
    }

    /// A query parameter (names lowercased), signature parameters included.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body, as signed (its MD5 was checked).
    pub fn body(&self) -> &[u8] {
        self.body
    }
}

/// An HTTP answer that refuses a request: `status` and a plain-text message, as the API's
/// own errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRefusal {
    pub status: u16,
    pub message: String,
}

impl ApiRefusal {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Sees every API request after its authentication, before it is handled (publishes,
/// queries, `x-` routes), in the order middlewares were added; the first refusal answers.
#[async_trait]
pub trait ApiMiddleware: Send + Sync + 'static {
    async fn on_request(&self, request: &ApiRequest<'_>) -> Result<(), ApiRefusal>;
}

/// A route of the program's own, `/apps/{app_id}/x-{name}` for any method; the answer is
/// `200` with the returned JSON, or the refusal.
#[async_trait]
pub trait ApiRoute: Send + Sync + 'static {
    async fn handle(
        &self,
        request: &ApiRequest<'_>,
        server: &ServerHandle,
    ) -> Result<serde_json::Value, ApiRefusal>;
}

/// What the API module runs: only present when something was registered.
pub(crate) struct ApiExtensions {
    pub middlewares: Vec<Arc<dyn ApiMiddleware>>,
    pub routes: BTreeMap<String, Arc<dyn ApiRoute>>,
    pub server: ServerHandle,
}

impl ApiExtensions {
    /// Runs every middleware on an authenticated request.
    pub(crate) async fn check(&self, request: &ApiRequest<'_>) -> Result<(), ApiRefusal> {
        for middleware in &self.middlewares {
            middleware.on_request(request).await?;
        }
        Ok(())
    }
}

/// Route names: what may follow `x-` in one path segment.
pub(crate) fn check_route_name(name: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
    if name.is_empty() || name.len() > 64 || !name.bytes().all(ok) {
        return Err(format!(
            "API route name {name:?}: use 1 to 64 of a-z, 0-9, - and _ (it is served at /apps/{{app_id}}/x-{name})"
        ));
    }
    Ok(())
}
