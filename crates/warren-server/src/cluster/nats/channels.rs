//! Channels and presence in the `ch` bucket: one entry per occupied channel, holding each
//! instance's subscription count and each member's connections per instance.
//!
//! A node writes its whole contribution to a channel at once, from its mirror of its local
//! state ([`Inner::sync_channel`]): its current instance gets the mirror's counts. Writing is
//! idempotent (a leave repeated changes nothing) and heals what a failed write left behind; a
//! re-registration's write also drops what earlier instances of the same node recorded, so
//! the contribution moves to the new instance in one step.
//!
//! INVARIANT(transition-once): every transition (occupied, vacated, member added, member
//! removed) is found by comparing the entry before and after one compare-and-set write
//! (INVARIANT(cas-once)), so exactly one writer cluster-wide reports it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warren_protocol::presence::PresenceMember;
use warren_protocol::{AppId, ChannelName, SocketId};

use super::kv::{Modified, Value};
use super::{keys::Keys, user_id, Inner, Instance};
use crate::cluster::{BackendError, ChannelEvent, ChannelMessage, JoinError, Reaped};

/// One channel, cluster-wide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelEntry {
    /// Instance -> its subscriptions to the channel.
    #[serde(default, rename = "s", skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, u64>,
    /// User id -> the member.
    #[serde(default, rename = "m", skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, Member>,
}

/// One presence member, cluster-wide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The `user_info` JSON of the connection that made the user a member.
    #[serde(default, rename = "i", skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// Instance -> the user's connections to the channel there.
    #[serde(default, rename = "r")]
    pub refs: BTreeMap<String, u64>,
}

impl Value for ChannelEntry {
    fn is_empty(&self) -> bool {
        self.subscriptions.is_empty() && self.members.is_empty()
    }
}

impl ChannelEntry {
    pub fn count(&self) -> u64 {
        self.subscriptions.values().sum()
    }

    pub fn presence_members(&self) -> Vec<PresenceMember> {
        self.members
            .iter()
            .filter_map(|(id, m)| {
                Some(PresenceMember {
                    user_id: user_id(id)?,
                    user_info: m.info.as_deref().map(Arc::from),
                })
            })
            .collect()
    }

    /// Sets `instance`'s contribution to what `local` holds, and drops every instance that
    /// `drop` names (earlier instances of this node, or a dead instance being cleaned up).
    pub fn set_contribution(
        &mut self,
        instance: &str,
        local: &LocalCounts,
        drop: impl Fn(&str) -> bool,
    ) {
        self.subscriptions
            .retain(|i, _| i.as_str() != instance && !drop(i));
        if local.subscriptions > 0 && !instance.is_empty() {
            self.subscriptions
                .insert(instance.to_owned(), local.subscriptions);
        }
        for member in self.members.values_mut() {
            member
                .refs
                .retain(|i, _| i.as_str() != instance && !drop(i));
        }
        for (user, (refs, info)) in &local.members {
            let member = self.members.entry(user.clone()).or_insert_with(|| Member {
                info: info.clone(),
                refs: BTreeMap::new(),
            });
            member.refs.insert(instance.to_owned(), *refs);
        }
        self.members.retain(|_, m| !m.refs.is_empty());
    }
}

/// What one node holds in a channel.
#[derive(Debug, Default)]
pub struct LocalCounts {
    pub subscriptions: u64,
    /// User id -> (connections, user_info of one of them).
    pub members: BTreeMap<String, (u64, Option<String>)>,
}

impl LocalCounts {
    pub fn of(sockets: Option<&super::LocalChannel>) -> Self {
        let mut counts = LocalCounts::default();
        for member in sockets.into_iter().flat_map(|s| s.values()) {
            counts.subscriptions += 1;
            if let Some(m) = member {
                let entry = counts
                    .members
                    .entry(m.user_id.to_string())
                    .or_insert((0, m.user_info.as_deref().map(str::to_owned)));
                entry.0 += 1;
            }
        }
        counts
    }
}

/// What one write did to a channel.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub occupied: bool,
    pub vacated: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

pub fn transitions(before: &ChannelEntry, after: &ChannelEntry) -> Transitions {
    Transitions {
        occupied: before.count() == 0 && after.count() > 0,
        vacated: before.count() > 0 && after.count() == 0,
        added: (after.members.keys())
            .filter(|u| !before.members.contains_key(*u))
            .cloned()
            .collect(),
        removed: (before.members.keys())
            .filter(|u| !after.members.contains_key(*u))
            .cloned()
            .collect(),
    }
}

