//! The relay envelope: any bytes decode to an event or to nothing, and what decodes encodes
//! back to an envelope that decodes to the same event.

use warren_server::fuzz_internals::{decode_envelope, encode_envelope};

pub fn check(data: &[u8]) {
    let Some(envelope) = decode_envelope(data) else {
        return;
    };
    let bytes =
        encode_envelope(envelope.origin, &envelope.event).expect("a decoded event encodes again");
    let again = decode_envelope(&bytes).expect("a re-encoded envelope decodes");
    assert_eq!(again, envelope);
}
