//! A budget of log lines per kind of error, renewed every window of time.
//!
//! A kind's window opens at its first error. In it, the first `lines` errors of that kind are
//! written and the rest are only counted. Once the window is over, its count comes back once
//! (from the next [`Limiter::admit`] of that kind, or from [`Limiter::due`], which the owner
//! calls now and then so that a flood that stopped is still reported), to be written as one
//! "N similar errors suppressed" line; the next error of the kind opens a new window.
//!
//! Time is an argument, so the behaviour is tested without waiting; the limiter holds no
//! clock, no lock and no I/O.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// INVARIANT(connection-errors-accounted): every error given to [`Limiter::admit`] is either
/// written (`write`) or counted in exactly one count handed back later, by `admit`,
/// [`Limiter::due`] or [`Limiter::drain`]; none is lost and none is counted twice.
#[derive(Debug)]
pub(crate) struct Limiter<K> {
    lines: u32,
    window: Duration,
    /// The kinds with an open window; a handful at most, so a list.
    open: Vec<(K, Window)>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    written: u32,
    suppressed: u64,
}

/// What to do with one error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admit {
    /// Errors of this kind suppressed in its window that just ended: their line goes first.
    pub ended: Option<NonZeroU64>,
    /// Whether this error gets a line of its own.
    pub write: bool,
}

impl<K: Copy + Eq> Limiter<K> {
    /// At most `lines` lines per kind in each `window`.
    pub(crate) const fn new(lines: u32, window: Duration) -> Self {
        Limiter {
            lines,
            window,
            open: Vec::new(),
        }
    }

    /// Changes the budget; open windows keep their counts and end at the new length.
    pub(crate) fn set_budget(&mut self, lines: u32, window: Duration) {
        self.lines = lines;
        self.window = window;
    }

    /// One error of `kind` at `now`.
    pub(crate) fn admit(&mut self, kind: K, now: Instant) -> Admit {
        let mut ended = None;
        let index = match self.open.iter().position(|(k, _)| *k == kind) {
            Some(i) if self.is_over(&self.open[i].1, now) => {
                ended = NonZeroU64::new(self.open[i].1.suppressed);
                self.open[i].1 = Window::opened_at(now);
                i
            }
            Some(i) => i,
            None => {
                self.open.push((kind, Window::opened_at(now)));
                self.open.len() - 1
            }
        };
        let window = &mut self.open[index].1;
        let write = window.written < self.lines;
        if write {
            window.written += 1;
        } else {
            window.suppressed += 1;
        }
        Admit { ended, write }
    }

    /// Closes the windows that are over at `now`: the kinds that had errors suppressed in
    /// them, with their counts.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(K, NonZeroU64)> {
        let mut counts = Vec::new();
        let window = self.window;
        self.open.retain(|(kind, w)| {
            if now.saturating_duration_since(w.opened) < window {
                return true;
            }
            counts.extend(NonZeroU64::new(w.suppressed).map(|n| (*kind, n)));
            false
        });
        counts
    }

    /// Closes every window, over or not (the server is stopping): the counts not yet handed
    /// back.
    pub(crate) fn drain(&mut self) -> Vec<(K, NonZeroU64)> {
        self.open
            .drain(..)
            .filter_map(|(kind, w)| NonZeroU64::new(w.suppressed).map(|n| (kind, n)))
            .collect()
    }

    fn is_over(&self, window: &Window, now: Instant) -> bool {
        now.saturating_duration_since(window.opened) >= self.window
    }
}

