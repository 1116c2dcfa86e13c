//! Redis Cluster only: a slot that moves to another master (resharding, a failover) takes the
//! sharded pub/sub subscriptions of its channels with it. Redis ends them with an unasked-for
//! `SUNSUBSCRIBE`, which the client library drops, and the subscriber's connection stays up:
//! without this watcher the node would stay deaf on those channels while its clients believe
//! they are subscribed.
//!
//! The watcher reads the slot map (`CLUSTER SLOTS`: which master serves which slots) once per
//! tick, always from the master of the registry's slot, and treats any change as possible
//! event loss: the node listens to every channel again with confirmation and closes its
//! subscribed connections with 4200. (The configuration epoch is no such signal: a second
//! slot moved to the master that took the last one does not raise it.)
//!
//! INVARIANT(slot-move-resyncs): once the slot map differs from the one the node saw last,
//! events may have been lost, and the node resyncs before trusting any of its sharded
//! subscriptions again. A change that moved no channel of this node costs its clients a
//! reconnect, never a silent loss.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::{backend, Inner};
use crate::cluster::BackendError;

/// Reads the slot map every tick while the node runs; a no-op outside Redis Cluster.
pub(super) async fn watch(inner: Arc<Inner>) {
    if !inner.sharded {
        return;
    }
    let mut seen: Option<SlotMap> = None;
    let mut ticker = tokio::time::interval(super::registry::tick(&inner));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        if !inner.client().is_connected() {
            continue;
        }
        match slot_map(&inner).await {
            Ok(map) => {
                if seen.as_ref().is_some_and(|before| *before != map) {
                    tracing::warn!("the Redis Cluster's slots moved");
                    inner
                        .sink
                        .resync("slots of the Redis Cluster moved to other masters");
                }
                seen = Some(map);
            }
            Err(e) => tracing::debug!(error = %e, "cluster slot map check failed"),
        }
    }
}

/// Slot ranges and the id of the master serving each, in slot order.
type SlotMap = Vec<(i64, i64, String)>;

/// `CLUSTER SLOTS`, asked of the master of the registry's slot: the heartbeats keep the
/// client's route to it right, and asking one node avoids comparing two nodes' views.
async fn slot_map(inner: &Inner) -> Result<SlotMap, BackendError> {
    let slot = fred::util::redis_keyslot(inner.keys.nodes().as_bytes());
    let command = CustomCommand::new_static("CLUSTER", ClusterHash::Custom(slot), false);
    let reply: Value = tokio::time::timeout(
        super::COMMAND_TIMEOUT,
        inner.client().custom(command, vec![Value::from("SLOTS")]),
    )
    .await
    .map_err(|_| BackendError("CLUSTER SLOTS timed out".into()))?
    .map_err(backend)?;
    parse_slots(&reply).ok_or_else(|| BackendError("CLUSTER SLOTS: unexpected reply".into()))
}

fn parse_slots(reply: &Value) -> Option<SlotMap> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut map = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Integer(start)), Some(Value::Integer(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let id = match master.get(2) {
            Some(Value::String(s)) => s.to_string(),
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => return None,
        };
        map.push((*start, *end, id));
    }
    map.sort();
    Some(map)
}

#[cfg(test)]
mod tests {
    use fred::types::Value;

    use super::parse_slots;

    fn range(start: i64, end: i64, id: &str) -> Value {
        let master = Value::Array(vec!["127.0.0.1".into(), Value::Integer(7000), id.into()]);
        Value::Array(vec![Value::Integer(start), Value::Integer(end), master])
    }

    #[test]
    fn the_slot_map_is_read_in_slot_order() {
        let reply = Value::Array(vec![range(5461, 16383, "b"), range(0, 5460, "a")]);
        let map = parse_slots(&reply).expect("a map");
        assert_eq!(
            map,
            [(0, 5460, "a".to_owned()), (5461, 16383, "b".to_owned())]
        );
        assert_eq!(parse_slots(&Value::Array(vec![Value::Integer(1)])), None);
        assert_eq!(parse_slots(&Value::Null), None);
    }
}
