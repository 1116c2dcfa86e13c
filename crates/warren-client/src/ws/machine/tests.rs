//! The machine driven by hand: inputs in, outputs and published state checked, no I/O.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use warren_protocol::inbound::{parse_client_message, ClientMessage};
use warren_protocol::{outbound, ServerMessage, SocketId};

use super::{Input, Machine, Output, Settings, PONG_TIMEOUT};
use crate::auth::{ChannelAuth, UserAuth};
use crate::ws::command::{Reply, Request};
use crate::ws::reconnect::Backoff;
use crate::ws::{
    crypto, ChannelShared, ConnectionState, Event, SignedIn, SubscriptionState, WsError,
};

const SECOND: Duration = Duration::from_secs(1);

fn settings() -> Settings {
    Settings {
        activity_timeout: 60 * SECOND,
        pong_timeout: 30 * SECOND,
        connect_timeout: 10 * SECOND,
        backoff: Backoff {
            initial: SECOND,
            max: 8 * SECOND,
            multiplier: 2.0,
            jitter: 0.0,
        },
        can_authorize_channels: true,
        can_sign_in: true,
    }
}

struct Harness {
    m: Machine,
    now: Instant,
    state: watch::Receiver<ConnectionState>,
    connected_once: Arc<AtomicBool>,
}

impl Harness {
    fn new() -> Self {
        Self::with(settings())
    }

    fn with(settings: Settings) -> Self {
        let (tx, state) = watch::channel(ConnectionState::Disconnected);
        let connected_once = Arc::new(AtomicBool::new(false));
        let now = Instant::now();
        let mut h = Self {
            m: Machine::new(settings, tx, connected_once.clone(), now),
            now,
            state,
            connected_once,
        };
        assert_eq!(h.outputs(), ["connect"]);
        assert_eq!(h.state(), ConnectionState::Connecting);
        h
    }

    fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.m.next_output()).collect()
    }

    fn outputs(&mut self) -> Vec<String> {
        self.drain().iter().map(describe).collect()
    }

    fn input(&mut self, input: Input) -> Vec<String> {
        self.m.handle(self.now, input);
        self.outputs()
    }

    fn server(&mut self, text: &str) -> Vec<String> {
        match ServerMessage::parse(text) {
            Ok(msg) => self.input(Input::Received(msg)),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    /// What handlers would see of the message.
    fn server_events(&mut self, text: &str) -> Vec<Event> {
        match ServerMessage::parse(text) {
            Ok(msg) => self.m.handle(self.now, Input::Received(msg)),
            Err(e) => panic!("{text}: {e}"),
        }
        self.events()
    }

    fn request(&mut self, request: Request) -> Vec<String> {
        self.input(Input::Request(request))
    }

    /// Opens the pending connection as `socket_id` ("1.n") with the server's activity
    /// timeout; returns what the machine does once established.
    fn establish(&mut self, low: u64, activity_secs: u64) -> Vec<String> {
        assert!(self.input(Input::Opened).is_empty());
        let established = outbound::connection_established(SocketId::new(1, low), activity_secs);
        self.server(&established)
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Jumps to the machine's deadline and ticks.
    fn tick_at_deadline(&mut self) -> Vec<String> {
        self.now = self.m.deadline().expect("a deadline");
        self.input(Input::Tick)
    }

    fn subscribe(&mut self, name: &str) -> (Arc<ChannelShared>, Vec<String>) {
        let shared = Arc::new(ChannelShared::new(name));
        let outputs = self.request(Request::Subscribe(shared.clone()));
        (shared, outputs)
    }

    fn authorized(&mut self, socket: &str, channel: &str, auth: ChannelAuth) -> Vec<String> {
        self.input(Input::ChannelAuthorized {
            socket_id: socket.into(),
            channel: channel.into(),
            result: Ok(auth),
        })
    }

    /// Emitted events, as handlers would see them.
    fn events(&mut self) -> Vec<Event> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Emit(e) => Some(e.into_event()),
                _ => None,
            })
            .collect()
    }
}

