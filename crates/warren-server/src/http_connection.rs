//! One HTTP/1.1 connection, served by hyper, with the deadlines hyper leaves to its user.
//!
//! hyper has no deadline of its own for a keep-alive connection that sends nothing, for a
//! request head trickled in byte by byte after the first request, or for a response the client
//! never reads. Without them a few thousand slow sockets hold every file descriptor. So every
//! HTTP connection runs beside a watchdog that ends it when one of these is broken:
//!
//! * **idle**: no request in flight and no byte of a new one for `http_idle_timeout_secs`;
//! * **head**: a request head begun (a byte arrived while idle) and not complete after
//!   `handshake_timeout_ms` (the first head is read within the same time before hyper sees
//!   the connection: `listener`);
//! * **write**: the socket took no byte of a response for `write_timeout_ms`.
//!
//! A request's body has its own deadline where it is read (`request_timeout_ms`, in the API).
//! The watchdog sleeps until the earliest deadline; the only events that can bring a deadline
//! closer (a head begins, a write blocks) wake it, so an idle connection costs one timer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::connection_errors::{ConnectionError, Kind};
use crate::transport::Transport;

/// The deadlines of one HTTP connection (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadlines {
    pub head: Duration,
    pub idle: Duration,
    pub write: Duration,
}

/// Serves HTTP/1.1 requests on `stream`, whose first bytes were already read into `prefix`,
/// until the client leaves or a deadline is broken.
pub(crate) async fn serve(
    stream: Transport,
    peer: SocketAddr,
    prefix: Bytes,
    router: axum::Router,
    deadlines: Deadlines,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        prefix,
        inner: stream,
        activity: activity.clone(),
    });
    let counted = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let in_flight = InFlight::start(counted.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(req.map(axum::body::Body::new)).await;
            drop(in_flight);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        _ = connection => {}
        broken = watchdog(&activity, deadlines) => deadline_broken(peer, broken),
    }
}

/// An idle keep-alive connection closed is the normal end of one; the other deadlines are
/// connection errors.
fn deadline_broken(peer: SocketAddr, deadline: &'static str) {
    if deadline == IDLE {
        tracing::debug!(%peer, "idle HTTP connection closed");
    } else {
        let why = format_args!("HTTP connection closed: {deadline} passed");
        ConnectionError::new(Kind::HttpDeadline, Some(peer), &why).report();
    }
}

/// Milliseconds since the connection began, and what the watchdog needs to know.
struct Activity {
    began: Instant,
    in_flight: AtomicU32,
    /// When the last request in flight ended (or the connection began).
    idle_since: AtomicU64,
    /// One more than when a byte arrived with no request in flight; 0: none since.
    head_started: AtomicU64,
    /// One more than when a write found the socket full; 0: the last write went through.
    write_blocked: AtomicU64,
    /// Woken when a deadline may have come closer.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            began: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn snapshot(&self) -> Snapshot {
        let stamp = |a: &AtomicU64| a.load(Ordering::Acquire).checked_sub(1);
        Snapshot {
            in_flight: self.in_flight.load(Ordering::Acquire) > 0,
            idle_since: self.idle_since.load(Ordering::Acquire),
            head_started: stamp(&self.head_started),
            write_blocked: stamp(&self.write_blocked),
        }
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
        {
            self.head_started.store(self.now() + 1, Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn write_done(&self, blocked: bool) {
        let was = self.write_blocked.load(Ordering::Acquire);
        if blocked && was == 0 {
            self.write_blocked.store(self.now() + 1, Ordering::Release);
            self.changed.notify_one();
        } else if !blocked && was != 0 {
            self.write_blocked.store(0, Ordering::Release);
        }
    }
}

/// A request in flight, counted until dropped (also when hyper drops it unfinished).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_started.store(0, Ordering::Release);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.idle_since.store(activity.now(), Ordering::Release);
        }
    }
}

/// What the deadlines depend on, at one moment (milliseconds since the connection began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    in_flight: bool,
    idle_since: u64,
    head_started: Option<u64>,
    write_blocked: Option<u64>,
}

/// The idle deadline's name, the one that is no error.
const IDLE: &str = "http_idle_timeout_secs";

/// The earliest moment a deadline breaks, and which one; `None` while a request is in flight
/// and writes go through.
fn next_deadline(s: Snapshot, d: Deadlines) -> Option<(u64, &'static str)> {
    let after = |t: u64, limit: Duration| {
        t.saturating_add(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX))
    };
    let write = s
        .write_blocked
        .map(|t| (after(t, d.write), "write_timeout_ms"));
    let waiting = (!s.in_flight).then(|| match s.head_started {
        Some(t) => (after(t, d.head), "handshake_timeout_ms"),
        None => (after(s.idle_since, d.idle), IDLE),
    });
    match (write, waiting) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Returns the name of the deadline once one is broken.
async fn watchdog(activity: &Activity, deadlines: Deadlines) -> &'static str {
    loop {
        let changed = activity.changed.notified();
        let now = activity.now();
        let wait = match next_deadline(activity.snapshot(), deadlines) {
            Some((at, which)) if at <= now => return which,
            Some((at, _)) => Duration::from_millis(at - now),
            // Nothing can break before the request ends; the next check after that is the
            // idle deadline, at least `idle` away.
            None => deadlines.idle,
        };
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The connection's socket: first the bytes already read, and every read and write noted.
struct Watched {
    prefix: Bytes,
    inner: Transport,
    activity: Arc<Activity>,
}

impl Watched {
    fn noted<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.activity.write_done(poll.is_pending());
        poll
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            self.activity.bytes_arrived();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.noted(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.noted(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Noted too: over TLS a flush is where a full socket shows.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.noted(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Deadlines = Deadlines {
        head: Duration::from_millis(10_000),
        idle: Duration::from_millis(60_000),
        write: Duration::from_millis(5_000),
    };

    fn idle_since(t: u64) -> Snapshot {
        Snapshot {
            in_flight: false,
            idle_since: t,
            head_started: None,
            write_blocked: None,
        }
    }

    #[test]
    fn an_idle_connection_gets_the_idle_deadline() {
        assert_eq!(
            next_deadline(idle_since(100), D),
            Some((60_100, "http_idle_timeout_secs"))
        );
    }

    #[test]
    fn a_begun_head_replaces_the_idle_deadline_with_the_head_deadline() {
        let s = Snapshot {
            head_started: Some(2_000),
            ..idle_since(100)
        };
        assert_eq!(next_deadline(s, D), Some((12_000, "handshake_timeout_ms")));
    }

    #[test]
    fn a_request_in_flight_has_no_deadline_until_a_write_blocks() {
        let busy = Snapshot {
            in_flight: true,
            ..idle_since(0)
        };
        assert_eq!(next_deadline(busy, D), None);
        let blocked = Snapshot {
            write_blocked: Some(700),
            ..busy
        };
        assert_eq!(next_deadline(blocked, D), Some((5_700, "write_timeout_ms")));
    }

    #[test]
    fn the_earliest_deadline_wins() {
        let s = Snapshot {
            write_blocked: Some(58_000),
            ..idle_since(0)
        };
        assert_eq!(
            next_deadline(s, D),
            Some((60_000, "http_idle_timeout_secs"))
        );
        let s = Snapshot {
            write_blocked: Some(1_000),
            ..idle_since(0)
        };
        assert_eq!(next_deadline(s, D), Some((6_000, "write_timeout_ms")));
    }
}
