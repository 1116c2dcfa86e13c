//! The socket side of one connection: reading client frames, writing queued frames, closing.
//!
//! The connection task (`task.rs`) calls the synchronous half from its `poll` (waiting on the
//! outbox and the socket, writes that do not block, reads of what has arrived) and the
//! asynchronous half from the boxed work it runs for rare events (messages, a full socket,
//! closes).

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, Instant, Sleep};
use warren_protocol::inbound::parse_client_message;
use warren_protocol::{codes::ws_close, outbound};

use super::session::Session;
use crate::connection_errors::{ConnectionError, Kind};
use crate::connections::Connections;
use crate::metrics::Stamp;
use crate::monitor::Traffic;
use crate::outbox::{CloseReason, Outbox, SLOW_CONSUMER};
use crate::transport::Transport;
use crate::ws::frame::{self, Decoder, FrameError, Message};

/// How long a closing connection waits for the client to acknowledge before dropping it.
pub(super) const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Frames written per `writev` call at most.
const MAX_IOVECS: usize = 64;
/// Read buffer allocated when bytes arrive; grows only for larger messages.
const READ_CHUNK: usize = 512;

/// Why a connection ended (for logs, and to know whether to linger for the client's close).
#[derive(Debug)]
#[allow(dead_code)] // the code is read through `Debug` in the log line
pub(super) enum End {
    ClientClosed,
    ClientGone,
    ServerClosed(u16),
    WriteFailed,
}

/// What the idle connection found to do that cannot be done inside `poll`.
pub(super) enum Next {
    /// Bytes arrived: handle the messages they complete.
    Input,
    /// The socket is full and frames are still queued: wait until it drains. With the
    /// publish time of the oldest event among them (metrics on only), observed once written.
    Drain(Stamp),
    /// The server asked for a close.
    Close(CloseReason),
    /// The connection is over.
    End(End),
}

/// What woke the connection.
enum Wake {
    Outbox,
    Readable,
    /// Its turn in the node's inbound budget came.
    Resumed,
}

/// Wake-ups handled in one `poll` before the task yields to others.
const WAKES_PER_POLL: usize = 32;

pub(super) struct Socket {
    stream: Transport,
    /// Bytes of a message still arriving; empty (and unallocated) between messages.
    read_buf: BytesMut,
    decoder: Decoder,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox and not yet fully written; unallocated when idle.
    queue: VecDeque<Bytes>,
    connections: Arc<Connections>,
    /// Alternates which side is looked at first, so neither a busy outbox nor a chatty client
    /// starves the other.
    outbox_first: bool,
    /// What an ordinary connection never needs, boxed together: it keeps one null pointer.
    rare: Option<Box<Rare>>,
    /// Messages this connection may still handle from its last grant of the inbound budget.
    credits: u8,
}

/// Messages taken from the node's inbound budget at a time: one atomic operation and clock
/// read per this many messages.
const CREDITS: u8 = 8;

#[derive(Default)]
struct Rare {
    /// Counted for the monitor, once it watched this connection wake up.
    counted: Option<Counted>,
    /// Over the node's inbound budget: the socket is not read until this fires.
    paused: Option<Pin<Box<Sleep>>>,
}

/// A watched connection's counts.
struct Counted {
    traffic: Traffic,
    /// When the traffic was last reported (the connections' clock, ms).
    reported_at: u64,
}

impl Socket {
    pub(super) fn new(
        stream: Transport,
        read_buf: BytesMut,
        max_message_size: usize,
        outbox: Arc<Outbox>,
        connections: Arc<Connections>,
    ) -> Self {
        Self {
            stream,
            read_buf,
            decoder: Decoder::new(max_message_size),
            outbox,
            queue: VecDeque::new(),
            connections,
            outbox_first: true,
            rare: None,
            credits: 0,
        }
    }

    /// Starts counting traffic (the monitor watches), unless it already does.
    pub(super) fn count_traffic(&mut self) {
        let rare = self.rare.get_or_insert_with(Box::default);
        if rare.counted.is_none() {
            rare.counted = Some(Counted {
                traffic: Traffic::default(),
                reported_at: self.connections.clock(),
            });
        }
    }

