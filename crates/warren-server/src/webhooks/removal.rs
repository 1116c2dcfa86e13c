//! The removal delay: `channel_vacated` and `member_removed` wait `delay_removal_ms`, and a
//! return within it (the channel occupied again, the user back) cancels both the removal and
//! the return, so a page reload sends nothing (docs/WEBHOOKS.md, "Removal delay").
//!
//! A pending removal leaves a *marker* in the store the nodes share (memory on one node,
//! Redis in a cluster), named by the app, the channel and (members) the user. Whoever removes
//! the marker first decides, whichever node it runs on:
//!
//! * the return (`channel_occupied`, `member_added`) finds and removes it: both are dropped;
//! * the removal, when its delay is over, removes it: it is sent, unless the cluster state
//!   says the channel is occupied or the user a member again (a return that did not see the
//!   marker in time), and then it is dropped too.
//!
//! A marker carries its removal's *token*, and a removal removes only a marker with its own
//! token: after leave, return, leave again, the first removal's deadline must not take the
//! second one's marker (and send `channel_vacated` in the moment the channel happens to be
//! empty), which would leave the next return unmatched and flap. A newer removal's marker
//! replaces an older one's; the older removal then finds none of its own and is dropped,
//! which is right, as its return came (or the newer removal could not have happened).
//! A marker also holds when its removal was reported, and a return takes only a marker from
//! no later than itself; in a cluster a return that found none looks once more after a short
//! settle, for a marker another node's dispatcher was about to write (`Dispatch::fate`).
//!
//! So a leave on node A and a return on node B within the delay send nothing, and whatever
//! the race, the last event a receiver gets for a channel (or member) matches the state.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::event::{Hook, Record};

/// How a record takes part in the delay.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Waits, behind a marker of this name.
    Removal(String),
    /// Cancels the pending removal of this name, if there is one.
    Return(String),
    Neither,
}

/// The marker's name (app, channel and user; the parts cannot contain a newline).
pub(crate) fn role(r: &Record) -> Role {
    let channel = |app, channel| format!("{app}\n{channel}");
    let member = |app, channel, user| format!("{app}\n{channel}\n{user}");
    match &r.hook {
        Hook::Vacated => Role::Removal(channel(&r.app, &r.channel)),
        Hook::Occupied => Role::Return(channel(&r.app, &r.channel)),
        Hook::MemberRemoved(u) => Role::Removal(member(&r.app, &r.channel, u.as_str())),
        Hook::MemberAdded(u) => Role::Return(member(&r.app, &r.channel, u.as_str())),
        _ => Role::Neither,
    }
}

/// Where pending removals are marked: shared by every node that sends webhooks for an app.
///
/// The dispatcher calls [`Markers::run`] once per intake of records (and per batch of due
/// removals or returns to look at again): a store that can do many in one round trip (Redis:
/// one script per app) does.
#[async_trait]
pub(crate) trait Markers: Send + Sync + 'static {
    /// Marks the removal holding `token`, reported at `at_us` (Unix µs), as pending for at
    /// most `ttl`, in place of any earlier marker of that name.
    async fn mark(&self, name: &str, token: u64, at_us: u64, ttl: Duration);
    /// A return reported at `at_us` removes the marker of a removal reported no later,
    /// whoever left it: whether this call removed one (there, unexpired), or `None` when the
    /// store could not say. A later removal's marker is not its business.
    async fn claim(&self, name: &str, at_us: u64) -> Option<bool>;
    /// A removal removes the marker only if it is still its own (`token`): whether it was.
    async fn claim_own(&self, name: &str, token: u64) -> Option<bool>;

    /// Carries out `ops` as if one after the other (`ttl` for the marks): what each returned,
    /// `Some(true)` for a mark. The default runs the ops of one name in order, and different
    /// names at once.
    async fn run(&self, ops: &[(String, Op)], ttl: Duration) -> Vec<Option<bool>> {
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, (name, _)) in ops.iter().enumerate() {
            by_name.entry(name).or_default().push(i);
        }
        let runs = by_name.into_values().map(|indices| async move {
            let mut done = Vec::with_capacity(indices.len());
            for i in indices {
                let (name, op) = &ops[i];
                let result = match *op {
                    Op::Mark { token, at_us } => {
                        self.mark(name, token, at_us, ttl).await;
                        Some(true)
                    }
                    Op::Claim { at_us } => self.claim(name, at_us).await,
                    Op::ClaimOwn { token } => self.claim_own(name, token).await,
                };
                done.push((i, result));
            }
            done
        });
        let mut results = vec![None; ops.len()];
        for (i, result) in join_all(runs).await.into_iter().flatten() {
            results[i] = result;
        }
        results
    }
}

/// One operation on a marker, for [`Markers::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// [`Markers::mark`].
    Mark { token: u64, at_us: u64 },
    /// [`Markers::claim`].
    Claim { at_us: u64 },
    /// [`Markers::claim_own`].
    ClaimOwn { token: u64 },
}

/// The markers of a single node.
#[derive(Default)]
pub(crate) struct MemoryMarkers(Mutex<HashMap<String, Marker>>);

