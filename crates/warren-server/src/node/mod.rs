//! [`Node`]: the one way into this server's channels, for WebSocket sessions and the HTTP API
//! alike.
//!
//! A node owns three parts: the [`Hub`] (this node's subscribers), the [`Broker`] (events to
//! and from other nodes) and the [`ClusterState`] (counts and presence, cluster-wide). Each
//! operation calls them in an order that gives the protocol its guarantees, and that order is
//! written here, once:
//!
//! * **Subscribed means receiving.** A subscriber first joins the hub as *pending* (events
//!   published from then on are held for it), then the node makes sure the broker listens to
//!   the channel ([`listening`]), then the cluster state records it. Only then is
//!   `subscription_succeeded` queued, followed by the held events, in one step
//!   ([`Hub::activate`]). So the client neither misses an event published after it was told
//!   it is subscribed, nor sees one before. If the broker or the state fails, the local join
//!   is undone and nothing was announced.
//! * **Each transition once.** The cluster state decides every transition (occupied, vacated,
//!   member added, member removed) atomically, exactly once cluster-wide, with a version, and
//!   tells the other nodes of presence changes (in the same step, or after it carrying the
//!   version). The node delivers those announcements to its own subscribers only, through
//!   the same ordering filter as the other nodes' (`cluster::ordering`): `member_added` to
//!   everyone but the joining connection (which learns the members from its
//!   `subscription_succeeded`), `member_removed` to everyone.
//! * **Publish to others, then here.** An event goes to the broker first (the other nodes),
//!   then to local subscribers, framed once ([`delivery`]); a backend failure is the caller's
//!   error and nothing is delivered.
//! * **Cache channels: the cached event first, never the past after it.** An HTTP API event
//!   on a cache channel is kept in the cluster state before it is published, with a sequence
//!   number. A subscriber reads the cache after its pending join and after the broker
//!   listens, so any event published without reaching it is in the cache it reads (or a
//!   newer one is). It gets `subscription_succeeded`, then the cached event (or
//!   `pusher:cache_miss`), then what was held and what comes live, except events numbered
//!   up to the cached one: those are the cached event again or older ones still in flight
//!   ([`Hub::activate_replayed`]).
//! * **Subscription counts follow the change that made them** ([`counting`]), on apps that
//!   ask for them; they go out after the state step and before `subscription_succeeded` is
//!   queued, so a new subscriber's count arrives after its `subscription_succeeded`.
//! * **A user is heard wherever they matter.** The node listens to a user's
//!   `#server-to-user-<id>` channel while a connection here is subscribed to it, signed in as
//!   the user, or watches them; notices about the user (terminate, online, offline) travel on
//!   it ([`signin`], [`users`]).
//!
//! A channel that is neither a cache channel nor counted pays for neither: both are decided
//! from the channel's name and the app's switch, before any extra step is taken.

mod counting;
mod delivery;
mod listening;
mod quotas;
mod signin;
mod users;
mod watched;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warren_protocol::presence::PresenceMember;
use warren_protocol::{outbound, AppId, ChannelKind, ChannelName, SocketId};

use crate::cluster::{
    BackendError, BackendHealth, Broadcast, Broker, CachedEvent, ChannelEvent, ChannelMessage,
    ChannelStats, ClusterState, CountVersion, JoinError, SubscriptionChange,
};
use crate::hub::{Hub, LocalTransition};
use crate::metrics::{Metrics, Source, Stamp};
use crate::monitor::Monitor;
use crate::outbox::Outbox;
use crate::webhooks::Webhooks;
use crate::ws::frame;
use counting::Counts;
pub(crate) use delivery::LocalDelivery;
use listening::Listening;
pub(crate) use quotas::Rate;
pub(crate) use signin::SigningIn;
pub(crate) use users::LocalUsers;

/// This server as one node of a cluster (a cluster of one with the local backend).
pub struct Node {
    hub: Arc<Hub>,
    users: Arc<LocalUsers>,
    broker: Arc<dyn Broker>,
    state: Arc<dyn ClusterState>,
    listening: Arc<Listening>,
    counts: Counts,
    monitor: Arc<Monitor>,
    webhooks: Webhooks,
    local: Arc<LocalDelivery>,
    /// This node's part of the apps' rate windows.
    rates: quotas::Rates,
    /// The backend counts connections and rates for the whole cluster.
    shares_counters: bool,
    metrics: Metrics,
}

