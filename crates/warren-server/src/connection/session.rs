//! What one connection may do once admitted: the Pusher protocol state machine (see
//! docs/PROTOCOL.md: framing, liveness, subscriptions, signatures, users, client events). The
//! socket I/O is in the parent module; this part checks parsed client messages against the
//! app's rules and turns them into [`Node`] calls and answers to this connection.
//!
//! A connection signs in at most once, as one user; the identity then decides its
//! `#server-to-user-` subscription and may stand in for presence `channel_data`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use warren_protocol::auth::{verify_channel_auth, AuthError};
use warren_protocol::inbound::{ClientMessage, InboundError, Subscribe};
use warren_protocol::presence::{parse_channel_data, PresenceMember};
use warren_protocol::user::MAX_WATCHLIST;
use warren_protocol::{outbound, ChannelKind, ChannelName, ErrorCode, EventName, SocketId};

use super::rate::{Counted, Rates};
use super::signin::{self, SignedIn};
use super::Context;
use crate::app::{App, ConnectionSlot};
use crate::cluster::{ChannelEvent, ChannelMessage, JoinError};
use crate::extend::{run_chain, ConnectionContext, CustomEvent};
use crate::metrics::Limit;
use crate::monitor::Monitor;
use crate::node::{presence_succeeded, Joining, SigningIn};
use crate::outbox::{CloseReason, Outbox};
use crate::ws::frame;

/// The message real Pusher sends when client events are off for the app.
const CLIENT_EVENTS_DISABLED: &str =
    "To send client events, you must enable this feature in the Settings page of your dashboard.";

/// Client events on encrypted channels are refused, as Pusher refuses them (pusher-js does
/// not even send them, with the same words).
const ENCRYPTED_CLIENT_EVENTS: &str =
    "Client event rejected: client events are not supported for encrypted channels";

/// One admitted connection's protocol state.
pub struct Session {
    /// What every connection of this server shares: the node, and the connection extensions
    /// (nothing per connection, so a server without extensions keeps idle connections as
    /// small as before).
    cx: Arc<Context>,
    /// The app, and the connection's place in its quota on this node and, where counted,
    /// in the cluster (both given back when the session drops).
    app: ConnectionSlot,
    socket_id: SocketId,
    outbox: Arc<Outbox>,
    /// Channels this connection is subscribed to, with its presence identity where it has one.
    subscriptions: HashMap<ChannelName, Option<PresenceMember>>,
    /// Client events and subscribes this second.
    rates: Rates,
    /// Set once a `pusher:signin` succeeded. Boxed: every idle connection keeps a session,
    /// and most never sign in.
    user: Option<Box<SignedIn>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The slot on this node goes with `app`; the cluster's count is given back here.
        super::quota::give_back(&self.cx.node, &self.app);
    }
}

impl Session {
    pub(super) fn socket_id(&self) -> SocketId {
        self.socket_id
    }

    pub fn new(
        cx: Arc<Context>,
        app: ConnectionSlot,
        socket_id: SocketId,
        outbox: Arc<Outbox>,
    ) -> Self {
        Self {
            cx,
            app,
            socket_id,
            outbox,
            subscriptions: HashMap::new(),
            rates: Rates::default(),
            user: None,
        }
    }

    /// This connection as extensions see it.
    /// The current version of this connection's app, for its secrets: a rotated secret (and
    /// the one before it, during its grace) signs authorizations at once. The limits stay
    /// those of the version the connection was admitted with.
    fn secrets(&self) -> Arc<App> {
        let current = self.cx.apps.by_id(self.app.id.as_str());
        current.unwrap_or_else(|| Arc::clone(&self.app))
    }

