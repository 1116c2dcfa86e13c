//! Two nodes of one cluster, for the tests of features that must work the same whichever node
//! each actor is on: on the shared Redis ([`two_nodes`]), on NATS ([`two_nats_nodes`]), or
//! with fan-out and state on servers of their own ([`two_split_nodes`]).

use warren_server::config::Config;
use warren_testkit::nats::SharedNats;
use warren_testkit::redis::{unique_prefix, use_shared_redis};
use warren_testkit::server::{start_with, TestServer};

/// Two nodes sharing a fresh key prefix, each configured by `edit` as well.
pub async fn two_nodes(edit: impl Fn(&mut Config)) -> (TestServer, TestServer) {
    let prefix = unique_prefix("wf");
    let node = |c: &mut Config| {
        use_shared_redis(c, prefix.clone(), 1000);
        edit(c);
    };
    (start_with(&node).await, start_with(&node).await)
}

/// Two nodes on NATS under a fresh prefix, each configured by `edit` as well; keep the
/// [`SharedNats`] for the test (it may be a server of the test's own).
pub async fn two_nats_nodes(edit: impl Fn(&mut Config)) -> (TestServer, TestServer, SharedNats) {
    let nats = warren_testkit::nats::shared();
    let prefix = unique_prefix("wn");
    let url = nats.url();
    let node = |c: &mut Config| {
        warren_testkit::nats::use_nats(c, &url, prefix.clone(), 1000);
        edit(c);
    };
    (start_with(&node).await, start_with(&node).await, nats)
}

/// The split setups the distributed tests run in too (`[cluster.fanout]`, `[cluster.state]`).
#[derive(Debug, Clone, Copy)]
pub enum Split {
    /// State in the shared Redis, fan-out on NATS.
    RedisStateNatsFanout,
    /// State in the shared Redis, fan-out on a second Redis of the test's own.
    TwoRedis,
}

/// What a split setup started for the test; keep it while the nodes run.
pub struct SplitServers {
    /// The nodes' key prefix.
    pub prefix: String,
    _nats: Option<SharedNats>,
    /// The fan-out's Redis ([`Split::TwoRedis`]).
    pub fanout_redis: Option<warren_testkit::redis::RedisServer>,
}

/// Two nodes of a split setup under a fresh prefix, each configured by `edit` as well.
pub async fn two_split_nodes(
    setup: Split,
    edit: impl Fn(&mut Config),
) -> (TestServer, TestServer, SplitServers) {
    use warren_testkit::split::{use_split, Job};
    let state = Job::Redis(warren_testkit::redis::shared_url());
    let prefix = unique_prefix("ws");
    let (fanout, servers) = match setup {
        Split::RedisStateNatsFanout => {
            let nats = warren_testkit::nats::shared();
            let fanout = Job::Nats(nats.url());
            let servers = SplitServers {
                prefix: prefix.clone(),
                _nats: Some(nats),
                fanout_redis: None,
            };
            (fanout, servers)
        }
        Split::TwoRedis => {
            let second = warren_testkit::redis::RedisServer::start();
            let fanout = Job::Redis(second.url());
            let servers = SplitServers {
                prefix: prefix.clone(),
                _nats: None,
                fanout_redis: Some(second),
            };
            (fanout, servers)
        }
    };
    let node = |c: &mut Config| {
        use_split(c, &fanout, &state, prefix.clone(), 1000);
        edit(c);
    };
    (start_with(&node).await, start_with(&node).await, servers)
}
