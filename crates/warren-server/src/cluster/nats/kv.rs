//! The JetStream key-value primitives the NATS backend builds on: reading an entry with its
//! revision, changing it by compare-and-set, and scanning the latest values under a key prefix.
//!
//! INVARIANT(cas-once): [`Bucket::modify`] writes only with the revision it read (`update`
//! with the expected last revision, or a delete expecting it). JetStream accepts exactly one
//! writer per revision, so a change computed from a value is applied on top of exactly that
//! value, and the before and after it reports are the cluster's: a transition found by
//! comparing them (occupied, member added, ...) happens for exactly one caller.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::stream::{self, DiscardPolicy};
use async_nats::jetstream::Context;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::COMMAND_TIMEOUT;
use crate::cluster::BackendError;

/// Conflicting writers a change survives before it gives up with an error (the API answers
/// 503): with backoff between tries, reached only by a key hammered from many nodes at once.
const MAX_CONFLICTS: u32 = 40;
/// Entries a scan reads at once.
const SCAN_IN_FLIGHT: usize = 32;
/// The longest pause between two tries of a conflicting change.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// A value kept in a bucket: JSON, and gone from the bucket when empty.
pub trait Value: Serialize + DeserializeOwned + Default + Clone + PartialEq + Send {
    /// Nothing left to keep: the key is deleted instead of written.
    fn is_empty(&self) -> bool;
}

/// A change applied by [`Bucket::modify`].
#[derive(Debug)]
pub struct Modified<T, R> {
    pub before: T,
    pub after: T,
    /// Orders the changes of this key: the revision written, or for a delete one above the
    /// revision deleted (the delete marker's own revision is at least that, and any later
    /// write's is above it). The current revision when nothing changed.
    pub version: u64,
    /// What the change function returned.
    pub out: R,
}

/// One bucket.
#[derive(Clone)]
pub struct Bucket {
    store: Store,
    name: String,
}

/// Opens a bucket, creating it when missing. `max_age`: how long entries live (zero: ever).
pub async fn open(js: &Context, name: &str, max_age: Duration) -> Result<Bucket, BackendError> {
    let timed = |what: &str| BackendError(format!("opening bucket {name}: {what}"));
    let found = tokio::time::timeout(COMMAND_TIMEOUT, js.get_key_value(name))
        .await
        .map_err(|_| timed("timed out"))?;
    let store = match found {
        Ok(store) => store,
        Err(_) => {
            // The stream a bucket is, made here rather than by `create_key_value`, which first
            // reads account details that NATS 2.9 answers in a form this client rejects.
            let config = stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            };
            let created = tokio::time::timeout(COMMAND_TIMEOUT, js.create_stream(config))
                .await
                .map_err(|_| timed("timed out"))?;
            if let Err(create) = created {
                // Another node may have created it meanwhile.
                tracing::debug!(bucket = name, error = %create, "bucket not created");
            }
            tokio::time::timeout(COMMAND_TIMEOUT, js.get_key_value(name))
                .await
                .map_err(|_| timed("timed out"))?
                .map_err(|e| timed(&e.to_string()))?
        }
    };
    Ok(Bucket {
        store,
        name: name.to_owned(),
    })
}

fn timeout<T>(r: Result<T, tokio::time::error::Elapsed>, what: &str) -> Result<T, BackendError> {
    r.map_err(|_| BackendError(format!("NATS {what} timed out")))
}

impl Bucket {
    /// The key's value and its revision; `None` (with the revision of the delete, or 0) when
    /// there is none.
    pub async fn read<T: Value>(&self, key: &str) -> Result<(Option<T>, u64), BackendError> {
        let entry = timeout(
            tokio::time::timeout(COMMAND_TIMEOUT, self.store.entry(key)).await,
            "read",
        )?
        .map_err(|e| BackendError(format!("NATS read of {key}: {e}")))?;
        match entry {
            Some(e) if e.operation == Operation::Put => {
                let value = serde_json::from_slice(&e.value).map_err(|e| {
                    BackendError(format!("bucket {} holds a malformed {key}: {e}", self.name))
                })?;
                Ok((Some(value), e.revision))
            }
            Some(e) => Ok((None, e.revision)),
            None => Ok((None, 0)),
        }
    }

    /// Writes `value` over revision `revision` (0: the key has none); the new revision, or
    /// `None` when another writer came first.
    pub async fn write_over(
        &self,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Option<u64>, BackendError> {
        let written = timeout(
            tokio::time::timeout(COMMAND_TIMEOUT, self.store.update(key, value, revision)).await,
            "write",
        )?;
        match written {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(BackendError(format!("NATS write of {key}: {e}"))),
        }
    }

    /// Deletes the key if it is still at `revision`; false when another writer came first.
    pub async fn delete_at(&self, key: &str, revision: u64) -> Result<bool, BackendError> {
        let deleted = timeout(
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                self.store.delete_expect_revision(key, Some(revision)),
            )
            .await,
            "delete",
        )?;
        match deleted {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(BackendError(format!("NATS delete of {key}: {e}"))),
        }
    }