/// A change of this node's sockets in a channel, applied to the mirror before the write.
pub enum Local<'a> {
    Join(SocketId, Option<&'a PresenceMember>),
    Leave(SocketId),
    /// Nothing changes locally: the contribution is written again (re-registration).
    Again,
}

impl Inner {
    /// Whether `instance` is an instance of this node other than `current`.
    pub(super) fn earlier_instance(&self, instance: &str, current: &str) -> bool {
        instance != current
            && instance
                .strip_prefix(self.options.node_id.as_str())
                .is_some_and(|rest| rest.starts_with('~'))
    }

    /// Applies `local` to the mirror and writes this node's contribution to the channel.
    /// A join that would make a new member beyond `max_members` is refused and undone.
    pub(super) async fn sync_channel(
        &self,
        instance: &Instance,
        app: &AppId,
        channel: &ChannelName,
        local: Local<'_>,
        max_members: usize,
    ) -> Result<Modified<ChannelEntry, ()>, JoinError> {
        let key = Keys::app_item(app, channel.as_str());
        let mirror_key = (app.clone(), channel.clone());
        let joining = match &local {
            Local::Join(socket, member) => {
                let mut mirror = self.mirror.lock();
                let sockets = mirror.entry(mirror_key.clone()).or_default();
                if sockets.contains_key(socket) {
                    None
                } else {
                    sockets.insert(*socket, member.cloned());
                    Some((*socket, member.map(|m| m.user_id.to_string())))
                }
            }
            Local::Leave(socket) => {
                let mut mirror = self.mirror.lock();
                if let Some(sockets) = mirror.get_mut(&mirror_key) {
                    sockets.remove(socket);
                    if sockets.is_empty() {
                        mirror.remove(&mirror_key);
                    }
                }
                None
            }
            Local::Again => None,
        };
        let counts = LocalCounts::of(self.mirror.lock().get(&mirror_key));
        let ledger_key = format!("c.{key}");
        if counts.subscriptions > 0 {
            self.ledger_write(instance, &ledger_key).await?;
        }
        let joining_user = joining.as_ref().and_then(|(_, u)| u.clone());
        let takeover = matches!(local, Local::Again);
        let written = self
            .buckets
            .channels
            .modify(&key, |entry: &mut ChannelEntry| {
                if let Some(user) = &joining_user {
                    if !entry.members.contains_key(user) && entry.members.len() >= max_members {
                        return Err(JoinError::MemberLimit { max: max_members });
                    }
                }
                // Only a re-registration takes over what earlier instances of this node
                // recorded; otherwise their cleanup removes (and announces) it.
                entry.set_contribution(&instance.id, &counts, |i| {
                    takeover && self.earlier_instance(i, &instance.id)
                });
                Ok(())
            })
            .await;
        if written.is_err() {
            if let Some((socket, _)) = joining {
                let mut mirror = self.mirror.lock();
                if let Some(sockets) = mirror.get_mut(&mirror_key) {
                    sockets.remove(&socket);
                    if sockets.is_empty() {
                        mirror.remove(&mirror_key);
                    }
                }
            }
        }
        let written = match written {
            Err(JoinError::Backend(e)) => return Err(self.note_failure(Err(e))?),
            other => other?,
        };
        if counts.subscriptions == 0 {
            self.ledger_forget(instance, &ledger_key).await;
        }
        Ok(written)
    }

    /// Records in the instance's ledger that it holds `key` (once per instance).
    pub(super) async fn ledger_write(
        &self,
        instance: &Instance,
        key: &str,
    ) -> Result<(), BackendError> {
        if instance.written.lock().contains(key) {
            return Ok(());
        }
        instance.ledger.put(key, bytes::Bytes::new()).await?;
        instance.written.lock().insert(key.to_owned());
        Ok(())
    }

    /// Forgets a ledger key the instance no longer holds anything under (best effort: a
    /// key left behind only makes the cleanup look at an entry with nothing of ours).
    pub(super) async fn ledger_forget(&self, instance: &Instance, key: &str) {
        if instance.written.lock().remove(key) {
            instance.ledger.remove(key).await;
        }
    }

