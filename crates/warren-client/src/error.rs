//! Errors of the HTTP API client and of webhook verification.

use std::error::Error as _;
use std::fmt;

/// Why an HTTP API call failed.
///
/// [`ApiError::status`] and [`ApiError::body`] give the server's answer when there was one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request was rejected before it was sent: an invalid channel or event name, too many
    /// channels, a malformed socket id, data that does not serialize...
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client configuration is unusable (bad base URL, bad encryption master key, or a
    /// feature that needs a setting that is missing).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The server answered with a status other than 2xx. `body` is its answer, verbatim.
    #[error("HTTP {status}: {}", message_from_body(.body))]
    Status { status: u16, body: String },
    /// The request could not be sent or its answer not read (connection refused, timeout,
    /// TLS failure, connection reset...).
    #[error("request failed: {}", TransportChain(.0))]
    Transport(#[source] reqwest::Error),
    /// The server answered 2xx with a body that is not the expected JSON.
    #[error("unexpected response from the server: {source}; body: {body}")]
    Decode {
        body: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ApiError {
    /// The HTTP status of a [`ApiError::Status`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's response body of a [`ApiError::Status`] or [`ApiError::Decode`] error.
    pub fn body(&self) -> Option<&str> {
        match self {
            ApiError::Status { body, .. } | ApiError::Decode { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The server's error message of a [`ApiError::Status`] error: the `error` or `message`
    /// field when the body is a JSON object that has one, otherwise the trimmed body.
    pub fn server_message(&self) -> Option<String> {
        match self {
            ApiError::Status { body, .. } => Some(message_from_body(body)),
            _ => None,
        }
    }

    /// True when the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ApiError::Transport(e) if e.is_timeout())
    }
}

/// The human part of an error body: plain text as is, or the `error` / `message` field of a
/// JSON object.
pub(crate) fn message_from_body(body: &str) -> String {
    let trimmed = body.trim();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(trimmed) {
        for field in ["error", "message"] {
            if let Some(serde_json::Value::String(s)) = map.get(field) {
                return s.clone();
            }
        }
    }
    if trimmed.is_empty() {
        "(empty body)".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Displays a reqwest error with its causes (`error sending request: connection refused`).
struct TransportChain<'a>(&'a reqwest::Error);

impl fmt::Display for TransportChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Why a webhook request was rejected by [`crate::Client::verify_webhook`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// `X-Pusher-Key` is not this app's key.
    #[error("X-Pusher-Key {given:?} is not this app's key")]
    WrongKey { given: String },
    /// `X-Pusher-Signature` does not match the body.
    #[error("X-Pusher-Signature does not match the body")]
    InvalidSignature,
    /// The body is signed correctly but is not `{"time_ms":..,"events":[..]}`.
    #[error("invalid webhook body: {0}")]
    InvalidBody(#[source] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_from_json_or_text() {
        assert_eq!(message_from_body(r#"{"error":"nope"}"#), "nope");
        assert_eq!(message_from_body(r#"{"message":"bad"}"#), "bad");
        assert_eq!(message_from_body("Unknown app\n"), "Unknown app");
        assert_eq!(message_from_body(""), "(empty body)");
        let e = ApiError::Status {
            status: 404,
            body: "Unknown app".into(),
        };
        assert_eq!(e.to_string(), "HTTP 404: Unknown app");
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.server_message().as_deref(), Some("Unknown app"));
    }
}
