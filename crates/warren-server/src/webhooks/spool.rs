//! Webhooks of a single node that survive a crash: each endpoint's queue is a table of an
//! embedded database (redb: transactional, crash-safe, one file) in `webhooks.spool_dir`.
//!
//! Events are numbered in the order they are queued, and a number is never used twice while
//! the process runs; the endpoint's task takes them in that order (several batches may be
//! under way at once: a batch is what follows the last one taken) and deletes them once
//! delivered or given up on, so after a restart whatever was still pending is sent, under
//! the id it had. A writer task commits what arrived since its
//! last commit in one transaction; what had not reached it yet (milliseconds' worth) is lost
//! with the process, like the removals waiting for their delay.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, Notify};

use super::queue::{waiting, Pending, Queue};

/// Events committed in one transaction at most.
const WRITE_BATCH: usize = 512;

/// The spool file in `dir`, created with the directory if needed.
pub(crate) fn open(dir: &Path) -> anyhow::Result<Arc<Database>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("webhooks.redb");
    let db = Database::create(&path)
        .map_err(|e| anyhow::anyhow!("webhook spool {}: {e}", path.display()))?;
    Ok(Arc::new(db))
}

/// One endpoint's queue in the spool: key = number, value = `<id>\n<json>`.
pub(crate) struct SpoolQueue {
    table: Arc<Table>,
    /// The first number not yet taken (held through a whole `take`, window included).
    untaken: tokio::sync::Mutex<u64>,
    /// To the writer task, which ends (letting go of the database) when this is dropped.
    incoming: mpsc::Sender<Pending>,
}

/// The table of one endpoint.
struct Table {
    db: Arc<Database>,
    table: String,
    written: Notify,
}

impl SpoolQueue {
    /// Starts the task that writes into table `table`, which holds at most `capacity` events.
    pub(crate) fn start(db: Arc<Database>, table: String, capacity: usize) -> Self {
        let (incoming, rx) = mpsc::channel(capacity.max(1));
        let table = Arc::new(Table {
            db,
            table,
            written: Notify::new(),
        });
        tokio::spawn(table.clone().write(rx, capacity as u64));
        SpoolQueue {
            table,
            untaken: tokio::sync::Mutex::new(0),
            incoming,
        }
    }
}

impl Table {
    fn definition(&self) -> TableDefinition<'_, u64, &'static str> {
        TableDefinition::new(&self.table)
    }

    async fn write(self: Arc<Self>, mut rx: mpsc::Receiver<Pending>, capacity: u64) {
        let mut events = Vec::with_capacity(WRITE_BATCH);
        // The next number: found in the table at the first write, then counted here, so that
        // an emptied table does not start again below numbers already taken.
        let mut next = None;
        while rx.recv_many(&mut events, WRITE_BATCH).await > 0 {
            let me = self.clone();
            let batch = std::mem::take(&mut events);
            let written =
                tokio::task::spawn_blocking(move || me.insert(&batch, capacity, next)).await;
            match written {
                Ok(Ok((0, after))) => next = Some(after),
                Ok(Ok((dropped, after))) => {
                    next = Some(after);
                    tracing::warn!(dropped, "webhooks dropped: the spool is full (max_pending)")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "webhooks not written to the spool"),
                Err(e) => tracing::error!(error = %e, "webhook spool writer failed"),
            }
            self.written.notify_one();
        }
    }

    /// Appends `batch` in one transaction, numbered from `next` (`None`: after the table's
    /// last); returns how many did not fit, and the next number.
    fn insert(
        &self,
        batch: &[Pending],
        capacity: u64,
        next: Option<u64>,
    ) -> anyhow::Result<(usize, u64)> {
        let tx = self.db.begin_write()?;
        let mut dropped = 0;
        let next = {
            let mut table = tx.open_table(self.definition())?;
            let mut next = match next {
                Some(n) => n,
                None => table.last()?.map_or(0, |(k, _)| k.value() + 1),
            };
            let mut len = table.len()?;
            for event in batch {
                if len >= capacity {
                    dropped += 1;
                    continue;
                }
                table.insert(next, format!("{}\n{}", event.id, event.json).as_str())?;
                next += 1;
                len += 1;
            }
            next
        };
        tx.commit()?;
        Ok((dropped, next))
    }

