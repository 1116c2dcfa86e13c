//! One attached watcher: its filter and its bounded queue.
//!
//! INVARIANT(tap-never-blocks): offering an event to a tap takes its short queue lock and
//! never waits for the reader; a full queue drops the event and counts it, and the reader is
//! told how many it lost before the next event it gets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::event::MonitorEvent;
use super::filter::Filter;
use super::Monitor;

/// What a reader takes from its tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapItem {
    Event(Arc<MonitorEvent>),
    /// This many events were dropped because the queue was full.
    Dropped(u64),
}

/// The side the emitters see.
pub(super) struct TapQueue {
    pub id: u64,
    pub filter: Filter,
    capacity: usize,
    queue: Mutex<VecDeque<Arc<MonitorEvent>>>,
    dropped: AtomicU64,
    ready: Notify,
}

impl TapQueue {
    pub fn new(id: u64, filter: Filter, capacity: usize) -> Self {
        Self {
            id,
            filter,
            capacity: capacity.max(1),
            queue: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            ready: Notify::new(),
        }
    }

    /// Queues the event if it passes the filter and there is room; never waits.
    pub fn offer(&self, event: &Arc<MonitorEvent>) {
        if !self.filter.matches(event) {
            return;
        }
        {
            let mut q = self.queue.lock();
            if q.len() >= self.capacity {
                drop(q);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                q.push_back(event.clone());
            }
        }
        self.ready.notify_one();
    }
}

/// An attached tap, for its reader. Dropping it detaches it.
pub struct Tap {
    pub(super) queue: Arc<TapQueue>,
    pub(super) monitor: Arc<Monitor>,
}

impl Tap {
    /// The next item: a drop report first if events were lost, else the oldest queued event;
    /// waits while there is neither.
    pub async fn next(&self) -> TapItem {
        loop {
            if let Some(item) = self.try_next() {
                return item;
            }
            self.queue.ready.notified().await;
        }
    }

    /// The next item if one is there.
    pub fn try_next(&self) -> Option<TapItem> {
        let q = &self.queue;
        let dropped = q.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            return Some(TapItem::Dropped(dropped));
        }
        q.queue.lock().pop_front().map(TapItem::Event)
    }

    pub fn filter(&self) -> &Filter {
        &self.queue.filter
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.monitor.detach(self.queue.id);
    }
}
