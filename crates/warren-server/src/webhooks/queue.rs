//! An endpoint's queue of pending events: where they wait between the dispatcher and the
//! endpoint's task, and what survives when a node does not (docs/WEBHOOKS.md, "Durability").
//!
//! Three kinds: [`MemoryQueue`] (one node, nothing survives), the Redis stream of
//! [`super::redis`] (a cluster: any node delivers what a dead node left) and the on-disk
//! spool of [`super::spool`] (one node, survives a restart). An event leaves its queue only
//! when it was delivered or given up on ([`Queue::done`]), so a crash in between means it is
//! sent again (at least once; `X-Warren-Webhook-Id` tells the receiver).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

/// An event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Stable for the event whatever request carries it (`X-Warren-Webhook-Id`).
    pub id: Arc<str>,
    pub json: Arc<str>,
    /// Where the queue keeps it (a stream entry, a spool key); empty in memory.
    pub entry: Arc<str>,
}

impl Pending {
    pub(crate) fn new(id: Arc<str>, json: Arc<str>) -> Self {
        Pending {
            id,
            json,
            entry: Arc::from(""),
        }
    }
}

#[async_trait]
pub(crate) trait Queue: Send + Sync + 'static {
    /// Adds an event without waiting; false when the queue is full and it was dropped.
    fn push(&self, event: Pending) -> bool;

    /// The next batch: waits for a first event, then up to `window` for more, at most `max`.
    /// `None` once the queue is closed.
    async fn take(&self, max: usize, window: Duration) -> Option<Vec<Pending>>;

    /// How often [`Queue::keep`] must be called while a batch is being worked on.
    fn keep_every(&self) -> Option<Duration> {
        None
    }

    /// Still working on the batch: nobody else may take it over.
    async fn keep(&self, _batch: &[Pending]) {}

    /// Finished with the batch (delivered, or given up on): it leaves the queue.
    async fn done(&self, _batch: &[Pending]) {}

    /// Events waiting, for metrics; `None` when it cannot be told now.
    async fn depth(&self) -> Option<u64> {
        None
    }
}

/// [`Queue::take`] of a queue the nodes share (a Redis or JetStream stream): `read` takes
/// what is there now, at most the count it is given; with fewer than `max`, waits `window` and
/// reads once more. With nothing there, waits for a write by this node (`written`) or `poll`
/// (other nodes' writes), and tries again. Read errors are logged (`store` names it).
pub(crate) async fn take_shared<F, Fut>(
    read: F,
    written: &tokio::sync::Notify,
    poll: Duration,
    (max, window): (usize, Duration),
    store: &str,
) -> Option<Vec<Pending>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Pending>>>,
{
    loop {
        match read(max).await {
            Ok(mut batch) if !batch.is_empty() => {
                if batch.len() < max && !window.is_zero() {
                    tokio::time::sleep(window).await;
                    if let Ok(more) = read(max - batch.len()).await {
                        batch.extend(more);
                    }
                }
                return Some(batch);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, store, "webhook queue not read"),
        }
        tokio::select! {
            _ = written.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Events waiting in a bounded channel.
pub(crate) fn waiting<T>(tx: &mpsc::Sender<T>) -> u64 {
    (tx.max_capacity() - tx.capacity()) as u64
}

/// A bounded queue in this process.
pub(crate) struct MemoryQueue {
    tx: mpsc::Sender<Pending>,
    rx: Mutex<mpsc::Receiver<Pending>>,
}

impl MemoryQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        MemoryQueue {
            tx,
            rx: Mutex::new(rx),
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn push(&self, event: Pending) -> bool {
        self.tx.try_send(event).is_ok()
    }

    async fn take(&self, max: usize, window: Duration) -> Option<Vec<Pending>> {
        let mut rx = self.rx.lock().await;
        let mut batch = Vec::with_capacity(max);
        if rx.recv_many(&mut batch, max).await == 0 {
            return None;
        }
        let deadline = Instant::now() + window;
        while batch.len() < max {
            let room = max - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        Some(batch)
    }

    /// What waits in memory; the batch being sent is not counted.
    async fn depth(&self) -> Option<u64> {
        Some(waiting(&self.tx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Pending {
        Pending::new(Arc::from(n.to_string()), Arc::from("{}"))
    }

    #[tokio::test]
    async fn memory_batches_up_to_max_and_refuses_when_full() {
        let q = MemoryQueue::new(4);
        for n in 0..4 {
            assert!(q.push(event(n)));
        }
        assert!(!q.push(event(4)), "full");
        let first = q.take(3, Duration::from_secs(5)).await.unwrap();
        assert_eq!(first, vec![event(0), event(1), event(2)]);
        let started = Instant::now();
        let rest = q.take(3, Duration::from_millis(50)).await.unwrap();
        assert_eq!(rest, vec![event(3)]);
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "waited for more"
        );
    }
}
