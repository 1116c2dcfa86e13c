//! The Pusher Channels protocol v7 as pure data: validated names, the messages clients send,
//! the frames the server sends and their typed decoding on the client's side, error codes,
//! presence member data, every signature, and the WebSocket framing both sides share.
//!
//! Nothing here does I/O; the server, the client SDK and the load generator share it.

pub mod codes;
pub mod inbound;
pub mod names;
pub mod outbound;
pub mod presence;
pub mod server_message;
pub mod user;
pub mod wsframe;

pub use codes::ErrorCode;
pub use names::{AppId, AppKey, ChannelKind, ChannelName, EventName, NameError, SocketId, UserId};
pub use server_message::{ServerMessage, ServerMessageError};

/// Protocol versions accepted on the WebSocket endpoint (7 behaves as 6).
pub const SUPPORTED_PROTOCOLS: std::ops::RangeInclusive<u32> = 4..=7;
pub mod auth;
