//! The WebSocket client against a real Warren server in-process (and, for liveness and close
//! codes the real server does not produce on demand, a scripted fake server).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use warren_client::ws::{
    Backoff, ChannelAuthRequest, ConnectionState, Event, HttpAuthorizer, LocalAuthorizer,
    SubscriptionState, WsClient, WsConfig, WsError,
};
use warren_client::{ChannelAuth, PresenceData, TriggerOptions};
use warren_testkit::api::api_client;
use warren_testkit::fake::{close_with, fake_server};
use warren_testkit::net::free_port;
use warren_testkit::server::{demo_app, start, start_with};
use warren_testkit::ws::SILENCE;
use warren_testkit::{KEY, MASTER_KEY, WAIT};

fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

fn config(addr: SocketAddr) -> WsConfig {
    WsConfig::new(format!("ws://{addr}"), KEY).with_backoff(fast_backoff())
}

/// A config that signs locally as `user` (presence) and signs users in as `user`.
fn config_as(addr: SocketAddr, user: &str) -> WsConfig {
    let auth = LocalAuthorizer::new(api_client(&addr))
        .with_presence(PresenceData::new(user, Some(json!({ "name": user }))))
        .with_user_data(json!({ "id": user }));
    config(addr)
        .with_channel_authorizer(auth.clone())
        .with_user_authenticator(auth)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("stream open")
}

/// The next event with this name, skipping others.
async fn next_named(rx: &mut mpsc::UnboundedReceiver<Event>, name: &str) -> Event {
    loop {
        let e = next(rx).await;
        if e.event == name {
            return e;
        }
    }
}

async fn assert_no_event(rx: &mut mpsc::UnboundedReceiver<Event>) {
    if let Ok(Some(e)) = tokio::time::timeout(SILENCE, rx.recv()).await {
        panic!("expected no event, got {e:?}");
    }
}

#[tokio::test]
async fn connects_and_closes_cleanly() {
    let server = start().await;
    let client = WsClient::connect(config(server.addr))
        .await
        .expect("connects");
    let id = client.socket_id().expect("socket id");
    assert!(warren_protocol::SocketId::parse(&id).is_ok(), "{id}");
    assert_eq!(
        client.wait_connected(WAIT).await.as_deref(),
        Ok(id.as_str())
    );
    client.close().await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert!(
        client.signin().await.is_err(),
        "a closed client does nothing"
    );
}

#[tokio::test]
async fn unknown_key_fails_without_retrying() {
    let server = start().await;
    let err = WsClient::connect(WsConfig::new(format!("ws://{}", server.addr), "nope"))
        .await
        .expect_err("refused");
    assert!(matches!(err, WsError::Closed { code: 4001, .. }), "{err}");
}

#[tokio::test]
async fn refused_connection_is_an_error() {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let err = WsClient::connect(config(addr))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, WsError::Connect(_)), "{err}");
}

