//! Errors of the WebSocket client.

/// Why a WebSocket client operation failed, or why a connection ended.
///
/// It is `Clone` so that one error can be reported to several listeners (state watchers,
/// error handlers, waiting callers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The configuration is unusable (bad URL, empty key, missing authorizer...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TCP connection or the WebSocket handshake failed, or the connection was lost.
    #[error("connection failed: {0}")]
    Connect(String),
    /// Something did not happen in time (handshake, `connection_established`, a pong...).
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server closed the connection with this close code.
    #[error("the server closed the connection with code {code}: {reason}")]
    Closed { code: u16, reason: String },
    /// A `pusher:error` message from the server. `code` is `None` for the non-fatal errors
    /// that Pusher sends with `"code":null`.
    #[error("server error{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Server { code: Option<u16>, message: String },
    /// The channel authorizer or user authenticator failed (callback error, endpoint down,
    /// non-2xx answer, malformed answer).
    #[error("authorization for {target} failed: {message}")]
    Auth { target: String, message: String },
    /// The server refused a subscription (`pusher:subscription_error`).
    #[error("subscription to {channel} refused ({error_type}{}): {message}", status.map(|s| format!(", status {s}")).unwrap_or_default())]
    Subscription {
        channel: String,
        error_type: String,
        message: String,
        status: Option<u16>,
    },
    /// The operation needs an open connection and there is none right now.
    #[error("not connected")]
    NotConnected,
    /// The operation needs a subscribed channel.
    #[error("not subscribed to {0}")]
    NotSubscribed(String),
    /// A client event that cannot be sent (name without `client-`, public or encrypted
    /// channel, data that does not serialize).
    #[error("invalid client event: {0}")]
    InvalidEvent(String),
    /// An event on a `private-encrypted-` channel could not be decrypted.
    #[error("cannot decrypt an event on {channel}: {message}")]
    Decrypt { channel: String, message: String },
    /// The server sent something that is not a Pusher message.
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    /// The client was closed (or its task ended).
    #[error("the client is closed")]
    ClientClosed,
}
