//! Where the connection stands, and when the machine must look at it again.
//!
//! Liveness is kept lazily: a message only moves `last_seen`; the deadline is computed from
//! it when asked, so a busy line re-arms no timer per message.

use std::time::{Duration, Instant};

use super::Settings;

pub(super) enum Phase {
    /// Waiting for the connection, then for `connection_established`.
    Opening(Opening),
    Connected(Session),
    /// Down; the next attempt starts at `until`.
    Waiting {
        until: Instant,
    },
    /// Closed for good.
    Stopped,
}

impl Phase {
    pub fn deadline(&self, settings: &Settings) -> Option<Instant> {
        match self {
            Phase::Opening(o) => Some(o.since + settings.connect_timeout),
            Phase::Connected(s) => Some(s.deadline(settings.pong_timeout)),
            Phase::Waiting { until } => Some(*until),
            Phase::Stopped => None,
        }
    }
}

pub(super) struct Opening {
    /// The connect timeout covers the TCP connection, the handshake and
    /// `connection_established`, from here.
    pub since: Instant,
    /// The WebSocket is open (so closing it means a close frame).
    pub open: bool,
    /// A `pusher:error` (code, message) before `connection_established`: the server is
    /// refusing us, and its close frame follows.
    pub refused: Option<(Option<u16>, String)>,
}

impl Opening {
    pub fn new(now: Instant) -> Self {
        Self {
            since: now,
            open: false,
            refused: None,
        }
    }
}

/// An established connection.
pub(super) struct Session {
    pub socket_id: String,
    /// Quiet time after which this client pings.
    activity: Duration,
    last_seen: Instant,
    /// When our ping went out, if it is unanswered.
    ping_sent: Option<Instant>,
}

/// What the liveness timer says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Liveness {
    Fine,
    /// Quiet for the activity timeout: send a ping.
    Ping,
    /// Nothing arrived within the pong timeout after our ping.
    Dead,
}

impl Session {
    pub fn new(socket_id: String, activity: Duration, now: Instant) -> Self {
        Self {
            socket_id,
            activity,
            last_seen: now,
            ping_sent: None,
        }
    }

    /// Anything from the server proves the line alive and answers our ping.
    pub fn touch(&mut self, now: Instant) {
        self.last_seen = now;
        self.ping_sent = None;
    }

    fn deadline(&self, pong_timeout: Duration) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + pong_timeout,
            None => self.last_seen + self.activity,
        }
    }

    pub fn tick(&mut self, now: Instant, pong_timeout: Duration) -> Liveness {
        if now < self.deadline(pong_timeout) {
            return Liveness::Fine;
        }
        match self.ping_sent {
            Some(_) => Liveness::Dead,
            None => {
                self.ping_sent = Some(now);
                Liveness::Ping
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_when_quiet_and_dies_without_an_answer() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let pong = secs(5);
        let mut s = Session::new("1.1".into(), secs(10), t0);
        assert_eq!(s.deadline(pong), t0 + secs(10));
        assert_eq!(s.tick(t0 + secs(9), pong), Liveness::Fine);
        s.touch(t0 + secs(9));
        // An early tick (the timer was armed for the older deadline) does nothing.
        assert_eq!(s.tick(t0 + secs(10), pong), Liveness::Fine);
        assert_eq!(s.tick(t0 + secs(19), pong), Liveness::Ping);
        assert_eq!(s.deadline(pong), t0 + secs(24));
        assert_eq!(s.tick(t0 + secs(23), pong), Liveness::Fine);
        assert_eq!(s.tick(t0 + secs(24), pong), Liveness::Dead);
        // An answer in time resets the cycle.
        s.touch(t0 + secs(30));
        assert_eq!(s.deadline(pong), t0 + secs(40));
    }
}
