//! The client's protocol state machine, without I/O.
//!
//! It is fed [`Input`]s (decoded server messages, requests from the handles, the end of a
//! timer, a connection opened or lost, authorizations done) with the current time, and
//! answers with [`Output`]s (frames to send, events and errors for the handlers, connections
//! to open, close or drop, authorizations to run) and one [`Machine::deadline`]: the time it
//! wants an [`Input::Tick`] at. The driver carries the outputs out in order and does nothing
//! else, so every protocol decision is made, and tested, here.
//!
//! The invariant: at most one connection exists, and everything tied to one (socket id,
//! pending authorizations, liveness timers, presence members) is dropped with it; what the
//! user asked for (channels, sign-in) outlives it and is redone on the next one.

mod channels;
mod link;
mod signin;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use warren_protocol::server_message::UserStatus;
use warren_protocol::{ChannelName, ServerMessage, ServerMessageError, UserId};

use super::authorizer::ChannelAuthRequest;
use super::command::Request;
use super::event::{Emit, WATCHLIST_CHANNEL};
use super::reconnect::{close_action, Backoff, CloseAction};
use super::{frames, ConnectionState, WsConfig, WsError};
use crate::auth::{ChannelAuth, UserAuth};
use channels::Channels;
use link::{Liveness, Opening, Phase, Session};
use signin::Signin;

/// What the machine needs to know of the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub activity_timeout: Duration,
    pub pong_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    pub can_authorize_channels: bool,
    pub can_sign_in: bool,
}

impl From<&WsConfig> for Settings {
    fn from(c: &WsConfig) -> Self {
        Self {
            activity_timeout: c.activity_timeout,
            pong_timeout: c.pong_timeout,
            connect_timeout: c.connect_timeout,
            backoff: c.backoff,
            can_authorize_channels: c.channel_authorizer.is_some(),
            can_sign_in: c.user_authenticator.is_some(),
        }
    }
}

pub(crate) enum Input {
    /// The connection asked for by [`Output::Connect`] completed its WebSocket handshake.
    Opened,
    /// That connection could not be opened.
    ConnectFailed(String),
    Received(ServerMessage),
    /// A text message that is not a Pusher message, with the start of its text.
    Undecodable(ServerMessageError, String),
    /// Any other frame (WebSocket ping or pong, binary): proof of life only.
    OtherFrame,
    /// The server's close frame, its code and reason if it had them.
    CloseFrame {
        code: Option<u16>,
        reason: String,
    },
    /// The connection broke: an I/O error, the end of the stream, a failed write.
    Lost(String),
    Request(Request),
    /// Every handle was dropped.
    Abandoned,
    /// An [`Output::Authorize`] finished; `socket_id` is the one it was asked for.
    ChannelAuthorized {
        socket_id: String,
        channel: String,
        result: Result<ChannelAuth, String>,
    },
    /// An [`Output::Authenticate`] finished.
    UserAuthenticated {
        socket_id: String,
        result: Result<UserAuth, String>,
    },
    /// The deadline passed (an early tick is harmless).
    Tick,
}

#[derive(Debug)]
pub(crate) enum Output {
    /// Open a connection (none is open).
    Connect,
    /// Write a text frame; `written` learns whether it was.
    Send {
        text: String,
        written: Option<oneshot::Sender<Result<(), WsError>>>,
    },
    /// Close the connection cleanly (code 1000).
    Close,
    /// Drop the connection, or the attempt to open one, at once.
    Disconnect,
    Authorize(ChannelAuthRequest),
    Authenticate {
        socket_id: String,
    },
    Emit(Emit),
    Error(WsError),
    /// The client is done: tell `notify` (a caller of `close`), then stop.
    Stop {
        notify: Option<oneshot::Sender<()>>,
    },
}

/// The outputs waiting for the driver, with the helpers the parts of the machine share.
#[derive(Debug, Default)]
pub(crate) struct Outputs(VecDeque<Output>);

impl Outputs {
    fn push(&mut self, output: Output) {
        self.0.push_back(output);
    }

    fn send(&mut self, text: String) {
        self.push(Output::Send {
            text,
            written: None,
        });
    }

    fn emit(
        &mut self,
        event: &str,
        channel: Option<&str>,
        raw_data: String,
        user_id: Option<&str>,
    ) {
        self.push(Output::Emit(Emit {
            event: event.to_owned(),
            channel: channel.map(str::to_owned),
            raw_data,
            user_id: user_id.map(str::to_owned),
        }));
    }

    fn error(&mut self, error: WsError) {
        self.push(Output::Error(error));
    }
}

