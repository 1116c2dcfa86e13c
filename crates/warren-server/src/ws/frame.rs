//! RFC 6455 framing lives in `warren_protocol::wsframe`, shared with the load generator's
//! client; re-exported here so the server's modules keep their paths.

pub use warren_protocol::wsframe::{close, pong, text, Decoder, FrameError, Message};
