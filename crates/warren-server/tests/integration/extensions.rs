//! Extension points over real sockets: inbound middlewares and custom client events, each
//! example of `examples/` run on a real server (the example's own `extend`), and the rules
//! around them (order, rewriting, closing, names).

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use warren_server::extend::{
    ClientMessage, ConnectionContext, ErrorCode, InboundMiddleware, Verdict,
};
use warren_server::Server;
use warren_testkit::server::{demo_config, start, start_built, TestServer};
use warren_testkit::ws::{close_code, connect, decode_data};

#[allow(dead_code)]
#[path = "../../examples/banned_words.rs"]
mod banned_words;
#[allow(dead_code)]
#[path = "../../examples/ping_pong.rs"]
mod ping_pong;

async fn start_extended(
    extend: impl FnOnce(warren_server::ServerBuilder) -> warren_server::ServerBuilder,
) -> TestServer {
    start_built(extend(Server::builder(demo_config(|_| {})))).await
}

#[tokio::test]
async fn banned_words_example_refuses_those_client_events_only() {
    let server = start_extended(banned_words::extend).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribed("private-chat", None).await;
    b.subscribed("private-chat", None).await;
    a.send(json!({"event":"client-msg","channel":"private-chat","data":{"text":"Buy SPAM now"}}))
        .await;
    let err = a.recv().await;
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], Value::Null);
    assert_eq!(
        err["data"]["message"],
        "Client event rejected: the word \"spam\" is banned"
    );
    b.assert_silent().await;
    a.send(json!({"event":"client-msg","channel":"private-chat","data":{"text":"hello"}}))
        .await;
    let got = b.recv().await;
    assert_eq!(got["event"], "client-msg");
    assert_eq!(decode_data(&got), json!({"text":"hello"}));
}

/// What the recording middleware saw of each `pusher:subscribe`.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    socket_id: String,
    user: Option<String>,
    subscriptions: Vec<String>,
    remote: Option<SocketAddr>,
    app: String,
}

struct Recorder(Arc<Mutex<Vec<Seen>>>);

#[async_trait::async_trait]
impl InboundMiddleware for Recorder {
    async fn on_message(&self, message: ClientMessage, cx: &ConnectionContext<'_>) -> Verdict {
        if let ClientMessage::Subscribe(_) = &message {
            let mut subscriptions: Vec<String> = cx.subscriptions().map(str::to_owned).collect();
            subscriptions.sort();
            self.0.lock().push(Seen {
                socket_id: cx.socket_id().to_string(),
                user: cx.user_id().map(str::to_owned),
                subscriptions,
                remote: cx.remote_addr(),
                app: cx.app().id.as_str().to_owned(),
            });
        }
        Verdict::Pass(message)
    }
}

/// Rewrites `client-shout` data to upper case; closes on `client-bye` with the code in it.
struct Rewriter;

#[async_trait::async_trait]
impl InboundMiddleware for Rewriter {
    async fn on_message(&self, message: ClientMessage, _: &ConnectionContext<'_>) -> Verdict {
        match message {
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } if event == "client-shout" => Verdict::Pass(ClientMessage::ClientEvent {
                event,
                channel,
                data: data.to_uppercase(),
            }),
            ClientMessage::ClientEvent { event, data, .. } if event == "client-bye" => {
                let code = if data == "4301" {
                    ErrorCode::ClientEventRateLimited
                } else {
                    ErrorCode::GenericReconnect
                };
                Verdict::Close {
                    code,
                    reason: "bye".into(),
                }
            }
            other => Verdict::Pass(other),
        }
    }
}

