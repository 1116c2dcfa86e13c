//! The log of connection errors: one line per error, with its kind, the peer, the socket id
//! where there is one, and the reason as fields, and no flood.
//!
//! A connection error is something that went wrong with one client's connection: a handshake
//! that timed out or was malformed, an upgrade or an app refused, a protocol violation, a
//! client too slow to read or silent to pings, a socket that failed. Each is reported here
//! with [`report`], by the part that saw it (`listener`, `connection`, `http_connection`).
//! Ten thousand clients failing their handshake at once would be ten thousand lines, so each
//! kind has a budget of lines per window (`[log] connection_error_lines` per
//! `connection_error_window_secs`); past it errors are counted, and the count is written as one
//! "N similar connection errors suppressed" line when the window ends (`limiter.rs`), or when
//! the server stops.
//!
//! Logging is one stream per process, like the `tracing` subscriber it writes to, so the
//! limiter is too: the last server started in a process sets its budget. A line that the
//! log's level filters out is neither written nor counted, and costs no lock.

mod limiter;

use std::fmt::Display;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::field::display;

use crate::config::LogConfig;
use limiter::Limiter;

/// What went wrong; the `kind` field of the line, and the unit of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The request head did not arrive whole within `server.handshake_timeout_ms`.
    HandshakeTimeout,
    /// The connection failed or closed in the middle of its request head.
    HandshakeAborted,
    /// A WebSocket upgrade the server cannot accept (answered 400 or 426).
    BadRequest,
    /// An upgrade refused by a connection cap (503 or 429).
    UpgradeRefused,
    /// An upgrade refused by the app's admission (closed with 4001, 4003, 4004 or 4007).
    AppRefused,
    /// The `101` answer and `connection_established` could not be written in time.
    HelloFailed,
    /// A frame that breaks RFC 6455 or the size limit (closed with 1002, 1007 or 1009).
    ProtocolError,
    /// The client read too slowly and its queue filled (closed with 4100).
    SlowConsumer,
    /// The client did not answer a ping in time (closed with 4201).
    PongTimeout,
    /// The socket refused a write, or took no byte for `server.write_timeout_ms`.
    WriteFailed,
    /// The connection ended without a close frame (reset, or closed underneath).
    ClientGone,
    /// An HTTP connection broke its head or write deadline.
    HttpDeadline,
    /// `accept` failed (out of file descriptors, usually): the only kind logged as a warning.
    AcceptFailed,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::HandshakeTimeout => "handshake_timeout",
            Kind::HandshakeAborted => "handshake_aborted",
            Kind::BadRequest => "bad_request",
            Kind::UpgradeRefused => "upgrade_refused",
            Kind::AppRefused => "app_refused",
            Kind::HelloFailed => "hello_failed",
            Kind::ProtocolError => "protocol_error",
            Kind::SlowConsumer => "slow_consumer",
            Kind::PongTimeout => "pong_timeout",
            Kind::WriteFailed => "write_failed",
            Kind::ClientGone => "client_gone",
            Kind::HttpDeadline => "http_deadline",
            Kind::AcceptFailed => "accept_failed",
        }
    }

    /// Caused by the server's own state rather than by one client.
    fn is_warning(self) -> bool {
        self == Kind::AcceptFailed
    }
}

/// One error, as its line shows it.
pub(crate) struct ConnectionError<'a> {
    pub kind: Kind,
    /// The TCP peer (a proxy's address when the client is behind one).
    pub peer: Option<SocketAddr>,
    /// Once the connection has one.
    pub socket_id: Option<&'a dyn Display>,
    /// The WebSocket close code or the HTTP status sent, if any.
    pub code: Option<u16>,
    pub reason: &'a dyn Display,
}

impl<'a> ConnectionError<'a> {
    pub(crate) fn new(kind: Kind, peer: Option<SocketAddr>, reason: &'a dyn Display) -> Self {
        ConnectionError {
            kind,
            peer,
            socket_id: None,
            code: None,
            reason,
        }
    }

    pub(crate) fn code(self, code: u16) -> Self {
        ConnectionError {
            code: Some(code),
            ..self
        }
    }

    pub(crate) fn socket(self, id: &'a dyn Display) -> Self {
        ConnectionError {
            socket_id: Some(id),
            ..self
        }
    }

    /// Writes its line, or counts it (see [`report`]).
    pub(crate) fn report(self) {
        report(self);
    }
}

/// The lines per kind and window until the server configures them; `LogConfig`'s defaults.
static LIMITER: Mutex<Limiter<Kind>> = parking_lot::const_mutex(Limiter::new(
    LogConfig::DEFAULT_CONNECTION_ERROR_LINES,
    Duration::from_secs(LogConfig::DEFAULT_CONNECTION_ERROR_WINDOW_SECS),
));

/// How often suppressed counts of ended windows are looked for.
const SUPPRESSED_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Sets the budget of lines from the configuration.
pub(crate) fn configure(log: &LogConfig) {
    let window = Duration::from_secs(log.connection_error_window_secs.get());
    LIMITER
        .lock()
        .set_budget(log.connection_error_lines, window);
}

/// Writes `error`'s line, unless its kind has spent its budget (then it is counted).
pub(crate) fn report(error: ConnectionError<'_>) {
    if !enabled(error.kind) {
        return;
    }
    let admit = LIMITER.lock().admit(error.kind, Instant::now());
    if let Some(count) = admit.ended {
        write_suppressed(error.kind, count);
    }
    if admit.write {
        write(&error);
    }
}

/// Writes the suppressed counts of windows that ended, every second until dropped.
pub(crate) async fn report_suppressed_forever() {
    loop {
        tokio::time::sleep(SUPPRESSED_CHECK_EVERY).await;
        let due = LIMITER.lock().due(Instant::now());
        for (kind, count) in due {
            write_suppressed(kind, count);
        }
    }
}

/// Writes every count not yet written, ended window or not: the server is stopping.
pub(crate) fn report_suppressed_now() {
    let counts = LIMITER.lock().drain();
    for (kind, count) in counts {
        write_suppressed(kind, count);
    }
}

/// Whether the log's level lets `kind` through: a caller with work to do for the line (asking
/// the socket for its peer) asks first.
pub(crate) fn enabled(kind: Kind) -> bool {
    if kind.is_warning() {
        tracing::enabled!(tracing::Level::WARN)
    } else {
        tracing::enabled!(tracing::Level::INFO)
    }
}

fn write(e: &ConnectionError<'_>) {
    let kind = display(e.kind.as_str());
    let peer = e.peer.map(display);
    let socket_id = e.socket_id.map(display);
    let (code, reason) = (e.code, display(e.reason));
    if e.kind.is_warning() {
        tracing::warn!(kind, peer, socket_id, code, reason, "connection error");
    } else {
        tracing::info!(kind, peer, socket_id, code, reason, "connection error");
    }
}

fn write_suppressed(of: Kind, count: NonZeroU64) {
    let (kind, suppressed) = (display(of.as_str()), count.get());
    let message = "similar connection errors suppressed";
    if of.is_warning() {
        tracing::warn!(kind, suppressed, "{suppressed} {message}");
    } else {
        tracing::info!(kind, suppressed, "{suppressed} {message}");
    }
}
