//! [`ClusterState`] for the NATS backend: each call takes this node's lock of the channel
//! (or user, or app), so a node's own changes of one key never conflict, and the instance's
//! read lock, so none straddles a re-registration.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, EventName, SocketId, UserId};

use super::channels::{transitions, ChannelEntry, Local};
use super::keys::{decode, Keys};
use super::kv::Modified;
use super::{features, users, NatsCluster, ANY_NAME_LENGTH};
use crate::cluster::{
    BackendError, BackendHealth, CachedEvent, ChannelEvent, ChannelMessage, ChannelStats,
    ClusterState, CountVersion, JoinError, PresenceJoin, PresenceLeave, RateCounter,
    SubscriptionChange, UserStatus,
};

/// The subscription change a write made, for the caller.
fn change(written: &Modified<ChannelEntry, ()>, joining: bool) -> SubscriptionChange {
    let t = transitions(&written.before, &written.after);
    SubscriptionChange {
        transition: if joining { t.occupied } else { t.vacated },
        subscription_count: written.after.count(),
        version: written.version,
    }
}

impl NatsCluster {
    async fn join(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        member: Option<&PresenceMember>,
        max_members: usize,
    ) -> Result<Modified<ChannelEntry, ()>, JoinError> {
        let inner = &self.inner;
        let _local = inner.stripe(&[app.as_str(), channel.as_str()]).await;
        let instance = inner.instance.read().await.clone();
        let local = Local::Join(socket, member);
        let written = inner
            .sync_channel(&instance, app, channel, local, max_members)
            .await?;
        if let Some(m) = member {
            let user = m.user_id.as_str();
            if !written.before.members.contains_key(user)
                && written.after.members.contains_key(user)
            {
                let added = ChannelMessage::MemberAdded(m.clone());
                let event = ChannelEvent::new(app, channel, Some(socket), added);
                inner.announce(event, written.version).await;
            }
        }
        let own = member.map(|m| m.user_id.as_str());
        inner
            .announce_changes(app, channel, &written, own, false)
            .await;
        Ok(written)
    }

    async fn leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        user: Option<&UserId>,
    ) -> Result<Modified<ChannelEntry, ()>, BackendError> {
        let inner = &self.inner;
        let _local = inner.stripe(&[app.as_str(), channel.as_str()]).await;
        let instance = inner.instance.read().await.clone();
        let local = Local::Leave(socket);
        let written = match inner.sync_channel(&instance, app, channel, local, 0).await {
            Ok(written) => written,
            Err(JoinError::Backend(e)) => return Err(e),
            Err(e) => return Err(BackendError(e.to_string())),
        };
        if let Some(user) = user {
            let id = user.as_str();
            if written.before.members.contains_key(id) && !written.after.members.contains_key(id) {
                let removed = ChannelMessage::MemberRemoved {
                    user_id: user.clone(),
                };
                let event = ChannelEvent::new(app, channel, None, removed);
                inner.announce(event, written.version).await;
            }
        }
        let own = user.map(UserId::as_str);
        inner
            .announce_changes(app, channel, &written, own, false)
            .await;
        Ok(written)
    }
}

#[async_trait]
impl ClusterState for NatsCluster {
    async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError> {
        match self.join(app, channel, socket, None, usize::MAX).await {
            Ok(written) => Ok(change(&written, true)),
            Err(JoinError::Backend(e)) => Err(e),
            Err(e) => Err(BackendError(e.to_string())),
        }
    }

