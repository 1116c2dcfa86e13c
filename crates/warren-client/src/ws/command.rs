//! What the handles ([`super::WsClient`], [`super::Channel`]) ask of the connection's task:
//! requests for the state machine, and changes to the set of handlers.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::dispatch::Binding;
use super::{ChannelShared, Event, SignedIn, WsError};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, WsError>>;
pub(crate) type EventHandler = Box<dyn FnMut(&Event) + Send>;
pub(crate) type ErrorHandler = Box<dyn FnMut(&WsError) + Send>;

pub(crate) enum Command {
    Request(Request),
    Handlers(HandlerChange),
}

/// What the connection's state machine acts on.
pub(crate) enum Request {
    Subscribe(Arc<ChannelShared>),
    Unsubscribe(String),
    /// A client event; `data` is JSON text. `reply` learns whether it was written.
    Trigger {
        channel: String,
        event: String,
        data: String,
        reply: Reply<()>,
    },
    Signin(Reply<SignedIn>),
    Close(oneshot::Sender<()>),
}

/// Handlers never reach the state machine: they only receive what it emits.
pub(crate) enum HandlerChange {
    Bind(Binding),
    OnError(u64, ErrorHandler),
    Unbind(u64),
}

impl From<Request> for Command {
    fn from(r: Request) -> Self {
        Command::Request(r)
    }
}

impl From<HandlerChange> for Command {
    fn from(c: HandlerChange) -> Self {
        Command::Handlers(c)
    }
}
