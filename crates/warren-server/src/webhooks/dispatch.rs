//! The task between the node and the endpoints: it takes the records the node enqueued, holds
//! removals for the delay ([`removal`](super::removal)), and hands each event, in JSON with
//! its id, to the queue of every endpoint of its app that wants its kind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use warren_protocol::{AppId, ChannelName, UserId};

use super::endpoint::Stats;
use super::event::{Hook, Record};
use super::queue::{Pending, Queue};
use super::removal::{role, Markers, Op, Role};
use super::KindSet;
use crate::cluster::ClusterState;

/// Records taken from the node's queue at once.
const INTAKE: usize = 256;
/// With markers in a shared store, an intake that is not full waits this long for more
/// records first: every intake costs a marker call, a claim after the delay and state
/// reads, each a round trip to the store and tens of microseconds of client CPU, so at a
/// moderate rate (a record a millisecond) gathering cuts the webhooks' CPU several times
/// over, for a delay short next to the 250 ms a return settles and the removal delay.
const GATHER: Duration = Duration::from_millis(20);
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
        // Markers in memory cost nothing to call: gathering would only delay.
        let gather = !self.return_settle.is_zero();
        while intake.recv_many(&mut records, INTAKE).await > 0 {
            if gather && records.len() < INTAKE {
                tokio::time::sleep(GATHER).await;
                while records.len() < INTAKE {
                    match intake.try_recv() {
                        Ok(record) => records.push(record),
                        Err(_) => break,
                    }
                }
            }
            // The markers of a whole intake in one call (one script per app with Redis), in
            // order; then the records go on in the order they came.
            let fates = self.fates(&records).await;
            let (mut removals, mut returns) = (Vec::new(), Vec::new());
            for (record, fate) in records.drain(..).zip(fates) {
                match fate {
                    Fate::Now => self.route(&record),
                    Fate::AfterDelay(marker, token) => removals.push((record, marker, token)),
                    Fate::AfterSettle(marker) => returns.push((record, marker)),
                    Fate::Cancelled => {}
                }
            }
            if !removals.is_empty() {
                self.clone().remove_later(removals);
            }
            if !returns.is_empty() {
                self.clone().return_later(returns);
            }
        }
    }

    async fn fates(&self, records: &[Record]) -> Vec<Fate> {
        let markers = self.markers.get().filter(|_| !self.delay_removal.is_zero());
        let Some(markers) = markers else {
            return records.iter().map(|_| Fate::Now).collect();
        };
        // Each removal and return becomes one marker operation, in the order of the records.
        let mut ops = Vec::new();
        let mut fates: Vec<Fate> = records
            .iter()
            .map(|r| match role(r) {
                Role::Neither => Fate::Now,
                Role::Removal(marker) => {
                    let token = self.next_token();
                    ops.push((
                        marker.clone(),
                        Op::Mark {
                            token,
                            at_us: r.at_us,
                        },
                    ));
                    Fate::AfterDelay(marker, token)
                }
                Role::Return(marker) => {
                    ops.push((marker.clone(), Op::Claim { at_us: r.at_us }));
                    Fate::AfterSettle(marker)
                }
            })
            .collect();
        let ttl = self.delay_removal + MARKER_MARGIN;
        let mut results = markers.run(&ops, ttl).await.into_iter();
        for fate in &mut fates {
            match fate {
                Fate::AfterDelay(..) => {
                    results.next();
                }
                Fate::AfterSettle(_) => match results.next().flatten() {
                    Some(true) => *fate = Fate::Cancelled,
                    _ if self.return_settle.is_zero() => *fate = Fate::Now,
                    _ => {}
                },
                Fate::Now | Fate::Cancelled => {}
            }
        }
        fates
    }

    /// Returns that found no marker, when the markers are shared between nodes: the removal
    /// one may cancel can have happened on another node just before it, its marker not yet
    /// written (each node writes its markers from its own dispatcher, a little after the
    /// transition). So they look once more after `return_settle`, together, and each cancels
    /// itself and its removal if the marker is there by then.
    fn return_later(self: Arc<Self>, returns: Vec<(Record, String)>) {
        tokio::spawn(async move {
            tokio::time::sleep(self.return_settle).await;
            let ops: Vec<_> = returns
                .iter()
                .map(|(r, marker)| (marker.clone(), Op::Claim { at_us: r.at_us }))
                .collect();
            let claimed = self.run_markers(&ops).await;
            for ((record, _), claimed) in returns.iter().zip(claimed) {
                if claimed != Some(true) {
                    self.route(record);
                }
            }
        });
    }

    /// The markers' answers to `ops`; `None` each when there is no store yet.
    async fn run_markers(&self, ops: &[(String, Op)]) -> Vec<Option<bool>> {
        match self.markers.get() {
            Some(markers) => markers.run(ops, Duration::ZERO).await,
            None => vec![None; ops.len()],
        }
    }

    /// A token no other removal on any node holds: this node's start, then a count.
    fn next_token(&self) -> u64 {
        self.token_base
            .wrapping_add(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// INVARIANT(removal-claimed-once): a removal is sent only if its marker is still its own
    /// (no return claimed it, no later removal replaced it), and the cluster state shows no
    /// return after the delay. A store that cannot answer counts as unclaimed: at least once.
    /// The removals of one intake wait together and are claimed in one call.
    fn remove_later(self: Arc<Self>, removals: Vec<(Record, String, u64)>) {
        tokio::spawn(async move {
            tokio::time::sleep(self.delay_removal).await;
            let ops: Vec<_> = removals
                .iter()
                .map(|(_, marker, token)| (marker.clone(), Op::ClaimOwn { token: *token }))
                .collect();
            let claimed = self.run_markers(&ops).await;
            let held: Vec<Record> = removals
                .into_iter()
                .zip(claimed)
                .filter(|(_, claimed)| *claimed != Some(false))
                .map(|((record, _, _), _)| record)
                .collect();
            let returned = self.returned(&held).await;
            for (record, returned) in held.iter().zip(returned) {
                if !returned {
                    self.route(record);
                }
            }
        });
    }

    /// For each removal, whether the channel is occupied again, or the member back,
    /// cluster-wide: one read per channel. On a backend error the removal is sent: at least
    /// once.
    async fn returned(&self, removals: &[Record]) -> Vec<bool> {
        let mut channels: HashMap<(&AppId, &ChannelName), Option<Vec<UserId>>> = HashMap::new();
        let mut occupied: HashMap<(&AppId, &ChannelName), bool> = HashMap::new();
        for r in removals {
            let at = (&r.app, &r.channel);
            match &r.hook {
                Hook::Vacated if !occupied.contains_key(&at) => {
                    let now = self.state.channel(&r.app, &r.channel).await;
                    occupied.insert(at, now.is_ok_and(|s| s.subscription_count > 0));
                }
                Hook::MemberRemoved(_) if !channels.contains_key(&at) => {
                    let members = self.state.presence_members(&r.app, &r.channel).await;
                    let users = members
                        .ok()
                        .map(|m| m.into_iter().map(|m| m.user_id).collect());
                    channels.insert(at, users);
                }
                _ => {}
            }
        }
        removals
            .iter()
            .map(|r| {
                let at = (&r.app, &r.channel);
                match &r.hook {
                    Hook::Vacated => occupied.get(&at).copied().unwrap_or(false),
                    Hook::MemberRemoved(user) => channels
                        .get(&at)
                        .and_then(Option::as_ref)
                        .is_some_and(|users| users.contains(user)),
                    _ => false,
                }
            })
            .collect()
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