/// One line per output; frames are read back with the server's own parser.
fn describe(output: &Output) -> String {
    match output {
        Output::Connect => "connect".into(),
        Output::Send { text, written } => {
            let reply = if written.is_some() {
                " (with reply)"
            } else {
                ""
            };
            format!("send {}{reply}", describe_frame(text))
        }
        Output::Close => "close".into(),
        Output::Disconnect => "disconnect".into(),
        Output::Authorize(r) => format!("authorize {} for {}", r.channel_name, r.socket_id),
        Output::Authenticate { socket_id } => format!("authenticate {socket_id}"),
        Output::Emit(e) => format!(
            "emit {} on {}",
            e.event,
            e.channel.as_deref().unwrap_or("-")
        ),
        Output::Error(e) => format!("error {e}"),
        Output::Stop { notify } => {
            if notify.is_some() {
                "stop (notify)".into()
            } else {
                "stop".into()
            }
        }
    }
}

fn describe_frame(text: &str) -> String {
    match parse_client_message(text.as_bytes()) {
        Ok(ClientMessage::Ping) => "ping".into(),
        Ok(ClientMessage::Pong) => "pong".into(),
        Ok(ClientMessage::Subscribe(s)) => {
            let mut d = format!("subscribe {}", s.channel);
            if let Some(auth) = s.auth.filter(|a| !a.is_empty()) {
                d.push_str(&format!(" auth {auth}"));
            }
            if let Some(cd) = s.channel_data {
                d.push_str(&format!(" data {cd}"));
            }
            d
        }
        Ok(ClientMessage::Unsubscribe { channel }) => format!("unsubscribe {channel}"),
        Ok(ClientMessage::Signin { auth, user_data }) => format!("signin {auth} {user_data}"),
        Ok(ClientMessage::ClientEvent {
            event,
            channel,
            data,
        }) => format!("{event} on {channel} {data}"),
        Ok(ClientMessage::Custom { event, .. }) => panic!("the client sent a custom {event}"),
        Err(e) => panic!("the server would refuse {text}: {e}"),
    }
}

fn sub_state(shared: &ChannelShared) -> SubscriptionState {
    shared.state.borrow().clone()
}

fn private_auth() -> ChannelAuth {
    ChannelAuth {
        auth: "key:sig".into(),
        channel_data: None,
        shared_secret: None,
    }
}

type Answer<T> = oneshot::Receiver<Result<T, WsError>>;

fn reply<T>() -> (Reply<T>, Answer<T>) {
    oneshot::channel()
}

/// A harness connected as 1.1 with `channels` subscribed (private ones authorized).
fn connected_with(channels: &[&str]) -> (Harness, Vec<Arc<ChannelShared>>) {
    let mut h = Harness::new();
    h.establish(1, 120);
    let mut shared = Vec::new();
    for name in channels {
        let (s, _) = h.subscribe(name);
        if s.kind.requires_auth() {
            h.authorized("1.1", name, private_auth());
        }
        h.server(&outbound::subscription_succeeded(name));
        assert_eq!(sub_state(&s), SubscriptionState::Subscribed, "{name}");
        shared.push(s);
    }
    h.drain();
    (h, shared)
}

#[test]
fn subscriptions_wait_for_the_connection() {
    let mut h = Harness::new();
    let (news, out) = h.subscribe("news");
    assert!(out.is_empty(), "{out:?}");
    let (private, _) = h.subscribe("private-a");
    assert_eq!(sub_state(&news), SubscriptionState::Pending);
    assert!(!h.connected_once.load(Ordering::Acquire));

    let mut out = h.establish(1, 120);
    out.sort();
    assert_eq!(out, ["authorize private-a for 1.1", "send subscribe news"]);
    assert_eq!(
        h.state(),
        ConnectionState::Connected {
            socket_id: "1.1".into()
        }
    );
    assert!(h.connected_once.load(Ordering::Acquire));
    assert_eq!(
        h.authorized("1.1", "private-a", private_auth()),
        ["send subscribe private-a auth key:sig"]
    );
    assert_eq!(
        h.server(&outbound::subscription_succeeded("news")),
        ["emit pusher:subscription_succeeded on news"]
    );
    assert_eq!(sub_state(&news), SubscriptionState::Subscribed);
    assert_eq!(sub_state(&private), SubscriptionState::Pending);
    h.server(&outbound::subscription_succeeded("private-a"));
    assert_eq!(sub_state(&private), SubscriptionState::Subscribed);
    // A confirmation for a channel not wanted changes nothing.
    assert!(h
        .server(&outbound::subscription_succeeded("other"))
        .is_empty());
}

