//! The WebSocket layer (RFC 6455), server side only, kept to what Pusher clients use.
//!
//! Warren frames WebSocket messages itself instead of going through a general WebSocket
//! crate: outbound frames are unmasked, so one event is framed once into shared bytes and the
//! very same bytes are written to every subscriber's socket (ARCHITECTURE.md, "The path of one
//! event"). Client frames are decoded from a small per-connection buffer that grows only while
//! a large message is arriving.

pub mod frame;
pub mod handshake;
