//! The shared half of a connection: its bounded outbound queue, and the liveness facts the
//! server-wide sweeper reads (last heard from, ping outstanding, authentication deadline).
//!
//! Producers (the hub, on behalf of any publisher) push shared frames; the connection's own task
//! takes everything queued at once and writes it in as few syscalls as it can, then hands the
//! emptied queue back ([`Outbox::recycle`]): between bursts a connection keeps one small queue
//! allocation and no more. The queue holds `Bytes` handles only, so a frame delivered to ten
//! thousand connections exists once in memory. Waking the connection is one atomic waker, and only the
//! push that makes the queue non-empty wakes it.
//!
//! With metrics on, a pushed event carries its publish time ([`Stamp`]); the queue keeps the
//! oldest stamp it holds (one number, not one per frame) and hands it to the writer with the
//! frames, which observes the delivery latency once per write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use warren_protocol::ErrorCode;

use crate::metrics::Stamp;

/// Why the server is closing a connection, with the Pusher code to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    code: ErrorCode,
    pub message: String,
}

impl CloseReason {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        // INVARIANT(no-close-at-or-above-4300): every server-side close goes through here, and
        // pusher-js never reconnects after a close code of 4300 or above: such codes are
        // `pusher:error`s only.
        debug_assert!(code.may_close(), "{code:?} must not close a connection");
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    closing: Option<CloseReason>,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Set while there are frames to take or a close to act on; lets the connection check
    /// without taking the lock.
    ready: AtomicBool,
    /// The publish time ([`Stamp`] bits) of the oldest stamped frame queued; none while
    /// metrics are off. Read and written under the state lock only (an atomic so that it can
    /// sit beside `ready`, in what was padding: an outbox is per connection).
    oldest: AtomicU32,
    waker: AtomicWaker,
    max_frames: usize,
    /// When the client was last heard from, on the server's clock (ms since start).
    last_seen: AtomicU64,
    /// When the server pinged the idle client (0: no ping outstanding).
    ping_sent: AtomicU64,
    /// When the connection must have signed in or subscribed to an authorized channel
    /// (`user_authentication_timeout`); 0: no such deadline (off, or met).
    auth_deadline: AtomicU64,
}

/// Largest queue (in frames) handed back for reuse; a larger one, grown for a burst, is freed.
const RECYCLED_CAPACITY: usize = 8;

/// The code a slow consumer is closed with: Pusher's "over capacity", which pusher-js retries.
pub const SLOW_CONSUMER: ErrorCode = ErrorCode::OverCapacity;

