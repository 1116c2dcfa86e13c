//! Where a test server listens, whatever kind of server it is.

use std::net::SocketAddr;

/// Something tests can connect to: an in-process server, a `warren serve` child, a bare
/// address. The clients of the kit take any of them, so a test reads the same whichever
/// kind of server it runs.
pub trait Endpoint {
    fn addr(&self) -> SocketAddr;

    /// The base URL of the HTTP API.
    fn http_url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

impl Endpoint for SocketAddr {
    fn addr(&self) -> SocketAddr {
        *self
    }
}
