//! The request-head parser that tells WebSocket upgrades from HTTP: no panic, a head never
//! claims more bytes than it was given, and it is decided only once it is whole (every shorter
//! prefix is "not yet").

use warren_server::fuzz_internals::{parse_head, Head};

pub fn check(data: &[u8]) {
    let Ok(Some(head)) = parse_head(data) else {
        return;
    };
    if let Head::WebSocket(upgrade) = &head {
        assert!(upgrade.head_len <= data.len());
        assert!(upgrade.head_len >= 4);
        let whole = parse_head(&data[..upgrade.head_len]);
        assert_eq!(whole.as_ref().ok().and_then(|h| h.as_ref()), Some(&head));
        for end in [upgrade.head_len - 1, upgrade.head_len / 2] {
            assert!(
                matches!(parse_head(&data[..end]), Ok(None) | Err(_)),
                "decided before the head was whole"
            );
        }
    }
}