    /// How many events the spool holds.
    fn len(&self) -> anyhow::Result<u64> {
        let tx = self.db.begin_read()?;
        match tx.open_table(self.definition()) {
            Ok(table) => Ok(table.len()?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// The first `max` events numbered `from` or more.
    fn oldest(&self, from: u64, max: usize) -> anyhow::Result<Vec<Pending>> {
        let tx = self.db.begin_read()?;
        let table = match tx.open_table(self.definition()) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.range(from..)?.take(max) {
            let (key, value) = entry?;
            let (id, json) = value
                .value()
                .split_once('\n')
                .unwrap_or(("", value.value()));
            out.push(Pending {
                id: Arc::from(id),
                json: Arc::from(json),
                entry: Arc::from(key.value().to_string()),
            });
        }
        Ok(out)
    }

    fn remove(&self, batch: &[Pending]) -> anyhow::Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(self.definition())?;
            for key in batch.iter().filter_map(|p| p.entry.parse::<u64>().ok()) {
                table.remove(key)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    async fn read(self: &Arc<Self>, from: u64, max: usize) -> Vec<Pending> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.oldest(from, max)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "webhook spool not read");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }
}

/// The events after the last batch taken are the next batch; a batch stays in the spool
/// until it is done.
#[async_trait]
impl Queue for SpoolQueue {
    fn push(&self, event: Pending) -> bool {
        self.incoming.try_send(event).is_ok()
    }

    async fn take(&self, max: usize, window: Duration) -> Option<Vec<Pending>> {
        let t = &self.table;
        let mut untaken = self.untaken.lock().await;
        loop {
            let written = t.written.notified();
            let mut batch = t.read(*untaken, max).await;
            if !batch.is_empty() {
                if batch.len() < max && !window.is_zero() {
                    tokio::time::sleep(window).await;
                    // The same first events, and what came meanwhile.
                    let more = t.read(*untaken, max).await;
                    if more.len() > batch.len() {
                        batch = more;
                    }
                }
                if let Some(last) = batch.last().and_then(|p| p.entry.parse::<u64>().ok()) {
                    *untaken = last + 1;
                }
                return Some(batch);
            }
            // Also woken now and then, in case a failed read left something behind.
            tokio::select! {
                _ = written => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The spool's events and what has yet to be written to it.
    async fn depth(&self) -> Option<u64> {
        let me = self.table.clone();
        let kept = tokio::task::spawn_blocking(move || me.len())
            .await
            .ok()?
            .ok()?;
        Some(kept + waiting(&self.incoming))
    }

    async fn done(&self, batch: &[Pending]) {
        let (me, batch) = (self.table.clone(), batch.to_vec());
        match tokio::task::spawn_blocking(move || me.remove(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "delivered webhooks not removed from the spool")
            }
            Err(e) => tracing::error!(error = %e, "webhook spool failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Pending {
        Pending::new(
            Arc::from(format!("id-{n}")),
            Arc::from(format!("{{\"n\":{n}}}")),
        )
    }

    #[tokio::test]
    async fn events_outlive_the_process_until_done() {
        let dir = std::env::temp_dir().join(format!("warren-spool-{}", rand::random::<u64>()));
        {
            let q = SpoolQueue::start(open(&dir).unwrap(), "q".into(), 3);
            for n in 0..4 {
                q.push(event(n));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let batch = q.take(2, Duration::ZERO).await.unwrap();
            assert_eq!(
                batch.iter().map(|p| &*p.id).collect::<Vec<_>>(),
                ["id-0", "id-1"]
            );
            q.done(&batch).await;
            // Wait for the writer to let go of the database (the 4th event did not fit).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let db = loop {
            match open(&dir) {
                Ok(db) => break db,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let q = SpoolQueue::start(db, "q".into(), 3);
        let left = q.take(10, Duration::ZERO).await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!((&*left[0].id, &*left[0].json), ("id-2", "{\"n\":2}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn batches_under_way_together_are_disjoint_and_numbers_are_not_reused() {
        let dir = std::env::temp_dir().join(format!("warren-spool-{}", rand::random::<u64>()));
        let queue = SpoolQueue::start(open(&dir).unwrap(), "q".into(), 100);
        let q = &queue;
        let ids = |b: &[Pending]| b.iter().map(|p| p.id.to_string()).collect::<Vec<_>>();
        let take = |max| async move {
            tokio::time::timeout(Duration::from_secs(5), q.take(max, Duration::ZERO))
                .await
                .expect("a batch")
                .unwrap()
        };
        for n in 0..5 {
            q.push(event(n));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (a, b) = (take(2).await, take(2).await);
        assert_eq!(
            (ids(&a), ids(&b)),
            (
                vec!["id-0".into(), "id-1".into()],
                vec!["id-2".into(), "id-3".into()]
            )
        );
        q.done(&b).await;
        q.done(&a).await;
        let c = take(10).await;
        assert_eq!(ids(&c), ["id-4"]);
        q.done(&c).await;
        // The spool is empty now: what comes next is numbered after what was taken.
        q.push(event(5));
        assert_eq!(ids(&take(10).await), ["id-5"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
