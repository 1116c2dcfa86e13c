//! The task that drives one client: connecting, the session's `select!` loop over socket
//! reads, user commands, pending authorizations and the liveness timer, and reconnecting.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warren_protocol::names::SERVER_TO_USER_PREFIX;
use warren_protocol::ChannelKind;

use super::authorizer::ChannelAuthRequest;
use super::crypto;
use super::event::{decode_data, error_fields, Event, Incoming};
use super::presence::{member_from_channel_data, Member, Members};
use super::reconnect::{close_action, CloseAction};
use super::{ChannelShared, ConnectionState, SignedIn, SubscriptionState, WsConfig, WsError};
use crate::auth::{ChannelAuth, UserAuth};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type EventHandler = Box<dyn FnMut(&Event) + Send>;
pub(crate) type ErrorHandler = Box<dyn FnMut(&WsError) + Send>;
type Reply<T> = oneshot::Sender<Result<T, WsError>>;

const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;
const PING: &str = r#"{"event":"pusher:ping","data":{}}"#;
const PONG_TIMEOUT: &str = "a pong (or any message) after pusher:ping";
/// How long a client-initiated close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub(crate) enum Command {
    Subscribe(Arc<ChannelShared>),
    Unsubscribe(String),
    Bind(Binding),
    OnError(u64, ErrorHandler),
    Unbind(u64),
    Trigger {
        channel: String,
        event: String,
        data: String,
        reply: Reply<()>,
    },
    Signin(Reply<SignedIn>),
    Close(oneshot::Sender<()>),
}

pub(crate) struct Binding {
    pub id: u64,
    pub channel: Option<String>,
    pub event: Option<String>,
    pub handler: EventHandler,
}

impl Binding {
    fn matches(&self, event: &str, channel: Option<&str>) -> bool {
        let event_ok = match self.event.as_deref() {
            Some(e) => e == event,
            None => true,
        };
        let channel_ok = match self.channel.as_deref() {
            Some(c) => Some(c) == channel,
            None => true,
        };
        event_ok && channel_ok
    }
}

struct ChannelEntry {
    shared: Arc<ChannelShared>,
    /// Secretbox key of an encrypted channel, from its auth answer.
    key: Option<[u8; 32]>,
    /// Our own member on a presence channel, from the channel_data we subscribed with.
    me: Option<Member>,
}

enum Signin {
    Off,
    /// Sign in as soon as possible; these callers wait for the outcome.
    Wanted(Vec<Reply<SignedIn>>),
    Done(SignedIn),
}

/// Why a connection (attempt) ended.
enum End {
    /// Closed by the user, or every handle was dropped.
    Stop,
    Lost {
        code: Option<u16>,
        error: WsError,
    },
}

impl End {
    fn io(e: impl std::fmt::Display) -> Self {
        End::Lost {
            code: None,
            error: WsError::Connect(e.to_string()),
        }
    }
}

enum AuthOutcome {
    Channel {
        channel: String,
        result: Result<ChannelAuth, String>,
    },
    User(Result<UserAuth, String>),
}

type PendingAuth = Pin<Box<dyn Future<Output = AuthOutcome> + Send>>;

/// One connected socket's state.
struct Session {
    ws: Socket,
    socket_id: String,
    auths: FuturesUnordered<PendingAuth>,
    /// A sign-in is being authorized or awaits the server's answer.
    signing_in: bool,
}

pub(crate) struct Task {
    config: WsConfig,
    url: String,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<ConnectionState>,
    channels: HashMap<String, ChannelEntry>,
    bindings: Vec<Binding>,
    error_handlers: Vec<(u64, ErrorHandler)>,
    signin: Signin,
    /// Retries since the last successful connection.
    attempt: u32,
    close_replies: Vec<oneshot::Sender<()>>,
    /// Set once the first connection is established (read by `WsClient::connect`).
    connected_once: Arc<AtomicBool>,
}

