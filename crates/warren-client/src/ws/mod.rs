//! A WebSocket client for Pusher Channels compatible servers (Warren, Pusher, Soketi...).
//!
//! [`WsClient`] keeps one connection open from one task: it reconnects with capped,
//! jittered exponential backoff and honours the Pusher close codes (4000-4099: give up,
//! 4100-4199: retry after 1 s, 4200-4299: retry at once), subscribes again to every channel
//! after a reconnect, answers `pusher:ping`, pings the server itself when the line has been
//! quiet for the activity timeout and reconnects when that ping goes unanswered.
//!
//! Private, presence and `private-encrypted-` channels are authorized by a
//! [`ChannelAuthorizer`]: a closure, the application's HTTP endpoint ([`HttpAuthorizer`], the
//! pusher-js convention) or local signing ([`LocalAuthorizer`]). Events on encrypted channels
//! are decrypted (NaCl secretbox with the channel's `shared_secret`) before delivery.
//!
//! [`WsClient::signin`] signs the connection in as a user (`pusher:signin`, authorized by a
//! [`UserAuthenticator`]) and renews the sign-in after every reconnect; events sent to the user
//! reach [`WsClient::bind_user`] handlers, and watchlist changes [`WsClient::bind_watchlist`]
//! ones.
//!
//! ```no_run
//! use std::time::Duration;
//! use warren_client::ws::{HttpAuthorizer, WsClient, WsConfig};
//!
//! # async fn run() -> Result<(), warren_client::ws::WsError> {
//! let config = WsConfig::new("ws://127.0.0.1:6001", "app-key")
//!     .with_channel_authorizer(HttpAuthorizer::new("http://127.0.0.1:3000/pusher/auth"));
//! let client = WsClient::connect(config).await?;
//! let orders = client.subscribe("private-orders")?;
//! orders.bind("created", |event| println!("order: {}", event.data));
//! orders.wait_subscribed(Duration::from_secs(5)).await?;
//! orders.trigger("client-typing", &serde_json::json!({"who": "me"})).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Handlers run on the connection's task: keep them short, never block and never panic in
//! them (send the event to a channel for heavy work, as [`WsClient::events`] does).
//!
//! Not supported yet: `wss://` (TLS; put a TLS-terminating proxy in front or use `ws://`),
//! and re-authorizing an encrypted channel when a payload fails to decrypt (pusher-js retries
//! once with a fresh key; this client reports [`WsError::Decrypt`] and drops the event).

mod authorizer;
mod command;
mod crypto;
mod dispatch;
mod driver;
mod error;
mod event;
mod frames;
mod machine;
mod presence;
mod reconnect;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use warren_protocol::ChannelKind;

pub use authorizer::{
    AuthFuture, ChannelAuthRequest, ChannelAuthorizer, HttpAuthorizer, LocalAuthorizer,
    UserAuthenticator,
};
pub use error::WsError;
pub use event::{Event, WATCHLIST_CHANNEL};
pub use presence::{Member, Members};
pub use reconnect::{close_action, Backoff, CloseAction, OVER_CAPACITY_DELAY};

use command::{Command, HandlerChange, Request};
use dispatch::{Binding, ChannelFilter};
use driver::Driver;

/// The `client` query parameter this library sends.
pub const CLIENT_NAME: &str = "warren-rust";
/// The Pusher protocol version this library speaks.
pub const PROTOCOL_VERSION: u32 = 7;

/// How to connect and authorize.
#[derive(Clone)]
pub struct WsConfig {
    /// `ws://host:port`, optionally with the path prefix the server is mounted under.
    /// `http://` is accepted as `ws://`.
    pub url: String,
    /// The app key.
    pub key: String,
    /// Upper bound of the quiet time before this client pings the server; the server's own
    /// `activity_timeout` applies when shorter. Default 120 s.
    pub activity_timeout: Duration,
    /// How long to wait for any message after that ping before reconnecting. Default 30 s.
    pub pong_timeout: Duration,
    /// Limit for the TCP connection, the handshake and `connection_established`. Default 10 s.
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    /// Largest message accepted from the server. Default 1 MiB.
    pub max_message_size: usize,
    pub channel_authorizer: Option<Arc<dyn ChannelAuthorizer>>,
    pub user_authenticator: Option<Arc<dyn UserAuthenticator>>,
}

