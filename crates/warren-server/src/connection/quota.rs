//! An app's `max_connections` across the cluster. `admission` takes the connection's slot on
//! this node (a node never holds more than the limit either); here the backend takes it in
//! the cluster's count, when it shares counts (Redis) and the app has a limit. The session
//! gives it back when it drops, however the connection ended; a session exists for every
//! connection taken here, from right after the take (`serve`).

use warren_protocol::ErrorCode;

use super::admission::Refusal;
use crate::app::App;
use crate::node::Node;

/// Whether the app's connections on this node are counted cluster-wide.
fn counted(node: &Node, app: &App) -> bool {
    app.max_connections > 0 && node.shares_counters()
}

/// Takes the app's connection in the cluster's count; refused with 4004 at the limit, as on
/// one node, and with 4100 (pusher-js retries after a while) when the backend cannot be
/// asked.
pub(super) async fn take_cluster_wide(node: &Node, app: &App) -> Result<(), Refusal> {
    if !counted(node, app) {
        return Ok(());
    }
    match node.take_connection(&app.id, app.max_connections).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal {
            code: ErrorCode::OverConnectionQuota,
            message: "Application is over connection quota".into(),
        }),
        Err(e) => Err(Refusal {
            code: ErrorCode::OverCapacity,
            message: format!("Cannot count the connection: {e}; try again"),
        }),
    }
}

/// Gives back a connection taken by [`take_cluster_wide`] (in the background).
pub(super) fn give_back(node: &Node, app: &App) {
    if counted(node, app) {
        node.release_connection(&app.id);
    }
}
