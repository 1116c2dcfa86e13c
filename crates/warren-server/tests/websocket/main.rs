//! Integration tests over real sockets: a real server on a free port, driven by an independent
//! WebSocket client (tokio-tungstenite), checking every byte the protocol promises.

mod bad_input;
mod client_events;
mod connect;
mod harness;
mod liveness;
mod presence;
mod subscribe;
