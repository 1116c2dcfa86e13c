//! Per-app limits counted across the cluster: connections (`apps[].max_connections`) and the
//! API rates (`apps[].api_request_rate_per_sec`, `apps[].api_event_rate_per_sec`), plus the
//! backend's health for readiness.
//!
//! Rates are counted in fixed one-second windows (seconds since the Unix epoch, as Pusher's
//! client event rate is). On one node the node counts alone, in memory: a mutex per app and
//! counter, no I/O. With a backend that shares counters (Redis), a node takes units from the
//! window's shared counter in *chunks* of a tenth of the limit and spends them locally, so a
//! busy app costs about ten round trips per second per node and counter instead of one per
//! request, and the cluster never lets more than the limit through in a window. The price:
//! units a node took but did not spend in a window are lost to the others, so the cluster
//! may refuse a little before the limit (at most a tenth of it per other node).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use warren_protocol::AppId;

use super::Node;
use crate::cluster::{BackendError, ClusterState, RateCounter};

/// A node takes this share of the limit at a time from a shared counter.
const CHUNK_DIVISOR: u32 = 10;

/// This node's part of each app's current windows.
#[derive(Default)]
pub(crate) struct Rates {
    windows: Mutex<HashMap<(AppId, RateCounter), Window>>,
}

/// Units this node may still spend in one window.
#[derive(Clone, Copy, Default)]
struct Window {
    second: u64,
    left: u32,
}

/// Whether a rate let a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rate {
    Within,
    Exceeded,
}

fn now_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Rates {
    /// Takes what is left for this node in the current window, up to `n`, starting a new
    /// window (with `fresh` units) if the second changed.
    fn take_local(&self, key: &(AppId, RateCounter), second: u64, n: u32, fresh: u32) -> u32 {
        let mut windows = self.windows.lock();
        let w = windows.entry(key.clone()).or_default();
        if w.second != second {
            *w = Window {
                second,
                left: fresh,
            };
        }
        let taken = w.left.min(n);
        w.left -= taken;
        taken
    }

    /// Puts back units into the window of `second`, unless it is over.
    fn give_back(&self, key: &(AppId, RateCounter), second: u64, n: u32) {
        if n == 0 {
            return;
        }
        if let Some(w) = self.windows.lock().get_mut(key) {
            if w.second == second {
                w.left = w.left.saturating_add(n);
            }
        }
    }
}

impl Node {
    /// Whether the cluster backend can serve this node now (no round trip).
    pub(crate) fn backend_health(&self) -> Result<(), BackendError> {
        self.state.health()?;
        // The fan-out too: on a backend of its own (`[cluster.fanout]`) it can be down alone.
        self.broker.check_receiving()
    }

    /// Whether the backend counts connections and rates for the whole cluster; when it does
    /// not (one node), the node's own counts are the cluster's.
    pub(crate) fn shares_counters(&self) -> bool {
        self.shares_counters
    }

    /// Takes one of the app's `limit` connections cluster-wide.
    pub(crate) async fn take_connection(
        &self,
        app: &AppId,
        limit: u64,
    ) -> Result<bool, BackendError> {
        if !self.shares_counters || limit == 0 {
            return Ok(true);
        }
        self.state.take_connection(app, limit).await
    }

    /// Gives back a connection taken with [`Node::take_connection`], in the background: a
    /// closing connection does not wait for it.
    pub(crate) fn release_connection(&self, app: &AppId) {
        if !self.shares_counters {
            return;
        }
        let (state, app): (Arc<dyn ClusterState>, AppId) = (self.state.clone(), app.clone());
        tokio::spawn(async move { state.release_connection(&app).await });
    }

    /// Counts `n` units of the app's `counter` against `limit` per second.
    pub(crate) async fn take_rate(
        &self,
        app: &AppId,
        counter: RateCounter,
        limit: NonZeroU32,
        n: u32,
    ) -> Result<Rate, BackendError> {
        let limit = limit.get();
        if n > limit {
            return Ok(Rate::Exceeded);
        }
        let key = (app.clone(), counter);
        let second = now_second();
        if !self.shares_counters {
            return Ok(match self.rates.take_local(&key, second, n, limit) {
                taken if taken == n => Rate::Within,
                taken => {
                    self.rates.give_back(&key, second, taken);
                    Rate::Exceeded
                }
            });
        }
        // What this node holds of the window first; the rest from the shared counter.
        let have = self.rates.take_local(&key, second, n, 0);
        if have == n {
            return Ok(Rate::Within);
        }
        let need = n - have;
        let want = need.max(limit / CHUNK_DIVISOR).min(limit);
        let got = self
            .state
            .take_rate(app, counter, second, need, want, limit)
            .await;
        match got {
            Ok(got) if got >= need => {
                self.rates.give_back(&key, second, got - need);
                Ok(Rate::Within)
            }
            Ok(_) => {
                self.rates.give_back(&key, second, have);
                Ok(Rate::Exceeded)
            }
            Err(e) => {
                self.rates.give_back(&key, second, have);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_starts_full_and_refills_each_second() {
        let rates = Rates::default();
        let key = (AppId::parse("a").unwrap(), RateCounter::ApiEvents);
        assert_eq!(rates.take_local(&key, 7, 6, 10), 6);
        assert_eq!(rates.take_local(&key, 7, 6, 10), 4, "only what is left");
        rates.give_back(&key, 7, 4);
        assert_eq!(rates.take_local(&key, 7, 4, 10), 4, "given back");
        rates.give_back(&key, 6, 3);
        assert_eq!(
            rates.take_local(&key, 7, 1, 10),
            0,
            "an old window's units are lost"
        );
        assert_eq!(rates.take_local(&key, 8, 10, 10), 10, "a new second");
    }
}
