//! Webhooks (docs/WEBHOOKS.md): the application learns that a channel became occupied or
//! vacated, that a member came or went, that a client sent an event, that a cache channel
//! missed, or that a subscription count changed.
//!
//! The node reports each event through [`Webhooks`], which only puts a small [`Record`] on a
//! bounded queue (never waiting: a full queue drops and counts), so webhooks never slow
//! message delivery. Everything else runs in tasks on a runtime of its own (`webhooks.threads`;
//! see `ingress.rs`): the [`dispatch`] task holds removals for the delay ([`removal`]) and
//! hands each event to the queue of every endpoint that wants it; each [`endpoint`] has a task
//! of its own that batches, signs, posts and retries, so one slow endpoint delays no other.
//! The [`fleet`] keeps the endpoints in step with the apps as they change.
//!
//! Transitions come from the cluster state, which decides each one once cluster-wide, and
//! only the node whose call decided it reports it: a cluster of N nodes sends each once.
//! With no endpoint configured and apps that cannot change, [`Webhooks`] is empty and every
//! report is one branch; otherwise a report of an app without endpoints reads one map.

mod dispatch;
mod endpoint;
mod event;
mod fleet;
mod nats;
mod queue;
mod redis;
mod removal;
mod spool;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use warren_protocol::{AppId, ChannelKind, ChannelName, UserId};

use crate::app::{AppRegistry, LiveApps};
use crate::cluster::{ChannelEvent, ChannelMessage, ClusterState};
use crate::config::{AppConfig, Backend, Config, WebhookConfig, WebhookEventType};
use dispatch::{Dispatch, Table};
pub(crate) use endpoint::{Attempt, CurrentSecret, Observer};
pub(crate) use event::{Hook, Record};
use fleet::Fleet;

/// A set of event kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KindSet(u8);

impl KindSet {
    fn of(endpoint: &WebhookConfig) -> Self {
        let mut set = KindSet(0);
        for kind in ALL_KINDS {
            if endpoint.wants(kind) {
                set.0 |= 1 << kind as u8;
            }
        }
        set
    }

    pub(crate) fn contains(self, kind: WebhookEventType) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }
}

/// In a cluster, how long `channel_occupied` and `member_added` wait, when they find no
/// pending removal to cancel, for one another node may be about to mark (see
/// `Dispatch::return_later`): longer than a busy node takes to write a marker, short next
/// to the removal delay.
const RETURN_SETTLE: Duration = Duration::from_millis(250);

const ALL_KINDS: [WebhookEventType; 7] = [
    WebhookEventType::ChannelOccupied,
    WebhookEventType::ChannelVacated,
    WebhookEventType::MemberAdded,
    WebhookEventType::MemberRemoved,
    WebhookEventType::ClientEvent,
    WebhookEventType::CacheMiss,
    WebhookEventType::SubscriptionCount,
];

/// The name of an app's `n`th endpoint's queue, the same on every node configured alike.
fn queue_name(app: &str, n: usize, url: &str) -> String {
    use sha1::{Digest, Sha1};
    let hash = Sha1::digest(url.as_bytes());
    let hash: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{app}:{n}:{hash}")
}

/// Where the node reports webhook events. Cheap to clone; empty (and free) when no app has
/// an endpoint and the apps cannot change.
#[derive(Clone, Default)]
pub(crate) struct Webhooks(Option<Arc<Intake>>);

struct Intake {
    /// The running endpoints: which kinds each app wants, and where they go.
    table: Arc<ArcSwap<Table>>,
    queue: mpsc::Sender<Record>,
    dropped: AtomicU64,
    /// Keeps the endpoints running.
    _fleet: Arc<Fleet>,
}

/// One endpoint's counts and queue, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointReport {
    pub app: AppId,
    pub index: usize,
    pub delivered: u64,
    pub given_up: u64,
    pub queue_full: u64,
    /// `None` when the queue could not be asked (Redis unreachable).
    pub depth: Option<u64>,
}

impl Webhooks {
    /// Starts the dispatcher and one task per endpoint on `runtime` (the webhooks' own, or the
    /// ingress's; `None`: the current one). The endpoints are those of `apps`, followed as
    /// they change, or (`None`: apps that never change) those of `config`; with neither,
    /// nothing starts.
    /// With a cluster backend the markers and queues are in it, through a client of their own.
    pub(crate) async fn start(
        config: &Config,
        apps: Option<Arc<LiveApps>>,
        node_id: &str,
        state: Arc<dyn ClusterState>,
        runtime: Option<Handle>,
        (observer, current_secret): (Option<Observer>, Option<CurrentSecret>),
    ) -> anyhow::Result<Self> {
        let first: Vec<AppConfig> = match &apps {
            Some(live) => live.all().iter().map(|a| a.settings().clone()).collect(),
            None => config.apps.clone(),
        };
        if apps.is_none() && first.iter().all(|app| app.webhooks.is_empty()) {
            return Ok(Webhooks(None));
        }
        let settings = &config.webhooks;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let dispatch = Arc::new(Dispatch {
            table: Arc::default(),
            markers: OnceLock::new(),
            state,
            delay_removal: Duration::from_millis(settings.delay_removal_ms),
            id_prefix: format!("{node_id}-{started:x}"),
            next_id: AtomicU64::new(0),
            token_base: rand::random(),
            // On one node markers are written in the order of the transitions.
            return_settle: match config.cluster.state_target().backend {
                Backend::Local => Duration::ZERO,
                Backend::Redis | Backend::Nats => RETURN_SETTLE,
            },
        });
        let fleet = Arc::new(Fleet::new(
            config.clone(),
            node_id,
            dispatch.clone(),
            observer,
            current_secret,
        )?);
        let (queue, intake) = mpsc::channel(settings.max_pending);
        let table = dispatch.table.clone();
        let run = {
            let fleet = fleet.clone();
            async move {
                // A store that cannot be reached at start fails the start, as the cluster
                // backend does; later changes are retried.
                fleet.apply(&first).await?;
                if let Some(apps) = &apps {
                    tokio::spawn(fleet.clone().follow(apps, false));
                }
                tokio::spawn(dispatch.run(intake));
                anyhow::Ok(())
            }
        };
        match runtime {
            Some(h) => h.spawn(run).await??,
            None => run.await?,
        }
        Ok(Webhooks(Some(Arc::new(Intake {
            table,
            queue,
            dropped: AtomicU64::new(0),
            _fleet: fleet,
        }))))
    }

