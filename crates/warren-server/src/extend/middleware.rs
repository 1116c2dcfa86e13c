//! Inbound middlewares: an ordered chain that sees each parsed client message before the
//! protocol does, and may pass it on, rewrite it, or refuse it.

use std::sync::Arc;

use async_trait::async_trait;
use warren_protocol::inbound::ClientMessage;
use warren_protocol::ErrorCode;

use super::context::ConnectionContext;

/// What a middleware decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// On to the next middleware, then the protocol: the message as received, or rewritten.
    Pass(ClientMessage),
    /// Dropped, with a `pusher:error` to the client (`code` `None` as Pusher's non-fatal
    /// errors); the connection stays open.
    Reject {
        code: Option<ErrorCode>,
        message: String,
    },
    /// Dropped, and the connection closed (see [`ConnectionContext::close`] for the codes).
    Close { code: ErrorCode, reason: String },
}

impl Verdict {
    /// A non-fatal refusal.
    pub fn reject(message: impl Into<String>) -> Self {
        Self::Reject {
            code: None,
            message: message.into(),
        }
    }
}

/// One link of the inbound chain. Every message of a connection goes through every
/// middleware, in the order they were added, pings included: return quickly for messages
/// you do not care about.
#[async_trait]
pub trait InboundMiddleware: Send + Sync + 'static {
    async fn on_message(&self, message: ClientMessage, cx: &ConnectionContext<'_>) -> Verdict;
}

/// Runs the chain; `None` when a middleware stopped the message (and has been answered).
pub(crate) async fn run_chain(
    chain: &[Arc<dyn InboundMiddleware>],
    mut message: ClientMessage,
    cx: &ConnectionContext<'_>,
) -> Option<ClientMessage> {
    for middleware in chain {
        match middleware.on_message(message, cx).await {
            Verdict::Pass(next) => message = next,
            Verdict::Reject { code, message } => {
                cx.send_error(code, &message);
                return None;
            }
            Verdict::Close { code, reason } => {
                cx.close(code, &reason);
                return None;
            }
        }
    }
    Some(message)
}
