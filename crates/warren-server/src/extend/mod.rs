//! Extension points: Warren as a library that a program extends without forking it.
//!
//! Everything is registered on the [`ServerBuilder`](crate::ServerBuilder); a server built
//! without any of it runs exactly the code it ran before extensions existed (each hook is one
//! `Option` checked once per client message or API request, never per delivered frame).
//!
//! | extension | registered with | runs |
//! |---|---|---|
//! | [`InboundMiddleware`] | `.inbound_middleware(m)` | on every parsed client message, in order, before the protocol |
//! | [`ClientEventHandler`] | `.client_event("my-app:ping", h)` | on a client's custom event of that name |
//! | [`BroadcastHandler`] | `.broadcast_handler("type", h)` | on every node, for each [`ServerHandle::broadcast`] of that type |
//! | [`ApiMiddleware`] | `.api_middleware(m)` | on every API request, after its signature checked out |
//! | [`ApiRoute`] | `.api_route("name", r)` | on signed requests to `/apps/{app_id}/x-name` |
//!
//! Middlewares and handlers see a [`ConnectionContext`] (app, socket id, signed-in user,
//! subscriptions, remote address) through which they may answer the socket, publish to
//! channels or close the connection with a Pusher code. A [`ServerHandle`] (from
//! [`RunningServer::handle`](crate::RunningServer::handle), and given to broadcast handlers and
//! API routes) publishes events and sends broadcasts from anywhere.
//!
//! # Inbound middleware: refuse client events with a banned word
//!
//! ```
//! use warren_server::extend::{ClientMessage, ConnectionContext, InboundMiddleware, Verdict};
//!
//! struct BannedWords(Vec<String>);
//!
//! #[async_trait::async_trait]
//! impl InboundMiddleware for BannedWords {
//!     async fn on_message(&self, message: ClientMessage, _cx: &ConnectionContext<'_>) -> Verdict {
//!         if let ClientMessage::ClientEvent { data, .. } = &message {
//!             let lower = data.to_lowercase();
//!             if let Some(word) = self.0.iter().find(|w| lower.contains(w.as_str())) {
//!                 return Verdict::reject(format!("Client event rejected: {word:?} is not allowed"));
//!             }
//!         }
//!         Verdict::Pass(message)
//!     }
//! }
//!
//! # async fn run() -> anyhow::Result<()> {
//! let server = warren_server::Server::builder(warren_server::Config::default())
//!     .inbound_middleware(BannedWords(vec!["spam".into()]))
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Custom client event: answer `my-app:ping`
//!
//! ```
//! use warren_server::extend::{ClientEventHandler, ConnectionContext, CustomEvent};
//!
//! struct Ping;
//!
//! #[async_trait::async_trait]
//! impl ClientEventHandler for Ping {
//!     async fn on_event(&self, event: CustomEvent, cx: &ConnectionContext<'_>) {
//!         cx.send("my-app:pong", None, &event.data);
//!     }
//! }
//!
//! let builder = warren_server::Server::builder(warren_server::Config::default())
//!     .client_event("my-app:ping", Ping);
//! ```
//!
//! # Custom broadcast: reach every node
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use warren_server::extend::{Broadcast, ServerHandle};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let flushes = Arc::new(AtomicU64::new(0));
//! let seen = flushes.clone();
//! let server = warren_server::Server::builder(warren_server::Config::default())
//!     .broadcast_handler("cache:flush", move |_: &Broadcast, _: &ServerHandle| {
//!         seen.fetch_add(1, Ordering::Relaxed);
//!     })
//!     .start()
//!     .await?;
//! // Runs the handler here and, with the Redis backend, on every other node.
//! server.broadcast("cache:flush", r#"{"key":"prices"}"#).await?;
//! assert_eq!(flushes.load(Ordering::Relaxed), 1);
//! # Ok(()) }
//! ```
//!
//! # HTTP API: a quota middleware and an `x-` route
//!
//! ```
//! use warren_server::extend::{ApiMiddleware, ApiRefusal, ApiRequest, ApiRoute, ServerHandle};
//!
//! struct ReadOnlyApp(&'static str);
//!
//! #[async_trait::async_trait]
//! impl ApiMiddleware for ReadOnlyApp {
//!     async fn on_request(&self, request: &ApiRequest<'_>) -> Result<(), ApiRefusal> {
//!         if request.app().id.as_str() == self.0 && request.method() == "POST" {
//!             return Err(ApiRefusal::new(403, "This app is read-only"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! struct WhoAmI;
//!
//! #[async_trait::async_trait]
//! impl ApiRoute for WhoAmI {
//!     async fn handle(
//!         &self,
//!         request: &ApiRequest<'_>,
//!         server: &ServerHandle,
//!     ) -> Result<serde_json::Value, ApiRefusal> {
//!         Ok(serde_json::json!({ "app": request.app().id.as_str(), "node": server.node_id() }))
//!     }
//! }
//!
//! let builder = warren_server::Server::builder(warren_server::Config::default())
//!     .api_middleware(ReadOnlyApp("archive"))
//!     .api_route("whoami", WhoAmI); // GET /apps/{app_id}/x-whoami, signed
//! ```

