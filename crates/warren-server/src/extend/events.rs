//! Custom client events: a handler per event name (`my-app:ping`), for names outside the
//! Pusher protocol that a client sends over its WebSocket.

use async_trait::async_trait;

use super::context::ConnectionContext;

/// A custom event as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEvent {
    pub event: String,
    /// The `channel` field, if the client gave one (it need not be subscribed to it).
    pub channel: Option<String>,
    /// A JSON string's value, or the JSON text of any other `data` (`null` when absent).
    pub data: String,
}

/// Handles the custom events of one name. It may answer the socket, publish to channels or
/// close the connection through the context. Custom events count against the app's client
/// event rate (`client_event_rate_per_sec`); one over it is refused before the handler runs.
#[async_trait]
pub trait ClientEventHandler: Send + Sync + 'static {
    async fn on_event(&self, event: CustomEvent, cx: &ConnectionContext<'_>);
}

/// Whether `name` may have a handler: not a Pusher name, not a `client-` event (those are
/// relayed to the channel by the protocol), and something a client can send.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err(format!("custom event name {name:?} must be 1 to 200 bytes"));
    }
    for reserved in ["pusher:", "pusher_internal:", "client-"] {
        if name.starts_with(reserved) {
            return Err(format!(
                "custom event name {name:?} is reserved: {reserved}* names belong to the protocol"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_cannot_be_taken() {
        assert!(check_name("my-app:ping").is_ok());
        for bad in ["", "pusher:ping", "pusher_internal:x", "client-typing"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name(&"x".repeat(201)).is_err());
    }
}
