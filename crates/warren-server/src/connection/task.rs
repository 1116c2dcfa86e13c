//! The long-lived task of one connection, a hand-written future.
//!
//! Between wake-ups a connection keeps exactly this task, so its size is memory per
//! connection. An `async fn` would keep room for the largest state of everything it might
//! await (message handling, closes, timers), all of it inline; here the idle state is the
//! socket and the protocol state and nothing more. Waiting, non-blocking writes and reads run
//! in [`Future::poll`] itself. Anything that must await (handling client messages, a full
//! socket, a close, leaving channels at the end) runs as boxed *work* that owns the parts while
//! it runs and hands them back when it is done, so that memory exists only while it is needed.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::session::Session;
use super::socket::{End, Next, Socket};
use super::watched;
use crate::connection_errors::{self, ConnectionError, Kind};
use crate::gate::WebSocketSlot;
use crate::outbox::SLOW_CONSUMER;
use warren_protocol::{ErrorCode, SocketId};

/// Everything a connection owns.
pub(super) struct Parts {
    pub socket: Socket,
    pub session: Session,
    /// Counts it against the node's, its address's and the file budget until dropped.
    pub node_slot: WebSocketSlot,
}

/// Rare work on the parts; gives them back unless the connection ended.
type Work = Pin<Box<dyn Future<Output = Option<Parts>> + Send>>;

pub(super) struct ConnectionTask {
    stage: Stage,
}

// The idle variant is meant to be the large one: it is the connection. Boxing it would cost an
// allocation and a pointer chase on every wake-up to save nothing.
#[allow(clippy::large_enum_variant)]
enum Stage {
    /// Waiting on the outbox and the socket.
    Idle(Parts),
    Busy(Work),
    Done,
}

impl ConnectionTask {
    pub(super) fn new(parts: Parts) -> Self {
        let stage = if parts.socket.has_input() {
            Stage::Busy(work(parts, Next::Input))
        } else {
            Stage::Idle(parts)
        };
        Self { stage }
    }
}

impl Future for ConnectionTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            // The parts move only when work starts or ends: a wake-up that finds the idle
            // connection with nothing but non-blocking steps to take copies nothing.
            match &mut this.stage {
                Stage::Idle(parts) => {
                    if parts.session.watched() {
                        parts.socket.count_traffic();
                    }
                    let next = ready!(parts.socket.poll_next(cx));
                    if let Stage::Idle(parts) = std::mem::replace(&mut this.stage, Stage::Done) {
                        this.stage = Stage::Busy(work(parts, next));
                    }
                }
                Stage::Busy(work) => match ready!(work.as_mut().poll(cx)) {
                    Some(parts) => this.stage = Stage::Idle(parts),
                    None => {
                        this.stage = Stage::Done;
                        return Poll::Ready(());
                    }
                },
                Stage::Done => return Poll::Ready(()),
            }
            // Coming back from work: yield if the runtime asks us to, rather than loop on.
            ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
        }
    }
}

/// Boxes what `next` asks for.
fn work(mut parts: Parts, next: Next) -> Work {
    Box::pin(async move {
        let end = match next {
            Next::Input => match parts.socket.process_input(&mut parts.session).await {
                None => {
                    watched::traffic_if_due(&mut parts.socket, &parts.session);
                    return Some(parts);
                }
                Some(end) => end,
            },
            Next::Drain(oldest) => match parts.socket.drain().await {
                Ok(()) => {
                    parts.socket.written(oldest);
                    return Some(parts);
                }
                Err(_) => End::WriteFailed,
            },
            Next::Close(reason) => parts.socket.close(reason).await,
            Next::End(end) => end,
        };
        finish(parts, end).await;
        None
    })
}

/// The end of a connection, whatever ended it.
async fn finish(parts: Parts, end: End) {
    let Parts {
        mut socket,
        mut session,
        node_slot,
    } = parts;
    // First, while the socket still knows its peer.
    report_error(&socket, session.socket_id(), &end);
    // Leave channels (announcing departures) before waiting on the client's side of a close.
    session.leave_all().await;
    watched::closed(&socket, &session, &end);
    let socket_id = session.socket_id();
    // INVARIANT(empty-registry-means-departed): removed only after leaving every channel.
    socket.connections().remove(socket_id);
    // The app's slot (held by the session) and the node's are free before the linger.
    drop(session);
    drop(node_slot);
    if matches!(end, End::ServerClosed(_)) {
        socket.linger().await;
    }
    tracing::debug!(%socket_id, ?end, "connection ended");
}

/// The ends that are connection errors (a protocol error was reported where it was found).
fn report_error(socket: &Socket, socket_id: SocketId, end: &End) {
    let (kind, code, why) = match end {
        End::ServerClosed(code) if *code == SLOW_CONSUMER.code() => (
            Kind::SlowConsumer,
            Some(*code),
            "the client read too slowly: its queue was full",
        ),
        End::ServerClosed(code) if *code == ErrorCode::PongNotReceived.code() => {
            (Kind::PongTimeout, Some(*code), "no pong in time")
        }
        End::WriteFailed => (
            Kind::WriteFailed,
            None,
            "the socket refused a write or took none in time",
        ),
        End::ClientGone => (
            Kind::ClientGone,
            None,
            "the connection ended without a close frame",
        ),
        End::ClientClosed | End::ServerClosed(_) => return,
    };
    if !connection_errors::enabled(kind) {
        return;
    }
    let error = ConnectionError::new(kind, socket.peer(), &why).socket(&socket_id);
    match code {
        Some(code) => error.code(code).report(),
        None => error.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection keeps this for its whole life: keep it small. (Tokio adds its task
    /// header and trailer and rounds the whole up to a cache line multiple.)
    #[test]
    fn an_idle_connection_is_small() {
        let size = std::mem::size_of::<ConnectionTask>();
        assert!(size <= 320, "the connection task grew to {size} bytes");
    }
}
