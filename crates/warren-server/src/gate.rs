//! Who may hold a socket on this node at all, before any app is looked at: the node's
//! connection cap, the file-descriptor budget, and the caps per client address.
//!
//! * **Sockets.** Every accepted socket (HTTP or WebSocket) holds a [`SocketSlot`]. The accept
//!   loop waits for a free slot *before* it accepts, so at the budget (the process's file limit
//!   less a reserve for Redis, logs and the like) new connections wait in the kernel's backlog
//!   instead of failing `accept` with `EMFILE` in a loop.
//! * **WebSockets.** An upgrade turns the socket's slot into a [`WebSocketSlot`] only if the node
//!   is under `server.max_connections` (refused: HTTP 503) and the client's address is under
//!   `server.max_connections_per_ip` and `server.new_connections_per_ip_per_sec` (refused:
//!   HTTP 429). Refusals happen before the upgrade: nothing of the connection is built.
//! * **The client's address** is the peer's, unless the peer is one of
//!   `server.trusted_proxies`: then it is the last address of `X-Forwarded-For` that is not a
//!   trusted proxy itself.
//!
//! INVARIANT(sockets-within-file-limit): a slot is taken before `accept` and given back when
//! the socket closes, so open sockets never exceed the budget.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use ipnet::IpNet;
use tokio::sync::Notify;

/// File descriptors kept for everything but client sockets (Redis, logs, the listener).
const FD_RESERVE: usize = 64;

/// The limits a [`Gate`] enforces (from `[server]`; 0 turns a per-address limit off).
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    /// WebSocket connections on this node; 0: as many as the file limit allows.
    pub max_connections: usize,
    pub max_connections_per_ip: u32,
    pub new_connections_per_ip_per_sec: u32,
    pub trusted_proxies: Vec<IpNet>,
}

/// Why an upgrade was refused before it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The node is at `max_connections` (or its file budget): 503.
    NodeFull,
    /// The address holds `max_connections_per_ip` already: 429.
    TooManyFromAddress,
    /// The address opened `new_connections_per_ip_per_sec` this second already: 429.
    TooFastFromAddress,
}

impl Refused {
    pub(crate) fn status(self) -> (u16, &'static str) {
        match self {
            Refused::NodeFull => (503, "Service Unavailable"),
            Refused::TooManyFromAddress | Refused::TooFastFromAddress => (429, "Too Many Requests"),
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Refused::NodeFull => "This node is at its connection limit; try another or later",
            Refused::TooManyFromAddress => "Too many connections from this address",
            Refused::TooFastFromAddress => "Too many new connections from this address",
        }
    }
}

pub(crate) struct Gate {
    sockets: AtomicUsize,
    socket_budget: usize,
    websockets: AtomicUsize,
    max_websockets: usize,
    per_address: DashMap<IpAddr, Address>,
    limits: Limits,
    freed: Notify,
    started: Instant,
}

/// One client address: its open WebSocket connections and this second's new ones.
#[derive(Debug, Default)]
struct Address {
    open: u32,
    second: u64,
    new_this_second: u32,
}

impl Gate {
    /// A gate for a process allowed `file_limit` open files.
    pub(crate) fn new(limits: Limits, file_limit: usize) -> Arc<Self> {
        let socket_budget = file_limit.saturating_sub(FD_RESERVE).max(1);
        let max_websockets = match limits.max_connections {
            0 => socket_budget,
            n => n.min(socket_budget),
        };
        Arc::new(Self {
            sockets: AtomicUsize::new(0),
            socket_budget,
            websockets: AtomicUsize::new(0),
            max_websockets,
            per_address: DashMap::new(),
            limits,
            freed: Notify::new(),
            started: Instant::now(),
        })
    }

    /// The WebSocket connections this node takes at most.
    pub(crate) fn max_websockets(&self) -> usize {
        self.max_websockets
    }

    /// Waits until a socket may be accepted, and takes its slot.
    pub(crate) async fn socket(self: &Arc<Self>) -> SocketSlot {
        loop {
            let freed = self.freed.notified();
            let taken = self
                .sockets
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.socket_budget).then_some(n + 1)
                });
            if taken.is_ok() {
                return SocketSlot(Some(self.clone()));
            }
            freed.await;
        }
    }

    /// The client's address: `peer`, or what a trusted proxy says it forwarded for.
    pub(crate) fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        client_address(&self.limits.trusted_proxies, peer, forwarded_for)
    }

    /// Turns a socket's slot into a WebSocket connection's, if the node and the address have
    /// room for one more.
    pub(crate) fn websocket(
        self: &Arc<Self>,
        mut socket: SocketSlot,
        client: IpAddr,
    ) -> Result<WebSocketSlot, Refused> {
        let taken = self
            .websockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_websockets).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refused::NodeFull);
        }
        let limits = &self.limits;
        let counted =
            limits.max_connections_per_ip > 0 || limits.new_connections_per_ip_per_sec > 0;
        if counted {
            let second = self.started.elapsed().as_secs();
            let mut address = self.per_address.entry(client).or_default();
            if let Err(refused) = admit_address(&mut address, limits, second) {
                drop(address);
                self.websockets.fetch_sub(1, Ordering::AcqRel);
                return Err(refused);
            }
        }
        socket.0 = None; // the WebSocket slot gives the socket back
        Ok(WebSocketSlot {
            gate: self.clone(),
            client: counted.then(|| Box::new(client)),
        })
    }

    /// Forgets addresses with no connection and no recent one (called once a second).
    pub(crate) fn sweep(&self) {
        let second = self.started.elapsed().as_secs();
        self.per_address
            .retain(|_, a| a.open > 0 || a.second == second);
    }

    fn release_socket(&self) {
        self.sockets.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

/// The per-address decision, on the address's entry.
fn admit_address(a: &mut Address, limits: &Limits, second: u64) -> Result<(), Refused> {
    if limits.max_connections_per_ip > 0 && a.open >= limits.max_connections_per_ip {
        return Err(Refused::TooManyFromAddress);
    }
    if a.second != second {
        a.second = second;
        a.new_this_second = 0;
    }
    if limits.new_connections_per_ip_per_sec > 0
        && a.new_this_second >= limits.new_connections_per_ip_per_sec
    {
        return Err(Refused::TooFastFromAddress);
    }
    a.new_this_second += 1;
    a.open += 1;
    Ok(())
}

/// Walks `X-Forwarded-For` from the nearest hop back while the hops are trusted proxies.
fn client_address(trusted: &[IpNet], peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A hop we cannot read ends what we can believe.
            Err(_) => break,
        }
    }
    client
}

