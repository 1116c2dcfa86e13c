//! The monitor: a tap on what happens on this node (and, with the Redis backend, on every
//! node of the cluster) for operators: `/monitor`, `warren monitor`, the console, or Rust code
//! embedding the server ([`Monitor::attach`]).
//!
//! The places where things happen (connections, `Node`, sessions) call [`Monitor::emit`] with
//! a closure that builds the [`MonitorEvent`]. Each attached [`Tap`] has a [`Filter`] and a
//! bounded queue (`tap.rs`): a slow reader loses events, counted, and never slows the emitter.
//! The relay (`relay.rs`) carries events between nodes over Redis pub/sub, only while some
//! node has a tap attached.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use warren_server::monitor::{Filter, TapItem};
//! let running = warren_server::Server::start(warren_server::Config::default()).await?;
//! let tap = running.monitor().attach(Filter {
//!     channel_prefix: Some("orders-".into()),
//!     ..Filter::default()
//! });
//! loop {
//!     match tap.next().await {
//!         TapItem::Event(e) => println!("{}", serde_json::to_string(&*e)?),
//!         TapItem::Dropped(n) => eprintln!("{n} events dropped"),
//!     }
//! }
//! # }
//! ```
//!
//! INVARIANT(idle-monitor-costs-a-load): with no tap attached here and no node asking for
//! this node's events, `emit` is one relaxed atomic load; the event is not even built.

mod event;
mod filter;
pub(crate) mod relay;
mod tap;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

pub use event::{EventKind, MonitorEvent, Traffic};
pub use filter::Filter;
use tap::TapQueue;
pub use tap::{Tap, TapItem};

/// A busy connection reports its traffic at most this often (and always when it closes).
pub const TRAFFIC_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Events queued for one tap by default before it drops.
pub const DEFAULT_TAP_QUEUE: usize = 4096;

/// This node's taps and the switch the emitters look at.
pub struct Monitor {
    node: String,
    /// Whether anybody listens: a tap here, or (through the relay) a node elsewhere.
    active: AtomicBool,
    taps: RwLock<Vec<Arc<TapQueue>>>,
    next_id: AtomicU64,
    queue_capacity: usize,
    /// Set when the node relays its events to other nodes (Redis backend).
    relay: OnceLock<relay::Link>,
    /// Serializes the recomputation of `active`.
    switching: Mutex<()>,
}

impl Monitor {
    /// A monitor for node `node`; each tap queues up to `queue_capacity` events.
    pub fn new(node: impl Into<String>, queue_capacity: usize) -> Self {
        Self {
            node: node.into(),
            active: AtomicBool::new(false),
            taps: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(1),
            queue_capacity,
            relay: OnceLock::new(),
            switching: Mutex::new(()),
        }
    }

    /// Attaches a tap that receives what passes `filter`, from now on, until it is dropped.
    pub fn attach(self: &Arc<Self>, filter: Filter) -> Tap {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(TapQueue::new(id, filter, self.queue_capacity));
        self.taps.write().push(queue.clone());
        self.recompute();
        Tap {
            queue,
            monitor: self.clone(),
        }
    }

    /// Taps attached to this node.
    pub fn tap_count(&self) -> usize {
        self.taps.read().len()
    }

    /// Whether this node's events go anywhere.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Reports what `make` builds to every tap that wants it, here and (when some node
    /// watches) on the other nodes. `make` runs only when somebody listens.
    #[inline]
    pub fn emit(&self, app: &str, make: impl FnOnce() -> EventKind) {
        // INVARIANT(idle-monitor-costs-a-load)
        if self.active.load(Ordering::Relaxed) {
            self.emit_now(app, make());
        }
    }

    #[cold]
    fn emit_now(&self, app: &str, kind: EventKind) {
        let event = Arc::new(MonitorEvent {
            node: self.node.clone(),
            at_ms: now_ms(),
            app: app.to_owned(),
            kind,
        });
        self.deliver_here(&event);
        if let Some(link) = self.relay.get() {
            link.forward(&event);
        }
    }

    /// Hands an event to this node's taps only (events relayed from other nodes).
    pub(crate) fn deliver_here(&self, event: &Arc<MonitorEvent>) {
        for tap in self.taps.read().iter() {
            // INVARIANT(tap-never-blocks)
            tap.offer(event);
        }
    }

    fn detach(&self, id: u64) {
        self.taps.write().retain(|t| t.id != id);
        self.recompute();
    }

    /// Sets the switch from the taps here and the relay's view of the other nodes.
    fn recompute(&self) {
        let _one_at_a_time = self.switching.lock();
        let local = !self.taps.read().is_empty();
        let remote = self.relay.get().is_some_and(|l| l.others_watch());
        if let Some(link) = self.relay.get() {
            link.set_watching(local);
        }
        self.active.store(local || remote, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