/// What a missed pong ends the connection with.
const PONG_TIMEOUT: &str = "a pong (or any message) after pusher:ping";

pub(crate) struct Machine {
    settings: Settings,
    phase: Phase,
    channels: Channels,
    signin: Signin,
    /// Retries since the last established connection.
    attempt: u32,
    out: Outputs,
    state: watch::Sender<ConnectionState>,
    /// Set once the first connection is established (read by `WsClient::connect`).
    connected_once: Arc<AtomicBool>,
}

impl Machine {
    /// A machine that starts by connecting.
    pub fn new(
        settings: Settings,
        state: watch::Sender<ConnectionState>,
        connected_once: Arc<AtomicBool>,
        now: Instant,
    ) -> Self {
        let mut m = Self {
            settings,
            phase: Phase::Stopped,
            channels: Channels::default(),
            signin: Signin::default(),
            attempt: 0,
            out: Outputs::default(),
            state,
            connected_once,
        };
        m.begin_connect(now);
        m
    }

    pub fn next_output(&mut self) -> Option<Output> {
        self.out.0.pop_front()
    }

    /// When the machine wants an [`Input::Tick`].
    pub fn deadline(&self) -> Option<Instant> {
        self.phase.deadline(&self.settings)
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        if matches!(self.phase, Phase::Stopped) {
            if let Input::Request(r) = input {
                refuse(r);
            }
            return;
        }
        match input {
            Input::Opened => {
                if let Phase::Opening(o) = &mut self.phase {
                    o.open = true;
                }
            }
            Input::ConnectFailed(e) => {
                if matches!(self.phase, Phase::Opening(_)) {
                    self.lost(now, None, WsError::Connect(e));
                }
            }
            Input::Received(msg) => self.received(now, msg),
            Input::Undecodable(error, excerpt) => {
                if let Phase::Connected(s) = &mut self.phase {
                    s.touch(now);
                    if error.event() == Some("pusher:signin_success") {
                        self.signin.failed(WsError::Protocol(error.to_string()));
                    }
                    let message = format!("{error} in {excerpt:?}");
                    self.out.error(WsError::Protocol(message));
                }
            }
            Input::OtherFrame => {
                if let Phase::Connected(s) = &mut self.phase {
                    s.touch(now);
                }
            }
            Input::CloseFrame { code, reason } => self.close_frame(now, code, reason),
            Input::Lost(e) => {
                if matches!(self.phase, Phase::Opening(_) | Phase::Connected(_)) {
                    self.lost(now, None, WsError::Connect(e));
                }
            }
            Input::Request(r) => self.request(r),
            Input::Abandoned => self.stop(None),
            Input::ChannelAuthorized {
                socket_id,
                channel,
                result,
            } => {
                if self.session_id() == Some(socket_id.as_str()) {
                    self.channels.authorized(&channel, result, &mut self.out);
                }
            }
            Input::UserAuthenticated { socket_id, result } => {
                if self.session_id() == Some(socket_id.as_str()) {
                    self.signin.authenticated(result, &mut self.out);
                }
            }
            Input::Tick => self.tick(now),
        }
    }

    fn session_id(&self) -> Option<&str> {
        match &self.phase {
            Phase::Connected(s) => Some(&s.socket_id),
            _ => None,
        }
    }

    fn begin_connect(&mut self, now: Instant) {
        self.phase = Phase::Opening(Opening::new(now));
        self.state.send_replace(ConnectionState::Connecting);
        self.out.push(Output::Connect);
    }