/// A socket's claim on the file budget; given back when dropped.
pub(crate) struct SocketSlot(Option<Arc<Gate>>);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Some(gate) = self.0.take() {
            gate.release_socket();
        }
    }
}

/// A WebSocket connection's claim on the node, its address and the file budget.
pub(crate) struct WebSocketSlot {
    gate: Arc<Gate>,
    /// Boxed: every connection keeps this slot, and most nodes count no address (a null
    /// pointer then), so it costs a pointer rather than an inline address.
    client: Option<Box<IpAddr>>,
}

impl Drop for WebSocketSlot {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if let Some(mut a) = self.gate.per_address.get_mut(&*client) {
                a.open = a.open.saturating_sub(1);
            }
        }
        self.gate.websockets.fetch_sub(1, Ordering::AcqRel);
        self.gate.release_socket();
    }
}

/// Forgets idle addresses once a second until the task is aborted.
pub(crate) async fn sweep_forever(gate: Arc<Gate>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        gate.sweep();
    }
}

/// The process's limit of open files (the soft one), raised to the hard limit if allowed.
pub(crate) fn file_limit() -> usize {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff = Some("203.0.113.7, 10.1.1.1");
        assert_eq!(
            client_address(&trusted, ip("198.51.100.1"), xff),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(&trusted, ip("10.2.2.2"), xff),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(&trusted, ip("10.2.2.2"), None),
            ip("10.2.2.2")
        );
        // A client cannot hide behind an address it wrote itself before the proxies' hops.
        let spoofed = Some("1.1.1.1, 203.0.113.7, 10.1.1.1");
        assert_eq!(
            client_address(&trusted, ip("10.2.2.2"), spoofed),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(&trusted, ip("10.2.2.2"), Some("junk")),
            ip("10.2.2.2")
        );
    }

    #[tokio::test]
    async fn the_node_cap_refuses_with_503_and_frees_on_drop() {
        let gate = Gate::new(
            Limits {
                max_connections: 2,
                ..Limits::default()
            },
            10_000,
        );
        let a = gate
            .websocket(gate.socket().await, ip("1.1.1.1"))
            .expect("first");
        let _b = gate
            .websocket(gate.socket().await, ip("1.1.1.2"))
            .expect("second");
        let refused = gate.websocket(gate.socket().await, ip("1.1.1.3"));
        assert_eq!(refused.err(), Some(Refused::NodeFull));
        drop(a);
        assert!(gate.websocket(gate.socket().await, ip("1.1.1.3")).is_ok());
    }

    #[test]
    fn an_address_is_held_to_its_open_and_new_connections() {
        let limits = Limits {
            max_connections_per_ip: 2,
            new_connections_per_ip_per_sec: 3,
            ..Limits::default()
        };
        let mut a = Address::default();
        assert_eq!(admit_address(&mut a, &limits, 7), Ok(()));
        assert_eq!(admit_address(&mut a, &limits, 7), Ok(()));
        assert_eq!(
            admit_address(&mut a, &limits, 7),
            Err(Refused::TooManyFromAddress)
        );
        a.open -= 1;
        assert_eq!(admit_address(&mut a, &limits, 7), Ok(()));
        a.open -= 1;
        assert_eq!(
            admit_address(&mut a, &limits, 7),
            Err(Refused::TooFastFromAddress)
        );
        assert_eq!(admit_address(&mut a, &limits, 8), Ok(()), "a new second");
    }

    #[tokio::test]
    async fn a_refused_address_gives_its_node_slot_back() {
        let gate = Gate::new(
            Limits {
                max_connections_per_ip: 1,
                ..Limits::default()
            },
            10_000,
        );
        let _a = gate
            .websocket(gate.socket().await, ip("1.1.1.1"))
            .expect("1");
        let refused = gate.websocket(gate.socket().await, ip("1.1.1.1"));
        assert_eq!(refused.err(), Some(Refused::TooManyFromAddress));
        assert_eq!(gate.websockets.load(Ordering::Acquire), 1);
        assert_eq!(gate.sockets.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn sockets_wait_for_room_in_the_file_budget() {
        let gate = Gate::new(Limits::default(), FD_RESERVE + 1);
        let first = gate.socket().await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.socket().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room: the accept waits");
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room again")
            .expect("task");
        drop(second);
        assert_eq!(gate.sockets.load(Ordering::Acquire), 0);
    }
}
