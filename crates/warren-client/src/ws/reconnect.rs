//! What to do when a connection ends: the Pusher close-code rules and exponential backoff.

use std::time::Duration;

/// What a close code asks the client to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// 4000-4099: the server refuses this client for good (bad key, app disabled, over
    /// quota...); do not reconnect.
    Stop,
    /// 4100-4199: the server is over capacity; reconnect after this delay (1 s).
    ReconnectAfter(Duration),
    /// 4200-4299: reconnect at once (server restart, missed pong, inactivity).
    ReconnectNow,
    /// Anything else (a network failure, 1000/1001/1006...): reconnect with exponential
    /// backoff.
    Backoff,
}

/// The delay that 4100-4199 codes ask for.
pub const OVER_CAPACITY_DELAY: Duration = Duration::from_secs(1);

/// The Pusher rule for a close code; `None` when the connection ended without a close frame.
///
/// ```
/// use std::time::Duration;
/// use warren_client::ws::{close_action, CloseAction};
/// assert_eq!(close_action(Some(4001)), CloseAction::Stop);
/// assert_eq!(close_action(Some(4100)), CloseAction::ReconnectAfter(Duration::from_secs(1)));
/// assert_eq!(close_action(Some(4201)), CloseAction::ReconnectNow);
/// assert_eq!(close_action(None), CloseAction::Backoff);
/// ```
pub fn close_action(code: Option<u16>) -> CloseAction {
    match code {
        Some(4000..=4099) => CloseAction::Stop,
        Some(4100..=4199) => CloseAction::ReconnectAfter(OVER_CAPACITY_DELAY),
        Some(4200..=4299) => CloseAction::ReconnectNow,
        _ => CloseAction::Backoff,
    }
}

/// Exponential backoff with jitter, capped: attempt `n` (0-based) waits
/// `min(max, initial * multiplier^n)`, reduced by a random fraction of up to `jitter` so that
/// many clients dropped at once do not come back in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction of the delay (0..=1) that may be taken off at random.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 30 s, jitter up to half the delay.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry) with the random
    /// draw `random` in `[0, 1)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use warren_client::ws::Backoff;
    /// let b = Backoff::default();
    /// assert_eq!(b.delay_with(0, 0.0), Duration::from_secs(1));
    /// assert_eq!(b.delay_with(3, 0.0), Duration::from_secs(8));
    /// assert_eq!(b.delay_with(30, 0.0), Duration::from_secs(30));
    /// assert_eq!(b.delay_with(30, 0.5), Duration::from_millis(22_500));
    /// ```
    pub fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        let max = self.max.as_secs_f64();
        let base =
            self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let capped = if base.is_finite() { base.min(max) } else { max };
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * (1.0 - jitter)).max(0.0))
    }

    /// The delay before retry number `attempt`, with a fresh random draw.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes() {
        for code in [4000, 4001, 4003, 4004, 4005, 4006, 4007, 4008, 4009, 4099] {
            assert_eq!(close_action(Some(code)), CloseAction::Stop, "{code}");
        }
        for code in [4100, 4150, 4199] {
            assert_eq!(
                close_action(Some(code)),
                CloseAction::ReconnectAfter(Duration::from_secs(1)),
                "{code}"
            );
        }
        for code in [4200, 4201, 4202, 4299] {
            assert_eq!(
                close_action(Some(code)),
                CloseAction::ReconnectNow,
                "{code}"
            );
        }
        for code in [
            None,
            Some(1000),
            Some(1001),
            Some(1006),
            Some(1011),
            Some(3999),
            Some(4300),
            Some(4301),
        ] {
            assert_eq!(close_action(code), CloseAction::Backoff, "{code:?}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.5,
        };
        let no_jitter: Vec<u128> = (0..8).map(|n| b.delay_with(n, 0.0).as_millis()).collect();
        assert_eq!(no_jitter, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(b.delay_with(2, 0.5), Duration::from_millis(300));
        assert_eq!(b.delay_with(u32::MAX, 0.0), Duration::from_secs(2));
        for n in 0..20 {
            let d = b.delay(n);
            let full = b.delay_with(n, 0.0);
            assert!(d <= full && d >= full / 2, "{n}: {d:?} vs {full:?}");
        }
        let huge = Backoff {
            multiplier: 1e300,
            ..b
        };
        assert_eq!(huge.delay_with(10, 0.0), Duration::from_secs(2));
    }
}
