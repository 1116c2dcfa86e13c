//! WebSocket framing (RFC 6455) as pure functions over byte buffers, in both directions:
//! what the server sends (unmasked frames, built once and shared by every subscriber) and how
//! its clients read them, what clients send (masked frames) and how the server reads them.
//!
//! Kept to what Pusher peers use: no extension is ever negotiated, so a frame with reserved
//! bits set is refused by both decoders. Each decoder refuses a frame over its size limit as
//! soon as the frame's header is read, before its payload is buffered.

mod encode;
mod from_client;
mod from_server;
mod header;

pub use encode::{apply_mask, close, encode_masked, payload_of, pong, put_header, text};
pub use from_client::{is_sendable_close_code, Decoder, Message};
pub use from_server::{Frame, FrameReader, BUF_SIZE, MAX_MESSAGE};
pub use header::{
    parse_header, Header, MAX_HEADER_LEN, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG,
    OP_TEXT,
};

use crate::codes::ws_close;

/// A violation of RFC 6455 or of a size limit; the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message larger than the {max} bytes allowed")]
    TooBig { max: usize },
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    /// The close code that tells the peer why.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => ws_close::PROTOCOL_ERROR,
            FrameError::TooBig { .. } => ws_close::MESSAGE_TOO_BIG,
            FrameError::InvalidUtf8 => ws_close::INVALID_PAYLOAD,
        }
    }
}