    fn received(&mut self, now: Instant, msg: ServerMessage) {
        match &mut self.phase {
            Phase::Opening(o) => {
                match msg {
                    ServerMessage::ConnectionEstablished {
                        socket_id,
                        activity_timeout,
                    } => self.established(now, socket_id.to_string(), activity_timeout),
                    ServerMessage::Error { code, message } => o.refused = Some((code, message)),
                    // Nothing else comes before connection_established.
                    _ => {}
                }
                return;
            }
            Phase::Connected(s) => s.touch(now),
            Phase::Waiting { .. } | Phase::Stopped => return,
        }
        let out = &mut self.out;
        match msg {
            ServerMessage::Ping => out.send(frames::PONG.to_owned()),
            ServerMessage::Pong | ServerMessage::ConnectionEstablished { .. } => {}
            ServerMessage::Error { code, message } => {
                let error = WsError::Server { code, message };
                self.signin.failed(error.clone());
                out.error(error);
            }
            ServerMessage::SigninSuccess(user) => {
                let channel = self.signin.succeeded(user);
                if let Phase::Connected(s) = &self.phase {
                    self.channels
                        .subscribe_now(channel, &s.socket_id, &self.settings, out);
                }
            }
            ServerMessage::SubscriptionSucceeded { channel, presence } => {
                self.channels.succeeded(&channel, presence.as_ref(), out)
            }
            ServerMessage::SubscriptionError { channel, refusal } => {
                // This client only subscribes to valid names: a refusal of any other is not
                // about one of its channels.
                if let Ok(channel) = ChannelName::parse(&channel, usize::MAX) {
                    self.channels.refused(&channel, refusal, out)
                }
            }
            ServerMessage::MemberAdded { channel, member } => {
                self.channels.member_added(&channel, &member, out)
            }
            ServerMessage::MemberRemoved { channel, user_id } => {
                self.channels.member_removed(&channel, &user_id, out)
            }
            ServerMessage::SubscriptionCount { channel, count } => out.emit(
                "pusher:subscription_count",
                Some(channel.as_str()),
                serde_json::json!({ "subscription_count": count }).to_string(),
                None,
            ),
            ServerMessage::CacheMiss { channel } => out.emit(
                "pusher:cache_miss",
                Some(channel.as_str()),
                String::new(),
                None,
            ),
            ServerMessage::ChannelEvent(event) => self.channels.event(event, out),
            ServerMessage::WatchlistEvents(events) => {
                for e in events {
                    let name = match e.status {
                        UserStatus::Online => "online",
                        UserStatus::Offline => "offline",
                    };
                    let ids: Vec<&str> = e.user_ids.iter().map(UserId::as_str).collect();
                    out.emit(
                        name,
                        Some(WATCHLIST_CHANNEL),
                        serde_json::json!({ "user_ids": ids }).to_string(),
                        None,
                    );
                }
            }
            ServerMessage::Unknown {
                event,
                channel,
                data,
            } => {
                // pusher-js hands unknown pusher: events, and events without a channel, to
                // its global bindings, and keeps pusher_internal: ones to itself.
                if !event.starts_with("pusher_internal:") {
                    out.emit(&event, channel.as_deref(), data.unwrap_or_default(), None);
                }
            }
        }
    }

    fn established(&mut self, now: Instant, socket_id: String, activity: Option<Duration>) {
        tracing::debug!(%socket_id, "connected");
        self.attempt = 0;
        self.connected_once.store(true, Ordering::Release);
        let activity = match activity {
            Some(d) if !d.is_zero() => d.min(self.settings.activity_timeout),
            _ => self.settings.activity_timeout,
        };
        self.phase = Phase::Connected(Session::new(socket_id.clone(), activity, now));
        self.state.send_replace(ConnectionState::Connected {
            socket_id: socket_id.clone(),
        });
        self.channels
            .subscribe_all(&socket_id, &self.settings, &mut self.out);
        self.signin.connected(&socket_id, &mut self.out);
    }

    fn close_frame(&mut self, now: Instant, code: Option<u16>, reason: String) {
        match &mut self.phase {
            Phase::Opening(o) => {
                // A refusal says why in a pusher:error just before the close frame.
                let refused = o.refused.take();
                let code = code.or(refused.as_ref().and_then(|r| r.0));
                let reason = refused.map(|r| r.1).unwrap_or(reason);
                let error = match code {
                    Some(code) => WsError::Closed { code, reason },
                    None => {
                        WsError::Connect(format!("closed before connection_established: {reason}"))
                    }
                };
                self.lost(now, code, error);
            }
            Phase::Connected(_) => {
                let error = match code {
                    Some(code) => WsError::Closed { code, reason },
                    None => WsError::Connect("closed by the server".into()),
                };
                self.lost(now, code, error);
            }
            Phase::Waiting { .. } | Phase::Stopped => {}
        }
    }

