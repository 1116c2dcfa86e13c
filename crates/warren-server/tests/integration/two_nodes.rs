//! Two nodes of one cluster on the shared Redis, for the tests of features that must work the
//! same whichever node each actor is on.

use warren_server::config::Config;
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