    fn context(&self, remote_addr: Option<SocketAddr>) -> ConnectionContext<'_> {
        ConnectionContext {
            app: &self.app,
            socket_id: self.socket_id,
            user: self.user.as_ref().map(|u| u.data.user.user()),
            subscriptions: &self.subscriptions,
            remote_addr,
            node: &self.cx.node,
            outbox: &self.outbox,
        }
    }

    /// Where this connection is counted.
    pub(super) fn metrics(&self) -> (&crate::metrics::Metrics, &warren_protocol::AppId) {
        (&self.cx.metrics, &self.app.id)
    }

    /// The tap, the app and the socket id this connection reports under.
    pub(super) fn watched_as(&self) -> (&Monitor, &str, SocketId) {
        (self.cx.node.monitor(), self.app.id.as_str(), self.socket_id)
    }

    /// A text message of `len` bytes arrived (metrics).
    pub(super) fn received(&self, len: usize) {
        self.cx.metrics.received(&self.app.id, len);
    }

    /// Whether the monitor watches (one atomic load).
    pub(super) fn watched(&self) -> bool {
        self.cx.node.monitor().is_active()
    }

    /// Queues a frame for this connection only.
    pub fn send(&self, json: &str) {
        self.outbox.push(frame::text(json.as_bytes()));
    }

    /// Takes `messages` from the node's budget for client messages, shared by every
    /// connection; when to go on if not now (counted).
    pub(super) fn take_inbound(&self, messages: u32) -> Option<std::time::Instant> {
        self.cx.take_inbound(messages)
    }

    /// A non-fatal `pusher:error`: the connection stays open.
    pub fn send_error(&self, code: Option<ErrorCode>, message: &str) {
        self.send(&outbound::error(code.map(ErrorCode::code), message));
    }

    /// Handles one client message; `remote_addr` is asked only by extensions.
    pub async fn handle(
        &mut self,
        msg: ClientMessage,
        remote_addr: impl FnOnce() -> Option<SocketAddr> + Send,
    ) {
        // INVARIANT(extensions-off-the-path): the one check a server without connection
        // extensions pays, per client message; the remote address is asked for only with them.
        let (msg, remote_addr) = match &self.cx.extensions {
            None => (msg, None),
            Some(extensions) => {
                let remote_addr = remote_addr();
                if extensions.inbound.is_empty() {
                    (msg, remote_addr)
                } else {
                    let cx = self.context(remote_addr);
                    match run_chain(&extensions.inbound, msg, &cx).await {
                        Some(msg) => (msg, remote_addr),
                        None => return,
                    }
                }
            }
        };
        match msg {
            ClientMessage::Ping => self.send(outbound::PONG),
            ClientMessage::Pong => {}
            ClientMessage::Subscribe(sub) => self.subscribe(sub).await,
            ClientMessage::Unsubscribe { channel } => self.unsubscribe(&channel).await,
            ClientMessage::Signin { auth, user_data } => self.signin(&auth, &user_data).await,
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => self.client_event(&event, &channel, &data).await,
            ClientMessage::Custom {
                event,
                channel,
                data,
            } => {
                let event = CustomEvent {
                    event,
                    channel,
                    data,
                };
                self.custom_event(event, remote_addr).await
            }
        }
    }

    /// An event outside the protocol: its handler's, if the server has one for its name.
    async fn custom_event(&mut self, event: CustomEvent, remote_addr: Option<SocketAddr>) {
        let handler = self
            .cx
            .extensions
            .as_ref()
            .and_then(|x| x.events.get(&event.event));
        let Some(handler) = handler.cloned() else {
            return self.send_error(
                None,
                &InboundError::not_a_client_event(&event.event).to_string(),
            );
        };
        let limit = self.app.client_event_rate_per_sec;
        if !self
            .rates
            .allow(Counted::ClientEvent, limit, Instant::now())
        {
            return self.rate_limited("Event");
        }
        handler.on_event(event, &self.context(remote_addr)).await;
    }

    async fn subscribe(&mut self, sub: Subscribe) {
        let channel = match ChannelName::parse(&sub.channel, self.app.max_channel_name_length) {
            Ok(c) => c,
            Err(e) => {
                let name: String = sub.channel.chars().take(200).collect();
                return self.subscription_error(&name, "InvalidChannel", &e.to_string(), 400);
            }
        };
        // Before anything reaches shared state, a repeated subscribe included: answering one
        // costs a read of the member list, so it counts like a first subscribe.
        let limit = self.app.subscribe_rate_per_sec;
        if !self.rates.allow(Counted::Subscribe, limit, Instant::now()) {
            self.cx
                .metrics
                .rate_limited(&self.app.id, Limit::Subscriptions);
            return self.subscription_error(
                channel.as_str(),
                "LimitReached",
                &format!("Too many subscribes: at most {limit} per second per connection"),
                429,
            );
        }
        if let Some(member) = self.subscriptions.get(&channel) {
            // pusher-js never subscribes twice on one socket; answer again rather than leave a
            // client waiting, without changing shared state.
            let member = member.clone();
            return self.resend_succeeded(&channel, member.is_some()).await;
        }
        if self.subscriptions.len() >= self.app.max_subscriptions_per_connection {
            return self.subscription_error(
                channel.as_str(),
                "LimitReached",
                &format!(
                    "Subscription limit reached: at most {} channels per connection",
                    self.app.max_subscriptions_per_connection
                ),
                403,
            );
        }
        let member = match self.authorize(&channel, &sub) {
            Ok(m) => m,
            Err((kind, message, status)) => {
                return self.subscription_error(channel.as_str(), kind, &message, status)
            }
        };
        self.join(channel, member).await;
    }

    /// Checks the subscription's signature; for presence channels, returns the member.
    fn authorize(
        &self,
        channel: &ChannelName,
        sub: &Subscribe,
    ) -> Result<Option<PresenceMember>, (&'static str, String, u16)> {
        let auth_error = |e: AuthError, auth: &str| ("AuthError", e.client_message(auth), 401);
        let kind = channel.kind();
        match kind {
            ChannelKind::Public => return Ok(None),
            ChannelKind::ServerToUser => {
                return match &self.user {
                    Some(u) if u.data.user.channel() == channel => Ok(None),
                    _ => Err((
                        "AuthError",
                        "Sign in as this user (pusher:signin) before subscribing to its server-to-user channel"
                            .into(),
                        403,
                    )),
                }
            }
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence => {}
        }
        let auth = sub.auth.as_deref().unwrap_or("");
        if auth.is_empty() {
            return Err((
                "AuthError",
                format!("Auth info required to subscribe to {channel}"),
                401,
            ));
        }
        if kind == ChannelKind::Presence && sub.channel_data.is_none() {
            // A signed-in connection joins as its signed-in user, signing `socket_id:channel`.
            let Some(user) = &self.user else {
                return Err((
                    "AuthError",
                    format!("Presence channel {channel} requires channel_data (or a sign-in)"),
                    400,
                ));
            };
            let socket_id = self.socket_id.to_string();
            self.secrets()
                .verify_with(|secret| {
                    let key = self.app.key.as_str();
                    verify_channel_auth(auth, key, secret, &socket_id, channel.as_str(), None)
                })
                .map_err(|e| auth_error(e, auth))?;
            return Ok(Some(PresenceMember {
                user_id: user.data.user.user().clone(),
                user_info: user.data.user_info.clone(),
            }));
        }
        let (socket_id, data) = (self.socket_id.to_string(), sub.channel_data.as_deref());
        self.secrets()
            .verify_with(|secret| {
                let key = self.app.key.as_str();
                verify_channel_auth(auth, key, secret, &socket_id, channel.as_str(), data)
            })
            .map_err(|e| auth_error(e, auth))?;
        if kind != ChannelKind::Presence {
            return Ok(None);
        }
        let data = sub.channel_data.as_deref().unwrap_or_default();
        parse_channel_data(data, self.app.member_limits)
            .map(Some)
            .map_err(|e| ("InvalidChannelData", e.to_string(), 400))
    }

    /// Subscribes through the node, which confirms it to the client.
    async fn join(&mut self, channel: ChannelName, member: Option<PresenceMember>) {
        let joining = Joining {
            app: &self.app.id,
            channel: &channel,
            socket: self.socket_id,
            outbox: &self.outbox,
            presence: member.as_ref().map(|m| (m, self.app.max_presence_members)),
            subscription_counts: self.app.subscription_count_events,
        };
        match self.cx.node.subscribe(joining).await {
            Ok(()) => {
                if channel.kind().requires_auth() {
                    self.outbox.authenticated();
                }
                self.subscriptions.insert(channel, member);
            }
            Err(e) => {
                let (kind, status) = match e {
                    JoinError::MemberLimit { .. } => ("LimitReached", 403),
                    JoinError::Backend(_) => ("ServerError", 503),
                };
                self.subscription_error(channel.as_str(), kind, &e.to_string(), status);
            }
        }
    }

    async fn resend_succeeded(&self, channel: &ChannelName, presence: bool) {
        if !presence {
            return self.send(&outbound::subscription_succeeded(channel.as_str()));
        }
        match self.cx.node.presence_members(&self.app.id, channel).await {
            Ok(members) => self.send(&presence_succeeded(channel, &members)),
            Err(e) => self.subscription_error(channel.as_str(), "ServerError", &e.to_string(), 503),
        }
    }

    async fn unsubscribe(&mut self, channel: &str) {
        let Some((channel, member)) = self.subscriptions.remove_entry(channel) else {
            return; // unknown channels are ignored, as Pusher does
        };
        self.leave(&channel, member).await;
    }

    async fn leave(&self, channel: &ChannelName, member: Option<PresenceMember>) {
        let counts = self.app.subscription_count_events;
        self.cx
            .node
            .unsubscribe(
                &self.app.id,
                channel,
                self.socket_id,
                member.as_ref(),
                counts,
            )
            .await;
    }

    /// Leaves every channel and signs out; called once when the connection ends, however it
    /// ends.
    pub async fn leave_all(&mut self) {
        for (channel, member) in std::mem::take(&mut self.subscriptions) {
            self.leave(&channel, member).await;
        }
        if let Some(user) = self.user.take() {
            let app = &self.app.id;
            if !user.watching.is_empty() {
                self.cx
                    .node
                    .unwatch(app, self.socket_id, &user.watching)
                    .await;
            }
            self.cx
                .node
                .sign_out(app, &user.data.user, self.socket_id, user.online)
                .await;
        }
    }

    /// `pusher:signin`: a bad signature or unusable user data closes the connection (4009); a
    /// second sign-in as the same user is confirmed again and changes nothing, one as another
    /// user is refused.
    async fn signin(&mut self, auth: &str, user_data: &str) {
        let secrets = self.secrets();
        let data = match signin::check(&self.app, &secrets, self.socket_id, auth, user_data) {
            Ok(data) => data,
            Err(message) => {
                return self
                    .outbox
                    .close(CloseReason::new(ErrorCode::Unauthorized, message))
            }
        };
        if let Some(current) = &self.user {
            if current.data.user != data.user {
                return self.send_error(
                    None,
                    &format!(
                        "Sign-in refused: this connection is already signed in as user {}",
                        current.data.user.user()
                    ),
                );
            }
            return self.send(&outbound::signin_success(user_data));
        }
        let online = self.app.watchlist_events;
        let signing_in = SigningIn {
            app: &self.app.id,
            user: &data.user,
            socket: self.socket_id,
            outbox: &self.outbox,
            online,
        };
        if let Err(e) = self.cx.node.sign_in(signing_in).await {
            return self.send_error(None, &format!("Sign-in failed: {e}"));
        }
        self.outbox.authenticated();
        self.send(&outbound::signin_success(user_data));
        let mut watching = Vec::new();
        if self.app.watchlist_events {
            if data.watchlist_truncated {
                self.send_error(
                    Some(ErrorCode::WatchlistTooLarge),
                    &format!(
                        "Watchlist too long: only its first {MAX_WATCHLIST} user ids are watched"
                    ),
                );
            }
            if !data.watchlist.is_empty() {
                match self
                    .cx
                    .node
                    .watch(&self.app.id, self.socket_id, &self.outbox, &data.watchlist)
                    .await
                {
                    Ok(()) => watching.clone_from(&data.watchlist),
                    Err(e) => self.send_error(None, &format!("Watchlist unavailable: {e}")),
                }
            }
        }
        self.user = Some(Box::new(SignedIn {
            data,
            online,
            watching,
        }));
    }

    async fn client_event(&mut self, event: &str, channel: &str, data: &str) {
        if !self.app.client_events {
            return self.send_error(None, CLIENT_EVENTS_DISABLED);
        }
        let Some((channel, member)) = self.subscriptions.get_key_value(channel) else {
            let shown: String = channel.chars().take(200).collect();
            return self.send_error(
                None,
                &format!("Client event rejected: not subscribed to channel {shown}"),
            );
        };
        if channel.kind() == ChannelKind::PrivateEncrypted {
            return self.send_error(None, ENCRYPTED_CLIENT_EVENTS);
        }
        if !channel.kind().allows_client_events() {
            return self.send_error(
                None,
                &format!(
                    "Client event rejected: client events are only allowed on private and presence channels, not {channel}"
                ),
            );
        }
        let name = match EventName::parse(event) {
            Ok(name) => name,
            Err(e) => return self.send_error(None, &format!("Client event rejected: {e}")),
        };
        if data.len() > self.app.max_event_payload_bytes {
            return self.send_error(
                None,
                &format!(
                    "Client event rejected: data is larger than {} bytes",
                    self.app.max_event_payload_bytes
                ),
            );
        }
        let limit = self.app.client_event_rate_per_sec;
        if !self
            .rates
            .allow(Counted::ClientEvent, limit, Instant::now())
        {
            return self.rate_limited("Client event");
        }
        let event = ChannelEvent {
            app: self.app.id.clone(),
            channel: channel.clone(),
            except: Some(self.socket_id),
            message: ChannelMessage::Event {
                name,
                data: Arc::from(data),
                user_id: member.as_ref().map(|m| m.user_id.clone()),
            },
        };
        match self.cx.node.publish_client_event(&event).await {
            Ok(()) => {
                self.cx.node.client_event_published(&event);
                self.cx.node.webhooks().client_event(&event);
            }
            Err(e) => {
                // The sender learns of it: a client event lost without a word would be a
                // silent loss (Redis away or too slow).
                tracing::warn!(channel = %event.channel, error = %e, "client event not published");
                self.send_error(
                    None,
                    &format!("Client event not published: the cluster is unavailable ({e})"),
                );
            }
        }
    }

    /// Tells the client that `what` (a client or custom event) was over the app's rate.
    fn rate_limited(&self, what: &str) {
        self.cx
            .metrics
            .rate_limited(&self.app.id, Limit::ClientEvents);
        self.send_error(
            Some(ErrorCode::ClientEventRateLimited),
            &format!(
                "{what} rejected: more than {} client events per second",
                self.app.client_event_rate_per_sec
            ),
        );
    }

    fn subscription_error(&self, channel: &str, kind: &str, message: &str, status: u16) {
        self.send(&outbound::subscription_error(
            channel, kind, message, status,
        ));
    }
}