    /// What the connection sent and received since it was first watched.
    pub(super) fn traffic(&self) -> Option<Traffic> {
        self.rare.as_ref()?.counted.as_ref().map(|c| c.traffic)
    }

    /// The traffic so far if it is time to report it again (and notes that it was).
    pub(super) fn traffic_due(&mut self, every_ms: u64) -> Option<Traffic> {
        let now = self.connections.clock();
        let c = self.rare.as_mut()?.counted.as_mut()?;
        if now.saturating_sub(c.reported_at) < every_ms {
            return None;
        }
        c.reported_at = now;
        Some(c.traffic)
    }

    fn counts(&mut self) -> Option<&mut Traffic> {
        self.rare.as_mut()?.counted.as_mut().map(|c| &mut c.traffic)
    }

    pub(super) fn connections(&self) -> &Connections {
        &self.connections
    }

    /// Whether bytes are waiting to be handled (those that came with the upgrade request).
    pub(super) fn has_input(&self) -> bool {
        !self.read_buf.is_empty()
    }

    /// Waits for something to do, writing queued frames on the way as long as the socket takes
    /// them. Ready with what needs more than a non-blocking step.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        for _ in 0..WAKES_PER_POLL {
            let wake = match self.poll_wake(cx) {
                Poll::Ready(Ok(wake)) => wake,
                Poll::Ready(Err(_)) => return Poll::Ready(Next::End(End::ClientGone)),
                Poll::Pending => return Poll::Pending,
            };
            self.outbox_first = !self.outbox_first;
            match wake {
                Wake::Outbox => {
                    let queued = self.queue.len();
                    let (closing, oldest) = self.outbox.take_stamped(&mut self.queue);
                    if let Some(reason) = closing {
                        return Poll::Ready(Next::Close(reason));
                    }
                    let taken = self.queue.len().saturating_sub(queued) as u64;
                    if let Some(t) = self.counts() {
                        t.messages_out += taken;
                    }
                    // The delivery latency is observed once per write, for its oldest event,
                    // when the write is whole (after the wait for a full socket, if any).
                    match self.write_queued() {
                        Ok(true) => self.written(oldest),
                        Ok(false) => return Poll::Ready(Next::Drain(oldest)),
                        Err(_) => return Poll::Ready(Next::End(End::WriteFailed)),
                    }
                }
                Wake::Readable => match self.read_arrived() {
                    Ok(true) => return Poll::Ready(Next::Input),
                    Ok(false) => {}
                    Err(_) => return Poll::Ready(Next::End(End::ClientGone)),
                },
                Wake::Resumed if self.has_input() => return Poll::Ready(Next::Input),
                Wake::Resumed => {}
            }
        }
        // Busy on both sides: let other tasks run, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The second side is only polled (and its waker registered) when the first has nothing:
    /// a wake-up costs one readiness check in the common case.
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Wake>> {
        let outbox = |o: &Outbox, cx: &mut Context<'_>| o.poll_ready(cx).map(|()| Ok(Wake::Outbox));
        let socket = |s: &mut Transport, rare: &mut Option<Box<Rare>>, cx: &mut Context<'_>| {
            // A paused connection waits for its turn, not for its socket.
            if let Some(r) = rare {
                if let Some(turn) = &mut r.paused {
                    ready!(turn.as_mut().poll(cx));
                    r.paused = None;
                    if r.counted.is_none() {
                        *rare = None;
                    }
                    return Poll::Ready(Ok(Wake::Resumed));
                }
            }
            s.poll_read_ready(cx).map_ok(|()| Wake::Readable)
        };
        if self.outbox_first {
            match outbox(&self.outbox, cx) {
                Poll::Pending => socket(&mut self.stream, &mut self.rare, cx),
                ready => ready,
            }
        } else {
            match socket(&mut self.stream, &mut self.rare, cx) {
                Poll::Pending => outbox(&self.outbox, cx),
                ready => ready,
            }
        }
    }

    /// Reads what has arrived. `Ok(true)`: there are bytes to handle; `Ok(false)`: nothing
    /// after all; `Err`: the client is gone (end of stream or a socket error).
    fn read_arrived(&mut self) -> io::Result<bool> {
        // Grow with what has arrived (doubling at most), never with what a frame header
        // declares: a header alone costs one small chunk.
        let want = READ_CHUNK.max(self.read_buf.len());
        if self.read_buf.capacity() - self.read_buf.len() < want / 4 {
            self.read_buf.reserve(want);
        }
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                if let Some(t) = self.counts() {
                    t.bytes_in += n as u64;
                }
                self.outbox.heard_from(self.connections.clock());
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.release_read_buf();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Between messages the connection holds no read buffer.
    fn release_read_buf(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
    }

    /// Writes queued frames until the queue is empty and every byte sent (`Ok(true)`; TLS may
    /// hold encrypted bytes back) or the socket is full (`Ok(false)`), several frames per
    /// syscall.
    fn write_queued(&mut self) -> io::Result<bool> {
        while !self.queue.is_empty() {
            match self.write_some() {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if let Some(t) = self.counts() {
                        t.bytes_out += n as u64;
                    }
                    advance(&mut self.queue, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        if !self.stream.try_flush()? {
            return Ok(false);
        }
        // The emptied queue goes back to the outbox for the next burst (no allocation per
        // wake-up), or is freed if the outbox has one already or it grew large.
        self.outbox.recycle(&mut self.queue);
        Ok(true)
    }

    /// What was taken with `oldest` is written: observe its delivery latency. The stamp is
    /// carried on the stack (or in `Next::Drain`), never kept by the idle connection.
    // INVARIANT(latency-per-write): one observation per whole write, for its oldest event.
    pub(super) fn written(&self, oldest: Stamp) {
        if !oldest.is_none() {
            self.connections.delivery_latency().record(oldest);
        }
    }

    /// One non-blocking write of up to [`MAX_IOVECS`] queued frames.
    fn write_some(&mut self) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (slot, frame) in slices.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        self.stream.try_write_vectored(&slices[..n])
    }

    /// Writes every queued frame, waiting while the socket is full; a client that accepts
    /// nothing for `server.write_timeout_ms` is given up on.
    pub(super) async fn drain(&mut self) -> io::Result<()> {
        while !self.write_queued()? {
            let stall = self.connections.write_timeout();
            tokio::time::timeout(stall, self.stream.writable())
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        }
        Ok(())
    }

    /// Writes `bytes` whole, or gives up after [`CLOSE_LINGER`]: what is written on the way
    /// out must not keep a connection that stopped reading.
    async fn write_final(&mut self, bytes: &[u8]) {
        let _ = tokio::time::timeout(CLOSE_LINGER, self.stream.send(bytes)).await;
    }

    /// Handles every complete message in the read buffer.
    /// Over the node's inbound budget, the rest waits in the buffer (and the socket is not
    /// read) until this connection's turn.
    pub(super) async fn process_input(&mut self, session: &mut Session) -> Option<End> {
        loop {
            if self.credits == 0 {
                self.credits = CREDITS;
                if let Some(turn) = session.take_inbound(CREDITS.into()) {
                    let rare = self.rare.get_or_insert_with(Box::default);
                    rare.paused = Some(Box::pin(sleep_until(turn.into())));
                    return None;
                }
            }
            let msg = match self.decoder.decode(&mut self.read_buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return Some(self.frame_error(session, e).await),
            };
            self.credits -= 1;
            if let Message::Text(text) = &msg {
                session.received(text.len());
                if let Some(t) = self.counts() {
                    t.messages_in += 1;
                }
            }
            match msg {
                Message::Text(text) => match parse_client_message(&text) {
                    Ok(m) => session.handle(m, || self.stream.peer_addr().ok()).await,
                    Err(e) => session.send_error(None, &e.to_string()),
                },
                Message::Binary(_) => session.send_error(
                    None,
                    "Binary messages are not supported: send JSON in text frames",
                ),
                Message::Ping(payload) => {
                    self.outbox.push(frame::pong(&payload));
                }
                Message::Pong => {}
                Message::Close(code) => {
                    self.answer_close(code).await;
                    return Some(End::ClientClosed);
                }
            }
        }
        self.release_read_buf();
        None
    }

    /// A server-initiated close: a slow consumer's backlog is dropped (it is why we close);
    /// otherwise what is queued is written, for a short while at most, then the close.
    pub(super) async fn close(&mut self, reason: CloseReason) -> End {
        let written = reason.code() != SLOW_CONSUMER
            && matches!(
                tokio::time::timeout(CLOSE_LINGER, self.drain()).await,
                Ok(Ok(()))
            );
        if !written {
            self.queue.clear();
        }
        self.write_final(&close_frames(&reason)).await;
        End::ServerClosed(reason.code().code())
    }

    /// The client's address, for a log line.
    pub(super) fn peer(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// The client closed: write what is queued, echo the close with its code, and finish.
    // INVARIANT(every-write-has-a-deadline): on the way out, what is queued gets
    // `CLOSE_LINGER` and the close frame as long again; `drain` itself stops after
    // `write_timeout` without progress. A client that stops reading cannot keep its slot.
    async fn answer_close(&mut self, code: Option<u16>) {
        self.outbox.take(&mut self.queue);
        let _ = tokio::time::timeout(CLOSE_LINGER, self.drain()).await;
        self.write_final(&frame::close(echoable(code), "")).await;
        let _ = tokio::time::timeout(CLOSE_LINGER, self.stream.shutdown()).await;
    }

    async fn frame_error(&mut self, session: &Session, e: FrameError) -> End {
        let socket_id = session.socket_id();
        ConnectionError::new(Kind::ProtocolError, self.peer(), &e)
            .socket(&socket_id)
            .code(e.close_code())
            .report();
        session.send_error(None, &e.to_string());
        self.outbox.take(&mut self.queue);
        let _ = tokio::time::timeout(CLOSE_LINGER, self.drain()).await;
        self.write_final(&frame::close(e.close_code(), &e.to_string()))
            .await;
        End::ServerClosed(e.close_code())
    }

    /// After a server-initiated close: lets the client close its side.
    pub(super) async fn linger(&mut self) {
        linger(&mut self.stream).await;
    }
}

/// `pusher:error` with the Pusher code, then a close frame with it, as one buffer.
pub(super) fn close_frames(reason: &CloseReason) -> Vec<u8> {
    let code = reason.code().code();
    let mut bytes = frame::text(outbound::error(Some(code), &reason.message).as_bytes()).to_vec();
    bytes.extend_from_slice(&frame::close(code, &reason.message));
    bytes
}

/// Half-closes and drains the socket until the client closes (or a short timeout), so the
/// close frame is not lost to a reset.
pub(super) async fn linger(stream: &mut Transport) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 256];
    let deadline = Instant::now() + CLOSE_LINGER;
    loop {
        tokio::select! {
            r = stream.read(&mut sink) => {
                if !matches!(r, Ok(n) if n > 0) {
                    return;
                }
            }
            () = sleep_until(deadline) => return,
        }
    }
}

/// The code to answer a client's close with: its own (the decoder refused any that RFC 6455
/// does not allow), or a normal closure when it gave none.
fn echoable(code: Option<u16>) -> u16 {
    match code {
        Some(c) if frame::is_sendable_close_code(c) => c,
        _ => ws_close::NORMAL,
    }
}

/// Drops `n` written bytes from the front of the queue.
fn advance(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_echoed_only_when_sendable() {
        assert_eq!(echoable(Some(1001)), 1001);
        assert_eq!(echoable(Some(4200)), 4200);
        assert_eq!(echoable(Some(1005)), 1000);
        assert_eq!(echoable(Some(1015)), 1000);
        assert_eq!(echoable(Some(2000)), 1000);
        assert_eq!(echoable(None), 1000);
    }

    #[test]
    fn advance_handles_partial_writes() {
        let mut q: VecDeque<Bytes> = [&b"abc"[..], b"de", b"f"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        advance(&mut q, 4);
        assert_eq!(q, [&b"e"[..], b"f"]);
        advance(&mut q, 2);
        assert!(q.is_empty());
    }
}