impl Outbox {
    pub fn new(max_frames: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: AtomicBool::new(false),
            oldest: AtomicU32::new(0),
            waker: AtomicWaker::new(),
            max_frames,
            last_seen: AtomicU64::new(0),
            ping_sent: AtomicU64::new(0),
            auth_deadline: AtomicU64::new(0),
        }
    }

    /// Queues a frame. A connection whose queue is full is a slow consumer: it is marked for
    /// closing instead of holding more memory, and the frame is dropped for it alone.
    /// Returns whether the frame was queued.
    ///
    /// INVARIANT(bounded-outbox): the queue never holds more than `max_frames`.
    pub fn push(&self, frame: Bytes) -> bool {
        self.push_stamped(frame, Stamp::NONE)
    }

    /// [`Outbox::push`] for a frame of an event published at `published`.
    pub fn push_stamped(&self, frame: Bytes, published: Stamp) -> bool {
        let mut st = self.state.lock();
        if st.closing.is_some() {
            return false;
        }
        if st.frames.len() >= self.max_frames {
            drop(st);
            self.close_slow_consumer();
            return false;
        }
        st.frames.push_back(frame);
        // INVARIANT(latency-per-write): one stamp per queue, the oldest; none when metrics are off.
        if !published.is_none() && self.oldest.load(Ordering::Relaxed) == 0 {
            self.oldest.store(published.bits(), Ordering::Relaxed);
        }
        let first = st.frames.len() == 1;
        if first {
            self.ready.store(true, Ordering::Release);
        }
        drop(st);
        // Only the push that makes the queue non-empty wakes the writer; later ones ride along.
        if first {
            self.waker.wake();
        }
        true
    }

    /// Queues several frames in order, atomically with respect to other producers; more than
    /// the queue may hold closes the connection as a slow consumer, like [`Outbox::push`].
    pub fn push_all(&self, frames: impl IntoIterator<Item = Bytes>) {
        let mut st = self.state.lock();
        if st.closing.is_some() {
            return;
        }
        st.frames.extend(frames);
        if st.frames.is_empty() {
            return;
        }
        // INVARIANT(bounded-outbox)
        if st.frames.len() > self.max_frames {
            st.frames = VecDeque::new();
            drop(st);
            self.close_slow_consumer();
            return;
        }
        self.ready.store(true, Ordering::Release);
        drop(st);
        self.waker.wake();
    }

    /// Frames this outbox holds at most.
    pub fn capacity(&self) -> usize {
        self.max_frames
    }

    /// Closes the connection as a slow consumer (4100): what is queued is dropped, not written.
    pub fn close_slow_consumer(&self) {
        self.close(CloseReason::new(
            SLOW_CONSUMER,
            "Connection is not reading fast enough",
        ));
    }

    /// Asks the connection to close after writing what is already queued.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.state.lock();
        if st.closing.is_none() {
            st.closing = Some(reason);
        }
        self.ready.store(true, Ordering::Release);
        drop(st);
        self.waker.wake();
    }

    /// Ready when there is something to write or a close was requested.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.ready.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Moves every queued frame into `into` and reports a requested close, if any.
    pub fn take(&self, into: &mut VecDeque<Bytes>) -> Option<CloseReason> {
        self.take_stamped(into).0
    }

    /// [`Outbox::take`], with the publish time of the oldest stamped frame taken.
    pub fn take_stamped(&self, into: &mut VecDeque<Bytes>) -> (Option<CloseReason>, Stamp) {
        let mut st = self.state.lock();
        let oldest = Stamp::from_bits(self.oldest.swap(0, Ordering::Relaxed));
        if into.is_empty() {
            std::mem::swap(into, &mut st.frames);
        } else {
            into.extend(st.frames.drain(..));
        }
        if st.closing.is_none() {
            self.ready.store(false, Ordering::Release);
        }
        (st.closing.clone(), oldest)
    }

    /// Takes back an emptied queue from the writer, so that the next push need not allocate:
    /// the outbox keeps one small queue allocation across wake-ups, never two, and none that
    /// grew for a burst.
    pub fn recycle(&self, emptied: &mut VecDeque<Bytes>) {
        debug_assert!(emptied.is_empty());
        if emptied.capacity() > RECYCLED_CAPACITY {
            *emptied = VecDeque::new();
            return;
        }
        let mut st = self.state.lock();
        if st.frames.capacity() == 0 {
            std::mem::swap(&mut st.frames, emptied);
        } else {
            drop(st);
            *emptied = VecDeque::new();
        }
    }

    /// The client sent something: it is alive, and any outstanding ping is answered.
    pub fn heard_from(&self, now: u64) {
        self.last_seen.store(now, Ordering::Relaxed);
        self.ping_sent.store(0, Ordering::Relaxed);
    }

    /// The connection must authenticate (sign in, or subscribe to an authorized channel) by
    /// `deadline` on the server's clock, or be closed.
    pub fn require_authentication_by(&self, deadline: u64) {
        self.auth_deadline.store(deadline.max(1), Ordering::Relaxed);
    }

    /// The connection authenticated: no deadline any more.
    pub fn authenticated(&self) {
        self.auth_deadline.store(0, Ordering::Relaxed);
    }

    /// What the liveness sweeper should do for this connection at `now`.
    pub fn liveness(&self, now: u64, activity_timeout: u64, pong_timeout: u64) -> Liveness {
        let deadline = self.auth_deadline.load(Ordering::Relaxed);
        if deadline != 0 && now >= deadline {
            return Liveness::Unauthenticated;
        }
        let ping = self.ping_sent.load(Ordering::Relaxed);
        if ping != 0 {
            if now.saturating_sub(ping) >= pong_timeout {
                return Liveness::Dead;
            }
            return Liveness::Fine;
        }
        if now.saturating_sub(self.last_seen.load(Ordering::Relaxed)) >= activity_timeout {
            return Liveness::Idle;
        }
        Liveness::Fine
    }

    /// Records that the sweeper pinged the client at `now` (never 0: 0 means "no ping").
    pub fn pinged(&self, now: u64) {
        self.ping_sent.store(now.max(1), Ordering::Relaxed);
    }
}