impl WsConfig {
    pub fn new(url: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key: key.into(),
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            max_message_size: 1 << 20,
            channel_authorizer: None,
            user_authenticator: None,
        }
    }

    pub fn with_channel_authorizer(mut self, authorizer: impl ChannelAuthorizer) -> Self {
        self.channel_authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Authorizes channels with a form POST to `endpoint` (e.g. `http://app/pusher/auth`).
    pub fn with_channel_auth_endpoint(self, endpoint: impl Into<String>) -> Self {
        self.with_channel_authorizer(HttpAuthorizer::new(endpoint))
    }

    pub fn with_user_authenticator(mut self, authenticator: impl UserAuthenticator) -> Self {
        self.user_authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Signs users in with a form POST to `endpoint` (e.g. `http://app/pusher/user-auth`).
    pub fn with_user_auth_endpoint(self, endpoint: impl Into<String>) -> Self {
        self.with_user_authenticator(HttpAuthorizer::new(endpoint))
    }

    pub fn with_activity_timeout(mut self, timeout: Duration) -> Self {
        self.activity_timeout = timeout;
        self
    }

    pub fn with_pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The WebSocket URL: `{url}/app/{key}?protocol=7&client=warren-rust&version=...`.
    ///
    /// ```
    /// use warren_client::ws::WsConfig;
    /// let url = WsConfig::new("ws://127.0.0.1:6001/", "app-key").endpoint()?;
    /// assert!(url.starts_with("ws://127.0.0.1:6001/app/app-key?protocol=7&client=warren-rust&version="));
    /// assert!(WsConfig::new("127.0.0.1:6001", "k").endpoint().is_err());
    /// # Ok::<(), warren_client::ws::WsError>(())
    /// ```
    pub fn endpoint(&self) -> Result<String, WsError> {
        let base = self.url.trim().trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if base.starts_with("ws://") {
            base.to_owned()
        } else if base.starts_with("wss://") || base.starts_with("https://") {
            return Err(WsError::Config(format!(
                "{base}: TLS (wss://) is not supported by this build; use ws:// (e.g. behind a TLS-terminating proxy)"
            )));
        } else {
            return Err(WsError::Config(format!(
                "url {base:?} must start with ws://"
            )));
        };
        if base.contains('?') || base.contains('#') {
            return Err(WsError::Config(format!(
                "url {base:?} must not have a query or fragment"
            )));
        }
        if self.key.is_empty()
            || !self
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(WsError::Config(format!(
                "app key {:?} must be non-empty [A-Za-z0-9_.-]",
                self.key
            )));
        }
        Ok(format!(
            "{base}/app/{}?protocol={PROTOCOL_VERSION}&client={CLIENT_NAME}&version={}&flash=false",
            self.key,
            env!("CARGO_PKG_VERSION")
        ))
    }
}

impl std::fmt::Debug for WsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConfig")
            .field("url", &self.url)
            .field("key", &self.key)
            .field("activity_timeout", &self.activity_timeout)
            .field("pong_timeout", &self.pong_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("max_message_size", &self.max_message_size)
            .field("channel_authorizer", &self.channel_authorizer.is_some())
            .field("user_authenticator", &self.user_authenticator.is_some())
            .finish()
    }
}

/// The connection's state, as pusher-js names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening a connection (first time or again).
    Connecting,
    Connected {
        socket_id: String,
    },
    /// The connection is down; another attempt follows after `retry_in`.
    Unavailable {
        retry_in: Duration,
        reason: WsError,
    },
    /// Closed by [`WsClient::close`] (or every handle was dropped).
    Disconnected,
    /// The server refused this client for good (close codes 4000-4099).
    Failed(WsError),
}

/// A channel subscription's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Waiting for a connection, the authorization or the server's confirmation.
    Pending,
    Subscribed,
    /// Refused (by the authorizer or the server); not retried until the next reconnect.
    Failed(WsError),
    Unsubscribed,
}

/// The outcome of a successful sign-in (`pusher:signin_success`).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub id: String,
    pub user_info: Option<serde_json::Value>,
    /// The user data string exactly as signed.
    pub user_data: String,
}

/// Identifies a handler, to remove it with [`WsClient::unbind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BindingId(u64);

/// A subscription's state, shared by its [`Channel`] handles and the connection's task
/// (which alone writes it).
pub(crate) struct ChannelShared {
    pub name: String,
    pub kind: ChannelKind,
    pub state: watch::Sender<SubscriptionState>,
    pub members: RwLock<Option<Members>>,
}

