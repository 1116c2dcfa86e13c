//! What the churn did and what the webhooks said about it, matched per member.
//!
//! Every join uses a user id never used before, so each join must produce exactly one
//! `member_added` and each leave exactly one `member_removed` (no rejoin can cancel it). The
//! ledger keeps, per user id, when the client sent the join and the leave, and counts the
//! webhook events naming it: a count of 0 after the drain is a lost webhook, above 1 a
//! duplicate. Latency runs from the client's send (the transition happens on the server
//! between that and its answer) to the request's arrival; a removal's latency is what is left
//! after the configured removal delay.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

#[derive(Default)]
struct Member {
    joined: Option<Instant>,
    left: Option<Instant>,
    added: u32,
    removed: u32,
}

/// Latencies in microseconds, up to a minute.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

pub struct Ledger {
    removal_delay: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    members: HashMap<String, Member>,
    added_latency: Histogram<u64>,
    removed_latency: Histogram<u64>,
    /// Events for user ids this run never used (another run's, or a bug).
    unknown: u64,
    other_events: HashMap<String, u64>,
    requests: u64,
    events: u64,
    bad_signatures: u64,
    first_request: Option<Instant>,
    last_request: Option<Instant>,
}

/// The ledger's verdict after the drain.
pub struct Tally {
    pub joins: u64,
    pub leaves: u64,
    pub added: u64,
    pub removed: u64,
    pub missing_added: u64,
    pub missing_removed: u64,
    pub duplicates: u64,
    pub unknown: u64,
    pub other_events: Vec<(String, u64)>,
    pub requests: u64,
    pub events: u64,
    pub bad_signatures: u64,
    /// From the first request to the last.
    pub span: Duration,
    pub added_latency: Histogram<u64>,
    pub removed_latency: Histogram<u64>,
}

impl Ledger {
    pub fn new(removal_delay: Duration) -> Self {
        Ledger {
            removal_delay,
            inner: Mutex::new(Inner {
                members: HashMap::new(),
                added_latency: histogram(),
                removed_latency: histogram(),
                unknown: 0,
                other_events: HashMap::new(),
                requests: 0,
                events: 0,
                bad_signatures: 0,
                first_request: None,
                last_request: None,
            }),
        }
    }

    pub fn joined(&self, user_id: String, at: Instant) {
        self.inner.lock().members.entry(user_id).or_default().joined = Some(at);
    }

    pub fn left(&self, user_id: &str, at: Instant) {
        if let Some(m) = self.inner.lock().members.get_mut(user_id) {
            m.left = Some(at);
        }
    }

    /// One request's events, as `(name, user_id)`; `signed` tells whether its signature held.
    pub fn request(&self, at: Instant, signed: bool, events: &[(String, Option<String>)]) {
        let mut inner = self.inner.lock();
        inner.requests += 1;
        inner.events += events.len() as u64;
        inner.bad_signatures += u64::from(!signed);
        inner.first_request.get_or_insert(at);
        inner.last_request = Some(at);
        for (name, user_id) in events {
            inner.event(at, name, user_id.as_deref(), self.removal_delay);
        }
    }

    pub fn tally(&self) -> Tally {
        let inner = self.inner.lock();
        let count =
            |f: &dyn Fn(&Member) -> bool| inner.members.values().filter(|m| f(m)).count() as u64;
        let sum =
            |f: &dyn Fn(&Member) -> u32| inner.members.values().map(|m| u64::from(f(m))).sum();
        let mut other_events: Vec<_> = inner
            .other_events
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        other_events.sort();
        let span = match (inner.first_request, inner.last_request) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        };
        Tally {
            joins: count(&|m| m.joined.is_some()),
            leaves: count(&|m| m.left.is_some()),
            added: sum(&|m| m.added),
            removed: sum(&|m| m.removed),
            missing_added: count(&|m| m.joined.is_some() && m.added == 0),
            missing_removed: count(&|m| m.left.is_some() && m.removed == 0),
            duplicates: sum(&|m| m.added.saturating_sub(1) + m.removed.saturating_sub(1)),
            unknown: inner.unknown,
            other_events,
            requests: inner.requests,
            events: inner.events,
            bad_signatures: inner.bad_signatures,
            span,
            added_latency: inner.added_latency.clone(),
            removed_latency: inner.removed_latency.clone(),
        }
    }
}

impl Inner {
    fn event(&mut self, at: Instant, name: &str, user_id: Option<&str>, delay: Duration) {
        let member = match (name, user_id) {
            ("member_added" | "member_removed", Some(id)) => self.members.get_mut(id),
            _ => {
                *self.other_events.entry(name.to_owned()).or_default() += 1;
                return;
            }
        };
        let Some(member) = member else {
            self.unknown += 1;
            return;
        };
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if name == "member_added" {
            member.added += 1;
            if let Some(joined) = member.joined {
                let _ = self
                    .added_latency
                    .record(micros(at.saturating_duration_since(joined)));
            }
        } else {
            member.removed += 1;
            if let Some(left) = member.left {
                let beyond = at.saturating_duration_since(left).saturating_sub(delay);
                let _ = self.removed_latency.record(micros(beyond));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, user: &str) -> (String, Option<String>) {
        (name.to_owned(), Some(user.to_owned()))
    }

    #[test]
    fn matches_events_to_transitions_and_finds_gaps() {
        let ledger = Ledger::new(Duration::from_millis(100));
        let t0 = Instant::now();
        ledger.joined("a".into(), t0);
        ledger.joined("b".into(), t0);
        ledger.left("a", t0 + Duration::from_millis(10));
        ledger.request(
            t0 + Duration::from_millis(2),
            true,
            &[ev("member_added", "a")],
        );
        ledger.request(
            t0 + Duration::from_millis(115),
            false,
            &[
                ev("member_removed", "a"),
                ev("member_added", "a"),
                ev("member_added", "zz"),
                ("channel_occupied".into(), None),
            ],
        );
        let t = ledger.tally();
        assert_eq!((t.joins, t.leaves, t.added, t.removed), (2, 1, 2, 1));
        assert_eq!((t.missing_added, t.missing_removed), (1, 0));
        assert_eq!((t.duplicates, t.unknown, t.bad_signatures), (1, 1, 1));
        assert_eq!(t.other_events, vec![("channel_occupied".to_owned(), 1)]);
        assert_eq!((t.requests, t.events), (2, 5));
        // 105 ms after the leave, 100 of them the removal delay.
        let removed = t.removed_latency.max();
        assert!((5_000..5_100).contains(&removed), "{removed}");
        assert!((2_000..2_100).contains(&t.added_latency.min()));
    }
}