#[test]
fn subscribing_and_unsubscribing_while_connected() {
    let (mut h, _) = connected_with(&[]);
    let (news, out) = h.subscribe("news");
    assert_eq!(out, ["send subscribe news"]);
    // Asking twice subscribes once.
    let (_, out) = h.subscribe("news");
    assert!(out.is_empty());
    assert_eq!(
        h.request(Request::Unsubscribe("news".into())),
        ["send unsubscribe news"]
    );
    assert_eq!(sub_state(&news), SubscriptionState::Unsubscribed);
    assert!(h.request(Request::Unsubscribe("news".into())).is_empty());
    // Events still in flight for it reach the global bindings, as with pusher-js.
    assert_eq!(
        h.server(&outbound::channel_event("late", "news", "1", None)),
        ["emit late on news"]
    );
}

#[test]
fn reconnects_resubscribe_and_forget_the_old_connection() {
    let (mut h, shared) = connected_with(&["news", "presence-room"]);
    let presence = &shared[1];
    assert!(presence
        .members
        .read()
        .map(|m| m.is_some())
        .unwrap_or(false));

    // The server restarts: 4200 asks for a reconnection at once.
    let out = h.input(Input::CloseFrame {
        code: Some(4200),
        reason: "restarting".into(),
    });
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        h.state(),
        ConnectionState::Unavailable {
            retry_in: Duration::ZERO,
            reason: WsError::Closed {
                code: 4200,
                reason: "restarting".into()
            }
        }
    );
    assert_eq!(sub_state(&shared[0]), SubscriptionState::Pending);
    assert!(presence
        .members
        .read()
        .map(|m| m.is_none())
        .unwrap_or(false));
    // Nothing can be sent meanwhile.
    let (tx, mut rx) = reply();
    h.request(Request::Trigger {
        channel: "presence-room".into(),
        event: "client-x".into(),
        data: "1".into(),
        reply: tx,
    });
    assert_eq!(rx.try_recv().ok(), Some(Err(WsError::NotConnected)));

    assert_eq!(h.m.deadline(), Some(h.now));
    assert_eq!(h.tick_at_deadline(), ["connect"]);
    assert_eq!(h.state(), ConnectionState::Connecting);
    let mut out = h.establish(2, 120);
    out.sort();
    assert_eq!(
        out,
        ["authorize presence-room for 1.2", "send subscribe news"]
    );
    // An authorization asked for on the old connection is signed for the wrong socket.
    assert!(h
        .authorized("1.1", "presence-room", private_auth())
        .is_empty());
    assert_eq!(
        h.authorized("1.2", "presence-room", private_auth()),
        ["send subscribe presence-room auth key:sig"]
    );
}

#[test]
fn failed_authorizations_fail_the_subscription() {
    let (mut h, _) = connected_with(&[]);
    let (private, out) = h.subscribe("private-a");
    assert_eq!(out, ["authorize private-a for 1.1"]);
    let out = h.input(Input::ChannelAuthorized {
        socket_id: "1.1".into(),
        channel: "private-a".into(),
        result: Err("endpoint answered 403".into()),
    });
    assert_eq!(
        out,
        [
            "error authorization for private-a failed: endpoint answered 403",
            "emit pusher:subscription_error on private-a"
        ]
    );
    let expected = WsError::Auth {
        target: "private-a".into(),
        message: "endpoint answered 403".into(),
    };
    assert_eq!(
        sub_state(&private),
        SubscriptionState::Failed(expected.clone())
    );

    // The handlers' event carries the pusher-js shape.
    let (_, out) = h.subscribe("private-b");
    assert_eq!(out.len(), 1);
    h.m.handle(
        h.now,
        Input::ChannelAuthorized {
            socket_id: "1.1".into(),
            channel: "private-b".into(),
            result: Err("no".into()),
        },
    );
    let events = h.events();
    assert_eq!(
        events[0].data,
        json!({"type": "AuthError", "error": "authorization for private-b failed: no", "status": null})
    );

    // Encrypted channels need a valid shared secret.
    for secret in [None, Some("not base64!"), Some("AAAA")] {
        let (enc, _) = h.subscribe("private-encrypted-x");
        let auth = ChannelAuth {
            shared_secret: secret.map(str::to_owned),
            ..private_auth()
        };
        let out = h.authorized("1.1", "private-encrypted-x", auth);
        assert!(
            out[0].starts_with("error authorization for private-encrypted-x failed"),
            "{out:?}"
        );
        assert!(matches!(
            sub_state(&enc),
            SubscriptionState::Failed(WsError::Auth { .. })
        ));
        h.request(Request::Unsubscribe("private-encrypted-x".into()));
        h.drain();
    }
}

