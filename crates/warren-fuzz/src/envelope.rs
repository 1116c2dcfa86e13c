//! The relay envelope: any bytes decode to an event, an ordered presence announcement, a
//! broadcast or nothing, and what decodes
//! encodes back to an envelope that decodes to the same thing.

use warren_server::fuzz_internals::{
    decode_envelope, encode_announcement_envelope, encode_broadcast_envelope, encode_envelope,
    Relayed,
};

pub fn check(data: &[u8]) {
    let Some(envelope) = decode_envelope(data) else {
        return;
    };
    let bytes = match &envelope.relayed {
        Relayed::Event(event) => {
            encode_envelope(envelope.origin, event).expect("a decoded event encodes again")
        }
        Relayed::Announcement(event, version) => {
            encode_announcement_envelope(envelope.origin, event, *version)
                .expect("a decoded announcement encodes again")
        }
        Relayed::Broadcast(broadcast) => encode_broadcast_envelope(envelope.origin, broadcast)
            .expect("a decoded broadcast encodes again"),
    };
    let again = decode_envelope(&bytes).expect("a re-encoded envelope decodes");
    assert_eq!(again, envelope);
}