/// A connection's state as the liveness sweeper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Fine,
    /// Silent for the activity timeout: ping it.
    Idle,
    /// Pinged and silent for the pong timeout: close it with 4201.
    Dead,
    /// Neither signed in nor subscribed to an authorized channel in time: close it with 4009.
    Unauthenticated,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_marks_a_slow_consumer() {
        let ob = Outbox::new(2);
        assert!(ob.push(Bytes::from_static(b"1")));
        assert!(ob.push(Bytes::from_static(b"2")));
        assert!(!ob.push(Bytes::from_static(b"3")));
        assert!(!ob.push(Bytes::from_static(b"4")));
        let mut q = VecDeque::new();
        let reason = ob.take(&mut q).expect("closing");
        assert_eq!(reason.code(), ErrorCode::OverCapacity);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn take_drains_in_order_and_clears_readiness() {
        let ob = Outbox::new(10);
        ob.push(Bytes::from_static(b"a"));
        ob.push_all([Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
        assert!(ob.ready.load(Ordering::Acquire));
        let mut q = VecDeque::new();
        assert_eq!(ob.take(&mut q), None);
        assert!(!ob.ready.load(Ordering::Acquire));
        assert_eq!(q, [&b"a"[..], b"b", b"c"]);
        ob.close(CloseReason::new(ErrorCode::GenericReconnect, "bye"));
        assert!(!ob.push(Bytes::from_static(b"d")));
        assert_eq!(
            ob.take(&mut q).map(|r| r.code()),
            Some(ErrorCode::GenericReconnect)
        );
        assert!(ob.ready.load(Ordering::Acquire), "a close stays pending");
    }

    #[test]
    fn the_oldest_stamp_goes_with_the_frames_taken() {
        let ob = Outbox::new(10);
        let mut q = VecDeque::new();
        ob.push(Bytes::from_static(b"pong"));
        let first = Stamp::now();
        ob.push_stamped(Bytes::from_static(b"e1"), first);
        ob.push_stamped(Bytes::from_static(b"e2"), Stamp::now());
        assert_eq!(ob.take_stamped(&mut q), (None, first));
        assert_eq!(q.len(), 3);
        ob.push(Bytes::from_static(b"answer"));
        assert_eq!(ob.take_stamped(&mut q), (None, Stamp::NONE));
    }

    #[test]
    fn push_all_never_exceeds_the_bound() {
        let ob = Outbox::new(3);
        ob.push(Bytes::from_static(b"a"));
        ob.push_all([Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
        assert_eq!(ob.state.lock().frames.len(), 3);
        ob.push_all([Bytes::from_static(b"d")]);
        let mut q = VecDeque::new();
        let closing = ob.take(&mut q);
        assert!(
            q.is_empty(),
            "a slow consumer's backlog is dropped, not kept over the bound"
        );
        assert_eq!(closing.map(|r| r.code()), Some(SLOW_CONSUMER));
    }

    #[test]
    fn one_small_queue_is_kept_between_bursts() {
        let ob = Outbox::new(100);
        let mut q = VecDeque::new();
        ob.push(Bytes::from_static(b"a"));
        ob.take(&mut q);
        q.clear();
        let kept = q.capacity();
        assert!(kept > 0);
        ob.recycle(&mut q);
        assert_eq!(q.capacity(), 0, "the writer keeps nothing");
        assert_eq!(
            ob.state.lock().frames.capacity(),
            kept,
            "the outbox keeps it"
        );
        // Pushing reuses it; a queue grown for a burst is not kept.
        for _ in 0..50 {
            ob.push(Bytes::from_static(b"b"));
        }
        ob.take(&mut q);
        q.clear();
        ob.recycle(&mut q);
        assert_eq!(q.capacity(), 0);
        assert_eq!(ob.state.lock().frames.capacity(), 0);
    }

    #[test]
    fn liveness_from_activity_and_pings() {
        let ob = Outbox::new(1);
        ob.heard_from(100);
        assert_eq!(ob.liveness(150, 120, 30), Liveness::Fine);
        assert_eq!(ob.liveness(220, 120, 30), Liveness::Idle);
        ob.pinged(220);
        assert_eq!(ob.liveness(240, 120, 30), Liveness::Fine);
        assert_eq!(ob.liveness(250, 120, 30), Liveness::Dead);
        ob.heard_from(245);
        assert_eq!(ob.liveness(250, 120, 30), Liveness::Fine);
    }

    #[test]
    fn an_authentication_deadline_holds_until_met() {
        let ob = Outbox::new(1);
        ob.heard_from(0);
        ob.require_authentication_by(100);
        assert_eq!(ob.liveness(99, 1000, 30), Liveness::Fine);
        assert_eq!(ob.liveness(100, 1000, 30), Liveness::Unauthenticated);
        ob.authenticated();
        assert_eq!(ob.liveness(5000, 10_000, 30), Liveness::Fine);
    }
}