    async fn unsubscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
    ) -> Result<SubscriptionChange, BackendError> {
        let written = self.leave(app, channel, socket, None).await?;
        Ok(change(&written, false))
    }

    async fn join_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        member: &PresenceMember,
        max_members: usize,
    ) -> Result<PresenceJoin, JoinError> {
        let written = self
            .join(app, channel, socket, Some(member), max_members)
            .await?;
        let user = member.user_id.as_str();
        Ok(PresenceJoin {
            member_added: !written.before.members.contains_key(user)
                && written.after.members.contains_key(user),
            change: change(&written, true),
            members: written.after.presence_members(),
        })
    }

    async fn leave_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: SocketId,
        user: &UserId,
    ) -> Result<PresenceLeave, BackendError> {
        let written = self.leave(app, channel, socket, Some(user)).await?;
        let id = user.as_str();
        Ok(PresenceLeave {
            member_removed: written.before.members.contains_key(id)
                && !written.after.members.contains_key(id),
            change: change(&written, false),
        })
    }

    async fn channels(
        &self,
        app: &AppId,
        prefix: &str,
    ) -> Result<Vec<(ChannelName, ChannelStats)>, BackendError> {
        let app_prefix = Keys::app_prefix(app);
        let found = self.inner.buckets.channels.scan(&app_prefix).await?;
        let mut out = Vec::new();
        for (key, bytes) in found {
            let Some(name) = key.strip_prefix(&app_prefix).and_then(decode) else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let Ok(channel) = ChannelName::parse(&name, ANY_NAME_LENGTH) else {
                continue;
            };
            let Ok(entry) = serde_json::from_slice::<ChannelEntry>(&bytes) else {
                continue;
            };
            if entry.count() == 0 {
                continue;
            }
            let stats = ChannelStats {
                subscription_count: entry.count(),
                user_count: entry.members.len() as u64,
            };
            out.push((channel, stats));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn channel(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<ChannelStats, BackendError> {
        let (entry, _) = self.inner.channel_entry(app, channel).await?;
        Ok(ChannelStats {
            subscription_count: entry.count(),
            user_count: entry.members.len() as u64,
        })
    }

    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<PresenceMember>, BackendError> {
        let (entry, _) = self.inner.channel_entry(app, channel).await?;
        Ok(entry.presence_members())
    }

    async fn sign_in(
        &self,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError> {
        users::sign(&self.inner, app, socket, user, true).await
    }

    async fn sign_out(
        &self,
        app: &AppId,
        socket: SocketId,
        user: &UserId,
    ) -> Result<Option<u64>, BackendError> {
        users::sign(&self.inner, app, socket, user, false).await
    }

    async fn online(&self, app: &AppId, users: &[UserId]) -> Result<Vec<UserStatus>, BackendError> {
        users::online(&self.inner, app, users).await
    }

    async fn cache_put(
        &self,
        app: &AppId,
        channel: &ChannelName,
        name: &EventName,
        data: &Arc<str>,
        ttl: Duration,
    ) -> Result<u64, BackendError> {
        features::cache_put(&self.inner, app, channel, name, data, ttl).await
    }

    async fn cache_get(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Option<CachedEvent>, BackendError> {
        features::cache_get(&self.inner, app, channel).await
    }

    async fn subscription_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<CountVersion, BackendError> {
        let (entry, revision) = self.inner.channel_entry(app, channel).await?;
        Ok(CountVersion {
            subscription_count: entry.count(),
            version: revision,
        })
    }

    async fn claim_count_window(
        &self,
        app: &AppId,
        channel: &ChannelName,
        window: Duration,
    ) -> Result<bool, BackendError> {
        features::claim_window(&self.inner, app, channel, window).await
    }

    async fn shutdown(&self) {
        super::registry::deregister(&self.inner).await;
    }

    fn health(&self) -> Result<(), BackendError> {
        super::registry::health(&self.inner)
    }

    fn shares_counters(&self) -> bool {
        true
    }

    async fn take_connection(&self, app: &AppId, limit: u64) -> Result<bool, BackendError> {
        features::take_connection(&self.inner, app, limit).await
    }

    async fn release_connection(&self, app: &AppId) {
        features::release_connection(&self.inner, app).await
    }

    async fn take_rate(
        &self,
        app: &AppId,
        counter: RateCounter,
        window: u64,
        need: u32,
        want: u32,
        limit: u32,
    ) -> Result<u32, BackendError> {
        features::take_rate(&self.inner, app, counter, window, (need, want, limit)).await
    }

    /// One round trip to the server on the connection, timed.
    async fn check_health(&self) -> BackendHealth {
        let inner = &self.inner;
        let started = std::time::Instant::now();
        let answered = inner.confirm().await.is_ok();
        BackendHealth {
            backend: "nats",
            up: answered && inner.connected(),
            round_trip: answered.then(|| started.elapsed()),
            reconnects: vec![(
                "connection",
                inner.reconnects.load(std::sync::atomic::Ordering::Relaxed),
            )],
        }
    }
}
