//! Subscription counts (docs/PROTOCOL.md, "Subscription counts"): after each change of a
//! counted channel's subscriptions, its subscribers on every node get
//! `pusher_internal:subscription_count`.
//!
//! The node whose state change produced a count publishes it, with the change's version, as a
//! [`ChannelMessage::SubscriptionCount`] to every node, and delivers it here; each node drops
//! counts older than the last it delivered, so the count that shows is the latest one
//! whichever node's message arrives last.
//!
//! Above [`THROTTLE_ABOVE`] subscribers a channel gets at most one count per [`WINDOW`],
//! cluster-wide: the node that sends a count opens the channel's window in the cluster state
//! (only one caller can), changes made while it is open send nothing, and at its end that
//! node sends the count as it is then, if it changed, opening the next window. So the last
//! count is never lost, only delayed.

use std::sync::Arc;
use std::time::Duration;

use warren_protocol::{AppId, ChannelKind, ChannelName};

use super::delivery;
use super::users::LocalUsers;
use crate::cluster::{Broker, ChannelEvent, ChannelMessage, ClusterState, CountVersion};
use crate::hub::Hub;
use crate::metrics::{Metrics, Stamp};
use crate::webhooks::Webhooks;

/// Channels with more subscribers than this get throttled counts.
pub(super) const THROTTLE_ABOVE: u64 = 100;
/// At most one count per this long on a throttled channel.
pub(super) const WINDOW: Duration = Duration::from_secs(5);
/// Waited beyond the window, so that the window has surely expired in the cluster state.
const MARGIN: Duration = Duration::from_millis(50);

/// Whether a channel of this kind has subscription counts: not presence channels (their
/// members are their count), nor a user's own channel.
pub(super) fn is_counted(kind: ChannelKind) -> bool {
    matches!(
        kind,
        ChannelKind::Public | ChannelKind::Private | ChannelKind::PrivateEncrypted
    )
}

/// Sends subscription counts. Cheap to clone: the follow-up at a window's end runs as a task
/// of its own.
#[derive(Clone)]
pub(super) struct Counts {
    pub hub: Arc<Hub>,
    /// Where `delivery` hands user notices (counts are never one).
    pub users: Arc<LocalUsers>,
    pub broker: Arc<dyn Broker>,
    pub state: Arc<dyn ClusterState>,
    pub webhooks: Webhooks,
    pub metrics: Metrics,
}

impl Counts {
    /// Announces the count a subscription change left, unless the channel's window is open.
    pub(super) async fn changed(&self, app: &AppId, channel: &ChannelName, now: CountVersion) {
        if now.version == 0 {
            return; // nothing was recorded, so nothing changed
        }
        if now.subscription_count <= THROTTLE_ABOVE {
            return self.send(app, channel, now).await;
        }
        match self.state.claim_count_window(app, channel, WINDOW).await {
            Ok(true) => {
                self.send(app, channel, now).await;
                self.follow_up(app.clone(), channel.clone(), now.version);
            }
            // The window's holder sends what the count is at its end.
            Ok(false) => {}
            Err(e) => tracing::warn!(%channel, error = %e, "subscription count not sent"),
        }
    }

    async fn send(&self, app: &AppId, channel: &ChannelName, now: CountVersion) {
        let event = ChannelEvent {
            app: app.clone(),
            channel: channel.clone(),
            except: None,
            message: ChannelMessage::SubscriptionCount {
                count: now.subscription_count,
                version: now.version,
            },
        };
        if let Err(e) = self.broker.publish(&event).await {
            tracing::warn!(%channel, error = %e, "subscription count not sent to other nodes");
        }
        delivery::deliver(&self.hub, &self.users, &self.metrics, &event, Stamp::NONE);
        (self.webhooks).subscription_count(app, channel, now.subscription_count);
    }

    /// At the end of the window this node opened: sends the count if it changed meanwhile
    /// (and is still throttled; smaller counts were sent when they happened), and keeps doing
    /// so window after window while it changes.
    fn follow_up(&self, app: AppId, channel: ChannelName, mut sent: u64) {
        let counts = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WINDOW + MARGIN).await;
                let now = match counts.state.subscription_count(&app, &channel).await {
                    Ok(now) => now,
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "subscription count not sent");
                        return;
                    }
                };
                if now.version <= sent || now.subscription_count <= THROTTLE_ABOVE {
                    return;
                }
                // Another node may have opened the next window already; then it follows up.
                if !matches!(
                    counts
                        .state
                        .claim_count_window(&app, &channel, WINDOW)
                        .await,
                    Ok(true)
                ) {
                    return;
                }
                counts.send(&app, &channel, now).await;
                sent = now.version;
            }
        });
    }
}
