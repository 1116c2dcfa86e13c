//! Where events come in: HTTP requests and the cluster backend's connections run on threads
//! of their own, apart from the WebSocket connections.
//!
//! A publish arrives on a socket (an HTTP connection, or the cluster backend's subscription to
//! other nodes' events) whose task is woken when it becomes readable. On a runtime shared with
//! the connections, that task waits in the same run queues as every connection task that
//! earlier events woke: under load, thousands of them. Events are then taken in late and few
//! at a time, each connection gets its frames one write at a time, and the server spends its
//! CPU on syscalls instead of deliveries (docs/BENCHMARKS.md: more than twice the deliveries
//! per second at under half the CPU each, once requests ran on their own thread). So these
//! sockets live on a small runtime of their own (`server.ingress_threads`; 0 shares the
//! connections' runtime). Wake-ups then cross from it into the connections' runtime, which is
//! also what lets a burst of events coalesce into fewer writes per connection.

use tokio::runtime::{Builder, Handle, Runtime};

/// The runtime events come in on, owned by the server.
pub(crate) struct Ingress {
    /// `None`: everything runs on the runtime that started the server.
    own: Option<Runtime>,
}

impl Ingress {
    /// `threads` worker threads of its own, or none (0).
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let own = match threads {
            0 => None,
            n => Some(
                Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("warren-ingress")
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(Self { own })
    }

    /// Where to spawn what takes events in: this runtime's handle, or `None` for the current
    /// one.
    pub(crate) fn handle(&self) -> Option<Handle> {
        self.own.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        // Dropped from async code (the server stops inside a runtime), where a blocking
        // shutdown would panic: the threads finish on their own.
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}
