//! Signed-in users in the `us` bucket: one entry per online user, holding each instance's
//! signed-in connections of that user. As for channels, a node writes its whole
//! contribution from its mirror ([`sync_user`]); going online (no entry before, one after)
//! and offline are found in one compare-and-set write, so exactly once cluster-wide.
//!
//! INVARIANT(user-status-versioned): the version of a transition is the revision its write
//! made (see `kv::Modified::version`), larger for every later change of the user; the one
//! `online` reads is the entry's revision (or its delete marker's), no older than the last
//! transition and older than the next.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warren_protocol::user::UserChannel;
use warren_protocol::{AppId, SocketId, UserId};

use super::keys::Keys;
use super::kv::{Modified, Value};
use super::{Inner, Instance};
use crate::cluster::{BackendError, ChannelEvent, ChannelMessage, UserNotice, UserStatus};

/// One online user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserEntry {
    /// Instance -> the user's signed-in connections there.
    #[serde(default, rename = "r")]
    pub refs: BTreeMap<String, u64>,
}

impl Value for UserEntry {
    fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

/// Signs `socket` in (`signing_in`) or out; the version of the user's going online or
/// offline when it did, announced to the other nodes.
pub(super) async fn sign(
    inner: &Inner,
    app: &AppId,
    socket: SocketId,
    user: &UserId,
    signing_in: bool,
) -> Result<Option<u64>, BackendError> {
    let _local = inner.stripe(&["#user", app.as_str(), user.as_str()]).await;
    let instance = inner.instance.read().await.clone();
    {
        let mut signed = inner.signed_in.lock();
        let key = (app.clone(), user.clone());
        if signing_in {
            signed.entry(key).or_default().insert(socket);
        } else if let Some(sockets) = signed.get_mut(&key) {
            sockets.remove(&socket);
            if sockets.is_empty() {
                signed.remove(&key);
            }
        }
    }
    let written = sync_user(inner, &instance, app, user, false).await;
    let written = inner.note_failure(written)?;
    Ok(announce_status(inner, app, user, &written).await)
}

/// Writes this node's signed-in connections of `user` under `instance`; with `takeover` (a
/// re-registration), drops what earlier instances of this node recorded.
pub(super) async fn sync_user(
    inner: &Inner,
    instance: &Instance,
    app: &AppId,
    user: &UserId,
    takeover: bool,
) -> Result<Modified<UserEntry, ()>, BackendError> {
    let local = inner
        .signed_in
        .lock()
        .get(&(app.clone(), user.clone()))
        .map_or(0, |s| s.len() as u64);
    let key = Keys::app_item(app, user.as_str());
    let ledger_key = format!("u.{key}");
    if local > 0 {
        inner.ledger_write(instance, &ledger_key).await?;
    }
    let written = inner
        .buckets
        .users
        .modify(&key, |entry: &mut UserEntry| {
            entry.refs.retain(|i, _| {
                *i != instance.id && !(takeover && inner.earlier_instance(i, &instance.id))
            });
            if local > 0 {
                entry.refs.insert(instance.id.clone(), local);
            }
            Ok::<_, BackendError>(())
        })
        .await?;
    if local == 0 {
        inner.ledger_forget(instance, &ledger_key).await;
    }
    Ok(written)
}

/// The user's going online or offline that `written` made, if it did: told to the other
/// nodes; its version returned.
pub(super) async fn announce_status(
    inner: &Inner,
    app: &AppId,
    user: &UserId,
    written: &Modified<UserEntry, ()>,
) -> Option<u64> {
    let status = status_change(written)?;
    let Ok(channel) = UserChannel::new(user.clone()) else {
        return Some(status.version);
    };
    let event = ChannelEvent {
        app: app.clone(),
        channel: channel.channel().clone(),
        except: None,
        message: ChannelMessage::User(UserNotice::Status(status)),
    };
    if let Err(e) = inner.notify_others(&event).await {
        tracing::warn!(error = %e, "user status notice not sent");
    }
    Some(status.version)
}

/// Online or offline, when the write changed which.
pub(super) fn status_change(written: &Modified<UserEntry, ()>) -> Option<UserStatus> {
    let (was, is) = (!written.before.is_empty(), !written.after.is_empty());
    (was != is).then_some(UserStatus {
        online: is,
        version: written.version,
    })
}

/// Delivers a user's going online or offline found by cleanup or re-registration to this
/// node's watchers.
pub(super) fn deliver_status(inner: &Inner, app: &AppId, user: UserId, status: UserStatus) {
    let Ok(channel) = UserChannel::new(user) else {
        return;
    };
    inner.sink.deliver(&ChannelEvent {
        app: app.clone(),
        channel: channel.channel().clone(),
        except: None,
        message: ChannelMessage::User(UserNotice::Status(status)),
    });
}

pub(super) async fn online(
    inner: &Inner,
    app: &AppId,
    users: &[UserId],
) -> Result<Vec<UserStatus>, BackendError> {
    let reads = users.iter().map(|user| async move {
        let key = Keys::app_item(app, user.as_str());
        let (entry, revision) = inner.buckets.users.read::<UserEntry>(&key).await?;
        Ok::<_, BackendError>(UserStatus {
            online: entry.is_some_and(|e| !e.is_empty()),
            version: revision,
        })
    });
    futures_util::future::join_all(reads)
        .await
        .into_iter()
        .collect()
}
