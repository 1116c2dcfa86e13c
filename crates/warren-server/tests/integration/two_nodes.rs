//! Two nodes of one cluster, for the tests of features that must work the same whichever node
//! each actor is on: on the shared Redis ([`two_nodes`]) or on NATS ([`two_nats_nodes`]).

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
