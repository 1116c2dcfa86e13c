//! The handlers events and errors are dispatched to.
//!
//! An event's data is decoded into a JSON value only when some binding matches it, so events
//! nobody listens to cost no parsing.

use warren_protocol::names::SERVER_TO_USER_PREFIX;

use super::command::{ErrorHandler, EventHandler, HandlerChange};
use super::event::Emit;
use super::WsError;

pub(crate) struct Binding {
    pub id: u64,
    pub channel: ChannelFilter,
    /// `None`: every event.
    pub event: Option<String>,
    pub handler: EventHandler,
}

/// Which channels a binding hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelFilter {
    /// Every channel, and events without one.
    Any,
    Named(String),
    /// The signed-in user's `#server-to-user-<id>` channel, whatever the id.
    User,
}

impl Binding {
    fn matches(&self, event: &str, channel: Option<&str>) -> bool {
        let event_ok = match self.event.as_deref() {
            Some(e) => e == event,
            None => true,
        };
        let channel_ok = match &self.channel {
            ChannelFilter::Any => true,
            ChannelFilter::Named(c) => Some(c.as_str()) == channel,
            ChannelFilter::User => channel.is_some_and(|c| c.starts_with(SERVER_TO_USER_PREFIX)),
        };
        event_ok && channel_ok
    }
}

#[derive(Default)]
pub(crate) struct Handlers {
    bindings: Vec<Binding>,
    errors: Vec<(u64, ErrorHandler)>,
}

impl Handlers {
    pub fn change(&mut self, change: HandlerChange) {
        match change {
            HandlerChange::Bind(b) => self.bindings.push(b),
            HandlerChange::OnError(id, h) => self.errors.push((id, h)),
            HandlerChange::Unbind(id) => {
                self.bindings.retain(|b| b.id != id);
                self.errors.retain(|(i, _)| *i != id);
            }
        }
    }

    /// Calls every binding that matches, in the order they were added.
    pub fn emit(&mut self, emit: Emit) {
        let channel = emit.channel.as_deref();
        if !self
            .bindings
            .iter()
            .any(|b| b.matches(&emit.event, channel))
        {
            return;
        }
        let event = emit.into_event();
        let channel = event.channel.as_deref();
        for b in &mut self.bindings {
            if b.matches(&event.event, channel) {
                (b.handler)(&event);
            }
        }
    }

    pub fn error(&mut self, error: &WsError) {
        tracing::debug!(%error, "websocket client error");
        for (_, h) in &mut self.errors {
            h(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn emit(event: &str, channel: Option<&str>) -> Emit {
        Emit {
            event: event.into(),
            channel: channel.map(str::to_owned),
            raw_data: "{}".into(),
            user_id: None,
        }
    }

    #[test]
    fn bindings_filter_by_event_and_channel() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut handlers = Handlers::default();
        let bind = |id, channel: Option<&str>, event: Option<&str>| {
            let seen = seen.clone();
            HandlerChange::Bind(Binding {
                id,
                channel: channel.map_or(ChannelFilter::Any, |c| match c {
                    "user" => ChannelFilter::User,
                    c => ChannelFilter::Named(c.to_owned()),
                }),
                event: event.map(str::to_owned),
                handler: Box::new(move |e| {
                    if let Ok(mut s) = seen.lock() {
                        s.push((id, e.event.clone()));
                    }
                }),
            })
        };
        handlers.change(bind(1, None, None));
        handlers.change(bind(2, Some("a"), None));
        handlers.change(bind(3, Some("a"), Some("x")));
        handlers.change(bind(4, None, Some("x")));
        handlers.change(bind(5, Some("user"), Some("x")));
        handlers.emit(emit("x", Some("a")));
        handlers.emit(emit("y", Some("b")));
        handlers.emit(emit("x", None));
        handlers.emit(emit("x", Some("#server-to-user-7")));
        handlers.change(HandlerChange::Unbind(1));
        handlers.emit(emit("z", Some("a")));
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 1, 1, 4, 1, 4, 5, 2]);
    }

    #[test]
    fn errors_reach_every_error_handler_until_unbound() {
        let count = Arc::new(Mutex::new(0));
        let mut handlers = Handlers::default();
        for id in [1, 2] {
            let count = count.clone();
            handlers.change(HandlerChange::OnError(
                id,
                Box::new(move |_| {
                    if let Ok(mut c) = count.lock() {
                        *c += 1;
                    }
                }),
            ));
        }
        handlers.error(&WsError::NotConnected);
        handlers.change(HandlerChange::Unbind(2));
        handlers.error(&WsError::NotConnected);
        assert_eq!(count.lock().map(|c| *c).unwrap_or_default(), 3);
    }
}
