//! What one connection may do per second: client events (`client_event_rate_per_sec`) and
//! subscribes (`subscribe_rate_per_sec`, so churn cannot turn into Redis work without bound).
//!
//! Fixed one-second windows, cheap and what Pusher's "10 per second" means in practice. Both
//! counters share one window start: every idle connection keeps this, so it stays 24 bytes.

use std::time::{Duration, Instant};

/// What is counted.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counted {
    ClientEvent = 0,
    Subscribe = 1,
}

#[derive(Debug, Default)]
pub(super) struct Rates {
    started: Option<Instant>,
    counts: [u32; 2],
}

impl Rates {
    /// Counts one `what` at `now`; false (and not counted) when this window already had
    /// `limit` of them.
    pub(super) fn allow(&mut self, what: Counted, limit: u32, now: Instant) -> bool {
        match self.started {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.started = Some(now);
                self.counts = [0; 2];
            }
        }
        let count = &mut self.counts[what as usize];
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_gets_its_limit_per_second() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        assert!(r.allow(Counted::ClientEvent, 2, t0));
        assert!(r.allow(Counted::ClientEvent, 2, t0));
        assert!(!r.allow(Counted::ClientEvent, 2, t0 + Duration::from_millis(500)));
        // Another kind has its own count in the same window.
        assert!(r.allow(Counted::Subscribe, 1, t0 + Duration::from_millis(600)));
        assert!(!r.allow(Counted::Subscribe, 1, t0 + Duration::from_millis(700)));
        assert!(r.allow(Counted::ClientEvent, 2, t0 + Duration::from_millis(1000)));
        assert!(r.allow(Counted::Subscribe, 1, t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn it_stays_small() {
        assert!(std::mem::size_of::<Rates>() <= 24);
    }
}