impl ChannelShared {
    pub(crate) fn new(name: &str) -> Self {
        let kind = warren_protocol::ChannelName::parse(name, usize::MAX)
            .map(|c| c.kind())
            .unwrap_or(ChannelKind::Public);
        Self {
            name: name.to_owned(),
            kind,
            state: watch::Sender::new(SubscriptionState::Pending),
            members: RwLock::new(None),
        }
    }
}

struct Inner {
    connected_once: Arc<AtomicBool>,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    channels: Mutex<HashMap<String, Arc<ChannelShared>>>,
    next_id: AtomicU64,
}

/// A Pusher client connection. Cheap to clone; the connection stays up until
/// [`WsClient::close`] or until every clone (and every [`Channel`]) is dropped.
#[derive(Clone)]
pub struct WsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl WsClient {
    /// Starts the connection task and returns at once; the client connects (and keeps
    /// reconnecting) in the background. Must be called within a Tokio runtime.
    pub fn start(config: WsConfig) -> Result<Self, WsError> {
        let url = config.endpoint()?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let connected_once = Arc::new(AtomicBool::new(false));
        let driver = Driver::new(config, url, rx, state_tx, connected_once.clone());
        tokio::spawn(driver.run());
        Ok(Self {
            inner: Arc::new(Inner {
                connected_once,
                commands,
                state,
                channels: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// Starts the client and waits for its first connection. If that first attempt fails
    /// the client is closed and the error returned; later disconnections are retried.
    pub async fn connect(config: WsConfig) -> Result<Self, WsError> {
        let limit = config.connect_timeout + Duration::from_secs(1);
        let client = Self::start(config)?;
        let mut rx = client.inner.state.clone();
        let connected_once = client.inner.connected_once.clone();
        let outcome = tokio::time::timeout(limit, async {
            loop {
                let done = match &*rx.borrow_and_update() {
                    ConnectionState::Connected { .. } => Some(Ok(())),
                    // Connected, then already lost again: the client keeps reconnecting.
                    ConnectionState::Unavailable { .. }
                        if connected_once.load(Ordering::Acquire) =>
                    {
                        Some(Ok(()))
                    }
                    ConnectionState::Failed(e) | ConnectionState::Unavailable { reason: e, .. } => {
                        Some(Err(e.clone()))
                    }
                    ConnectionState::Disconnected => Some(Err(WsError::ClientClosed)),
                    ConnectionState::Connecting => None,
                };
                if let Some(done) = done {
                    return done;
                }
                if rx.changed().await.is_err() {
                    return Err(WsError::ClientClosed);
                }
            }
        })
        .await
        .unwrap_or(Err(WsError::Timeout("the first connection")));
        match outcome {
            Ok(()) => Ok(client),
            Err(e) => {
                client.close().await;
                Err(e)
            }
        }
    }

    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.clone()
    }

    /// The current connection's socket id.
    pub fn socket_id(&self) -> Option<String> {
        match &*self.inner.state.borrow() {
            ConnectionState::Connected { socket_id } => Some(socket_id.clone()),
            _ => None,
        }
    }

    /// Waits until connected (returns the socket id), failed or closed.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<String, WsError> {
        let mut rx = self.inner.state.clone();
        tokio::time::timeout(timeout, async {
            loop {
                let done = match &*rx.borrow_and_update() {
                    ConnectionState::Connected { socket_id } => Some(Ok(socket_id.clone())),
                    ConnectionState::Failed(e) => Some(Err(e.clone())),
                    ConnectionState::Disconnected => Some(Err(WsError::ClientClosed)),
                    _ => None,
                };
                if let Some(done) = done {
                    return done;
                }
                if rx.changed().await.is_err() {
                    return Err(WsError::ClientClosed);
                }
            }
        })
        .await
        .unwrap_or(Err(WsError::Timeout("a connection")))
    }

    fn command(&self, cmd: impl Into<Command>) -> Result<(), WsError> {
        self.inner
            .commands
            .send(cmd.into())
            .map_err(|_| WsError::ClientClosed)
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Subscribes to `channel` (or returns the existing subscription). The subscription is
    /// renewed after every reconnect until [`Channel::unsubscribe`].
    pub fn subscribe(&self, channel: &str) -> Result<Channel, WsError> {
        warren_protocol::ChannelName::parse(
            channel,
            warren_protocol::names::MAX_CHANNEL_NAME_LENGTH,
        )
        .map_err(|e| WsError::Config(e.to_string()))?;
        let mut channels = self
            .inner
            .channels
            .lock()
            .map_err(|_| WsError::ClientClosed)?;
        if let Some(shared) = channels.get(channel) {
            return Ok(Channel {
                shared: shared.clone(),
                client: self.clone(),
            });
        }
        let shared = Arc::new(ChannelShared::new(channel));
        self.command(Request::Subscribe(shared.clone()))?;
        channels.insert(channel.to_owned(), shared.clone());
        Ok(Channel {
            shared,
            client: self.clone(),
        })
    }

    /// The subscription to `channel`, if any.
    pub fn channel(&self, channel: &str) -> Option<Channel> {
        let channels = self.inner.channels.lock().ok()?;
        channels.get(channel).map(|shared| Channel {
            shared: shared.clone(),
            client: self.clone(),
        })
    }

    pub fn unsubscribe(&self, channel: &str) {
        if let Ok(mut channels) = self.inner.channels.lock() {
            channels.remove(channel);
        }
        let _ = self.command(Request::Unsubscribe(channel.to_owned()));
    }

    fn add_binding(
        &self,
        channel: ChannelFilter,
        event: Option<&str>,
        handler: impl FnMut(&Event) + Send + 'static,
    ) -> BindingId {
        let id = self.next_id();
        let _ = self.command(HandlerChange::Bind(Binding {
            id,
            channel,
            event: event.map(str::to_owned),
            handler: Box::new(handler),
        }));
        BindingId(id)
    }

    /// Calls `handler` for every event named `event`, on any channel.
    pub fn bind(&self, event: &str, handler: impl FnMut(&Event) + Send + 'static) -> BindingId {
        self.add_binding(ChannelFilter::Any, Some(event), handler)
    }

    /// Calls `handler` for every event (watchlist events included, on [`WATCHLIST_CHANNEL`]).
    pub fn bind_global(&self, handler: impl FnMut(&Event) + Send + 'static) -> BindingId {
        self.add_binding(ChannelFilter::Any, None, handler)
    }

    /// Calls `handler` for every event named `event` sent to the signed-in user (the HTTP
    /// API's `send_to_user`), as pusher-js's `user.bind`. The events arrive on the user's
    /// `#server-to-user-<id>` channel, which the client subscribes to after [`WsClient::signin`].
    pub fn bind_user(
        &self,
        event: &str,
        handler: impl FnMut(&Event) + Send + 'static,
    ) -> BindingId {
        self.add_binding(ChannelFilter::User, Some(event), handler)
    }

    /// Calls `handler` for the signed-in user's watchlist events, as pusher-js's
    /// `user.watchlist.bind`: an event named `online` or `offline` on [`WATCHLIST_CHANNEL`],
    /// its data `{"user_ids":[...]}`. The first ones after a sign-in are the initial state.
    pub fn bind_watchlist(&self, handler: impl FnMut(&Event) + Send + 'static) -> BindingId {
        self.add_binding(
            ChannelFilter::Named(WATCHLIST_CHANNEL.to_owned()),
            None,
            handler,
        )
    }

    /// Calls `handler` for every error: `pusher:error` messages, refused subscriptions,
    /// failed authorizations, undecryptable events, malformed messages.
    pub fn on_error(&self, handler: impl FnMut(&WsError) + Send + 'static) -> BindingId {
        let id = self.next_id();
        let _ = self.command(HandlerChange::OnError(id, Box::new(handler)));
        BindingId(id)
    }

    /// Removes an event or error handler.
    pub fn unbind(&self, id: BindingId) {
        let _ = self.command(HandlerChange::Unbind(id.0));
    }

    /// Every event, as a stream.
    pub fn events(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.bind_global(move |e| {
            let _ = tx.send(e.clone());
        });
        rx
    }

    /// Every error, as a stream.
    pub fn errors(&self) -> mpsc::UnboundedReceiver<WsError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.on_error(move |e| {
            let _ = tx.send(e.clone());
        });
        rx
    }

    /// Signs the connection in as a user (`pusher:signin`), authorized by the configured
    /// [`UserAuthenticator`]; the sign-in is renewed after every reconnect. Waits for the
    /// server's answer: a `pusher:error` becomes [`WsError::Server`].
    pub async fn signin(&self) -> Result<SignedIn, WsError> {
        let (reply, rx) = oneshot::channel();
        self.command(Request::Signin(reply))?;
        rx.await.map_err(|_| WsError::ClientClosed)?
    }

    /// Closes the connection cleanly (close code 1000) and stops reconnecting.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.command(Request::Close(reply)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// A subscription to one channel.
#[derive(Clone)]
pub struct Channel {
    shared: Arc<ChannelShared>,
    client: WsClient,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.shared.name)
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

impl Channel {
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn kind(&self) -> ChannelKind {
        self.shared.kind
    }

    pub fn state(&self) -> SubscriptionState {
        self.shared.state.borrow().clone()
    }

    /// Waits until the server confirms the subscription, or it fails.
    pub async fn wait_subscribed(&self, timeout: Duration) -> Result<(), WsError> {
        let mut rx = self.shared.state.subscribe();
        let name = self.shared.name.clone();
        tokio::time::timeout(timeout, async move {
            loop {
                let done = match &*rx.borrow_and_update() {
                    SubscriptionState::Subscribed => Some(Ok(())),
                    SubscriptionState::Failed(e) => Some(Err(e.clone())),
                    SubscriptionState::Unsubscribed => {
                        Some(Err(WsError::NotSubscribed(name.clone())))
                    }
                    SubscriptionState::Pending => None,
                };
                if let Some(done) = done {
                    return done;
                }
                if rx.changed().await.is_err() {
                    return Err(WsError::ClientClosed);
                }
            }
        })
        .await
        .unwrap_or(Err(WsError::Timeout("the subscription to be confirmed")))
    }

    /// Calls `handler` for every event named `event` on this channel.
    pub fn bind(&self, event: &str, handler: impl FnMut(&Event) + Send + 'static) -> BindingId {
        self.client.add_binding(
            ChannelFilter::Named(self.shared.name.clone()),
            Some(event),
            handler,
        )
    }

    /// Calls `handler` for every event on this channel.
    pub fn bind_global(&self, handler: impl FnMut(&Event) + Send + 'static) -> BindingId {
        self.client.add_binding(
            ChannelFilter::Named(self.shared.name.clone()),
            None,
            handler,
        )
    }

    pub fn unbind(&self, id: BindingId) {
        self.client.unbind(id)
    }

    /// Every event on this channel, as a stream.
    pub fn events(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.bind_global(move |e| {
            let _ = tx.send(e.clone());
        });
        rx
    }

    /// The presence members (presence channels, once subscribed).
    pub fn members(&self) -> Option<Members> {
        self.shared.members.read().ok()?.clone()
    }

    /// Sends a client event to the other subscribers of this private or presence channel.
    /// The name must start with `client-`; `data` is sent as JSON. Returns once the event is
    /// written to the socket.
    pub async fn trigger<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), WsError> {
        if !event.starts_with("client-") {
            return Err(WsError::InvalidEvent(format!(
                "{event:?}: client event names start with \"client-\""
            )));
        }
        if !matches!(
            self.shared.kind,
            ChannelKind::Private | ChannelKind::Presence
        ) {
            return Err(WsError::InvalidEvent(format!(
                "{}: client events can only be sent on private- and presence- channels (not public or encrypted ones)",
                self.shared.name
            )));
        }
        let data = serde_json::to_string(data)
            .map_err(|e| WsError::InvalidEvent(format!("data does not serialize: {e}")))?;
        let (reply, rx) = oneshot::channel();
        self.client.command(Request::Trigger {
            channel: self.shared.name.clone(),
            event: event.to_owned(),
            data,
            reply,
        })?;
        rx.await.map_err(|_| WsError::ClientClosed)?
    }

    /// Stops the subscription.
    pub fn unsubscribe(&self) {
        self.client.unsubscribe(&self.shared.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = |u: &str| WsConfig::new(u, "app-key").endpoint();
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            e("ws://h:1").ok(),
            Some(format!(
                "ws://h:1/app/app-key?protocol=7&client=warren-rust&version={v}&flash=false"
            ))
        );
        assert_eq!(
            e("http://h:1/prefix/").ok(),
            Some(format!(
                "ws://h:1/prefix/app/app-key?protocol=7&client=warren-rust&version={v}&flash=false"
            ))
        );
        for bad in ["wss://h", "https://h", "h:1", "ws://h/?x=1", "ftp://h"] {
            assert!(matches!(e(bad), Err(WsError::Config(_))), "{bad}");
        }
        assert!(WsConfig::new("ws://h", "").endpoint().is_err());
        assert!(WsConfig::new("ws://h", "a/b").endpoint().is_err());
    }

    #[test]
    fn config_debug_hides_nothing_secret() {
        let c = WsConfig::new("ws://h", "k").with_channel_auth_endpoint("http://x/pusher/auth");
        let shown = format!("{c:?}");
        assert!(shown.contains("channel_authorizer: true"), "{shown}");
    }
}
