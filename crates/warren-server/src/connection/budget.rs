//! The node's inbound budget: how many client messages all WebSocket connections together may
//! have handled per second (`server.max_inbound_messages_per_sec`).
//!
//! Per-connection rate limits bound what one connection may do, not what a thousand do at
//! once. Their messages all land on the same worker threads as the deliveries, and the
//! runtime serves its tasks in turn: a flood from many connections queues its handling ahead
//! of every delivery's write. Over the budget, a connection is simply not read until its turn
//! (its deliveries go on); what it sent waits in the kernel's buffers, which cost the node
//! nothing, and TCP slows the sender down.
//!
//! A generic cell rate algorithm over one atomic: each grant moves a "next free" time forward
//! by its cost, and a taker whose grant starts more than the burst allowance ahead of now is
//! told when to come back. Grants are taken in arrival order, so waiting is fair and nobody is
//! woken to find the budget gone again.
//!
//! INVARIANT(inbound-budget-paces-reads): a connection over the budget is paced by not reading
//! its socket; its outbox is drained meanwhile, so the budget never delays a delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How much work may arrive at once, in time at the budget's rate: bursts this short are
/// handled at once, and it bounds the work that can be queued ahead of a delivery.
const BURST: Duration = Duration::from_millis(2);

pub(crate) struct InboundBudget {
    /// Time per message; zero for no budget.
    per_message_ns: u64,
    origin: Instant,
    /// When the budget is next free, in ns after `origin`: grants already given reach this far.
    free_at: AtomicU64,
}

/// What [`InboundBudget::take`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    Now,
    /// Granted, to be used from this time on.
    At(Instant),
}

impl InboundBudget {
    /// `per_sec` messages a second; 0 for no budget.
    pub(crate) fn new(per_sec: u32) -> Self {
        Self {
            per_message_ns: if per_sec == 0 {
                0
            } else {
                (1_000_000_000 / u64::from(per_sec)).max(1)
            },
            origin: Instant::now(),
            free_at: AtomicU64::new(0),
        }
    }

    /// Takes `messages` from the budget at `now`. The grant is committed either way: a
    /// connection told to wait uses it when its time comes, and does not ask again.
    pub(crate) fn take(&self, messages: u32, now: Instant) -> Grant {
        if self.per_message_ns == 0 {
            return Grant::Now;
        }
        let now_ns = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        let cost = self.per_message_ns.saturating_mul(u64::from(messages));
        let burst = BURST.as_nanos() as u64;
        let mut free_at = self.free_at.load(Ordering::Relaxed);
        loop {
            let start = free_at.max(now_ns);
            match self.free_at.compare_exchange_weak(
                free_at,
                start.saturating_add(cost),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if start <= now_ns.saturating_add(burst) => return Grant::Now,
                Ok(_) => {
                    let wait = Duration::from_nanos(start - now_ns - burst);
                    return Grant::At(now + wait);
                }
                Err(current) => free_at = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_budget_never_waits() {
        let b = InboundBudget::new(0);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(b.take(100, now), Grant::Now);
        }
    }

    #[test]
    fn a_burst_is_granted_at_once_and_the_rest_at_the_rate() {
        // 1,000 a second: 1 ms each, so the 2 ms burst allowance is 2 messages ahead of now.
        let b = InboundBudget::new(1000);
        let now = Instant::now() + Duration::from_secs(1);
        assert_eq!(b.take(1, now), Grant::Now); // starts now
        assert_eq!(b.take(1, now), Grant::Now); // 1 ms ahead
        assert_eq!(b.take(1, now), Grant::Now); // 2 ms ahead: still within the burst
        assert_eq!(b.take(1, now), Grant::At(now + Duration::from_millis(1)));
        assert_eq!(b.take(4, now), Grant::At(now + Duration::from_millis(2)));
        // The next grant starts after those four.
        assert_eq!(b.take(1, now), Grant::At(now + Duration::from_millis(6)));
    }

    #[test]
    fn an_idle_budget_does_not_save_up_beyond_the_burst() {
        let b = InboundBudget::new(1000);
        let now = Instant::now() + Duration::from_secs(1);
        assert_eq!(b.take(1, now), Grant::Now);
        let later = now + Duration::from_secs(10);
        assert_eq!(b.take(3, later), Grant::Now);
        assert_eq!(
            b.take(1, later),
            Grant::At(later + Duration::from_millis(1))
        );
    }

    #[test]
    fn takers_on_many_threads_share_one_rate() {
        let b = std::sync::Arc::new(InboundBudget::new(1_000_000));
        let now = Instant::now() + Duration::from_secs(1);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter_map(|_| match b.take(1, now) {
                            Grant::Now => None,
                            Grant::At(t) => Some(t),
                        })
                        .max()
                })
            })
            .collect();
        let last = threads
            .into_iter()
            .filter_map(|t| t.join().expect("thread"))
            .max()
            .expect("some wait");
        // 4,000 messages at 1 µs each, less the 2 ms burst: the last starts 2 ms from now
        // (to within one message).
        let wait = last - now;
        assert!(
            wait >= Duration::from_micros(1998) && wait <= Duration::from_micros(2000),
            "{wait:?}"
        );
    }
}