impl Window {
    fn opened_at(now: Instant) -> Self {
        Window {
            opened: now,
            written: 0,
            suppressed: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn n(count: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(count)
    }

    /// Errors admitted with `write`, and the counts handed back by `admit`.
    fn feed(
        limiter: &mut Limiter<&'static str>,
        kind: &'static str,
        times: u32,
        at: Instant,
    ) -> (u32, u64) {
        let (mut written, mut reported) = (0, 0);
        for _ in 0..times {
            let admit = limiter.admit(kind, at);
            written += u32::from(admit.write);
            reported += admit.ended.map_or(0, NonZeroU64::get);
        }
        (written, reported)
    }

    #[test]
    fn a_flood_gets_its_budget_of_lines_and_the_rest_is_counted() {
        let mut limiter = Limiter::new(3, SECOND);
        let t0 = Instant::now();
        assert_eq!(feed(&mut limiter, "handshake", 10_000, t0), (3, 0));
        // Still within the window: nothing is due.
        assert!(limiter.due(t0 + SECOND / 2).is_empty());
        assert_eq!(
            limiter.due(t0 + SECOND),
            vec![("handshake", 9_997.try_into().unwrap())]
        );
        // Handed back once only.
        assert!(limiter.due(t0 + 5 * SECOND).is_empty());
    }

    #[test]
    fn each_kind_has_its_own_budget() {
        let mut limiter = Limiter::new(2, SECOND);
        let t0 = Instant::now();
        assert_eq!(feed(&mut limiter, "a", 5, t0), (2, 0));
        assert_eq!(feed(&mut limiter, "b", 1, t0), (1, 0));
        let mut due = limiter.due(t0 + SECOND);
        due.sort();
        assert_eq!(due, vec![("a", 3.try_into().unwrap())]);
    }

    #[test]
    fn the_next_error_after_a_window_reports_it_before_its_own_line() {
        let mut limiter = Limiter::new(1, SECOND);
        let t0 = Instant::now();
        feed(&mut limiter, "a", 4, t0);
        let admit = limiter.admit("a", t0 + 2 * SECOND);
        assert_eq!(
            admit,
            Admit {
                ended: n(3),
                write: true
            }
        );
        // A new window: its budget is spent by that error.
        assert!(!limiter.admit("a", t0 + 2 * SECOND).write);
    }

    #[test]
    fn a_window_without_suppressed_errors_reports_nothing() {
        let mut limiter = Limiter::new(5, SECOND);
        let t0 = Instant::now();
        feed(&mut limiter, "a", 5, t0);
        assert!(limiter.due(t0 + SECOND).is_empty());
        assert_eq!(
            limiter.admit("a", t0 + SECOND),
            Admit {
                ended: None,
                write: true
            }
        );
    }

    #[test]
    fn drain_hands_back_what_is_still_counted() {
        let mut limiter = Limiter::new(0, Duration::from_secs(3600));
        let t0 = Instant::now();
        assert_eq!(feed(&mut limiter, "a", 7, t0), (0, 0));
        assert_eq!(limiter.drain(), vec![("a", 7.try_into().unwrap())]);
        assert!(limiter.drain().is_empty());
    }

    #[test]
    fn every_error_is_written_or_counted_exactly_once() {
        // INVARIANT(connection-errors-accounted), over an irregular stream of two kinds.
        let mut limiter = Limiter::new(2, SECOND);
        let t0 = Instant::now();
        let (mut written, mut counted, mut total) = (0u64, 0u64, 0u64);
        for step in 0..5_000u64 {
            // Ever denser errors, over about twelve windows.
            let at = t0 + Duration::from_millis(step * step / 2_000);
            let kind = if step % 3 == 0 { "a" } else { "b" };
            let admit = limiter.admit(kind, at);
            total += 1;
            written += u64::from(admit.write);
            counted += admit.ended.map_or(0, NonZeroU64::get);
            if step % 500 == 0 {
                counted += limiter.due(at).iter().map(|(_, n)| n.get()).sum::<u64>();
            }
        }
        counted += limiter.drain().iter().map(|(_, n)| n.get()).sum::<u64>();
        assert_eq!(written + counted, total);
        assert!(written < total / 10, "{written} of {total} written");
    }

    #[test]
    fn a_new_budget_applies_to_open_windows() {
        let mut limiter = Limiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        feed(&mut limiter, "a", 3, t0);
        limiter.set_budget(1, SECOND);
        assert_eq!(limiter.due(t0 + SECOND), vec![("a", 2.try_into().unwrap())]);
    }
}
