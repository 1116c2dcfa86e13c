//! Every open WebSocket connection on this node, and the liveness sweeper that watches them.
//!
//! A connection registers its [`Outbox`] when admitted and removes it only after it has left
//! its channels, so an empty registry means every departure has been announced: a graceful
//! stop waits for exactly that. The sweeper replaces a timer per connection: once a second it
//! pings connections idle for `activity_timeout`, closes (4201) those that did not answer
//! within `pong_timeout`, and closes (4009) those past their app's
//! `user_authentication_timeout` without signing in or an authorized subscription. Each entry
//! keeps the version of the app the connection was admitted with, so that the connections of a
//! disabled or removed app can be found and closed (`close_retired`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use warren_protocol::{outbound, ErrorCode, SocketId};

use crate::app::{App, Retired};
use crate::metrics::DeliveryLatency;
use crate::outbox::{CloseReason, Liveness, Outbox};
use crate::ws::frame;

/// A registered connection: its queue and the version of its app.
struct Open {
    outbox: Arc<Outbox>,
    app: Arc<App>,
}

/// Open connections, socket ids and the clock their liveness is measured on.
pub(crate) struct Connections {
    open: DashMap<SocketId, Open>,
    /// Seconds without hearing from a client before it is pinged.
    activity_timeout: u64,
    /// Seconds to wait for the answer to that ping.
    pong_timeout: u64,
    /// How long a socket may take no bytes before its connection is dropped.
    write_timeout: Duration,
    /// `pusher:ping`, framed once.
    ping_frame: Bytes,
    started: Instant,
    /// Random per process, so socket ids of different nodes do not collide.
    socket_id_high: u64,
    next_socket_id: AtomicU64,
    /// Set once the server stops: connections admitted from then on are closed at once.
    closing: AtomicBool,
    /// Where sockets observe how long frames took from publish to write (metrics).
    latency: DeliveryLatency,
}

impl Connections {
    pub(crate) fn new(
        activity_timeout: u64,
        pong_timeout: u64,
        write_timeout: Duration,
        latency: DeliveryLatency,
    ) -> Self {
        Self {
            latency,
            open: DashMap::new(),
            activity_timeout,
            pong_timeout,
            write_timeout,
            ping_frame: frame::text(outbound::PING.as_bytes()),
            started: Instant::now(),
            socket_id_high: u64::from(rand::random::<u32>()),
            next_socket_id: AtomicU64::new(u64::from(rand::random::<u16>())),
            closing: AtomicBool::new(false),
        }
    }

    /// Milliseconds since the server started: the clock of connection liveness.
    pub(crate) fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a new connection under a fresh socket id (unique on this node: a random
    /// per-process part and a counter).
    pub(crate) fn open(&self, outbox: Arc<Outbox>, app: Arc<App>) -> SocketId {
        let id = SocketId::new(
            self.socket_id_high,
            self.next_socket_id.fetch_add(1, Ordering::Relaxed),
        );
        outbox.heard_from(self.clock());
        self.open.insert(
            id,
            Open {
                outbox: outbox.clone(),
                app: app.clone(),
            },
        );
        // Admitted while the server was stopping: close at once, like the others.
        if self.closing.load(Ordering::SeqCst) {
            outbox.close(shutdown_reason());
        } else if let Some(reason) = retired_reason(app.retired()) {
            // INVARIANT(retired-app-closes): the mark is read after the entry is in, so a
            // retirement either sees the entry in its walk or is seen here.
            outbox.close(reason);
        }
        id
    }

    /// Closes the connections whose app version was retired: 4003 for a disabled app, 4001
    /// for a removed (or re-keyed) one. Returns how many were asked to close.
    pub(crate) fn close_retired(&self) -> usize {
        let mut closed = 0;
        for entry in self.open.iter() {
            if let Some(reason) = retired_reason(entry.value().app.retired()) {
                entry.value().outbox.close(reason);
                closed += 1;
            }
        }
        closed
    }

    /// Forgets a connection that has left all its channels.
    pub(crate) fn remove(&self, socket: SocketId) {
        self.open.remove(&socket);
    }

    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }

    /// Seconds of silence after which a client is pinged (sent in `connection_established`).
    pub(crate) fn activity_timeout(&self) -> u64 {
        self.activity_timeout
    }

    /// How long a connection may refuse to accept bytes before it is given up on
    /// (`server.write_timeout_ms`).
    pub(crate) fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// The delivery latency histogram (empty while metrics are off).
    pub(crate) fn delivery_latency(&self) -> &DeliveryLatency {
        &self.latency
    }

    /// One pass of the liveness sweeper.
    pub(crate) fn sweep(&self) {
        let now = self.clock();
        let activity = self.activity_timeout.saturating_mul(1000);
        let pong = self.pong_timeout.saturating_mul(1000);
        for entry in self.open.iter() {
            let outbox = &entry.value().outbox;
            match outbox.liveness(now, activity, pong) {
                Liveness::Fine => {}
                Liveness::Idle => {
                    outbox.pinged(now);
                    outbox.push(self.ping_frame.clone());
                }
                Liveness::Dead => outbox.close(CloseReason::new(
                    ErrorCode::PongNotReceived,
                    "Pong reply not received in time",
                )),
                Liveness::Unauthenticated => {
                    outbox.authenticated(); // closed once, not once a second
                    outbox.close(CloseReason::new(
                        ErrorCode::Unauthorized,
                        "Connection not authenticated in time: sign in or subscribe to an authorized channel",
                    ));
                }
            }
        }
    }

    /// Closes every connection with 4200, now and as they are admitted from now on: clients
    /// reconnect, to another node if there is one.
    pub(crate) fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for entry in self.open.iter() {
            entry.value().outbox.close(shutdown_reason());
        }
    }

    /// Whether the server is stopping: new connections are not admitted.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Waits until every connection has left its channels, for `limit` at most.
    pub(crate) async fn drained(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.open.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How a connection of a retired app version is closed; `None` while it is current.
fn retired_reason(retired: Retired) -> Option<CloseReason> {
    match retired {
        Retired::No => None,
        Retired::Disabled => Some(CloseReason::new(
            ErrorCode::AppDisabled,
            "Application is disabled",
        )),
        Retired::Removed => Some(CloseReason::new(
            ErrorCode::AppNotFound,
            "Application does not exist",
        )),
    }
}

/// Runs the liveness sweeper until the task is aborted.
pub(crate) async fn sweep_forever(connections: Arc<Connections>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        connections.sweep();
    }
}

fn shutdown_reason() -> CloseReason {
    CloseReason::new(
        ErrorCode::GenericReconnect,
        "Server is shutting down; reconnect",
    )
}