impl Task {
    pub(crate) fn new(
        config: WsConfig,
        url: String,
        commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<ConnectionState>,
        connected_once: Arc<AtomicBool>,
    ) -> Self {
        Self {
            config,
            url,
            commands,
            state,
            channels: HashMap::new(),
            bindings: Vec::new(),
            error_handlers: Vec::new(),
            signin: Signin::Off,
            attempt: 0,
            close_replies: Vec::new(),
            connected_once,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.state.send_replace(ConnectionState::Connecting);
            let end = match self.open().await {
                Ok((ws, socket_id, activity)) => {
                    self.attempt = 0;
                    self.session(ws, socket_id, activity).await
                }
                Err(end) => end,
            };
            self.connection_lost();
            let (code, error) = match end {
                End::Stop => return self.finish(ConnectionState::Disconnected),
                End::Lost { code, error } => (code, error),
            };
            tracing::debug!(?code, %error, "connection ended");
            let delay = match close_action(code) {
                CloseAction::Stop => {
                    self.report_error(&error);
                    return self.finish(ConnectionState::Failed(error));
                }
                CloseAction::ReconnectAfter(d) => d,
                CloseAction::ReconnectNow => Duration::ZERO,
                CloseAction::Backoff if error == WsError::Timeout(PONG_TIMEOUT) => Duration::ZERO,
                CloseAction::Backoff => {
                    let d = self.config.backoff.delay(self.attempt);
                    self.attempt = self.attempt.saturating_add(1);
                    d
                }
            };
            self.state.send_replace(ConnectionState::Unavailable {
                retry_in: delay,
                reason: error,
            });
            if !self.idle(delay).await {
                return self.finish(ConnectionState::Disconnected);
            }
        }
    }

    /// Final state: every waiter learns the outcome.
    fn finish(&mut self, state: ConnectionState) {
        let error = match &state {
            ConnectionState::Failed(e) => e.clone(),
            _ => WsError::ClientClosed,
        };
        if let Signin::Wanted(waiting) = std::mem::replace(&mut self.signin, Signin::Off) {
            for reply in waiting {
                let _ = reply.send(Err(error.clone()));
            }
        }
        for entry in self.channels.values() {
            let s = match &state {
                ConnectionState::Failed(e) => SubscriptionState::Failed(e.clone()),
                _ => SubscriptionState::Unsubscribed,
            };
            entry.shared.state.send_replace(s);
        }
        self.state.send_replace(state);
        for reply in self.close_replies.drain(..) {
            let _ = reply.send(());
        }
    }

    /// After a connection ends: subscriptions become pending again, the server-to-user
    /// channel goes (it is subscribed again after the next sign-in), presence members are
    /// forgotten, and a sign-in is redone on the next connection.
    fn connection_lost(&mut self) {
        self.channels
            .retain(|name, _| !name.starts_with(SERVER_TO_USER_PREFIX));
        for entry in self.channels.values() {
            entry.shared.state.send_if_modified(|s| {
                if matches!(s, SubscriptionState::Subscribed) {
                    *s = SubscriptionState::Pending;
                    true
                } else {
                    false
                }
            });
            if let Ok(mut m) = entry.shared.members.write() {
                *m = None;
            }
        }
        if matches!(self.signin, Signin::Done(_)) {
            self.signin = Signin::Wanted(Vec::new());
        }
    }

