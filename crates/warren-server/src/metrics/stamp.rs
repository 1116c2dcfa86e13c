//! When an event was published, carried with its frame to the socket write, so that the
//! delivery latency is measured where the frame leaves the node.

use std::sync::OnceLock;
use std::time::Instant;

/// A point on this process's monotonic clock, in microseconds modulo 2^32 (71 minutes), or
/// none. Four bytes, so that every connection's outbox keeps one in what was padding; a
/// latency is the wrapping difference, right for anything shorter than 71 minutes (no frame
/// waits that long: a socket that takes nothing for `write_timeout_ms` is dropped).
///
/// `Stamp::NONE` is what every frame carries while metrics are off (and what frames that are
/// no published event carry: answers, pongs, `subscription_succeeded`), so the delivery path
/// then reads no clock at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp(u32);

/// The clock's zero: the first time anything asked for it in this process.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Stamp {
    pub const NONE: Stamp = Stamp(0);

    /// Now (never `NONE`: a reading of 0 is taken as 1, a microsecond off).
    pub fn now() -> Stamp {
        // Truncation is the point: the clock wraps every 2^32 microseconds.
        let micros = base().elapsed().as_micros() as u32;
        Stamp(micros.max(1))
    }

    /// The stamp as four bytes (for an atomic), and back.
    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn from_bits(bits: u32) -> Stamp {
        Stamp(bits)
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// This stamp, or `other` when this one is none.
    pub fn or(self, other: Stamp) -> Stamp {
        if self.is_none() {
            other
        } else {
            self
        }
    }

    /// Seconds from this stamp to now; `None` for `NONE`.
    pub fn elapsed_secs(self) -> Option<f64> {
        if self.is_none() {
            return None;
        }
        let now = Stamp::now().0;
        Some(f64::from(now.wrapping_sub(self.0)) / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_never_none_and_measure_forward() {
        let s = Stamp::now();
        assert!(!s.is_none());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let waited = s.elapsed_secs().expect("a stamp");
        assert!(waited >= 0.002, "{waited}");
        assert_eq!(Stamp::NONE.elapsed_secs(), None);
        assert_eq!(Stamp::NONE.or(s), s);
        assert_eq!(s.or(Stamp::NONE), s);
        assert_eq!(Stamp::from_bits(s.bits()), s);
    }

    #[test]
    fn latency_is_right_across_the_wrap() {
        let late = Stamp::from_bits(u32::MAX - 5);
        let now = 10u32;
        assert_eq!(now.wrapping_sub(late.bits()), 16);
    }
}