#[tokio::test]
async fn middlewares_see_the_connection_and_run_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder(seen.clone());
    let server = start_extended(|b| {
        b.inbound_middleware(Rewriter)
            .inbound_middleware(recorder)
            .inbound_middleware(banned_words::BannedWords::new(&["SECRET"]))
    })
    .await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.signed_in(&json!({"id": "alice"})).await;
    a.subscribed("private-a", None).await;
    a.subscribed("private-chat", None).await;
    b.subscribed("private-chat", None).await;
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].socket_id, a.socket_id);
    assert_eq!(seen[0].user.as_deref(), Some("alice"));
    assert_eq!(seen[0].subscriptions, Vec::<String>::new());
    assert_eq!(seen[1].subscriptions, vec!["private-a".to_owned()]);
    assert_eq!(seen[1].app, warren_testkit::APP_ID);
    let remote = seen[0].remote.expect("a remote address");
    assert!(remote.ip().is_loopback(), "{remote}");
    assert_eq!(seen[2].socket_id, b.socket_id);
    assert_eq!(seen[2].user, None);

    // The rewrite happened before the banned-word check ran: "secret" became "SECRET".
    a.send(json!({"event":"client-shout","channel":"private-chat","data":"a secret"}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    a.send(json!({"event":"client-shout","channel":"private-chat","data":"hi"}))
        .await;
    assert_eq!(b.recv().await["data"], "HI");
}

#[tokio::test]
async fn a_middleware_may_close_the_connection_but_never_with_4300_or_above() {
    let server = start_extended(|b| b.inbound_middleware(Rewriter)).await;
    let mut a = connect(&server).await;
    a.subscribed("private-chat", None).await;
    a.send(json!({"event":"client-bye","channel":"private-chat","data":"x"}))
        .await;
    assert_eq!(close_code(&mut a.ws).await, Some(4200));

    let mut b = connect(&server).await;
    b.subscribed("private-chat", None).await;
    b.send(json!({"event":"client-bye","channel":"private-chat","data":"4301"}))
        .await;
    let err = b.recv().await;
    assert_eq!(err["data"]["code"], 4301, "{err}");
    assert_eq!(close_code(&mut b.ws).await, Some(4009));
}

#[tokio::test]
async fn ping_pong_example_answers_publishes_and_closes() {
    let server = start_extended(ping_pong::extend).await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.signed_in(&json!({"id": "ann"})).await;
    a.send(json!({"event":"my-app:ping","data":{"n":1}})).await;
    let pong = a.recv().await;
    assert_eq!(pong["event"], "my-app:pong", "{pong}");
    assert!(pong.get("channel").is_none());
    assert_eq!(
        decode_data(&pong),
        json!({"echo": "{\"n\":1}", "user": "ann"})
    );

    a.subscribed("news", None).await;
    b.subscribed("news", None).await;
    a.send(json!({"event":"my-app:shout","channel":"news","data":"hello all"}))
        .await;
    for socket in [&mut a, &mut b] {
        let got = socket.recv().await;
        assert_eq!(got["event"], "my-app:shouted", "{got}");
        assert_eq!(got["channel"], "news");
        assert_eq!(got["data"], "hello all");
    }
    b.send(json!({"event":"my-app:shout","channel":"elsewhere","data":"x"}))
        .await;
    assert_eq!(close_code(&mut b.ws).await, Some(4009));
}

#[tokio::test]
async fn custom_events_without_a_handler_are_refused_as_before() {
    for server in [start().await, start_extended(ping_pong::extend).await] {
        let mut a = connect(&server).await;
        a.send(json!({"event":"my-app:unknown","channel":"c","data":{}}))
            .await;
        let err = a.recv().await;
        assert_eq!(err["event"], "pusher:error");
        assert_eq!(
            err["data"]["message"],
            "Event \"my-app:unknown\" rejected: only client events (client-*) may be sent on a channel"
        );
        a.send(json!({"event":"pusher:ping","data":{}})).await;
        assert_eq!(a.recv().await["event"], "pusher:pong", "still open");
    }
}

#[tokio::test]
async fn custom_events_count_against_the_client_event_rate() {
    let config = demo_config(|c| c.apps[0].client_event_rate_per_sec = 2);
    let server = start_built(ping_pong::extend(Server::builder(config))).await;
    let mut a = connect(&server).await;
    for _ in 0..2 {
        a.send(json!({"event":"my-app:ping","data":"x"})).await;
        assert_eq!(a.recv().await["event"], "my-app:pong");
    }
    a.send(json!({"event":"my-app:ping","data":"x"})).await;
    let err = a.recv().await;
    assert_eq!(err["data"]["code"], 4301, "{err}");
}

#[tokio::test]
async fn protocol_names_and_duplicates_cannot_be_registered() {
    for builder in [
        Server::builder(demo_config(|_| {})).client_event("pusher:ping", ping_pong::Ping),
        Server::builder(demo_config(|_| {})).client_event("client-x", ping_pong::Ping),
        Server::builder(demo_config(|_| {}))
            .client_event("a:b", ping_pong::Ping)
            .client_event("a:b", ping_pong::Ping),
        Server::builder(demo_config(|_| {})).broadcast_handler("bad type", |_: &_, _: &_| {}),
    ] {
        let e = builder.start().await.err().expect("refused");
        assert!(e.to_string().starts_with("extensions: "), "{e}");
    }
}
