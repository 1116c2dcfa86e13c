//! API failures as Pusher reports them: a status code and a plain-text message; a rate
//! limit's `429` is JSON (`{"error": ...}`) with `Retry-After`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::cluster::BackendError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Set on the app's own rate limits: the answer is JSON with `Retry-After` (an
    /// extension's 429 stays plain text, as the extension wrote it).
    retry_after_secs: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
}

impl ApiError {
    /// Over one of the app's API rates.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self {
            // Windows are one second long.
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(secs) = self.retry_after_secs {
            let body = Json(serde_json::json!({ "error": self.message }));
            let retry_after = [(header::RETRY_AFTER, secs.to_string())];
            return (self.status, retry_after, body).into_response();
        }
        let mut body = self.message;
        body.push('\n');
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}