    /// Tells the other nodes and this one's subscribers of every member change `written`
    /// made, but `skip`'s (the caller's own, which the node delivers itself): changes a
    /// write found to make besides the caller's, such as the members of an earlier instance
    /// of this node that it dropped. With `reaped`, removals are reported to the sink as
    /// cleanup (for webhooks). Returns how many members were removed.
    pub(super) async fn announce_changes(
        &self,
        app: &AppId,
        channel: &ChannelName,
        written: &Modified<ChannelEntry, ()>,
        skip: Option<&str>,
        reaped: bool,
    ) -> usize {
        let t = transitions(&written.before, &written.after);
        for user in t.added.iter().filter(|u| Some(u.as_str()) != skip) {
            let (Some(user_id), Some(member)) = (user_id(user), written.after.members.get(user))
            else {
                continue;
            };
            let except = self
                .mirror
                .lock()
                .get(&(app.clone(), channel.clone()))
                .and_then(|s| {
                    s.iter()
                        .find(|(_, m)| m.as_ref().is_some_and(|m| m.user_id == user_id))
                        .map(|(socket, _)| *socket)
                });
            let added = ChannelMessage::MemberAdded(PresenceMember {
                user_id,
                user_info: member.info.as_deref().map(Arc::from),
            });
            let event = ChannelEvent::new(app, channel, except, added);
            self.announce(event.clone(), written.version).await;
            self.sink.deliver_announcement(&event, written.version);
        }
        let mut removed = 0;
        for user in t.removed.iter().filter(|u| Some(u.as_str()) != skip) {
            let Some(user_id) = user_id(user) else {
                continue;
            };
            if reaped {
                let gone = Reaped::MemberRemoved(user_id.clone());
                self.sink.reaped(app, channel, gone);
            }
            let event = ChannelEvent::new(
                app,
                channel,
                None,
                ChannelMessage::MemberRemoved { user_id },
            );
            self.announce(event.clone(), written.version).await;
            self.sink.deliver_announcement(&event, written.version);
            removed += 1;
        }
        if reaped && t.vacated {
            self.sink.reaped(app, channel, Reaped::Vacated);
        }
        removed
    }

    /// The channel's entry now, with its revision.
    pub(super) async fn channel_entry(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<(ChannelEntry, u64), BackendError> {
        let key = Keys::app_item(app, channel.as_str());
        let (entry, revision) = self.buckets.channels.read::<ChannelEntry>(&key).await?;
        Ok((entry.unwrap_or_default(), revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(subscriptions: u64, members: &[(&str, u64)]) -> LocalCounts {
        LocalCounts {
            subscriptions,
            members: members
                .iter()
                .map(|(u, n)| (u.to_string(), (*n, None)))
                .collect(),
        }
    }

    #[test]
    fn contributions_add_up_and_transitions_are_found_once() {
        let mut entry = ChannelEntry::default();
        let before = entry.clone();
        entry.set_contribution("a~1", &local(2, &[("u", 2)]), |_| false);
        let t = transitions(&before, &entry);
        assert!(t.occupied && t.added == ["u"]);
        let before = entry.clone();
        entry.set_contribution("b~1", &local(1, &[("u", 1)]), |_| false);
        assert_eq!(transitions(&before, &entry), Transitions::default());
        assert_eq!(entry.count(), 3);
        let before = entry.clone();
        entry.set_contribution("a~1", &local(0, &[]), |_| false);
        assert_eq!(transitions(&before, &entry), Transitions::default());
        let before = entry.clone();
        entry.set_contribution("b~1", &local(0, &[]), |_| false);
        let t = transitions(&before, &entry);
        assert!(t.vacated && t.removed == ["u"]);
        assert!(Value::is_empty(&entry));
    }

    #[test]
    fn a_new_instance_takes_over_the_earlier_ones() {
        let mut entry = ChannelEntry::default();
        entry.set_contribution("a~1", &local(1, &[("u", 1)]), |_| false);
        entry.set_contribution("b~1", &local(1, &[]), |_| false);
        let before = entry.clone();
        entry.set_contribution("a~2", &local(1, &[("u", 1)]), |i| i.starts_with("a~"));
        assert_eq!(transitions(&before, &entry), Transitions::default());
        assert_eq!(
            entry.subscriptions.keys().collect::<Vec<_>>(),
            ["a~2", "b~1"]
        );
        // A cleanup of b~1 drops only b~1.
        let mut cleaned = entry.clone();
        cleaned.set_contribution("", &LocalCounts::default(), |i| i == "b~1");
        assert_eq!(cleaned.count(), 1);
    }
}
