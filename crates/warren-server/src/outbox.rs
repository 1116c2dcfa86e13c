//! A connection's bounded outbound queue.
//!
//! Producers (the hub, on behalf of any publisher) push shared frames; the connection's own task
//! takes everything queued at once and writes it in as few syscalls as it can. The queue never
//! allocates while empty and holds `Bytes` handles only, so a frame delivered to ten thousand
//! connections exists once in memory.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why the server is closing a connection, with the Pusher code to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub message: String,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    closing: Option<CloseReason>,
}

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    max_frames: usize,
}

/// The code a slow consumer is closed with: Pusher's "over capacity", which pusher-js retries.
pub const SLOW_CONSUMER: u16 = warren_protocol::ErrorCode::OverCapacity as u16;

impl Outbox {
    pub fn new(max_frames: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            max_frames,
        }
    }

    /// Queues a frame. A connection whose queue is full is a slow consumer: it is marked for
    /// closing instead of holding more memory, and the frame is dropped for it alone.
    /// Returns whether the frame was queued.
    pub fn push(&self, frame: Bytes) -> bool {
        let mut st = self.state.lock();
        if st.closing.is_some() {
            return false;
        }
        if st.frames.len() >= self.max_frames {
            st.closing = Some(CloseReason {
                code: SLOW_CONSUMER,
                message: "Connection is not reading fast enough".into(),
            });
            drop(st);
            self.ready.notify_one();
            return false;
        }
        st.frames.push_back(frame);
        let first = st.frames.len() == 1;
        drop(st);
        // Only the push that makes the queue non-empty wakes the writer; later ones ride along.
        if first {
            self.ready.notify_one();
        }
        true
    }

    /// Queues several frames in order, atomically with respect to other producers.
    pub fn push_all(&self, frames: impl IntoIterator<Item = Bytes>) {
        let mut st = self.state.lock();
        if st.closing.is_some() {
            return;
        }
        st.frames.extend(frames);
        drop(st);
        self.ready.notify_one();
    }

    /// Asks the connection to close after writing what is already queued.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.state.lock();
        if st.closing.is_none() {
            st.closing = Some(reason);
        }
        drop(st);
        self.ready.notify_one();
    }

    /// Waits until there is something to write or a close was requested.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Moves every queued frame into `into` and reports a requested close, if any.
    pub fn take(&self, into: &mut VecDeque<Bytes>) -> Option<CloseReason> {
        let mut st = self.state.lock();
        if into.is_empty() {
            std::mem::swap(into, &mut st.frames);
        } else {
            into.extend(st.frames.drain(..));
        }
        st.closing.clone()
    }
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
        assert_eq!(reason.code, 4100);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn take_drains_in_order() {
        let ob = Outbox::new(10);
        ob.push(Bytes::from_static(b"a"));
        ob.push_all([Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
        let mut q = VecDeque::new();
        assert_eq!(ob.take(&mut q), None);
        assert_eq!(q, [&b"a"[..], b"b", b"c"]);
        ob.close(CloseReason {
            code: 4200,
            message: "bye".into(),
        });
        assert!(!ob.push(Bytes::from_static(b"d")));
        assert_eq!(ob.take(&mut q).map(|r| r.code), Some(4200));
    }
}
