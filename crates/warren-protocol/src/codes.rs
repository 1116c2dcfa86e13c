//! Pusher's 4xxx error and close codes (docs/PROTOCOL.md, "Error and close codes").

/// A Pusher error code. Codes below 4300 may close the connection; 4301 and above are sent as
/// `pusher:error` only, because pusher-js never reconnects after a close with such a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    SslOnly = 4000,
    AppNotFound = 4001,
    AppDisabled = 4003,
    OverConnectionQuota = 4004,
    PathNotFound = 4005,
    InvalidVersion = 4006,
    UnsupportedProtocol = 4007,
    NoProtocol = 4008,
    Unauthorized = 4009,
    OverCapacity = 4100,
    GenericReconnect = 4200,
    PongNotReceived = 4201,
    ClosedAfterInactivity = 4202,
    ClientEventRateLimited = 4301,
    WatchlistTooLarge = 4302,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Whether this code may be used as a WebSocket close code.
    pub fn may_close(self) -> bool {
        self.code() < 4300
    }
}

/// WebSocket close codes (RFC 6455) used when the fault is in the WebSocket layer itself.
pub mod ws_close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_protocol_table() {
        assert_eq!(ErrorCode::AppNotFound.code(), 4001);
        assert_eq!(ErrorCode::NoProtocol.code(), 4008);
        assert_eq!(ErrorCode::OverCapacity.code(), 4100);
        assert_eq!(ErrorCode::PongNotReceived.code(), 4201);
        assert!(ErrorCode::ClosedAfterInactivity.may_close());
        assert!(!ErrorCode::ClientEventRateLimited.may_close());
        assert!(!ErrorCode::WatchlistTooLarge.may_close());
    }
}
