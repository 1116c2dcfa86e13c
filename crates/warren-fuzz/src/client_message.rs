//! `parse_client_message`: any bytes give a message or an error, never a panic; a parsed
//! message survives being printed.

use warren_protocol::inbound::parse_client_message;

pub fn check(data: &[u8]) {
    if let Ok(message) = parse_client_message(data) {
        let _ = format!("{message:?}");
    }
}
