//! One WebSocket connection: admitted on the accepting task, then driven by one small task.
//!
//! [`serve`] answers the upgrade, runs admission, registers the connection and sends
//! `pusher:connection_established` together with the `101` answer (one write), then spawns
//! the connection's task (`task.rs`). That task and the connection's [`Outbox`] are all a
//! connection keeps for its life: no timer (the server's liveness sweeper pings idle
//! connections and closes silent ones through the outbox), no read buffer while idle, and no
//! room reserved for the rare steps (handling a message, closing), which are boxed while they
//! run. Protocol decisions are in [`session`]; admission checks in [`admission`]; reading,
//! writing and closing the socket in `socket.rs`.

pub mod admission;
mod budget;
mod quota;
mod rate;
pub mod session;
mod signin;
mod socket;
mod task;
mod watched;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use warren_protocol::outbound;

use crate::app::AppRegistry;
use crate::connection_errors::{ConnectionError, Kind};
use crate::connections::Connections;
use crate::extend::ConnectionExtensions;
use crate::gate::WebSocketSlot;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::outbox::{CloseReason, Outbox};
use crate::transport::Transport;
use crate::ws::frame;
use crate::ws::handshake::{http_error, switching_protocols, Upgrade};
use budget::Grant;
pub(crate) use budget::InboundBudget;
use session::Session;
use socket::Socket;
use task::{ConnectionTask, Parts};

/// A client must take the `101` answer and the first message within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What every WebSocket connection of this node uses.
pub(crate) struct Context {
    pub apps: Arc<dyn AppRegistry>,
    pub node: Arc<Node>,
    pub connections: Arc<Connections>,
    /// Frames queued for one connection before it is closed as a slow consumer.
    pub max_outbound_queue: usize,
    /// Largest message a client may send, in bytes.
    pub max_message_size: usize,
    /// Inbound middlewares and custom event handlers, when any are registered.
    pub extensions: Option<Arc<ConnectionExtensions>>,
    pub metrics: Metrics,
    /// Client messages all connections together may have handled per second.
    pub inbound: InboundBudget,
}

impl Context {
    /// Takes `messages` from the node's inbound budget; when to go on if not now (counted).
    pub(crate) fn take_inbound(&self, messages: u32) -> Option<std::time::Instant> {
        match self.inbound.take(messages, std::time::Instant::now()) {
            Grant::Now => None,
            Grant::At(turn) => {
                self.metrics.inbound_paced();
                Some(turn)
            }
        }
    }
}

/// What answering an upgrade costs, in client messages of the inbound budget: a connection
/// storm is paced like a message flood.
const UPGRADE_COST: u32 = 4;

/// Answers an upgrade request and, once the connection is admitted, spawns its task.
/// `read_buf` holds any bytes the client sent after its upgrade request.
pub(crate) async fn serve(
    mut stream: Transport,
    read_buf: BytesMut,
    upgrade: Upgrade,
    node_slot: WebSocketSlot,
    cx: Arc<Context>,
) {
    if cx.connections.is_closing() {
        // Draining: not admitted (a close would have pusher-js come straight back here).
        let answer = http_error(503, "Service Unavailable", "Server is shutting down");
        let _ = tokio::time::timeout(socket::CLOSE_LINGER, stream.send(answer.as_bytes())).await;
        return;
    }
    if let Some(turn) = cx.take_inbound(UPGRADE_COST) {
        tokio::time::sleep_until(turn.into()).await;
    }
    let mut hello = switching_protocols(&upgrade.accept).into_bytes();
    let admitted = admission::admit(
        cx.apps.as_ref(),
        &upgrade.path,
        &upgrade.query,
        upgrade.origin.as_deref(),
    );
    let admitted = match admitted {
        Ok((app, slot)) => quota::take_cluster_wide(&cx.node, &app)
            .await
            .map(|()| (app, slot)),
        Err(refusal) => Err(refusal),
    };
    let (app, slot) = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let peer = stream.peer_addr().ok();
            ConnectionError::new(Kind::AppRefused, peer, &refusal.message)
                .code(refusal.code.code())
                .report();
            cx.metrics.refused(admission::reason_label(refusal.code));
            // Refused after the upgrade, so that the client sees Pusher's code and reason.
            let reason = CloseReason::new(refusal.code, refusal.message);
            hello.extend_from_slice(&socket::close_frames(&reason));
            if let Ok(Ok(())) =
                tokio::time::timeout(socket::CLOSE_LINGER, stream.send(&hello)).await
            {
                socket::linger(&mut stream).await;
            }
            return;
        }
    };
    drop(upgrade);
    let outbox = Arc::new(Outbox::new(cx.max_outbound_queue));
    if let Some(limit) = app.user_authentication_timeout {
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        outbox.require_authentication_by(cx.connections.clock().saturating_add(ms));
    }
    let socket_id = cx.connections.open(outbox.clone(), app.clone());
    // From here on the session holds the slots and gives them back when it drops.
    let session = Session::new(cx.clone(), slot, socket_id, outbox.clone());
    let established =
        outbound::connection_established(socket_id, cx.connections.activity_timeout());
    hello.extend_from_slice(&frame::text(established.as_bytes()));
    if !matches!(
        tokio::time::timeout(HELLO_TIMEOUT, stream.send(&hello)).await,
        Ok(Ok(()))
    ) {
        let why = "the 101 answer could not be written in time";
        ConnectionError::new(Kind::HelloFailed, stream.peer_addr().ok(), &why)
            .socket(&socket_id)
            .report();
        cx.connections.remove(socket_id);
        return;
    }
    drop(hello);
    watched::opened(&session, &stream);
    let socket = Socket::new(
        stream,
        read_buf,
        cx.max_message_size,
        outbox,
        cx.connections.clone(),
    );
    tokio::spawn(ConnectionTask::new(Parts {
        socket,
        session,
        node_slot,
    }));
}