#[test]
fn channels_needing_auth_fail_without_an_authorizer() {
    let mut h = Harness::with(Settings {
        can_authorize_channels: false,
        ..settings()
    });
    h.establish(1, 120);
    let (presence, out) = h.subscribe("presence-a");
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(matches!(
        sub_state(&presence),
        SubscriptionState::Failed(WsError::Config(_))
    ));
    // Public channels need none.
    assert_eq!(h.subscribe("news").1, ["send subscribe news"]);
}

#[test]
fn subscription_errors_from_the_server() {
    let (mut h, _) = connected_with(&[]);
    let (private, _) = h.subscribe("private-a");
    h.authorized("1.1", "private-a", private_auth());
    h.drain();
    h.m.handle(
        h.now,
        Input::Received(
            ServerMessage::parse(&outbound::subscription_error(
                "private-a",
                "AuthError",
                "Invalid signature",
                401,
            ))
            .expect("parses"),
        ),
    );
    let outputs = h.drain();
    let error = WsError::Subscription {
        channel: "private-a".into(),
        error_type: "AuthError".into(),
        message: "Invalid signature".into(),
        status: Some(401),
    };
    assert!(matches!(&outputs[0], Output::Error(e) if *e == error));
    let Some(Output::Emit(emit)) = outputs.get(1) else {
        panic!("{outputs:?}");
    };
    assert_eq!(
        emit.clone().into_event().data,
        json!({"type": "AuthError", "error": "Invalid signature", "status": 401})
    );
    assert_eq!(sub_state(&private), SubscriptionState::Failed(error));
}