#[tokio::test]
async fn public_events_arrive_decoded() {
    let server = start().await;
    let client = WsClient::connect(config(server.addr))
        .await
        .expect("connects");
    let news = client.subscribe("news").expect("subscribes");
    let mut on_channel = news.events();
    let mut by_name = mpsc::unbounded_channel();
    let tx = by_name.0.clone();
    client.bind("update", move |e| {
        let _ = tx.send(e.clone());
    });
    news.wait_subscribed(WAIT).await.expect("subscribed");
    assert_eq!(news.state(), SubscriptionState::Subscribed);
    assert_eq!(
        next(&mut on_channel).await.event,
        "pusher:subscription_succeeded"
    );

    let http = api_client(&server);
    http.trigger(
        ["news"],
        "update",
        &json!({"x": 1}),
        TriggerOptions::default(),
    )
    .await
    .expect("triggers");
    http.trigger(["news"], "note", "plain text", TriggerOptions::default())
        .await
        .expect("triggers");
    let e = next(&mut on_channel).await;
    assert_eq!(e.event, "update");
    assert_eq!(e.channel.as_deref(), Some("news"));
    assert_eq!(e.data, json!({"x": 1}));
    assert_eq!(e.raw_data, r#"{"x":1}"#);
    let e = next(&mut on_channel).await;
    assert_eq!(
        (e.event.as_str(), e.data_str()),
        ("note", Some("plain text"))
    );
    // The event-name binding saw only "update".
    assert_eq!(next(&mut by_name.1).await.event, "update");
    assert!(by_name.1.try_recv().is_err());

    news.unsubscribe();
    tokio::time::sleep(Duration::from_millis(100)).await;
    http.trigger(["news"], "update", "again", TriggerOptions::default())
        .await
        .expect("triggers");
    assert_no_event(&mut on_channel).await;
    assert_eq!(news.state(), SubscriptionState::Unsubscribed);
}

/// Cache channels' `pusher:cache_miss` and replayed event, and `pusher:subscription_count`,
/// reach the channel's handlers in the order the server sends them.
#[tokio::test]
async fn cache_misses_cached_events_and_subscription_counts_reach_handlers() {
    let server = start_with(|c| c.apps[0].subscription_count_events = true).await;
    let first = WsClient::connect(config(server.addr))
        .await
        .expect("connects");
    let feed = first.subscribe("cache-feed").expect("subscribes");
    let mut events = feed.events();
    let names = |e: &Event| e.event.clone();
    assert_eq!(
        names(&next(&mut events).await),
        "pusher:subscription_succeeded"
    );
    let miss = next(&mut events).await;
    assert_eq!(miss.event, "pusher:cache_miss");
    assert_eq!(miss.channel.as_deref(), Some("cache-feed"));
    let count = next(&mut events).await;
    assert_eq!(count.event, "pusher:subscription_count");
    assert_eq!(count.data, json!({"subscription_count": 1}));

    api_client(&server)
        .trigger(
            ["cache-feed"],
            "tick",
            &json!({"n": 1}),
            TriggerOptions::default(),
        )
        .await
        .expect("triggers");
    assert_eq!(next(&mut events).await.data, json!({"n": 1}));

    let second = WsClient::connect(config(server.addr))
        .await
        .expect("connects");
    let later = second.subscribe("cache-feed").expect("subscribes");
    let mut later_events = later.events();
    assert_eq!(
        names(&next(&mut later_events).await),
        "pusher:subscription_succeeded"
    );
    let replayed = next(&mut later_events).await;
    assert_eq!(
        (replayed.event.as_str(), &replayed.data),
        ("tick", &json!({"n": 1}))
    );
    for rx in [&mut later_events, &mut events] {
        let count = next(rx).await;
        assert_eq!(
            (count.event.as_str(), &count.data),
            (
                "pusher:subscription_count",
                &json!({"subscription_count": 2})
            )
        );
    }
    assert_no_event(&mut events).await;
}

#[tokio::test]
async fn private_channels_with_local_and_endpoint_authorization() {
    let server = start().await;
    // An application auth endpoint as pusher-js expects it: form POST, JSON answer.
    let signer = api_client(&server);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/pusher/auth",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let signer = signer.clone();
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(
                    headers.get("content-type").and_then(|v| v.to_str().ok()),
                    Some("application/x-www-form-urlencoded")
                );
                assert_eq!(
                    headers.get("x-token").and_then(|v| v.to_str().ok()),
                    Some("t")
                );
                let form: std::collections::HashMap<String, String> = body
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let auth = signer
                    .authorize_channel(&form["socket_id"], &form["channel_name"], None)
                    .expect("signs");
                axum::Json(auth)
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let auth_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let by_endpoint = WsClient::connect(config(server.addr).with_channel_authorizer(
        HttpAuthorizer::new(format!("http://{auth_addr}/pusher/auth")).with_header("x-token", "t"),
    ))
    .await
    .expect("connects");
    let locally = WsClient::connect(config_as(server.addr, "1"))
        .await
        .expect("connects");
    let a = by_endpoint.subscribe("private-orders").expect("subscribes");
    let b = locally.subscribe("private-orders").expect("subscribes");
    a.wait_subscribed(WAIT)
        .await
        .expect("endpoint authorization works");
    b.wait_subscribed(WAIT)
        .await
        .expect("local authorization works");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let mut a_events = a.events();
    api_client(&server)
        .trigger(
            ["private-orders"],
            "created",
            &json!({"id": 7}),
            TriggerOptions::default(),
        )
        .await
        .expect("triggers");
    assert_eq!(
        next_named(&mut a_events, "created").await.data,
        json!({"id": 7})
    );

    // An endpoint that is down, and one that refuses: the subscription fails with the reason.
    let down = WsClient::connect(
        config(server.addr).with_channel_auth_endpoint(format!("http://{auth_addr}/nowhere")),
    )
    .await
    .expect("connects");
    let mut errors = down.errors();
    let c = down.subscribe("private-orders").expect("subscribes");
    let err = c.wait_subscribed(WAIT).await.expect_err("not authorized");
    assert!(
        matches!(&err, WsError::Auth { message, .. } if message.contains("404")),
        "{err}"
    );
    assert!(matches!(c.state(), SubscriptionState::Failed(_)));
    assert_eq!(
        tokio::time::timeout(WAIT, errors.recv())
            .await
            .ok()
            .flatten(),
        Some(err)
    );
}

#[tokio::test]
async fn bad_signatures_and_missing_authorizers_fail_the_subscription() {
    let server = start().await;
    let client = WsClient::connect(config(server.addr).with_channel_authorizer(
        |req: ChannelAuthRequest| async move {
            Ok::<_, String>(ChannelAuth {
                auth: format!("{KEY}:{}", "0".repeat(64)),
                channel_data: None,
                shared_secret: Some(req.socket_id),
            })
        },
    ))
    .await
    .expect("connects");
    let ch = client.subscribe("private-x").expect("subscribes");
    let err = ch.wait_subscribed(WAIT).await.expect_err("refused");
    match err {
        WsError::Subscription {
            channel,
            error_type,
            status,
            ..
        } => {
            assert_eq!(channel, "private-x");
            assert_eq!(error_type, "AuthError");
            assert_eq!(status, Some(401));
        }
        other => panic!("expected a subscription error, got {other}"),
    }

    let plain = WsClient::connect(config(server.addr))
        .await
        .expect("connects");
    let err = plain
        .subscribe("presence-x")
        .expect("subscribes")
        .wait_subscribed(WAIT)
        .await
        .expect_err("no authorizer");
    assert!(matches!(err, WsError::Config(_)), "{err}");
    assert!(plain.subscribe("bad name").is_err());
}

#[tokio::test]
async fn presence_members_are_tracked() {
    let server = start().await;
    let alice = WsClient::connect(config_as(server.addr, "alice"))
        .await
        .expect("connects");
    let room = alice.subscribe("presence-room").expect("subscribes");
    let mut alice_events = room.events();
    room.wait_subscribed(WAIT).await.expect("subscribed");
    let members = room.members().expect("members");
    assert_eq!(members.count(), 1);
    assert_eq!(members.me().map(|m| m.id.as_str()), Some("alice"));
    assert_eq!(
        members.get("alice").and_then(|m| m.info),
        Some(json!({"name": "alice"}))
    );

    let bob = WsClient::connect(config_as(server.addr, "bob"))
        .await
        .expect("connects");
    let bob_room = bob.subscribe("presence-room").expect("subscribes");
    bob_room.wait_subscribed(WAIT).await.expect("subscribed");
    assert_eq!(bob_room.members().expect("members").ids(), ["alice", "bob"]);

    let added = next_named(&mut alice_events, "pusher:member_added").await;
    assert_eq!(added.data["user_id"], "bob");
    assert_eq!(room.members().expect("members").ids(), ["alice", "bob"]);

    // Presence client events carry the sender's user id.
    bob_room
        .trigger("client-wave", &json!({"hi": 1}))
        .await
        .expect("sends");
    let wave = next_named(&mut alice_events, "client-wave").await;
    assert_eq!(wave.user_id.as_deref(), Some("bob"));
    assert_eq!(wave.data, json!({"hi": 1}));

    bob.close().await;
    let removed = next_named(&mut alice_events, "pusher:member_removed").await;
    assert_eq!(removed.data["user_id"], "bob");
    assert_eq!(room.members().expect("members").ids(), ["alice"]);
}

#[tokio::test]
async fn client_events_between_two_clients() {
    let server = start().await;
    let a = WsClient::connect(config_as(server.addr, "1"))
        .await
        .expect("connects");
    let b = WsClient::connect(config_as(server.addr, "2"))
        .await
        .expect("connects");
    let a_ch = a.subscribe("private-chat").expect("subscribes");
    let b_ch = b.subscribe("private-chat").expect("subscribes");
    let mut a_events = a_ch.events();
    let mut b_events = b_ch.events();
    a_ch.wait_subscribed(WAIT).await.expect("subscribed");
    b_ch.wait_subscribed(WAIT).await.expect("subscribed");

    a_ch.trigger("client-typing", &json!({"who": "a"}))
        .await
        .expect("sends");
    let e = next_named(&mut b_events, "client-typing").await;
    assert_eq!(e.data, json!({"who": "a"}));
    assert_eq!(e.user_id, None);
    // Never echoed to the sender.
    let _ = next_named(&mut a_events, "pusher:subscription_succeeded").await;
    assert_no_event(&mut a_events).await;

    // Rejected locally: wrong name, public channel, unsubscribed channel.
    assert!(matches!(
        a_ch.trigger("typing", "x").await,
        Err(WsError::InvalidEvent(_))
    ));
    let public = a.subscribe("lobby").expect("subscribes");
    assert!(matches!(
        public.trigger("client-x", "x").await,
        Err(WsError::InvalidEvent(_))
    ));
    let encrypted = a.subscribe("private-encrypted-x").expect("subscribes");
    assert!(matches!(
        encrypted.trigger("client-x", "x").await,
        Err(WsError::InvalidEvent(_))
    ));
    let pending = b.subscribe("private-other").expect("subscribes");
    pending.unsubscribe();
    assert!(matches!(
        pending.trigger("client-x", "x").await,
        Err(WsError::NotSubscribed(_))
    ));
}

#[tokio::test]
async fn encrypted_channel_events_are_decrypted() {
    use base64::Engine as _;
    use crypto_secretbox::aead::{Aead, KeyInit};

    let server = start().await;
    let client = WsClient::connect(config_as(server.addr, "1"))
        .await
        .expect("connects");
    let ch = client
        .subscribe("private-encrypted-vault")
        .expect("subscribes");
    let mut events = ch.events();
    let mut errors = client.errors();
    ch.wait_subscribed(WAIT).await.expect("subscribed");

    // What an encrypting server SDK publishes.
    let secret = warren_protocol::auth::encrypted_channel_shared_secret(
        "private-encrypted-vault",
        MASTER_KEY,
    )
    .expect("secret");
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .expect("base64");
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.as_slice().into());
    let nonce = [9u8; 24];
    let ciphertext = cipher
        .encrypt((&nonce).into(), br#"{"pin":1234}"#.as_slice())
        .expect("encrypts");
    let b64 = base64::engine::general_purpose::STANDARD;
    let sealed =
        json!({"nonce": b64.encode(nonce), "ciphertext": b64.encode(&ciphertext)}).to_string();
    let http = api_client(&server);
    http.trigger(
        ["private-encrypted-vault"],
        "secret",
        &sealed,
        TriggerOptions::default(),
    )
    .await
    .expect("triggers");
    let e = next_named(&mut events, "secret").await;
    assert_eq!(e.data, json!({"pin": 1234}));
    assert_eq!(e.raw_data, r#"{"pin":1234}"#);

    // A payload sealed with another key is reported, not delivered.
    let other = crypto_secretbox::XSalsa20Poly1305::new(&[1u8; 32].into());
    let bad = other
        .encrypt((&nonce).into(), b"x".as_slice())
        .expect("encrypts");
    let sealed = json!({"nonce": b64.encode(nonce), "ciphertext": b64.encode(&bad)}).to_string();
    http.trigger(
        ["private-encrypted-vault"],
        "secret",
        &sealed,
        TriggerOptions::default(),
    )
    .await
    .expect("triggers");
    let err = tokio::time::timeout(WAIT, errors.recv())
        .await
        .ok()
        .flatten();
    assert!(matches!(err, Some(WsError::Decrypt { .. })), "{err:?}");
    assert_no_event(&mut events).await;
}

#[tokio::test]
async fn reconnects_and_resubscribes_after_a_server_restart() {
    let first = start().await;
    let addr = first.addr;
    let client = WsClient::connect(config_as(addr, "u1"))
        .await
        .expect("connects");
    let public = client.subscribe("news").expect("subscribes");
    let private = client.subscribe("private-news").expect("subscribes");
    let presence = client.subscribe("presence-news").expect("subscribes");
    let mut events = client.events();
    for ch in [&public, &private, &presence] {
        ch.wait_subscribed(WAIT).await.expect("subscribed");
    }
    let first_id = client.socket_id().expect("connected");

    // Shutdown closes with 4200 (reconnect now); nothing listens for a moment, then a new
    // server comes up on the same port.
    let mut states = client.state_changes();
    drop(first);
    tokio::time::timeout(WAIT, async {
        loop {
            if !matches!(
                *states.borrow_and_update(),
                ConnectionState::Connected { .. }
            ) {
                return;
            }
            states.changed().await.expect("client alive");
        }
    })
    .await
    .expect("the client notices the shutdown");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = start_with(|c| c.server.port = addr.port()).await;
    let second_id = client.wait_connected(WAIT).await.expect("reconnects");
    assert_ne!(first_id, second_id);
    for ch in [&public, &private, &presence] {
        ch.wait_subscribed(WAIT).await.expect("subscribed again");
    }
    assert_eq!(presence.members().expect("members").ids(), ["u1"]);
    let http = api_client(&second);
    http.trigger(
        ["news", "private-news", "presence-news"],
        "after",
        "restart",
        TriggerOptions::default(),
    )
    .await
    .expect("triggers");
    let mut channels = Vec::new();
    while channels.len() < 3 {
        let e = next_named(&mut events, "after").await;
        channels.push(e.channel.expect("channel"));
    }
    channels.sort();
    assert_eq!(channels, ["news", "presence-news", "private-news"]);
}

#[tokio::test]
async fn signs_in_and_hears_events_sent_to_the_user() {
    let server = start().await;
    let client = WsClient::connect(config_as(server.addr, "42"))
        .await
        .expect("connects");
    let (tx, mut rx) = mpsc::unbounded_channel();
    client.bind_user("notice", move |e| {
        let _ = tx.send(e.clone());
    });
    let signed = client.signin().await.expect("signs in");
    assert_eq!(
        (signed.id.as_str(), signed.user_data.as_str()),
        ("42", r#"{"id":"42"}"#)
    );
    // The client subscribes to its user channel right after signing in: send until heard.
    let api = api_client(&server.addr);
    let deadline = Instant::now() + WAIT;
    let event = loop {
        api.send_to_user("42", "notice", &json!({"n": 1}))
            .await
            .expect("sends");
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            break e;
        }
        assert!(Instant::now() < deadline, "no event for the user");
    };
    assert_eq!(event.channel.as_deref(), Some("#server-to-user-42"));
    assert_eq!(event.data, json!({"n": 1}));
    assert_eq!(client.signin().await.expect("still signed in"), signed);
}

#[tokio::test]
async fn watchlist_events_reach_the_watchlist_handlers() {
    let server = start_with(|c| demo_app(c).watchlist_events = true).await;
    let auth = LocalAuthorizer::new(api_client(&server.addr))
        .with_user_data(json!({"id": "w", "watchlist": ["u"]}));
    let watcher = WsClient::connect(config(server.addr).with_user_authenticator(auth))
        .await
        .expect("connects");
    let (tx, mut rx) = mpsc::unbounded_channel();
    watcher.bind_watchlist(move |e| {
        let _ = tx.send(e.clone());
    });
    watcher.signin().await.expect("signs in");
    let seen = |e: Event| (e.event, e.channel, e.data);
    let offline = || {
        (
            "offline".to_owned(),
            Some("#watchlist".to_owned()),
            json!({"user_ids": ["u"]}),
        )
    };
    assert_eq!(seen(next(&mut rx).await), offline(), "the initial state");
    let u = WsClient::connect(config_as(server.addr, "u"))
        .await
        .expect("connects");
    u.signin().await.expect("signs in");
    assert_eq!(
        seen(next(&mut rx).await),
        (
            "online".to_owned(),
            Some("#watchlist".to_owned()),
            json!({"user_ids": ["u"]})
        )
    );
    u.close().await;
    assert_eq!(seen(next(&mut rx).await), offline());
}

#[tokio::test]
async fn terminated_users_are_closed_for_good() {
    let server = start().await;
    let client = WsClient::connect(config_as(server.addr, "7"))
        .await
        .expect("connects");
    let mut errors = client.errors();
    client.signin().await.expect("signs in");
    api_client(&server.addr)
        .terminate_user_connections("7")
        .await
        .expect("terminates");
    let deadline = Instant::now() + WAIT;
    loop {
        let error = tokio::time::timeout(WAIT, errors.recv())
            .await
            .ok()
            .flatten()
            .expect("an error in time");
        if matches!(error, WsError::Closed { code: 4009, .. }) {
            break;
        }
        assert!(Instant::now() < deadline, "never closed with 4009");
    }
    assert!(
        matches!(client.state(), ConnectionState::Failed(_)),
        "{:?}",
        client.state()
    );
}

#[tokio::test]
async fn signin_errors_are_surfaced() {
    let server = start().await;
    // Signed with the wrong secret: the server refuses and closes with 4009.
    let wrong = WsClient::connect(config(server.addr).with_user_authenticator(
        |socket_id: String| async move {
            let user_data = r#"{"id":"1"}"#.to_owned();
            let auth =
                warren_protocol::auth::sign_user(KEY, "not-the-secret", &socket_id, &user_data);
            Ok::<_, String>(warren_client::UserAuth { auth, user_data })
        },
    ))
    .await
    .expect("connects");
    let err = wrong.signin().await.expect_err("refused");
    assert!(
        matches!(&err, WsError::Server { code: Some(4009), message } if message.contains("::user::")),
        "{err}"
    );

    let no_auth = WsClient::connect(config(server.addr))
        .await
        .expect("connects");
    assert!(matches!(no_auth.signin().await, Err(WsError::Config(_))));

    let failing = WsClient::connect(config(server.addr).with_user_authenticator(
        |_socket_id: String| async move { Err::<warren_client::UserAuth, _>("backend says no") },
    ))
    .await
    .expect("connects");
    let err = failing.signin().await.expect_err("authenticator fails");
    assert!(
        matches!(&err, WsError::Auth { message, .. } if message == "backend says no"),
        "{err}"
    );
    // The connection stays usable.
    let ch = failing.subscribe("news").expect("subscribes");
    ch.wait_subscribed(WAIT).await.expect("still connected");
}

#[tokio::test]
async fn answers_server_pings_and_pings_when_idle() {
    // The server pings after 1 s of silence and closes 1 s later without an answer.
    let server = start_with(|c| {
        c.server.activity_timeout = 1;
        c.server.pong_timeout = 1;
    })
    .await;
    let client = WsClient::connect(config(server.addr))
        .await
        .expect("connects");
    // And this client pings the server after 300 ms of silence.
    let chatty = WsClient::connect(
        config(server.addr)
            .with_activity_timeout(Duration::from_millis(300))
            .with_pong_timeout(Duration::from_millis(500)),
    )
    .await
    .expect("connects");
    let ids = (client.socket_id(), chatty.socket_id());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        (client.socket_id(), chatty.socket_id()),
        ids,
        "no reconnects"
    );
}

#[tokio::test]
async fn reconnects_when_a_ping_goes_unanswered() {
    let (pings_tx, mut pings) = mpsc::unbounded_channel::<usize>();
    let addr = fake_server(move |n, mut ws| {
        let pings_tx = pings_tx.clone();
        async move {
            // Read and never answer.
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["event"] == "pusher:ping" {
                        let _ = pings_tx.send(n);
                    }
                }
            }
        }
    })
    .await;
    let client = WsClient::connect(
        config(addr)
            .with_activity_timeout(Duration::from_millis(200))
            .with_pong_timeout(Duration::from_millis(200)),
    )
    .await
    .expect("connects");
    assert_eq!(client.socket_id().as_deref(), Some("1.0"));
    let started = Instant::now();
    assert_eq!(
        tokio::time::timeout(WAIT, pings.recv())
            .await
            .ok()
            .flatten(),
        Some(0)
    );
    // Without an answer, the client reconnects (at once: no backoff for a missed pong).
    let mut states = client.state_changes();
    tokio::time::timeout(WAIT, async {
        loop {
            if client.socket_id().as_deref() == Some("1.1") {
                return;
            }
            states.changed().await.expect("client alive");
        }
    })
    .await
    .expect("reconnected");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn close_codes_decide_reconnects() {
    // 4100: retry after 1 s; then 4009: give up.
    let addr = fake_server(|n, ws| async move {
        match n {
            0 => close_with(ws, 4100).await,
            _ => close_with(ws, 4009).await,
        }
    })
    .await;
    let started = Instant::now();
    let client = WsClient::start(config(addr)).expect("starts");
    let mut states = client.state_changes();
    let final_state = tokio::time::timeout(WAIT, async {
        loop {
            let s = states.borrow_and_update().clone();
            if let ConnectionState::Failed(e) = s {
                return e;
            }
            states.changed().await.expect("client alive");
        }
    })
    .await
    .expect("fails in time");
    assert!(
        matches!(final_state, WsError::Closed { code: 4009, .. }),
        "{final_state}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // 4200: reconnect at once; a plain close (1000): backoff.
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = counter.clone();
    let addr = fake_server(move |n, ws| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            match n {
                0 => close_with(ws, 4200).await,
                1 => close_with(ws, 1000).await,
                _ => {
                    let mut ws = ws;
                    while let Some(Ok(_)) = ws.next().await {}
                }
            }
        }
    })
    .await;
    let client = WsClient::connect(config(addr)).await.expect("connects");
    tokio::time::timeout(WAIT, async {
        while client.socket_id().as_deref() != Some("1.2") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("third connection");
    assert_eq!(counter.load(Ordering::SeqCst), 3);
}
