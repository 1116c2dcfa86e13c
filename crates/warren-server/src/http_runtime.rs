//! Where HTTP requests run: threads of their own, apart from the WebSocket connections.
//!
//! A publish arrives on an HTTP connection whose task is woken by the socket. On a runtime
//! shared with the connections, that task waits in the same run queues as every connection task
//! that earlier publishes woke: under load, thousands of them. Publishes are then accepted late
//! and few, each connection gets its frames one write at a time, and the server spends its
//! CPU on syscalls instead of deliveries (measured in docs/BENCHMARKS.md: more than twice the
//! deliveries per second at a third of the CPU each, once requests ran on their own thread).
//! So HTTP connections are handed to a small runtime of their own (`server.http_threads`,
//! 0 = share the connections' runtime). Wake-ups then cross from it into the connections'
//! runtime, which is what lets a burst of publishes coalesce into fewer writes.

use tokio::runtime::{Builder, Handle, Runtime};

/// The runtime HTTP connections are served on, owned by the server.
pub(crate) struct HttpRuntime {
    /// `None`: HTTP runs on the runtime that accepted the connection.
    own: Option<Runtime>,
}

impl HttpRuntime {
    /// `threads` worker threads of its own, or none (0).
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let own = match threads {
            0 => None,
            n => Some(
                Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("warren-http")
                    .enable_all()
                    .build()?,
            ),
        };
        Ok(Self { own })
    }

    /// Where to spawn HTTP connections: this runtime's handle, or `None` for the current one.
    pub(crate) fn handle(&self) -> Option<Handle> {
        self.own.as_ref().map(|rt| rt.handle().clone())
    }
}

impl Drop for HttpRuntime {
    fn drop(&mut self) {
        // Dropped from async code (the server stops inside a runtime), where a blocking
        // shutdown would panic: the threads finish on their own.
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}
