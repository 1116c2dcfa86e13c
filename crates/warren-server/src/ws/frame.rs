//! RFC 6455 framing lives in `warren_protocol::wsframe`, shared with the load generator's
//! client; re-exported here so the server's modules keep their paths.

pub use warren_protocol::wsframe::{
    close, is_sendable_close_code, pong, text, Decoder, FrameError, Message,
};