    /// Deletes the key whatever its revision (best effort: for keys only one writer has).
    pub async fn remove(&self, key: &str) {
        let deleted = tokio::time::timeout(COMMAND_TIMEOUT, self.store.delete(key)).await;
        if !matches!(deleted, Ok(Ok(()))) {
            tracing::debug!(bucket = %self.name, key, "delete failed");
        }
    }

    /// Writes the key whatever its revision (for keys only one writer has).
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64, BackendError> {
        timeout(
            tokio::time::timeout(COMMAND_TIMEOUT, self.store.put(key, value)).await,
            "put",
        )?
        .map_err(|e| BackendError(format!("NATS put of {key}: {e}")))
    }

    /// Applies `change` to the key's value by compare-and-set, trying again (after a pause)
    /// when another writer came first. `change` may run several times, each on a fresh read;
    /// when it fails nothing is written. An empty result deletes the key.
    pub async fn modify<T, R, E>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut T) -> Result<R, E>,
    ) -> Result<Modified<T, R>, E>
    where
        T: Value,
        E: From<BackendError>,
    {
        for attempt in 0..MAX_CONFLICTS {
            let (before, revision) = self.read::<T>(key).await?;
            let existed = before.is_some();
            let before = before.unwrap_or_default();
            let mut after = before.clone();
            let out = change(&mut after)?;
            if after == before {
                return Ok(Modified {
                    before,
                    after,
                    version: revision,
                    out,
                });
            }
            let version = if after.is_empty() {
                if !existed || self.delete_at(key, revision).await? {
                    Some(revision + 1)
                } else {
                    None
                }
            } else {
                let bytes = serde_json::to_vec(&after)
                    .map_err(|e| BackendError(format!("encoding {key}: {e}")))?;
                self.write_over(key, bytes.into(), revision).await?
            };
            if let Some(version) = version {
                return Ok(Modified {
                    before,
                    after,
                    version,
                    out,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(BackendError(format!(
            "gave up changing {key} in bucket {} after {MAX_CONFLICTS} conflicting writes",
            self.name
        ))
        .into())
    }

    /// The latest value of every key starting with `prefix` (empty, or ending with `.`), as
    /// raw bytes; deleted keys are left out.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<(String, Bytes)>, BackendError> {
        let found = self.scan_revisions(prefix).await?;
        Ok(found.into_iter().map(|(k, _, v)| (k, v)).collect())
    }

    /// As [`Bucket::scan`], with each key's revision. The keys come from the stream's
    /// subject list (one request per page), then each key's last entry (a direct get each,
    /// some at once): plain requests, no consumer whose first messages could go missing.
    pub async fn scan_revisions(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, u64, Bytes)>, BackendError> {
        let failed =
            |e: &dyn std::fmt::Display| BackendError(format!("NATS scan of {}: {e}", self.name));
        let filter = format!("{}{prefix}>", self.store.prefix);
        let listed = tokio::time::timeout(COMMAND_TIMEOUT * 2, async {
            let subjects = self.store.stream.info_with_subjects(filter).await?;
            subjects
                .map(|s| s.map(|(subject, _)| subject))
                .try_collect::<Vec<_>>()
                .await
        })
        .await
        .map_err(|_| failed(&"timed out"))?
        .map_err(|e| failed(&e))?;
        let mut keys = Vec::with_capacity(listed.len());
        for subject in &listed {
            if let Some(key) = subject.strip_prefix(self.store.prefix.as_str()) {
                keys.push(key.to_owned());
            }
        }
        let mut reads = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(SCAN_IN_FLIGHT) {
            let entries = futures_util::future::join_all(chunk.iter().map(|k| self.last(k))).await;
            for entry in entries {
                reads.push(entry?);
            }
        }
        Ok(reads.into_iter().flatten().collect())
    }

    /// A key's last value with its revision; `None` when deleted.
    async fn last(&self, key: &str) -> Result<Option<(String, u64, Bytes)>, BackendError> {
        let entry = timeout(
            tokio::time::timeout(COMMAND_TIMEOUT, self.store.entry(key)).await,
            "read",
        )?
        .map_err(|e| BackendError(format!("NATS read of {key}: {e}")))?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| (key.to_owned(), e.revision, e.value)))
    }
}

/// A random pause growing with the attempt, so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_micros(500u64 << attempt.min(7)).min(MAX_BACKOFF);
    cap.mul_f64(rand::random::<f64>())
}
