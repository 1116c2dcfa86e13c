//! Which channels this node receives from the rest of the cluster.
//!
//! A node listens to a channel while it has local subscribers to it. The first joiner makes
//! the broker listen; joiners that arrive while that is in flight wait for it, so none of them
//! is confirmed before the node is sure to receive the channel's traffic. The last leaver
//! stops listening, unless somebody joined again meanwhile. One async lock per channel orders
//! the two, so every backend gets [`Broker::listen`] and [`Broker::unlisten`] in turn for a
//! channel, never concurrently.
//!
//! The presence ordering filter ([`PresenceOrder`]) follows what is listened to: a channel's
//! announcements are ordered from just before the broker listens until it stops.
//!
//! When the backend may have lost events or subscriptions ([`Listening::forget_all`]), every
//! channel counts as not listened to: the next joiner listens again and waits for the
//! confirmation, however long the channel was listened to before.

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use warren_protocol::{AppId, ChannelName};

use crate::cluster::ordering::PresenceOrder;
use crate::cluster::{BackendError, Broker};

#[derive(Default)]
pub(crate) struct Listening {
    channels: DashMap<(AppId, ChannelName), Arc<Entry>>,
    /// Raised by `forget_all`: a channel listened to in an older epoch is listened to again.
    epoch: AtomicU64,
    /// The last presence announcement applied per member of the listened channels.
    pub(super) order: PresenceOrder,
}

#[derive(Default)]
struct Entry {
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    listening: bool,
    /// The epoch `listening` was set in.
    epoch: u64,
    /// `listen` was called (it may have taken effect even though it failed or timed out).
    attempted: bool,
    /// Removed from the map: a caller holding this entry must look the channel up again.
    retired: bool,
}

impl Listening {
    /// Returns once `broker` listens to the channel.
    pub(super) async fn ensure(
        &self,
        broker: &dyn Broker,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<(), BackendError> {
        loop {
            let entry = self
                .channels
                .entry((app.clone(), channel.clone()))
                .or_default()
                .clone();
            let mut state = entry.state.lock().await;
            if state.retired {
                continue;
            }
            broker.check_receiving()?;
            let epoch = self.epoch.load(Ordering::Acquire);
            if !state.listening || state.epoch != epoch {
                state.attempted = true;
                // Before the broker listens: the first announcement to arrive is remembered.
                self.order.listen(app, channel);
                broker.listen(app, channel).await?;
                state.listening = true;
                state.epoch = epoch;
            }
            return Ok(());
        }
    }

    /// Treats every channel as not listened to: each is listened to again by its next joiner.
    pub(crate) fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Stops listening to the channel unless `still_wanted` says a subscriber arrived since
    /// the last one left.
    pub(super) async fn release(
        &self,
        broker: &dyn Broker,
        app: &AppId,
        channel: &ChannelName,
        still_wanted: impl Fn() -> bool,
    ) {
        let key = (app.clone(), channel.clone());
        let Some(entry) = self.channels.get(&key).map(|e| e.value().clone()) else {
            return;
        };
        let mut state = entry.state.lock().await;
        if state.retired || still_wanted() {
            return;
        }
        if state.listening || state.attempted {
            broker.unlisten(app, channel).await;
        }
        self.order.forget(app, channel);
        state.retired = true;
        self.channels.remove_if(&key, |_, e| Arc::ptr_eq(e, &entry));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;

    use super::*;
    use crate::cluster::ChannelEvent;

    /// Counts calls; `listen` takes a while, so joiners overlap.
    #[derive(Default)]
    struct Counting {
        listens: AtomicUsize,
        unlistens: AtomicUsize,
    }

    #[async_trait]
    impl Broker for Counting {
        async fn publish(&self, _: &ChannelEvent) -> Result<(), BackendError> {
            Ok(())
        }
        async fn listen(&self, _: &AppId, _: &ChannelName) -> Result<(), BackendError> {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.listens.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn unlisten(&self, _: &AppId, _: &ChannelName) {
            self.unlistens.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn names() -> (AppId, ChannelName) {
        (
            AppId::parse("a").unwrap(),
            ChannelName::parse("c", 200).unwrap(),
        )
    }

    #[tokio::test]
    async fn concurrent_joiners_listen_once_and_all_wait_for_it() {
        let (app, ch) = names();
        let broker = Counting::default();
        let listening = Listening::default();
        let (a, b) = tokio::join!(
            listening.ensure(&broker, &app, &ch),
            listening.ensure(&broker, &app, &ch)
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(broker.listens.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn release_keeps_listening_for_a_new_subscriber_and_stops_otherwise() {
        let (app, ch) = names();
        let broker = Counting::default();
        let listening = Listening::default();
        listening.ensure(&broker, &app, &ch).await.unwrap();
        listening.release(&broker, &app, &ch, || true).await;
        assert_eq!(broker.unlistens.load(Ordering::SeqCst), 0);
        listening.release(&broker, &app, &ch, || false).await;
        assert_eq!(broker.unlistens.load(Ordering::SeqCst), 1);
        // A later joiner listens again.
        listening.ensure(&broker, &app, &ch).await.unwrap();
        assert_eq!(broker.listens.load(Ordering::SeqCst), 2);
        // Releasing a channel never listened to does nothing.
        let other = ChannelName::parse("other", 200).unwrap();
        listening.release(&broker, &app, &other, || false).await;
        assert_eq!(broker.unlistens.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn after_forget_all_the_next_joiner_listens_again() {
        let (app, ch) = names();
        let broker = Counting::default();
        let listening = Listening::default();
        listening.ensure(&broker, &app, &ch).await.unwrap();
        listening.ensure(&broker, &app, &ch).await.unwrap();
        assert_eq!(broker.listens.load(Ordering::SeqCst), 1);
        listening.forget_all();
        listening.ensure(&broker, &app, &ch).await.unwrap();
        listening.ensure(&broker, &app, &ch).await.unwrap();
        assert_eq!(broker.listens.load(Ordering::SeqCst), 2);
    }
}