mod api;
mod broadcast;
mod context;
mod events;
mod handle;
mod middleware;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use crate::cluster::{Broadcast, BroadcastType};
pub use api::{ApiMiddleware, ApiRefusal, ApiRequest, ApiRoute};
pub use broadcast::BroadcastHandler;
pub use context::ConnectionContext;
pub use events::{ClientEventHandler, CustomEvent};
pub use handle::{ExtensionError, ServerHandle};
pub use middleware::{InboundMiddleware, Verdict};
pub use warren_protocol::inbound::{ClientMessage, Subscribe};
pub use warren_protocol::{ErrorCode, SocketId};

pub(crate) use api::ApiExtensions;
pub(crate) use broadcast::{BroadcastHandlers, WithBroadcasts};
pub(crate) use middleware::run_chain;

/// What a connection runs besides the protocol: only present when something was registered.
pub(crate) struct ConnectionExtensions {
    pub inbound: Vec<Arc<dyn InboundMiddleware>>,
    pub events: HashMap<String, Arc<dyn ClientEventHandler>>,
}

/// Everything registered on a builder, checked when the server is bound.
#[derive(Default)]
pub(crate) struct Registry {
    inbound: Vec<Arc<dyn InboundMiddleware>>,
    events: HashMap<String, Arc<dyn ClientEventHandler>>,
    broadcasts: HashMap<BroadcastType, Arc<dyn BroadcastHandler>>,
    api_middlewares: Vec<Arc<dyn ApiMiddleware>>,
    api_routes: BTreeMap<String, Arc<dyn ApiRoute>>,
    /// Registration mistakes; `bind` refuses to start with any.
    errors: Vec<String>,
}

impl Registry {
    pub(crate) fn inbound(&mut self, middleware: Arc<dyn InboundMiddleware>) {
        self.inbound.push(middleware);
    }

    pub(crate) fn client_event(&mut self, name: &str, handler: Arc<dyn ClientEventHandler>) {
        if let Err(e) = events::check_name(name) {
            return self.errors.push(e);
        }
        if self.events.insert(name.to_owned(), handler).is_some() {
            self.errors
                .push(format!("two handlers for the custom event {name:?}"));
        }
    }

    pub(crate) fn broadcast(&mut self, kind: &str, handler: Arc<dyn BroadcastHandler>) {
        match BroadcastType::parse(kind) {
            Ok(kind) => {
                let shown = kind.to_string();
                if self.broadcasts.insert(kind, handler).is_some() {
                    self.errors
                        .push(format!("two handlers for the broadcast type {shown:?}"));
                }
            }
            Err(e) => self.errors.push(e.to_string()),
        }
    }

    pub(crate) fn api_middleware(&mut self, middleware: Arc<dyn ApiMiddleware>) {
        self.api_middlewares.push(middleware);
    }

    pub(crate) fn api_route(&mut self, name: &str, route: Arc<dyn ApiRoute>) {
        if let Err(e) = api::check_route_name(name) {
            return self.errors.push(e);
        }
        if self.api_routes.insert(name.to_owned(), route).is_some() {
            self.errors.push(format!("two API routes named {name:?}"));
        }
    }

    /// The parts each layer runs; `None` wherever nothing was registered, so that layer
    /// runs as if extensions did not exist.
    pub(crate) fn compose(self) -> anyhow::Result<Composed> {
        if !self.errors.is_empty() {
            anyhow::bail!("extensions: {}", self.errors.join("; "));
        }
        let connection = (!self.inbound.is_empty() || !self.events.is_empty()).then(|| {
            Arc::new(ConnectionExtensions {
                inbound: self.inbound,
                events: self.events,
            })
        });
        let broadcasts = (!self.broadcasts.is_empty())
            .then(|| Arc::new(BroadcastHandlers::new(self.broadcasts)));
        Ok(Composed {
            connection,
            broadcasts,
            api_middlewares: self.api_middlewares,
            api_routes: self.api_routes,
        })
    }
}

/// A registry sorted out by the layer that runs each part.
pub(crate) struct Composed {
    pub connection: Option<Arc<ConnectionExtensions>>,
    pub broadcasts: Option<Arc<BroadcastHandlers>>,
    api_middlewares: Vec<Arc<dyn ApiMiddleware>>,
    api_routes: BTreeMap<String, Arc<dyn ApiRoute>>,
}

impl Composed {
    /// The API's extensions, once the server (and so its handle) exists.
    pub(crate) fn api(&mut self, server: &ServerHandle) -> Option<Arc<ApiExtensions>> {
        if self.api_middlewares.is_empty() && self.api_routes.is_empty() {
            return None;
        }
        Some(Arc::new(ApiExtensions {
            middlewares: std::mem::take(&mut self.api_middlewares),
            routes: std::mem::take(&mut self.api_routes),
            server: server.clone(),
        }))
    }
}
