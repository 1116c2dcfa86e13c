//! Fan-out and state on backends of their own (`[cluster.fanout]`, `[cluster.state]`): for
//! instance the state in Redis and the events on NATS, or two Redis servers.
//!
//! The fan-out backend is connected for [`Jobs::Fanout`] (it listens, publishes and
//! broadcasts, and keeps no state and no registry), then the state backend for
//! [`Jobs::State`], with the fan-out's [`Broker`] as the way out for what it announces.
//!
//! With both jobs on Redis, a presence announcement is published by the state script itself,
//! in the same atomic step as the change, which orders announcements of one channel. Apart,
//! that step cannot publish on the other server; instead the state change returns its
//! version (per channel: Redis' `bump`, NATS' revision), the node sends the announcement
//! after it through [`Broker::announce`], and every node, the announcing one included,
//! applies a member's announcements in version order ([`super::ordering`], behind
//! [`super::EventSink::deliver_announcement`]). User status notices carry their versions in
//! any case. Every combination of `redis` and `nats` works; the node registry, the shared
//! counters, webhook queues and markers live with the state.

use std::sync::Arc;

use async_trait::async_trait;

use super::nats::{NatsCluster, NatsOptions};
use super::redis::{RedisCluster, RedisOptions};
use super::{BackendError, Broker, ClusterBackend, ClusterState, EventSink, Jobs, Seams};

/// One job's backend and how to reach it.
#[derive(Debug, Clone)]
pub enum Part {
    Redis(RedisOptions),
    Nats(NatsOptions),
}

/// A backend for fan-out and another for state.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub fanout: Part,
    pub state: Part,
}

#[async_trait]
impl ClusterBackend for SplitOptions {
    async fn connect(&self, sink: Arc<dyn EventSink>) -> Result<Seams, BackendError> {
        let broker: Arc<dyn Broker> = match &self.fanout {
            Part::Redis(o) => {
                Arc::new(RedisCluster::connect_for(o.clone(), sink.clone(), Jobs::Fanout).await?)
            }
            Part::Nats(o) => {
                Arc::new(NatsCluster::connect_for(o.clone(), sink.clone(), Jobs::Fanout).await?)
            }
        };
        let jobs = Jobs::State {
            announcer: broker.clone(),
        };
        let state: Arc<dyn ClusterState> = match &self.state {
            Part::Redis(o) => Arc::new(RedisCluster::connect_for(o.clone(), sink, jobs).await?),
            Part::Nats(o) => Arc::new(NatsCluster::connect_for(o.clone(), sink, jobs).await?),
        };
        Ok(Seams { broker, state })
    }
}
