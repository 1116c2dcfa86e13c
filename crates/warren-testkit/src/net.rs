//! Ports on the loopback interface.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port that was free a moment ago. Something else may take it before the caller binds
/// it, which on a test machine does not happen in practice; and nothing listens on it, which
/// tests of refused connections rely on.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Blocks until something accepts connections on `port`, for processes that give no other
/// sign of being ready.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
}