    /// Waits `delay` while serving commands; false when the client is to stop.
    async fn idle(&mut self, delay: Duration) -> bool {
        let wake = sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => return true,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => if !self.offline_command(cmd) { return false },
                    None => return false,
                },
            }
        }
    }

    /// Connects and waits for `connection_established`, serving commands meanwhile.
    async fn open(&mut self) -> Result<(Socket, String, Duration), End> {
        let url = self.url.clone();
        let timeout = self.config.connect_timeout;
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size))
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0);
        let attempt = async move {
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true)
                    .await
                    .map_err(End::io)?;
            let (socket_id, activity) = established(&mut ws).await?;
            Ok((ws, socket_id, activity))
        };
        let attempt = tokio::time::timeout(timeout, attempt);
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                result = &mut attempt => {
                    return match result {
                        Ok(Ok((ws, socket_id, activity))) => {
                            let activity = if activity.is_zero() {
                                self.config.activity_timeout
                            } else {
                                activity.min(self.config.activity_timeout)
                            };
                            Ok((ws, socket_id, activity))
                        }
                        Ok(Err(end)) => Err(end),
                        Err(_) => Err(End::Lost { code: None, error: WsError::Timeout("the connection to be established") }),
                    };
                }
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => if !self.offline_command(cmd) { return Err(End::Stop) },
                    None => return Err(End::Stop),
                },
            }
        }
    }

    async fn session(&mut self, ws: Socket, socket_id: String, activity: Duration) -> End {
        tracing::debug!(%socket_id, "connected");
        self.connected_once.store(true, Ordering::Release);
        self.state.send_replace(ConnectionState::Connected {
            socket_id: socket_id.clone(),
        });
        let mut s = Session {
            ws,
            socket_id,
            auths: FuturesUnordered::new(),
            signing_in: false,
        };
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            if let Err(end) = self.start_subscription(&mut s, &name).await {
                return end;
            }
        }
        if matches!(self.signin, Signin::Wanted(_)) {
            self.start_signin(&mut s);
        }
        let pong_timeout = self.config.pong_timeout;
        let mut last_seen = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        let timer = sleep_until(last_seen + activity);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                msg = s.ws.next() => {
                    last_seen = Instant::now();
                    ping_sent = None;
                    let result = match msg {
                        Some(Ok(Message::Text(text))) => self.on_text(&mut s, text.as_str()).await,
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame
                                .map(|f| (Some(u16::from(f.code)), f.reason.as_str().to_owned()))
                                .unwrap_or((None, String::new()));
                            let _ = tokio::time::timeout(CLOSE_WAIT, s.ws.close(None)).await;
                            Err(End::Lost {
                                code,
                                error: match code {
                                    Some(code) => WsError::Closed { code, reason },
                                    None => WsError::Connect("closed by the server".into()),
                                },
                            })
                        }
                        Some(Ok(_)) => Ok(()),
                        Some(Err(e)) => Err(End::io(e)),
                        None => Err(End::io("connection closed")),
                    };
                    if let Err(end) = result {
                        return end;
                    }
                }
                cmd = self.commands.recv() => {
                    let result = match cmd {
                        Some(cmd) => self.online_command(&mut s, cmd).await,
                        None => Err(End::Stop),
                    };
                    if let Err(end) = result {
                        if matches!(end, End::Stop) {
                            close_socket(&mut s.ws).await;
                        }
                        return end;
                    }
                }
                Some(outcome) = s.auths.next(), if !s.auths.is_empty() => {
                    if let Err(end) = self.on_auth(&mut s, outcome).await {
                        return end;
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    match ping_sent {
                        Some(_) => {
                            // Nothing arrived since the ping (any message clears ping_sent).
                            return End::Lost { code: None, error: WsError::Timeout(PONG_TIMEOUT) };
                        }
                        None if now >= last_seen + activity => {
                            if let Err(end) = send(&mut s.ws, PING.to_owned()).await {
                                return end;
                            }
                            ping_sent = Some(now);
                            timer.as_mut().reset(now + pong_timeout);
                        }
                        None => timer.as_mut().reset(last_seen + activity),
                    }
                }
            }
        }
    }

    /// Commands that do the same connected or not; gives back the others.
    fn common_command(&mut self, cmd: Command) -> Option<Command> {
        match cmd {
            Command::Bind(b) => self.bindings.push(b),
            Command::OnError(id, h) => self.error_handlers.push((id, h)),
            Command::Unbind(id) => {
                self.bindings.retain(|b| b.id != id);
                self.error_handlers.retain(|(i, _)| *i != id);
            }
            other => return Some(other),
        }
        None
    }

    /// A command while there is no connection; false when the client is to stop.
    fn offline_command(&mut self, cmd: Command) -> bool {
        let Some(cmd) = self.common_command(cmd) else {
            return true;
        };
        match cmd {
            Command::Subscribe(shared) => {
                self.add_channel(shared);
            }
            Command::Unsubscribe(name) => self.remove_channel(&name),
            Command::Trigger { reply, .. } => {
                let _ = reply.send(Err(WsError::NotConnected));
            }
            Command::Signin(reply) => self.want_signin(reply),
            Command::Close(reply) => {
                self.close_replies.push(reply);
                return false;
            }
            Command::Bind(_) | Command::OnError(..) | Command::Unbind(_) => {}
        }
        true
    }

    async fn online_command(&mut self, s: &mut Session, cmd: Command) -> Result<(), End> {
        let Some(cmd) = self.common_command(cmd) else {
            return Ok(());
        };
        match cmd {
            Command::Subscribe(shared) => {
                let name = shared.name.clone();
                if self.add_channel(shared) {
                    self.start_subscription(s, &name).await?;
                }
            }
            Command::Unsubscribe(name) => {
                if self.channels.contains_key(&name) {
                    self.remove_channel(&name);
                    let msg = json!({"event": "pusher:unsubscribe", "data": {"channel": name}});
                    send(&mut s.ws, msg.to_string()).await?;
                }
            }
            Command::Trigger {
                channel,
                event,
                data,
                reply,
            } => {
                let subscribed = self.channels.get(&channel).is_some_and(|e| {
                    matches!(*e.shared.state.borrow(), SubscriptionState::Subscribed)
                });
                if !subscribed {
                    let _ = reply.send(Err(WsError::NotSubscribed(channel)));
                    return Ok(());
                }
                let frame = format!(
                    r#"{{"event":{},"channel":{},"data":{data}}}"#,
                    Value::String(event),
                    Value::String(channel)
                );
                let result = send(&mut s.ws, frame).await;
                let _ = reply.send(match &result {
                    Ok(()) => Ok(()),
                    Err(_) => Err(WsError::NotConnected),
                });
                result?;
            }
            Command::Signin(reply) => {
                let start = matches!(self.signin, Signin::Off);
                self.want_signin(reply);
                if start && !s.signing_in {
                    self.start_signin(s);
                }
            }
            Command::Close(reply) => {
                self.close_replies.push(reply);
                return Err(End::Stop);
            }
            Command::Bind(_) | Command::OnError(..) | Command::Unbind(_) => {}
        }
        Ok(())
    }

    /// Adds a channel to the wanted set; false if it was there already.
    fn add_channel(&mut self, shared: Arc<ChannelShared>) -> bool {
        if self.channels.contains_key(&shared.name) {
            return false;
        }
        shared.state.send_replace(SubscriptionState::Pending);
        self.channels.insert(
            shared.name.clone(),
            ChannelEntry {
                shared,
                key: None,
                me: None,
            },
        );
        true
    }

    fn remove_channel(&mut self, name: &str) {
        if let Some(entry) = self.channels.remove(name) {
            entry
                .shared
                .state
                .send_replace(SubscriptionState::Unsubscribed);
        }
    }

    fn want_signin(&mut self, reply: Reply<SignedIn>) {
        if self.config.user_authenticator.is_none() {
            let _ = reply.send(Err(WsError::Config(
                "sign-in needs a user authenticator (WsConfig::with_user_authenticator or with_user_auth_endpoint)".into(),
            )));
            return;
        }
        match &mut self.signin {
            Signin::Done(user) => {
                let _ = reply.send(Ok(user.clone()));
            }
            Signin::Wanted(waiting) => waiting.push(reply),
            Signin::Off => self.signin = Signin::Wanted(vec![reply]),
        }
    }

    fn start_signin(&mut self, s: &mut Session) {
        let Some(authenticator) = self.config.user_authenticator.clone() else {
            return;
        };
        s.signing_in = true;
        let fut = authenticator.authenticate(s.socket_id.clone());
        s.auths
            .push(Box::pin(async move { AuthOutcome::User(fut.await) }));
    }

    /// Sends the subscription, or starts its authorization.
    async fn start_subscription(&mut self, s: &mut Session, name: &str) -> Result<(), End> {
        let Some(entry) = self.channels.get(name) else {
            return Ok(());
        };
        entry.shared.state.send_replace(SubscriptionState::Pending);
        if !entry.shared.kind.requires_auth() {
            let msg = json!({"event": "pusher:subscribe", "data": {"channel": name, "auth": ""}});
            return send(&mut s.ws, msg.to_string()).await;
        }
        let Some(authorizer) = self.config.channel_authorizer.clone() else {
            let error = WsError::Config(format!(
                "{name} needs authorization: configure a channel authorizer (WsConfig::with_channel_authorizer or with_channel_auth_endpoint)"
            ));
            self.subscription_failed(name, error, "AuthError", None);
            return Ok(());
        };
        let fut = authorizer.authorize(ChannelAuthRequest {
            socket_id: s.socket_id.clone(),
            channel_name: name.to_owned(),
        });
        let channel = name.to_owned();
        s.auths.push(Box::pin(async move {
            AuthOutcome::Channel {
                channel,
                result: fut.await,
            }
        }));
        Ok(())
    }

    fn subscription_failed(
        &mut self,
        name: &str,
        error: WsError,
        error_type: &str,
        status: Option<u16>,
    ) {
        if let Some(entry) = self.channels.get(name) {
            entry
                .shared
                .state
                .send_replace(SubscriptionState::Failed(error.clone()));
        }
        self.report_error(&error);
        let data = json!({"type": error_type, "error": error.to_string(), "status": status});
        self.dispatch_with(
            "pusher:subscription_error",
            Some(name),
            || (data.to_string(), data.clone()),
            None,
        );
    }

    async fn on_auth(&mut self, s: &mut Session, outcome: AuthOutcome) -> Result<(), End> {
        match outcome {
            AuthOutcome::Channel { channel, result } => {
                let Some(entry) = self.channels.get_mut(&channel) else {
                    return Ok(());
                };
                let auth = match result {
                    Ok(auth) => auth,
                    Err(message) => {
                        let error = WsError::Auth {
                            target: channel.clone(),
                            message,
                        };
                        self.subscription_failed(&channel, error, "AuthError", None);
                        return Ok(());
                    }
                };
                if entry.shared.kind == ChannelKind::PrivateEncrypted {
                    match auth
                        .shared_secret
                        .as_deref()
                        .map(crypto::parse_shared_secret)
                    {
                        Some(Ok(key)) => entry.key = Some(key),
                        other => {
                            let message = match other {
                                Some(Err(e)) => e,
                                _ => "the auth answer has no shared_secret".into(),
                            };
                            let error = WsError::Auth {
                                target: channel.clone(),
                                message,
                            };
                            self.subscription_failed(&channel, error, "AuthError", None);
                            return Ok(());
                        }
                    }
                }
                entry.me = auth
                    .channel_data
                    .as_deref()
                    .and_then(member_from_channel_data);
                let mut data = json!({"channel": channel, "auth": auth.auth});
                if let Some(cd) = auth.channel_data {
                    data["channel_data"] = Value::String(cd);
                }
                let msg = json!({"event": "pusher:subscribe", "data": data});
                send(&mut s.ws, msg.to_string()).await
            }
            AuthOutcome::User(Ok(user)) => {
                let msg = json!({"event": "pusher:signin", "data": {"auth": user.auth, "user_data": user.user_data}});
                send(&mut s.ws, msg.to_string()).await
            }
            AuthOutcome::User(Err(message)) => {
                s.signing_in = false;
                self.signin_failed(WsError::Auth {
                    target: "user sign-in".into(),
                    message,
                });
                Ok(())
            }
        }
    }

    fn signin_failed(&mut self, error: WsError) {
        if let Signin::Wanted(waiting) = std::mem::replace(&mut self.signin, Signin::Off) {
            for reply in waiting {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }

    async fn on_text(&mut self, s: &mut Session, text: &str) -> Result<(), End> {
        let frame = match Incoming::parse(text) {
            Ok(f) => f,
            Err(e) => {
                self.report_error(&WsError::Protocol(e));
                return Ok(());
            }
        };
        let channel = frame.channel.as_deref();
        match frame.event.as_ref() {
            "pusher:ping" => return send(&mut s.ws, PONG.to_owned()).await,
            "pusher:pong" | "pusher:connection_established" => {}
            "pusher:error" => {
                let (code, message) = error_fields(&decode_data(&frame.data_string()));
                let error = WsError::Server { code, message };
                if s.signing_in {
                    s.signing_in = false;
                    self.signin_failed(error.clone());
                }
                self.report_error(&error);
            }
            "pusher:signin_success" => {
                s.signing_in = false;
                let data = decode_data(&frame.data_string());
                let user_data = data
                    .get("user_data")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let user: Value = serde_json::from_str(&user_data).unwrap_or(Value::Null);
                let Some(id) = user.get("id").and_then(super::event::id_string) else {
                    self.signin_failed(WsError::Protocol(format!(
                        "pusher:signin_success without a user id: {user_data}"
                    )));
                    return Ok(());
                };
                let signed = SignedIn {
                    id: id.clone(),
                    user_info: user.get("user_info").filter(|v| !v.is_null()).cloned(),
                    user_data,
                };
                if let Signin::Wanted(waiting) =
                    std::mem::replace(&mut self.signin, Signin::Done(signed.clone()))
                {
                    for reply in waiting {
                        let _ = reply.send(Ok(signed.clone()));
                    }
                }
                let name = format!("{SERVER_TO_USER_PREFIX}{id}");
                let shared = ChannelShared::new(&name);
                if self.add_channel(Arc::new(shared)) {
                    self.start_subscription(s, &name).await?;
                }
            }
            "pusher_internal:subscription_succeeded" => {
                let Some(name) = channel else { return Ok(()) };
                let raw = frame.data_string();
                let data = decode_data(&raw);
                let Some(entry) = self.channels.get(name) else {
                    return Ok(());
                };
                if entry.shared.kind == ChannelKind::Presence {
                    let members = Members::from_subscription(&data, entry.me.clone());
                    if let Ok(mut m) = entry.shared.members.write() {
                        *m = Some(members);
                    }
                }
                entry
                    .shared
                    .state
                    .send_replace(SubscriptionState::Subscribed);
                self.dispatch_with(
                    "pusher:subscription_succeeded",
                    channel,
                    || (raw, data),
                    None,
                );
            }
            "pusher_internal:member_added" | "pusher_internal:member_removed" => {
                let Some(entry) = channel.and_then(|c| self.channels.get(c)) else {
                    return Ok(());
                };
                let added = frame.event == "pusher_internal:member_added";
                let raw = frame.data_string();
                let data = decode_data(&raw);
                let changed = match entry.shared.members.write() {
                    Ok(mut guard) => match guard.as_mut() {
                        Some(m) if added => m.add(&data).is_some(),
                        Some(m) => m.remove(&data).is_some(),
                        None => false,
                    },
                    Err(_) => false,
                };
                if changed {
                    let name = if added {
                        "pusher:member_added"
                    } else {
                        "pusher:member_removed"
                    };
                    self.dispatch_with(name, channel, || (raw, data), None);
                }
            }
            "pusher_internal:subscription_count" => {
                self.dispatch_with(
                    "pusher:subscription_count",
                    channel,
                    || {
                        let raw = frame.data_string();
                        let data = decode_data(&raw);
                        (raw, data)
                    },
                    None,
                );
            }
            "pusher:subscription_error" => {
                let Some(name) = channel else { return Ok(()) };
                let data = decode_data(&frame.data_string());
                let error = WsError::Subscription {
                    channel: name.to_owned(),
                    error_type: data
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("Error")
                        .to_owned(),
                    message: data
                        .get("error")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| data.to_string()),
                    status: data
                        .get("status")
                        .and_then(Value::as_u64)
                        .and_then(|s| u16::try_from(s).ok()),
                };
                if let Some(entry) = self.channels.get(name) {
                    entry
                        .shared
                        .state
                        .send_replace(SubscriptionState::Failed(error.clone()));
                }
                self.report_error(&error);
                let raw = data.to_string();
                self.dispatch_with(frame.event.as_ref(), channel, || (raw, data), None);
            }
            internal if internal.starts_with("pusher_internal:") => {}
            event => {
                let key = channel
                    .and_then(|c| self.channels.get(c))
                    .and_then(|e| e.key);
                let user_id = frame.user_id();
                match key {
                    Some(key) if !event.starts_with("pusher:") => {
                        if !self.has_binding(event, channel) {
                            return Ok(());
                        }
                        match crypto::decrypt(&key, &frame.data_string()) {
                            Ok(plain) => self.dispatch_with(
                                event,
                                channel,
                                || {
                                    let data = decode_data(&plain);
                                    (plain, data)
                                },
                                user_id,
                            ),
                            Err(message) => self.report_error(&WsError::Decrypt {
                                channel: channel.unwrap_or_default().to_owned(),
                                message,
                            }),
                        }
                    }
                    _ => self.dispatch_with(
                        event,
                        channel,
                        || {
                            let raw = frame.data_string();
                            let data = decode_data(&raw);
                            (raw, data)
                        },
                        user_id,
                    ),
                }
            }
        }
        Ok(())
    }

    fn has_binding(&self, event: &str, channel: Option<&str>) -> bool {
        self.bindings.iter().any(|b| b.matches(event, channel))
    }

    /// Calls every matching handler; the event is built only when one matches.
    fn dispatch_with(
        &mut self,
        event: &str,
        channel: Option<&str>,
        data: impl FnOnce() -> (String, Value),
        user_id: Option<String>,
    ) {
        if !self.has_binding(event, channel) {
            return;
        }
        let (raw_data, data) = data();
        let ev = Event {
            event: event.to_owned(),
            channel: channel.map(str::to_owned),
            data,
            raw_data,
            user_id,
        };
        for b in &mut self.bindings {
            if b.matches(event, channel) {
                (b.handler)(&ev);
            }
        }
    }

    fn report_error(&mut self, error: &WsError) {
        tracing::debug!(%error, "websocket client error");
        for (_, h) in &mut self.error_handlers {
            h(error);
        }
    }
}