    /// Each endpoint's counts and queue depth, and the events the intake dropped; nothing
    /// when no app has an endpoint.
    pub(crate) async fn endpoints_report(&self) -> (Vec<EndpointReport>, u64) {
        let Some(intake) = &self.0 else {
            return (Vec::new(), 0);
        };
        let table = intake.table.load_full();
        let load = |n: &AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        let mut reports = Vec::new();
        for (app, routes) in &table.routes {
            for e in routes {
                reports.push(EndpointReport {
                    app: app.clone(),
                    index: e.index,
                    delivered: load(&e.stats.delivered),
                    given_up: load(&e.stats.given_up),
                    queue_full: load(&e.stats.queue_full),
                    depth: e.queue.depth().await,
                });
            }
        }
        reports.sort_by(|a, b| (a.app.as_str(), a.index).cmp(&(b.app.as_str(), b.index)));
        let dropped = intake.dropped.load(std::sync::atomic::Ordering::Relaxed);
        (reports, dropped)
    }

    /// Enqueues the event if an endpoint of the app wants its kind.
    ///
    /// INVARIANT(webhook-never-waits): `try_send` on a bounded channel; a full one drops and
    /// counts, so a webhook never slows or fails what the node is doing.
    fn report(
        &self,
        app: &AppId,
        channel: &ChannelName,
        kind: WebhookEventType,
        hook: impl FnOnce() -> Hook,
    ) {
        let Some(intake) = &self.0 else { return };
        if !intake
            .table
            .load()
            .wants
            .get(app)
            .is_some_and(|k| k.contains(kind))
        {
            return;
        }
        let record = Record {
            app: app.clone(),
            channel: channel.clone(),
            hook: hook(),
            at_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        };
        if intake.queue.try_send(record).is_err() {
            let dropped = intake
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped_total = dropped,
                    "webhook dropped: the queue is full"
                );
            }
        }
    }

    /// A subscription was recorded: did it occupy the channel, or add a member?
    pub(crate) fn subscribed(
        &self,
        app: &AppId,
        channel: &ChannelName,
        occupied: bool,
        member_added: Option<&UserId>,
    ) {
        if occupied && channel.kind() != ChannelKind::ServerToUser {
            self.report(app, channel, WebhookEventType::ChannelOccupied, || {
                Hook::Occupied
            });
        }
        if let Some(user) = member_added {
            let added = || Hook::MemberAdded(user.clone());
            self.report(app, channel, WebhookEventType::MemberAdded, added);
        }
    }

    /// A subscription ended: did it vacate the channel, or remove a member?
    pub(crate) fn unsubscribed(
        &self,
        app: &AppId,
        channel: &ChannelName,
        vacated: bool,
        member_removed: Option<&UserId>,
    ) {
        if let Some(user) = member_removed {
            let removed = || Hook::MemberRemoved(user.clone());
            self.report(app, channel, WebhookEventType::MemberRemoved, removed);
        }
        if vacated && channel.kind() != ChannelKind::ServerToUser {
            self.report(app, channel, WebhookEventType::ChannelVacated, || {
                Hook::Vacated
            });
        }
    }

    /// A client event was published (`except` is its sender).
    pub(crate) fn client_event(&self, event: &ChannelEvent) {
        let (
            ChannelMessage::Event {
                name,
                data,
                user_id,
            },
            Some(socket),
        ) = (&event.message, event.except)
        else {
            return;
        };
        self.report(
            &event.app,
            &event.channel,
            WebhookEventType::ClientEvent,
            || Hook::ClientEvent {
                event: name.clone(),
                data: data.clone(),
                socket,
                user: user_id.clone(),
            },
        );
    }

    /// A cache channel's new subscriber found nothing kept.
    pub(crate) fn cache_miss(&self, app: &AppId, channel: &ChannelName) {
        self.report(app, channel, WebhookEventType::CacheMiss, || {
            Hook::CacheMiss
        });
    }

    /// A channel's subscription count was sent to its subscribers.
    pub(crate) fn subscription_count(&self, app: &AppId, channel: &ChannelName, count: u64) {
        self.report(app, channel, WebhookEventType::SubscriptionCount, || {
            Hook::SubscriptionCount(count)
        });
    }
}
