//! Fixtures of the split setups (`[cluster.fanout]` and `[cluster.state]` on backends of
//! their own): every conformance case runs against them as against one backend.

use super::*;
use warren_server::cluster::{Broker, Jobs};

/// Where one job of a split node runs.
enum Server {
    Redis(String),
    Nats(String),
}

/// Nodes whose fan-out runs on one server and state on another, under a prefix of their own.
pub(super) struct Split {
    fanout: Server,
    state: Server,
    prefix: String,
    /// Servers of the test's own, kept running while it lasts.
    _own: (
        Option<warren_testkit::redis::RedisServer>,
        Option<warren_testkit::nats::SharedNats>,
    ),
}

impl Split {
    /// State in the shared Redis, fan-out on NATS.
    pub(super) fn redis_state_nats_fanout() -> Self {
        let nats = warren_testkit::nats::shared();
        Self {
            fanout: Server::Nats(nats.url()),
            state: Server::Redis(warren_testkit::redis::shared_url()),
            prefix: warren_testkit::redis::unique_prefix("split"),
            _own: (None, Some(nats)),
        }
    }

    /// State in the shared Redis, fan-out on a second Redis of the test's own.
    pub(super) fn two_redis_servers() -> Self {
        let second = warren_testkit::redis::RedisServer::start();
        Self {
            fanout: Server::Redis(second.url()),
            state: Server::Redis(warren_testkit::redis::shared_url()),
            prefix: warren_testkit::redis::unique_prefix("split"),
            _own: (Some(second), None),
        }
    }

    /// State on NATS, fan-out in the shared Redis.
    pub(super) fn nats_state_redis_fanout() -> Self {
        let nats = warren_testkit::nats::shared();
        Self {
            fanout: Server::Redis(warren_testkit::redis::shared_url()),
            state: Server::Nats(nats.url()),
            prefix: warren_testkit::redis::unique_prefix("split"),
            _own: (None, Some(nats)),
        }
    }

    async fn connect(&self, server: &Server, id: &str, sink: Arc<Recorder>, jobs: Jobs) -> Halt {
        // As for one backend: short, but not so short that a stall reaps a live node.
        let node_timeout = Duration::from_millis(2000);
        let (prefix, node_id) = (self.prefix.clone(), id.to_owned());
        match server {
            Server::Redis(url) => {
                let options = RedisOptions {
                    target: RedisTarget::parse(url).expect("a valid Redis URL"),
                    prefix,
                    node_id,
                    node_timeout,
                };
                let cluster = RedisCluster::connect_for(options, sink, jobs).await;
                Halt::Redis(cluster.expect("Redis answers"))
            }
            Server::Nats(url) => {
                let options = NatsOptions {
                    target: NatsTarget::parse_list(&[url]).expect("a valid NATS URL"),
                    auth: Default::default(),
                    prefix,
                    node_id,
                    node_timeout,
                };
                let cluster = NatsCluster::connect_for(options, sink, jobs).await;
                Halt::Nats(cluster.expect("NATS answers"))
            }
        }
    }
}

#[async_trait]
impl Fixture for Split {
    async fn node(&self, id: &str) -> TestNode {
        let sink = Arc::new(Recorder::default());
        let fanout = self
            .connect(&self.fanout, id, sink.clone(), Jobs::Fanout)
            .await;
        let broker: Arc<dyn Broker> = match &fanout {
            Halt::Redis(c) => Arc::new(c.clone()),
            Halt::Nats(c) => Arc::new(c.clone()),
            Halt::Split(_) => unreachable!("one backend"),
        };
        let jobs = Jobs::State {
            announcer: broker.clone(),
        };
        let state = self.connect(&self.state, id, sink.clone(), jobs).await;
        let state_seam: Arc<dyn warren_server::cluster::ClusterState> = match &state {
            Halt::Redis(c) => Arc::new(c.clone()),
            Halt::Nats(c) => Arc::new(c.clone()),
            Halt::Split(_) => unreachable!("one backend"),
        };
        TestNode {
            seams: Seams {
                broker,
                state: state_seam,
            },
            sink,
            halt: Some(Halt::Split(vec![fanout, state])),
        }
    }

    fn separate_nodes(&self) -> bool {
        true
    }

    async fn kill(&self, node: TestNode) -> bool {
        halt(node).await
    }
}
