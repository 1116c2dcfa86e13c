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
//!
//! Webhooks get a runtime of their own in the same way (`webhooks.threads`): under presence
//! churn their work (removal markers, queues, requests) is a steady load of its own, and on
//! the ingress threads it would make publishes wait; apart, it cannot, and its CPU can be
//! told from delivery's (each runtime's threads carry its name).

use tokio::runtime::{Builder, Handle, Runtime};

/// A runtime apart from the connections' (the ingress's, the webhooks'), owned by the server.
pub(crate) struct SideRuntime {
    /// `None`: its work runs on the runtime it is given instead.
    own: Option<Runtime>,
}

impl SideRuntime {
    /// `threads` worker threads of its own, named `name` (at most 15 bytes: Linux keeps no
    /// more of a thread's name), or none (0).
    pub(crate) fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let own = match threads {
            0 => None,
            n => Some(
                Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name(name)
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(Self { own })
    }

    /// Where to spawn its work: this runtime's handle, or `None` when it has no threads.
    pub(crate) fn handle(&self) -> Option<Handle> {
        self.own.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for SideRuntime {
    fn drop(&mut self) {
        // Dropped from async code (the server stops inside a runtime), where a blocking
        // shutdown would panic: the threads finish on their own.
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}
