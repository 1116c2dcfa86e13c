//! Pointing a server's configuration at a split cluster: fan-out and state on servers of
//! their own (`[cluster.fanout]`, `[cluster.state]`).

use warren_server::config::{Backend, ClusterPart, Config, NatsTarget, RedisTarget};

/// The server one job of the cluster runs on.
#[derive(Debug, Clone)]
pub enum Job {
    Redis(String),
    Nats(String),
}

impl Job {
    fn part(&self) -> ClusterPart {
        let mut part = ClusterPart {
            backend: Backend::Redis,
            redis_url: None,
            redis_tls_ca_file: None,
            nats_url: None,
            nats: None,
        };
        match self {
            Job::Redis(url) => {
                part.redis_url = Some(RedisTarget::parse(url).expect("a valid Redis URL"));
            }
            Job::Nats(url) => {
                part.backend = Backend::Nats;
                part.nats_url = Some(NatsTarget::parse_list(&[url]).expect("a valid NATS URL"));
            }
        }
        part
    }
}

/// Points a configuration at `fanout` for events between nodes and `state` for the shared
/// state, under `prefix`, with a short `node_timeout_ms` for tests.
pub fn use_split(
    config: &mut Config,
    fanout: &Job,
    state: &Job,
    prefix: impl Into<String>,
    node_timeout_ms: u64,
) {
    config.cluster.fanout = Some(fanout.part());
    config.cluster.state = Some(state.part());
    config.cluster.prefix = prefix.into();
    config.cluster.node_timeout_ms = node_timeout_ms;
}