#[test]
fn presence_members_follow_the_server() {
    let (mut h, _) = connected_with(&[]);
    let (room, _) = h.subscribe("presence-room");
    let auth = ChannelAuth {
        channel_data: Some(r#"{"user_id":"1","user_info":{"name":"A"}}"#.into()),
        ..private_auth()
    };
    assert_eq!(
        h.authorized("1.1", "presence-room", auth),
        [
            r#"send subscribe presence-room auth key:sig data {"user_id":"1","user_info":{"name":"A"}}"#
        ]
    );
    let events = h.server_events(&outbound::presence_subscription_succeeded(
        "presence-room",
        [("1", Some(r#"{"name":"A"}"#)), ("2", None)],
    ));
    assert_eq!(
        events[0].data,
        json!({"presence": {"ids": ["1", "2"], "hash": {"1": {"name": "A"}, "2": null}, "count": 2}})
    );
    let members = || {
        room.members
            .read()
            .ok()
            .and_then(|m| m.clone())
            .expect("members")
    };
    assert_eq!(members().ids(), ["1", "2"]);
    assert_eq!(members().me().map(|m| m.id.clone()), Some("1".into()));

    let added = h.server_events(&outbound::member_added(
        "presence-room",
        "3",
        Some(r#"{"name":"C"}"#),
    ));
    assert_eq!(added[0].event, "pusher:member_added");
    assert_eq!(
        added[0].data,
        json!({"user_id": "3", "user_info": {"name": "C"}})
    );
    assert_eq!(members().ids(), ["1", "2", "3"]);

    assert_eq!(
        h.server(&outbound::member_removed("presence-room", "2")),
        ["emit pusher:member_removed on presence-room"]
    );
    assert_eq!(members().ids(), ["1", "3"]);
    // Unknown members, and member events on channels without members, change nothing.
    assert!(h
        .server(&outbound::member_removed("presence-room", "9"))
        .is_empty());
    assert!(h
        .server(&outbound::member_added("presence-other", "9", None))
        .is_empty());
    // Presence client events name their sender.
    let hi = h.server_events(&outbound::channel_event(
        "client-hi",
        "presence-room",
        "{}",
        Some("3"),
    ));
    assert_eq!(hi[0].user_id.as_deref(), Some("3"));
}

#[test]
fn encrypted_channel_events_are_decrypted() {
    let (mut h, _) = connected_with(&[]);
    let key = [7u8; 32];
    h.subscribe("private-encrypted-vault");
    let auth = ChannelAuth {
        shared_secret: Some(base64::engine::general_purpose::STANDARD.encode(key)),
        ..private_auth()
    };
    assert_eq!(
        h.authorized("1.1", "private-encrypted-vault", auth),
        ["send subscribe private-encrypted-vault auth key:sig"]
    );
    h.server(&outbound::subscription_succeeded("private-encrypted-vault"));
    h.drain();

    let sealed = crypto::encrypt(&key, &[1; 24], r#"{"pin":1234}"#);
    let events = h.server_events(&outbound::channel_event(
        "secret",
        "private-encrypted-vault",
        &sealed,
        None,
    ));
    assert_eq!(events[0].data, json!({"pin": 1234}));
    assert_eq!(events[0].raw_data, r#"{"pin":1234}"#);

    let other = crypto::encrypt(&[8u8; 32], &[1; 24], "x");
    for data in [other.as_str(), "plain", ""] {
        let out = h.server(&outbound::channel_event(
            "secret",
            "private-encrypted-vault",
            data,
            None,
        ));
        assert_eq!(out.len(), 1);
        assert!(
            out[0].starts_with("error cannot decrypt an event on private-encrypted-vault"),
            "{out:?}"
        );
    }
    // Not subscribed: no key, nothing to say.
    assert!(h
        .server(&outbound::channel_event(
            "secret",
            "private-encrypted-gone",
            &sealed,
            None
        ))
        .is_empty());
}

#[test]
fn pings_pongs_and_the_activity_timeout() {
    let mut h = Harness::new();
    // The server's 120 s is longer than ours (60 s): ours applies.
    h.establish(1, 120);
    let start = h.now;
    assert_eq!(h.m.deadline(), Some(start + 60 * SECOND));
    assert_eq!(h.server(outbound::PING), ["send pong"]);

    // Traffic moves the deadline; an early tick does nothing.
    h.advance(30 * SECOND);
    h.server(&outbound::channel_event("e", "news", "", None));
    h.drain();
    assert_eq!(h.m.deadline(), Some(start + 90 * SECOND));
    h.advance(30 * SECOND);
    assert!(h.input(Input::Tick).is_empty());

    // Quiet: we ping; any frame answers it.
    assert_eq!(h.tick_at_deadline(), ["send ping"]);
    assert_eq!(h.m.deadline(), Some(h.now + 30 * SECOND));
    h.advance(10 * SECOND);
    assert!(h.input(Input::OtherFrame).is_empty());
    assert_eq!(h.m.deadline(), Some(h.now + 60 * SECOND));
    assert_eq!(h.tick_at_deadline(), ["send ping"]);
    h.advance(SECOND);
    assert!(h.server(outbound::PONG).is_empty());

    // Unanswered: the connection is dropped and retried at once, without backoff.
    assert_eq!(h.tick_at_deadline(), ["send ping"]);
    assert_eq!(h.tick_at_deadline(), ["disconnect"]);
    assert_eq!(
        h.state(),
        ConnectionState::Unavailable {
            retry_in: Duration::ZERO,
            reason: WsError::Timeout(PONG_TIMEOUT)
        }
    );
    assert_eq!(h.tick_at_deadline(), ["connect"]);
}

#[test]
fn a_shorter_server_activity_timeout_applies() {
    let mut h = Harness::new();
    h.establish(1, 10);
    assert_eq!(h.m.deadline(), Some(h.now + 10 * SECOND));
    let mut h = Harness::new();
    // 0 means none given.
    h.establish(1, 0);
    assert_eq!(h.m.deadline(), Some(h.now + 60 * SECOND));
}

#[test]
fn close_codes_decide_what_comes_next() {
    let lose = |h: &mut Harness, code: Option<u16>| {
        let out = h.input(Input::CloseFrame {
            code,
            reason: String::new(),
        });
        (out, h.state())
    };
    let retry_in = |state: &ConnectionState| match state {
        ConnectionState::Unavailable { retry_in, .. } => *retry_in,
        other => panic!("expected Unavailable, got {other:?}"),
    };

    // 4000-4099: never again.
    let mut h = Harness::new();
    let (news, _) = h.subscribe("news");
    h.establish(1, 120);
    let (tx, mut rx) = reply();
    h.request(Request::Signin(tx));
    let (out, state) = lose(&mut h, Some(4009));
    let error = WsError::Closed {
        code: 4009,
        reason: String::new(),
    };
    assert_eq!(
        out,
        [
            "error the server closed the connection with code 4009: ",
            "stop"
        ]
    );
    assert_eq!(state, ConnectionState::Failed(error.clone()));
    assert_eq!(sub_state(&news), SubscriptionState::Failed(error.clone()));
    assert_eq!(rx.try_recv().ok(), Some(Err(error)));
    assert_eq!(h.m.deadline(), None);

    // 4100-4199: after a second. 4200-4299: at once.
    let mut h = Harness::new();
    h.establish(1, 120);
    assert_eq!(retry_in(&lose(&mut h, Some(4100)).1), SECOND);
    assert!(h.input(Input::Tick).is_empty(), "not yet");
    assert_eq!(h.tick_at_deadline(), ["connect"]);
    h.establish(2, 120);
    assert_eq!(retry_in(&lose(&mut h, Some(4201)).1), Duration::ZERO);

    // Anything else: exponential backoff, reset by an established connection.
    let mut h = Harness::new();
    let mut delays = Vec::new();
    for _ in 0..5 {
        h.input(Input::ConnectFailed("refused".into()));
        delays.push(retry_in(&h.state()).as_secs());
        assert_eq!(h.tick_at_deadline(), ["connect"]);
    }
    assert_eq!(delays, [1, 2, 4, 8, 8]);
    h.establish(1, 120);
    assert_eq!(retry_in(&lose(&mut h, Some(1000)).1), SECOND);
    h.tick_at_deadline();
    h.establish(2, 120);
    assert_eq!(retry_in(&lose(&mut h, None).1), SECOND);
    assert!(matches!(
        h.state(),
        ConnectionState::Unavailable {
            reason: WsError::Connect(_),
            ..
        }
    ));
    h.tick_at_deadline();
    h.input(Input::Opened);
    // Not established this time: the backoff goes on growing.
    assert!(h.input(Input::Lost("reset by peer".into())).is_empty());
    assert_eq!(retry_in(&h.state()), 2 * SECOND);
}

#[test]
fn a_refusal_before_connection_established_names_its_reason() {
    let mut h = Harness::new();
    h.input(Input::Opened);
    h.server(&outbound::error(Some(4001), "App key nope does not exist"));
    let out = h.input(Input::CloseFrame {
        code: Some(4001),
        reason: String::new(),
    });
    assert_eq!(out.last().map(String::as_str), Some("stop"));
    assert_eq!(
        h.state(),
        ConnectionState::Failed(WsError::Closed {
            code: 4001,
            reason: "App key nope does not exist".into()
        })
    );
}

#[test]
fn the_connect_timeout_covers_the_handshake_and_connection_established() {
    let mut h = Harness::new();
    h.advance(5 * SECOND);
    h.input(Input::Opened);
    assert_eq!(h.tick_at_deadline(), ["disconnect"]);
    assert!(matches!(
        h.state(),
        ConnectionState::Unavailable {
            reason: WsError::Timeout("the connection to be established"),
            ..
        }
    ));
}

#[test]
fn signing_in_and_again_after_a_reconnect() {
    let mut h = Harness::new();
    let (tx, mut first) = reply::<SignedIn>();
    assert!(
        h.request(Request::Signin(tx)).is_empty(),
        "waits for a connection"
    );
    assert_eq!(h.establish(1, 120), ["authenticate 1.1"]);
    // A second caller joins the sign-in in flight.
    let (tx, mut second) = reply::<SignedIn>();
    assert!(h.request(Request::Signin(tx)).is_empty());
    let user_data = r#"{"id":"42","user_info":{"name":"Ada"}}"#;
    let out = h.input(Input::UserAuthenticated {
        socket_id: "1.1".into(),
        result: Ok(UserAuth {
            auth: "key:sig".into(),
            user_data: user_data.into(),
        }),
    });
    assert_eq!(out, [format!("send signin key:sig {user_data}")]);
    let success = json!({
        "event": "pusher:signin_success",
        "data": json!({"user_data": user_data}).to_string(),
    });
    assert_eq!(
        h.server(&success.to_string()),
        ["send subscribe #server-to-user-42"]
    );
    let signed = SignedIn {
        id: "42".into(),
        user_info: Some(json!({"name": "Ada"})),
        user_data: user_data.into(),
    };
    assert_eq!(first.try_recv().ok(), Some(Ok(signed.clone())));
    assert_eq!(second.try_recv().ok(), Some(Ok(signed.clone())));
    // Signed in: answered at once.
    let (tx, mut third) = reply::<SignedIn>();
    assert!(h.request(Request::Signin(tx)).is_empty());
    assert_eq!(third.try_recv().ok(), Some(Ok(signed)));

    // A new connection signs in again; the server-to-user channel follows the sign-in.
    h.input(Input::CloseFrame {
        code: Some(4200),
        reason: String::new(),
    });
    h.tick_at_deadline();
    assert_eq!(h.establish(2, 120), ["authenticate 1.2"]);
}

#[test]
fn sign_in_failures_reach_the_caller() {
    let mut h = Harness::new();
    h.establish(1, 120);

    // Refused by the server.
    let (tx, mut rx) = reply::<SignedIn>();
    assert_eq!(h.request(Request::Signin(tx)), ["authenticate 1.1"]);
    h.input(Input::UserAuthenticated {
        socket_id: "1.1".into(),
        result: Ok(UserAuth {
            auth: "key:bad".into(),
            user_data: r#"{"id":"1"}"#.into(),
        }),
    });
    let out = h.server(&outbound::error(None, "Invalid signature"));
    let error = WsError::Server {
        code: None,
        message: "Invalid signature".into(),
    };
    assert_eq!(out, [format!("error {error}")]);
    assert_eq!(rx.try_recv().ok(), Some(Err(error)));

    // Refused by the authenticator.
    let (tx, mut rx) = reply::<SignedIn>();
    assert_eq!(h.request(Request::Signin(tx)), ["authenticate 1.1"]);
    let out = h.input(Input::UserAuthenticated {
        socket_id: "1.1".into(),
        result: Err("backend says no".into()),
    });
    let error = WsError::Auth {
        target: "user sign-in".into(),
        message: "backend says no".into(),
    };
    assert_eq!(out, [format!("error {error}")]);
    assert_eq!(rx.try_recv().ok(), Some(Err(error)));

    // A success the client cannot read.
    let (tx, mut rx) = reply::<SignedIn>();
    h.request(Request::Signin(tx));
    h.input(Input::UserAuthenticated {
        socket_id: "1.1".into(),
        result: Ok(UserAuth {
            auth: "key:sig".into(),
            user_data: "{}".into(),
        }),
    });
    let bad = r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"{}\"}"}"#;
    let Err(e) = ServerMessage::parse(bad) else {
        panic!("no id is malformed")
    };
    let out = h.input(Input::Undecodable(e, bad.into()));
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with("error unexpected message from the server"),
        "{out:?}"
    );
    assert!(matches!(
        rx.try_recv().ok(),
        Some(Err(WsError::Protocol(_)))
    ));

    // Not configured.
    let mut h = Harness::with(Settings {
        can_sign_in: false,
        ..settings()
    });
    let (tx, mut rx) = reply::<SignedIn>();
    assert!(h.request(Request::Signin(tx)).is_empty());
    assert!(matches!(rx.try_recv().ok(), Some(Err(WsError::Config(_)))));
}

#[test]
fn client_events_need_a_subscribed_channel() {
    let (mut h, _) = connected_with(&["private-chat"]);
    let (tx, mut rx) = reply();
    let trigger = |channel: &str, reply| Request::Trigger {
        channel: channel.into(),
        event: "client-typing".into(),
        data: r#"{"who":"a"}"#.into(),
        reply,
    };
    let out = h.request(trigger("private-chat", tx));
    assert_eq!(
        out,
        [r#"send client-typing on private-chat {"who":"a"} (with reply)"#]
    );
    assert!(
        rx.try_recv().is_err(),
        "answered by the driver once written"
    );

    h.subscribe("private-pending");
    h.drain();
    let (tx, mut rx) = reply();
    assert!(h.request(trigger("private-pending", tx)).is_empty());
    assert_eq!(
        rx.try_recv().ok(),
        Some(Err(WsError::NotSubscribed("private-pending".into())))
    );
}

#[test]
fn closing_ends_everything() {
    // While connected: a clean close, then the caller learns it is done.
    let (mut h, shared) = connected_with(&["news"]);
    let (tx, mut signin) = reply::<SignedIn>();
    h.request(Request::Signin(tx));
    h.drain();
    let (tx, _rx) = oneshot::channel();
    assert_eq!(h.request(Request::Close(tx)), ["close", "stop (notify)"]);
    assert_eq!(h.state(), ConnectionState::Disconnected);
    assert_eq!(sub_state(&shared[0]), SubscriptionState::Unsubscribed);
    assert_eq!(signin.try_recv().ok(), Some(Err(WsError::ClientClosed)));
    assert_eq!(h.m.deadline(), None);
    // Afterwards, requests are refused and inputs ignored.
    let (tx, mut rx) = reply();
    h.request(Request::Trigger {
        channel: "news".into(),
        event: "client-x".into(),
        data: "1".into(),
        reply: tx,
    });
    assert_eq!(rx.try_recv().ok(), Some(Err(WsError::ClientClosed)));
    let (tx, mut rx) = oneshot::channel();
    assert!(h.request(Request::Close(tx)).is_empty());
    assert_eq!(rx.try_recv().ok(), Some(()));
    assert!(h.server(outbound::PING).is_empty());

    // While opening: the attempt is dropped. While waiting: nothing to close.
    let mut h = Harness::new();
    assert_eq!(h.input(Input::Abandoned), ["disconnect", "stop"]);
    let mut h = Harness::new();
    h.input(Input::Opened);
    assert_eq!(h.input(Input::Abandoned), ["close", "stop"]);
    let mut h = Harness::new();
    h.input(Input::ConnectFailed("refused".into()));
    let (tx, _rx) = oneshot::channel();
    assert_eq!(h.request(Request::Close(tx)), ["stop (notify)"]);
}

#[test]
fn other_server_messages() {
    let (mut h, _) = connected_with(&["news"]);
    let out = h.server(
        r#"{"event":"pusher_internal:subscription_count","channel":"news","data":"{\"subscription_count\":4}"}"#,
    );
    assert_eq!(out, ["emit pusher:subscription_count on news"]);
    let count = h.server_events(
        r#"{"event":"pusher_internal:subscription_count","channel":"news","data":"{\"subscription_count\":4}"}"#,
    );
    assert_eq!(count[0].data, json!({"subscription_count": 4}));
    assert_eq!(
        h.server(r#"{"event":"pusher:cache_miss","channel":"news"}"#),
        ["emit pusher:cache_miss on news"]
    );
    // New pusher: events reach the handlers; new internal ones do not.
    assert_eq!(
        h.server(r#"{"event":"pusher:new_thing","data":"{}"}"#),
        ["emit pusher:new_thing on -"]
    );
    assert!(h
        .server(r#"{"event":"pusher_internal:new_thing","channel":"news"}"#)
        .is_empty());
    assert!(h
        .server(r#"{"event":"pusher_internal:watchlist_events","data":{"events":[]}}"#)
        .is_empty());
    // Watchlist changes: one event per status, on the watchlist's own pseudo-channel.
    let watchlist = h.server_events(&outbound::watchlist_events(["1", "2"], ["3"]));
    let seen: Vec<_> = watchlist
        .iter()
        .map(|e| (e.event.as_str(), e.channel.as_deref(), e.data.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "online",
                Some("#watchlist"),
                json!({"user_ids": ["1", "2"]})
            ),
            ("offline", Some("#watchlist"), json!({"user_ids": ["3"]})),
        ]
    );
    // Errors that are not about a sign-in reach the error handlers only.
    assert_eq!(
        h.server(&outbound::error(Some(4301), "rate limited")),
        ["error server error 4301: rate limited"]
    );
    // Data as handlers see it.
    let e = h
        .server_events(&outbound::channel_event(
            "update",
            "news",
            r#"{"x":1}"#,
            None,
        ))
        .remove(0);
    assert_eq!(
        (e.data, e.raw_data),
        (json!({"x": 1}), r#"{"x":1}"#.to_owned())
    );
    let note = h.server_events(&outbound::channel_event("note", "news", "plain text", None));
    assert_eq!(note[0].data, Value::String("plain text".into()));
}

#[test]
fn undecodable_messages_are_reported_and_keep_the_line_alive() {
    let (mut h, _) = connected_with(&[]);
    h.advance(50 * SECOND);
    let out = h.input(Input::Undecodable(
        warren_protocol::ServerMessageError::NotJson,
        "garbage".into(),
    ));
    assert_eq!(
        out,
        [r#"error unexpected message from the server: not valid JSON in "garbage""#]
    );
    assert_eq!(h.m.deadline(), Some(h.now + 60 * SECOND));
}