/// A connection joining a channel.
pub(crate) struct Joining<'a> {
    pub app: &'a AppId,
    pub channel: &'a ChannelName,
    pub socket: SocketId,
    pub outbox: &'a Arc<Outbox>,
    /// On presence channels: who joins, and how many distinct members the channel may have.
    pub presence: Option<(&'a PresenceMember, usize)>,
    /// The app sends subscription counts.
    pub subscription_counts: bool,
}

impl Node {
    /// A node around the parts `local` (what the backend was connected to) delivers to.
    pub(crate) fn new(
        local: &Arc<LocalDelivery>,
        broker: Arc<dyn Broker>,
        state: Arc<dyn ClusterState>,
        monitor: Arc<Monitor>,
    ) -> Self {
        let (hub, users, listening, metrics) = local.parts();
        Self {
            metrics: metrics.clone(),
            monitor,
            counts: Counts {
                hub: hub.clone(),
                users: users.clone(),
                broker: broker.clone(),
                state: state.clone(),
                webhooks: Webhooks::default(),
                metrics,
            },
            hub,
            users,
            broker,
            shares_counters: state.shares_counters(),
            state,
            listening,
            local: local.clone(),
            webhooks: Webhooks::default(),
            rates: quotas::Rates::default(),
        }
    }

    /// Reports webhook events to `webhooks` from now on.
    pub(crate) fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.counts.webhooks = webhooks.clone();
        self.webhooks = webhooks;
        self
    }

    /// Where sessions report client events for webhooks.
    pub(crate) fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// Subscribes a connection; on success its `subscription_succeeded` is queued, then every
    /// event published since it joined.
    pub(crate) async fn subscribe(&self, j: Joining<'_>) -> Result<(), JoinError> {
        if self
            .hub
            .join(j.app, j.channel, j.socket, j.outbox.clone())
            .is_none()
        {
            // Sessions never subscribe a connection twice: there is nothing to do.
            return Ok(());
        }
        if let Err(e) = self.listening.ensure(&*self.broker, j.app, j.channel).await {
            self.leave_hub(j.app, j.channel, j.socket).await;
            return Err(e.into());
        }
        // Read after the join and the listen: see "Cache channels" in the module doc.
        let cached = if j.channel.is_cache() {
            match self.state.cache_get(j.app, j.channel).await {
                Ok(cached) => Some(cached),
                Err(e) => {
                    self.leave_hub(j.app, j.channel, j.socket).await;
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        if matches!(cached, Some(None)) {
            self.webhooks.cache_miss(j.app, j.channel);
        }
        let (first, change) = match j.presence {
            None => match self.state.subscribe(j.app, j.channel, j.socket).await {
                Ok(change) => {
                    (self.webhooks).subscribed(j.app, j.channel, change.transition, None);
                    (outbound::subscription_succeeded(j.channel.as_str()), change)
                }
                Err(e) => {
                    self.leave_hub(j.app, j.channel, j.socket).await;
                    return Err(e.into());
                }
            },
            Some((member, max_members)) => {
                let joined = self
                    .state
                    .join_presence(j.app, j.channel, j.socket, member, max_members)
                    .await;
                let join = match joined {
                    Ok(join) => join,
                    Err(e) => {
                        self.leave_hub(j.app, j.channel, j.socket).await;
                        return Err(e);
                    }
                };
                let added = join.member_added.then_some(&member.user_id);
                (self.webhooks).subscribed(j.app, j.channel, join.change.transition, added);
                if join.member_added {
                    watched::member_added(&self.monitor, j.app, j.channel, &member.user_id);
                    let arrival = ChannelEvent {
                        app: j.app.clone(),
                        channel: j.channel.clone(),
                        except: Some(j.socket),
                        message: ChannelMessage::MemberAdded(member.clone()),
                    };
                    self.announce_here(&arrival, join.change.version);
                }
                (presence_succeeded(j.channel, &join.members), join.change)
            }
        };
        if j.subscription_counts {
            self.count_changed(j.app, j.channel, change).await;
        }
        let (replay, replayed) = match cached {
            None => (None, None),
            Some(cached) => replay_frame(j.channel, cached),
        };
        // INVARIANT(subscribed-means-receiving): the broker listens and the state recorded the
        // subscription; only now is `subscription_succeeded` queued (with a cache channel's
        // replay right after it), then what was held.
        // Only this connection's own session leaves its channels, and it is waiting on this
        // call: the pending join is still there to activate.
        let first = std::iter::once(frame::text(first.as_bytes())).chain(replay);
        self.hub
            .activate_replayed(j.app, j.channel, j.socket, first, replayed);
        watched::subscribed(&self.monitor, j.app, j.channel, j.socket);
        Ok(())
    }

    /// Unsubscribes a connection (also when it closes), announcing a departed presence member
    /// and, when `subscription_counts`, the new count. A backend failure is logged: the
    /// connection is gone either way, and a cluster backend repairs its state when it
    /// reconnects.
    pub(crate) async fn unsubscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        member: Option<&PresenceMember>,
        subscription_counts: bool,
    ) {
        self.leave_hub(app, channel, socket).await;
        watched::unsubscribed(&self.monitor, app, channel, socket);
        match member {
            None => match self.state.unsubscribe(app, channel, socket).await {
                Ok(change) => {
                    (self.webhooks).unsubscribed(app, channel, change.transition, None);
                    if subscription_counts {
                        self.count_changed(app, channel, change).await;
                    }
                }
                Err(e) => tracing::warn!(%channel, error = %e, "could not record unsubscribe"),
            },
            Some(m) => match self
                .state
                .leave_presence(app, channel, socket, &m.user_id)
                .await
            {
                Ok(left) => {
                    let removed = left.member_removed.then_some(&m.user_id);
                    (self.webhooks).unsubscribed(app, channel, left.change.transition, removed);
                    if left.member_removed {
                        watched::member_removed(&self.monitor, app, channel, &m.user_id);
                        let departure = ChannelEvent {
                            app: app.clone(),
                            channel: channel.clone(),
                            except: None,
                            message: ChannelMessage::MemberRemoved {
                                user_id: m.user_id.clone(),
                            },
                        };
                        self.announce_here(&departure, left.change.version);
                    }
                }
                Err(e) => tracing::warn!(%channel, error = %e, "could not record presence leave"),
            },
        }
    }

    /// Publishes an event to its channel's subscribers on every node.
    ///
    /// INVARIANT(others-then-here): the broker tells the other nodes, then this node delivers
    /// once; brokers never hand a node its own events back.
    pub async fn publish(&self, event: &ChannelEvent) -> Result<(), BackendError> {
        self.publish_stamped(event, self.metrics.stamp()).await
    }

    /// [`Node::publish`] of an event that entered this node at `published`.
    async fn publish_stamped(
        &self,
        event: &ChannelEvent,
        published: Stamp,
    ) -> Result<(), BackendError> {
        self.broker.publish(event).await?;
        delivery::deliver(&self.hub, &self.users, &self.metrics, event, published);
        Ok(())
    }

    /// Publishes a client event (see [`Node::publish`]), counted as one.
    pub(crate) async fn publish_client_event(
        &self,
        event: &ChannelEvent,
    ) -> Result<(), BackendError> {
        self.publish(event).await?;
        self.metrics.published(&event.app, Source::Client);
        Ok(())
    }

    /// Sends a custom broadcast to the other nodes; this node's handlers are the caller's.
    pub async fn broadcast(&self, broadcast: &Broadcast) -> Result<(), BackendError> {
        self.broker.broadcast(broadcast).await
    }

    /// Publishes an event triggered through the HTTP API: on a cache channel it is kept for
    /// `cache_ttl` first, cluster-wide, and published with its cache number; any other event
    /// is simply published.
    pub async fn trigger(
        &self,
        event: &ChannelEvent,
        cache_ttl: Duration,
    ) -> Result<(), BackendError> {
        self.trigger_unwatched(event, cache_ttl).await?;
        watched::api_publish(&self.monitor, event);
        self.metrics.published(&event.app, Source::Api);
        Ok(())
    }

    async fn trigger_unwatched(
        &self,
        event: &ChannelEvent,
        cache_ttl: Duration,
    ) -> Result<(), BackendError> {
        // The delivery latency of an API event counts from here, the cache write included.
        let published = self.metrics.stamp();
        let ChannelMessage::Event { name, data, .. } = &event.message else {
            return self.publish_stamped(event, published).await;
        };
        if !event.channel.is_cache() {
            return self.publish_stamped(event, published).await;
        }
        let seq = self
            .state
            .cache_put(&event.app, &event.channel, name, data, cache_ttl)
            .await?;
        let cached = ChannelEvent {
            app: event.app.clone(),
            channel: event.channel.clone(),
            except: event.except,
            message: ChannelMessage::CacheEvent {
                name: name.clone(),
                data: data.clone(),
                seq,
            },
        };
        self.publish_stamped(&cached, published).await
    }

    /// Reports a client event this node published for one of its connections to the monitor.
    pub(crate) fn client_event_published(&self, event: &ChannelEvent) {
        watched::client_event(&self.monitor, event);
    }

    /// The tap on this node.
    pub(crate) fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// A cache channel's kept event, for the HTTP API.
    pub async fn cached_event(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<CachedEvent>, BackendError> {
        self.state.cache_get(app, channel).await
    }

    /// Occupied channels of an app whose names start with `prefix`, cluster-wide.
    pub async fn channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, ChannelStats)>, BackendError> {
        self.state.channels(app, prefix).await
    }

    /// One channel's counts, cluster-wide.
    pub async fn channel(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<ChannelStats, BackendError> {
        self.state.channel(app, channel).await
    }

    /// A presence channel's members, one entry per user, cluster-wide.
    pub async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<PresenceMember>, BackendError> {
        self.state.presence_members(app, channel).await
    }

    /// Channels with at least one subscriber on this node.
    pub fn local_channel_count(&self) -> usize {
        self.hub.channel_count()
    }

    /// How often events may have been lost on the way here (a reconnect of the subscription,
    /// a relay that fell behind), and how many connections were closed (4200) for it.
    pub fn lost_event_counts(&self) -> (u64, u64) {
        self.local.resync_counts()
    }

    /// Withdraws the node from the cluster, once its connections have all left.
    pub(crate) async fn leave_cluster(&self) {
        self.state.shutdown().await;
    }

    /// Delivers what this node itself announces (user notices): no publish to time.
    fn deliver_here(&self, event: &ChannelEvent) {
        delivery::deliver(&self.hub, &self.users, &self.metrics, event, Stamp::NONE);
    }

    /// Delivers a presence change this node itself made, decided at `version`, through the
    /// same ordering as other nodes' announcements: a newer change of the member that reached
    /// this node first (in the round trip before the state answered) wins, whatever the
    /// backend. No publish to time.
    fn announce_here(&self, event: &ChannelEvent, version: u64) {
        self.local.deliver_ordered(event, version, Stamp::NONE);
    }

    /// Per app: channels with a subscriber here, and this node's subscriptions.
    pub(crate) fn census(&self) -> std::collections::HashMap<AppId, (usize, usize)> {
        self.hub.census()
    }

    /// How the cluster backend's connection is doing (checked now).
    pub(crate) async fn check_backend_health(&self) -> BackendHealth {
        self.state.check_health().await
    }

    /// Announces a counted channel's new subscription count.
    async fn count_changed(&self, app: &AppId, channel: &ChannelName, change: SubscriptionChange) {
        if counting::is_counted(channel.kind()) {
            let now = CountVersion {
                subscription_count: change.subscription_count,
                version: change.version,
            };
            self.counts.changed(app, channel, now).await;
        }
    }

    /// Removes the connection from the hub, and stops listening to the channel when it was
    /// the last one here.
    async fn leave_hub(&self, app: &AppId, channel: &ChannelName, socket: SocketId) {
        if self.hub.leave(app, channel, socket) == Some(LocalTransition::Changed) {
            self.release(app, channel).await;
        }
    }

    /// Stops listening to the channel unless somebody here still needs it: a subscriber, or
    /// for a user's channel, a connection signed in as or watching the user.
    async fn release(&self, app: &AppId, channel: &ChannelName) {
        let (hub, users) = (&self.hub, &self.users);
        self.listening
            .release(&*self.broker, app, channel, || {
                hub.local_subscribers(app, channel) > 0
                    || (channel.kind() == ChannelKind::ServerToUser && users.wants(app, channel))
            })
            .await;
    }
}

/// What a cache channel's new subscriber gets right after `subscription_succeeded`: the kept
/// event and its number, or `pusher:cache_miss`.
fn replay_frame(
    channel: &ChannelName,
    cached: Option<CachedEvent>,
) -> (Option<Bytes>, Option<u64>) {
    let Some(c) = cached else {
        let miss = outbound::cache_miss(channel.as_str());
        return (Some(frame::text(miss.as_bytes())), None);
    };
    let json = outbound::channel_event(c.name.as_str(), channel.as_str(), &c.data, None);
    (Some(frame::text(json.as_bytes())), Some(c.seq))
}

/// A presence channel's `subscription_succeeded`, listing its members.
pub(crate) fn presence_succeeded(channel: &ChannelName, members: &[PresenceMember]) -> String {
    outbound::presence_subscription_succeeded(
        channel.as_str(),
        members
            .iter()
            .map(|m| (m.user_id.as_str(), m.user_info.as_deref())),
    )
}