    fn tick(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Opening(o) => {
                if now >= o.since + self.settings.connect_timeout {
                    self.out.push(Output::Disconnect);
                    let error = WsError::Timeout("the connection to be established");
                    self.lost(now, None, error);
                }
            }
            Phase::Connected(s) => match s.tick(now, self.settings.pong_timeout) {
                Liveness::Fine => {}
                Liveness::Ping => self.out.send(frames::PING.to_owned()),
                Liveness::Dead => {
                    self.out.push(Output::Disconnect);
                    // A missed pong is no reason to wait: the server is likely fine.
                    self.down(now, Duration::ZERO, WsError::Timeout(PONG_TIMEOUT));
                }
            },
            Phase::Waiting { until } => {
                if now >= *until {
                    self.begin_connect(now);
                }
            }
            Phase::Stopped => {}
        }
    }

    fn request(&mut self, request: Request) {
        match request {
            Request::Subscribe(shared) => {
                let name = shared.name.clone();
                if self.channels.add(shared) {
                    if let Phase::Connected(s) = &self.phase {
                        self.channels
                            .subscribe(&name, &s.socket_id, &self.settings, &mut self.out);
                    }
                }
            }
            Request::Unsubscribe(name) => {
                if self.channels.remove(&name) && self.session_id().is_some() {
                    self.out.send(frames::unsubscribe(&name));
                }
            }
            Request::Trigger {
                channel,
                event,
                data,
                reply,
            } => {
                if self.session_id().is_none() {
                    let _ = reply.send(Err(WsError::NotConnected));
                } else if !self.channels.is_subscribed(&channel) {
                    let _ = reply.send(Err(WsError::NotSubscribed(channel)));
                } else {
                    self.out.push(Output::Send {
                        text: frames::client_event(&event, &channel, &data),
                        written: Some(reply),
                    });
                }
            }
            Request::Signin(reply) => {
                if !self.settings.can_sign_in {
                    let _ = reply.send(Err(WsError::Config(
                        "sign-in needs a user authenticator (WsConfig::with_user_authenticator or with_user_auth_endpoint)".into(),
                    )));
                    return;
                }
                let socket_id = self.session_id().map(str::to_owned);
                self.signin.want(reply, socket_id.as_deref(), &mut self.out);
            }
            Request::Close(reply) => self.stop(Some(reply)),
        }
    }

    /// The connection (or the attempt) ended: what the close code says decides what next.
    fn lost(&mut self, now: Instant, code: Option<u16>, error: WsError) {
        tracing::debug!(?code, %error, "connection ended");
        let delay = match close_action(code) {
            CloseAction::Stop => {
                self.connection_gone();
                self.out.error(error.clone());
                return self.finish(ConnectionState::Failed(error), None);
            }
            CloseAction::ReconnectAfter(d) => d,
            CloseAction::ReconnectNow => Duration::ZERO,
            CloseAction::Backoff => {
                let d = self.settings.backoff.delay(self.attempt);
                self.attempt = self.attempt.saturating_add(1);
                d
            }
        };
        self.down(now, delay, error);
    }

    /// Down until `now + delay`, then connecting again.
    fn down(&mut self, now: Instant, delay: Duration, reason: WsError) {
        self.connection_gone();
        self.phase = Phase::Waiting { until: now + delay };
        self.state.send_replace(ConnectionState::Unavailable {
            retry_in: delay,
            reason,
        });
    }

    fn connection_gone(&mut self) {
        self.channels.connection_lost();
        self.signin.connection_lost();
    }

    /// Closed by the user or abandoned: close what is open and stop for good.
    fn stop(&mut self, reply: Option<oneshot::Sender<()>>) {
        match &self.phase {
            Phase::Connected(_) | Phase::Opening(Opening { open: true, .. }) => {
                self.out.push(Output::Close)
            }
            Phase::Opening(_) => self.out.push(Output::Disconnect),
            Phase::Waiting { .. } | Phase::Stopped => {}
        }
        self.connection_gone();
        self.finish(ConnectionState::Disconnected, reply);
    }

    /// The final state: everyone waiting learns the outcome; `reply` once the driver has
    /// carried out every output before (closing the socket among them).
    fn finish(&mut self, state: ConnectionState, reply: Option<oneshot::Sender<()>>) {
        let error = match &state {
            ConnectionState::Failed(e) => Some(e.clone()),
            _ => None,
        };
        self.signin
            .finish(error.clone().unwrap_or(WsError::ClientClosed));
        self.channels.finish(error);
        self.phase = Phase::Stopped;
        self.state.send_replace(state);
        self.out.push(Output::Stop { notify: reply });
    }
}

/// A request after the end: its caller learns the client is closed.
fn refuse(request: Request) {
    match request {
        Request::Trigger { reply, .. } => {
            let _ = reply.send(Err(WsError::ClientClosed));
        }
        Request::Signin(reply) => {
            let _ = reply.send(Err(WsError::ClientClosed));
        }
        Request::Close(reply) => {
            let _ = reply.send(());
        }
        Request::Subscribe(shared) => {
            shared
                .state
                .send_replace(super::SubscriptionState::Unsubscribed);
        }
        Request::Unsubscribe(_) => {}
    }
}
