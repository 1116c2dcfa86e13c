//! The task between the node and the endpoints: it takes the records the node enqueued, holds
//! removals for the delay ([`removal`](super::removal)), and hands each event, in JSON with
//! its id, to the queue of every endpoint of its app that wants its kind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use warren_protocol::AppId;

use super::endpoint::Stats;
use super::event::{Hook, Record};
use super::queue::{Pending, Queue};
use super::removal::{role, Markers, Role};
use super::KindSet;
use crate::cluster::ClusterState;

/// Records taken from the node's queue at once.
const INTAKE: usize = 256;
/// A marker outlives its removal's delay by this much, so a removal whose node is slow (or
/// whose delivery another node took over) still finds it.
const MARKER_MARGIN: Duration = Duration::from_secs(600);

/// One endpoint as the dispatcher (and the metrics) see it.
pub(crate) struct Route {
    pub wants: KindSet,
    pub queue: Arc<dyn Queue>,
    pub stats: Arc<Stats>,
    pub url: String,
    /// Its place among the app's endpoints in the configuration.
    pub index: usize,
}

/// The running endpoints, replaced whole when the apps change (`fleet`).
#[derive(Default)]
pub(crate) struct Table {
    /// The kinds some endpoint of each app wants; other apps and kinds stop at the intake.
    pub wants: HashMap<AppId, KindSet>,
    pub routes: HashMap<AppId, Vec<Route>>,
}

pub(crate) struct Dispatch {
    pub table: Arc<ArcSwap<Table>>,
    /// Set once the first endpoint's store is open (before any event can be routed).
    pub markers: OnceLock<Arc<dyn Markers>>,
    pub state: Arc<dyn ClusterState>,
    pub delay_removal: Duration,
    /// Event ids: this prefix (unique per node start), then a number.
    pub id_prefix: String,
    pub next_id: AtomicU64,
    /// Removal tokens: this random start, then `next_id`'s count.
    pub token_base: u64,
    /// How long a return that found no marker waits for one written by another node (zero
    /// on a single node, where markers are written in the order of the transitions).
    pub return_settle: Duration,
}

/// What becomes of a record.
enum Fate {
    Now,
    /// Behind a marker of this name and token.
    AfterDelay(String, u64),
    /// A return that found no marker: looked for again after `return_settle`.
    AfterSettle(String),
    Cancelled,
}

impl Dispatch {
    pub(crate) async fn run(self: Arc<Self>, mut intake: mpsc::Receiver<Record>) {
        let mut records = Vec::with_capacity(INTAKE);
        while intake.recv_many(&mut records, INTAKE).await > 0 {
            // The markers of a whole intake at once (one round trip to Redis, pipelined), in
            // order; then the records go on in the order they came.
            let fates = join_all(records.iter().map(|r| self.fate(r))).await;
            for (record, fate) in records.drain(..).zip(fates) {
                match fate {
                    Fate::Now => self.route(&record),
                    Fate::AfterDelay(marker, token) => {
                        self.clone().remove_later(record, marker, token)
                    }
                    Fate::AfterSettle(marker) => self.clone().return_later(record, marker),
                    Fate::Cancelled => {}
                }
            }
        }
    }

    async fn fate(&self, r: &Record) -> Fate {
        let Some(markers) = self.markers.get().filter(|_| !self.delay_removal.is_zero()) else {
            return Fate::Now;
        };
        match role(r) {
            Role::Neither => Fate::Now,
            Role::Removal(marker) => {
                let ttl = self.delay_removal + MARKER_MARGIN;
                let token = self.next_token();
                markers.mark(&marker, token, r.at_ms, ttl).await;
                Fate::AfterDelay(marker, token)
            }
            Role::Return(marker) if markers.claim(&marker, r.at_ms).await == Some(true) => {
                Fate::Cancelled
            }
            Role::Return(_) if self.return_settle.is_zero() => Fate::Now,
            Role::Return(marker) => Fate::AfterSettle(marker),
        }
    }

    /// A return that found no marker, when the markers are shared between nodes: the
    /// removal it may cancel can have happened on another node just before it, its marker
    /// not yet written (each node writes its markers from its own dispatcher, a little after
    /// the transition). So it looks once more after `return_settle`, and cancels both if the
    /// marker is there by then.
    fn return_later(self: Arc<Self>, record: Record, marker: String) {
        tokio::spawn(async move {
            tokio::time::sleep(self.return_settle).await;
            let claimed = match self.markers.get() {
                Some(markers) => markers.claim(&marker, record.at_ms).await,
                None => None,
            };
            if claimed != Some(true) {
                self.route(&record);
            }
        });
    }

    /// A token no other removal on any node holds: this node's start, then a count.
    fn next_token(&self) -> u64 {
        self.token_base
            .wrapping_add(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// INVARIANT(removal-claimed-once): a removal is sent only if its marker is still its own
    /// (no return claimed it, no later removal replaced it), and the cluster state shows no
    /// return after the delay. A store that cannot answer counts as unclaimed: at least once.
    fn remove_later(self: Arc<Self>, record: Record, marker: String, token: u64) {
        tokio::spawn(async move {
            tokio::time::sleep(self.delay_removal).await;
            let claimed = match self.markers.get() {
                Some(markers) => markers.claim_own(&marker, token).await != Some(false),
                None => true,
            };
            if claimed && !self.returned(&record).await {
                self.route(&record);
            }
        });
    }

    /// Whether the channel is occupied again, or the member back, cluster-wide. On a backend
    /// error the removal is sent: at least once.
    async fn returned(&self, r: &Record) -> bool {
        match &r.hook {
            Hook::Vacated => self
                .state
                .channel(&r.app, &r.channel)
                .await
                .is_ok_and(|s| s.subscription_count > 0),
            Hook::MemberRemoved(user) => self
                .state
                .presence_members(&r.app, &r.channel)
                .await
                .is_ok_and(|members| members.iter().any(|m| &m.user_id == user)),
            _ => false,
        }
    }

    /// Hands the event to the endpoints of its app that run now and want its kind.
    fn route(&self, r: &Record) {
        let table = self.table.load();
        let Some(routes) = table.routes.get(&r.app) else {
            return;
        };
        let kind = r.hook.kind();
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = Arc::from(format!("{}-{n}", self.id_prefix));
        let pending = Pending::new(id, Arc::from(r.to_json()));
        for route in routes.iter().filter(|route| route.wants.contains(kind)) {
            if !route.queue.push(pending.clone()) {
                let dropped = route.stats.queue_full.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(url = %route.url, dropped_total = dropped,
                        "webhook dropped: the endpoint's queue is full (webhooks.max_pending)");
                }
            }
        }
    }
}