/// A pending removal: until when it counts, its token, when it was reported.
#[derive(Clone, Copy)]
struct Marker {
    until: Instant,
    token: u64,
    at_us: u64,
}

#[async_trait]
impl Markers for MemoryMarkers {
    async fn mark(&self, name: &str, token: u64, at_us: u64, ttl: Duration) {
        let now = Instant::now();
        let mut markers = self.0.lock();
        // Expired markers would otherwise stay for good when nothing claims them.
        if markers.len() > 1024 && markers.len().is_power_of_two() {
            markers.retain(|_, m| m.until > now);
        }
        let marker = Marker {
            until: now + ttl,
            token,
            at_us,
        };
        markers.insert(name.to_owned(), marker);
    }

    async fn claim(&self, name: &str, at_us: u64) -> Option<bool> {
        self.take_if(name, |m| m.at_us <= at_us)
    }

    async fn claim_own(&self, name: &str, token: u64) -> Option<bool> {
        self.take_if(name, |m| m.token == token)
    }
}

impl MemoryMarkers {
    /// Removes the marker if `which` says so: whether it was there, unexpired.
    fn take_if(&self, name: &str, which: impl Fn(&Marker) -> bool) -> Option<bool> {
        let mut markers = self.0.lock();
        match markers.get(name) {
            Some(m) if which(m) => {
                let until = m.until;
                markers.remove(name);
                Some(until > Instant::now())
            }
            _ => Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{AppId, ChannelName, UserId};

    #[tokio::test]
    async fn the_first_claim_wins_and_expired_markers_do_not_count() {
        let m = MemoryMarkers::default();
        assert_eq!(m.claim("a", 10).await, Some(false));
        m.mark("a", 1, 10, Duration::from_secs(60)).await;
        assert_eq!(m.claim("a", 10).await, Some(true));
        assert_eq!(m.claim("a", 10).await, Some(false));
        m.mark("b", 2, 10, Duration::ZERO).await;
        assert_eq!(m.claim("b", 10).await, Some(false));
    }

    #[tokio::test]
    async fn a_return_cancels_only_a_removal_from_before_it() {
        let m = MemoryMarkers::default();
        m.mark("a", 1, 20, Duration::from_secs(60)).await;
        assert_eq!(
            m.claim("a", 19).await,
            Some(false),
            "the removal came after"
        );
        assert_eq!(m.claim("a", 20).await, Some(true));
    }

    #[tokio::test]
    async fn a_removal_takes_only_its_own_marker() {
        let m = MemoryMarkers::default();
        let ttl = Duration::from_secs(60);
        m.mark("a", 1, 0, ttl).await;
        assert_eq!(m.claim("a", 0).await, Some(true), "the return of removal 1");
        m.mark("a", 2, 0, ttl).await;
        assert_eq!(
            m.claim_own("a", 1).await,
            Some(false),
            "removal 1 finds 2's marker"
        );
        assert_eq!(m.claim_own("a", 2).await, Some(true));
        assert_eq!(m.claim_own("a", 2).await, Some(false), "once");
        m.mark("a", 3, 0, ttl).await;
        m.mark("a", 4, 0, ttl).await;
        assert_eq!(
            m.claim_own("a", 3).await,
            Some(false),
            "replaced by a newer one"
        );
        assert_eq!(m.claim("a", 0).await, Some(true));
    }

    #[tokio::test]
    async fn a_batch_runs_in_order_for_each_name() {
        let m = MemoryMarkers::default();
        let op = |name: &str, op| (name.to_owned(), op);
        let ops = [
            op("a", Op::Mark { token: 1, at_us: 5 }),
            op("b", Op::Claim { at_us: 5 }),
            op("a", Op::Claim { at_us: 4 }),
            op("a", Op::Claim { at_us: 5 }),
            op("a", Op::Mark { token: 2, at_us: 6 }),
            op("a", Op::ClaimOwn { token: 1 }),
        ];
        let results = m.run(&ops, Duration::from_secs(60)).await;
        let expected = [true, false, false, true, true, false].map(Some);
        assert_eq!(results, expected, "each op saw the ones before it");
        assert_eq!(m.claim_own("a", 2).await, Some(true), "the last mark stays");
    }

    #[test]
    fn removals_and_returns_share_a_marker() {
        let r = |hook| Record {
            app: AppId::parse("1").unwrap(),
            channel: ChannelName::parse("presence-c", 200).unwrap(),
            hook,
            at_us: 0,
        };
        let u = || UserId::parse("u", 10).unwrap();
        let name = |role| match role {
            Role::Removal(n) | Role::Return(n) => n,
            Role::Neither => panic!("no marker"),
        };
        assert_eq!(
            name(role(&r(Hook::Vacated))),
            name(role(&r(Hook::Occupied)))
        );
        let member = name(role(&r(Hook::MemberRemoved(u()))));
        assert_eq!(member, name(role(&r(Hook::MemberAdded(u())))));
        assert_ne!(member, name(role(&r(Hook::Vacated))));
        assert!(matches!(role(&r(Hook::Vacated)), Role::Removal(_)));
        assert!(matches!(role(&r(Hook::MemberAdded(u()))), Role::Return(_)));
        assert_eq!(role(&r(Hook::CacheMiss)), Role::Neither);
    }
}