/// Reads until `pusher:connection_established`; returns the socket id and activity timeout.
async fn established(ws: &mut Socket) -> Result<(String, Duration), End> {
    let mut refused: Option<(Option<u16>, String)> = None;
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(End::io(e)),
            None => return Err(End::io("closed before connection_established")),
        };
        match msg {
            Message::Text(text) => {
                let Ok(frame) = Incoming::parse(text.as_str()) else {
                    continue;
                };
                let data = decode_data(&frame.data_string());
                match frame.event.as_ref() {
                    "pusher:connection_established" => {
                        let socket_id = data
                            .get("socket_id")
                            .and_then(Value::as_str)
                            .filter(|id| warren_protocol::SocketId::parse(id).is_ok())
                            .ok_or_else(|| End::Lost {
                                code: None,
                                error: WsError::Protocol(format!(
                                    "connection_established without a valid socket_id: {data}"
                                )),
                            })?;
                        let activity = data
                            .get("activity_timeout")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        return Ok((socket_id.to_owned(), Duration::from_secs(activity)));
                    }
                    "pusher:error" => refused = Some(error_fields(&data)),
                    _ => {}
                }
            }
            Message::Close(frame) => {
                let code = frame
                    .as_ref()
                    .map(|f| u16::from(f.code))
                    .or(refused.as_ref().and_then(|r| r.0));
                let reason = refused
                    .map(|r| r.1)
                    .or(frame.map(|f| f.reason.as_str().to_owned()))
                    .unwrap_or_default();
                let error = match code {
                    Some(code) => WsError::Closed { code, reason },
                    None => {
                        WsError::Connect(format!("closed before connection_established: {reason}"))
                    }
                };
                return Err(End::Lost { code, error });
            }
            _ => {}
        }
    }
}

async fn send(ws: &mut Socket, text: String) -> Result<(), End> {
    ws.send(Message::text(text)).await.map_err(End::io)
}

/// A clean close: our close frame, then the server's answer (briefly).
async fn close_socket(ws: &mut Socket) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
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
            members: std::sync::RwLock::new(None),
        }
    }
}
