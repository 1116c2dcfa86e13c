//! Presence `channel_data` and sign-in `user_data`: what is accepted respects the limits.

use warren_protocol::presence::{parse_channel_data, MemberLimits};
use warren_protocol::user::parse_user_data;

const LIMITS: MemberLimits = MemberLimits {
    max_user_id_length: 32,
    max_user_info_bytes: 256,
};

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(member) = parse_channel_data(text, LIMITS) {
        assert!(member.user_id.as_str().len() <= LIMITS.max_user_id_length);
    }
    if let Ok(user) = parse_user_data(text, LIMITS) {
        let _ = format!("{user:?}");
    }
}
