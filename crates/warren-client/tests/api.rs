//! The client against a real Warren server in-process, with real WebSocket subscribers.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use warren_client::{
    ApiError, BatchEvent, ChannelAttribute, ChannelsQuery, Client, ClientConfig, PresenceData,
    TriggerOptions,
};
use warren_testkit::api::{api_client, api_config};
use warren_testkit::net::free_port;
use warren_testkit::proxy::counting_proxy;
use warren_testkit::server::{start, start_with};
use warren_testkit::ws::{connect, Socket};
use warren_testkit::{Endpoint, APP_ID, KEY, SECRET, WAIT};

/// Subscribes, signing with the client's auth helper where the channel needs it.
async fn subscribe(socket: &mut Socket, client: &Client, channel: &str, user: Option<&str>) {
    let (mut auth, mut channel_data) = (None, None);
    if channel.starts_with("private-") || channel.starts_with("presence-") {
        let member = user.map(|id| PresenceData::new(id, Some(json!({ "name": id }))));
        let signed = client
            .authorize_channel(&socket.socket_id, channel, member.as_ref())
            .expect("authorizes");
        auth = Some(signed.auth);
        channel_data = signed.channel_data;
    }
    let answer = socket
        .subscribe_with(channel, auth.as_deref(), channel_data.as_deref())
        .await;
    assert_eq!(
        answer["event"], "pusher_internal:subscription_succeeded",
        "{answer}"
    );
}

fn status_of(result: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
    match result {
        Err(e) => (
            e.status()
                .unwrap_or_else(|| panic!("expected an HTTP status, got {e}")),
            e.server_message().unwrap_or_default(),
        ),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[tokio::test]
async fn trigger_delivers_json_and_string_data_and_excludes_the_socket_id() {
    let server = start().await;
    let client = api_client(&server);
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    subscribe(&mut a, &client, "news", None).await;
    subscribe(&mut b, &client, "news", None).await;

    let result = client
        .trigger(
            ["news"],
            "update",
            &json!({"x": 1}),
            TriggerOptions::default(),
        )
        .await
        .expect("triggers");
    assert!(result.channels.is_empty());
    for socket in [&mut a, &mut b] {
        let event = socket.recv().await;
        assert_eq!(
            event,
            json!({"event": "update", "channel": "news", "data": "{\"x\":1}"})
        );
    }

    let options = TriggerOptions {
        socket_id: Some(a.socket_id.clone()),
        ..Default::default()
    };
    client
        .trigger(vec!["news".to_string()], "note", "plain text", options)
        .await
        .expect("triggers");
    let event = b.recv().await;
    assert_eq!(event["data"], "plain text");
    a.assert_silent().await;
}

#[tokio::test]
async fn trigger_returns_requested_channel_info() {
    let server = start().await;
    let client = api_client(&server);
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    subscribe(&mut a, &client, "presence-room", Some("1")).await;
    subscribe(&mut b, &client, "presence-room", Some("1")).await;
    subscribe(&mut b, &client, "public", None).await;

    let result = client
        .trigger(
            ["presence-room", "public"],
            "e",
            "d",
            TriggerOptions {
                info: vec![
                    ChannelAttribute::UserCount,
                    ChannelAttribute::SubscriptionCount,
                ],
                ..Default::default()
            },
        )
        .await
        .expect("triggers");
    let room = &result.channels["presence-room"];
    assert_eq!(room.user_count, Some(1));
    assert_eq!(room.subscription_count, Some(2));
    let public = &result.channels["public"];
    assert_eq!(public.user_count, None);
    assert_eq!(public.subscription_count, Some(1));
}

#[tokio::test]
async fn trigger_batch_delivers_every_event() {
    let server = start().await;
    let client = api_client(&server);
    let mut a = connect(&server).await;
    subscribe(&mut a, &client, "one", None).await;
    subscribe(&mut a, &client, "two", None).await;

    let result = client
        .trigger_batch(vec![
            BatchEvent::new("one", "first", &json!({"n": 1})).expect("data"),
            BatchEvent::new("two", "second", "text")
                .expect("data")
                .with_info([ChannelAttribute::SubscriptionCount]),
        ])
        .await
        .expect("triggers");
    assert_eq!(result.batch.len(), 2);
    assert_eq!(result.batch[0].subscription_count, None);
    assert_eq!(result.batch[1].subscription_count, Some(1));
    let first = a.recv().await;
    assert_eq!(
        first,
        json!({"event": "first", "channel": "one", "data": "{\"n\":1}"})
    );
    let second = a.recv().await;
    assert_eq!(
        second,
        json!({"event": "second", "channel": "two", "data": "text"})
    );

    // Nothing to send is not an error; too much is refused before sending.
    assert!(client
        .trigger_batch(Vec::new())
        .await
        .expect("empty")
        .batch
        .is_empty());
    let eleven = (0..11)
        .map(|i| BatchEvent::new(format!("c{i}"), "e", "d").expect("data"))
        .collect();
    let e = client.trigger_batch(eleven).await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidRequest(_)), "{e}");
}

#[tokio::test]
async fn channels_channel_and_users_report_subscriptions() {
    let server = start().await;
    let client = api_client(&server);
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    subscribe(&mut a, &client, "presence-room", Some("alice")).await;
    subscribe(&mut b, &client, "presence-room", Some("bob")).await;
    subscribe(&mut b, &client, "news", None).await;

    let all = client
        .channels(ChannelsQuery::default())
        .await
        .expect("lists");
    assert_eq!(
        all.channels.keys().collect::<Vec<_>>(),
        ["news", "presence-room"]
    );
    let presence = client
        .channels(ChannelsQuery {
            filter_by_prefix: Some("presence-".into()),
            info: vec![ChannelAttribute::UserCount],
        })
        .await
        .expect("lists");
    assert_eq!(presence.channels.len(), 1);
    assert_eq!(presence.channels["presence-room"].user_count, Some(2));

    let (status, message) = status_of(
        client
            .channels(ChannelsQuery {
                filter_by_prefix: None,
                info: vec![ChannelAttribute::UserCount],
            })
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("user_count"), "{message}");

    let room = client
        .channel(
            "presence-room",
            &[
                ChannelAttribute::UserCount,
                ChannelAttribute::SubscriptionCount,
            ],
        )
        .await
        .expect("channel");
    assert!(room.occupied);
    assert_eq!(room.user_count, Some(2));
    assert_eq!(room.subscription_count, Some(2));
    let empty = client.channel("nobody-here", &[]).await.expect("channel");
    assert!(!empty.occupied);
    assert_eq!(empty.user_count, None);
    // A cache channel: nothing kept, then the last event triggered.
    let cached = client
        .channel("cache-rates", &[ChannelAttribute::Cache])
        .await
        .expect("channel");
    assert_eq!(cached.cache, None);
    for n in [1, 2] {
        client
            .trigger(
                ["cache-rates"],
                "rate",
                &json!({ "n": n }),
                TriggerOptions::default(),
            )
            .await
            .expect("triggers");
    }
    let cached = client
        .channel("cache-rates", &[ChannelAttribute::Cache])
        .await
        .expect("channel")
        .cache
        .expect("a kept event");
    assert_eq!(cached.data, r#"{"n":2}"#);
    assert!(matches!(cached.ttl, Some(1790..=1800)), "{cached:?}");
    let (status, _) = status_of(client.channel("news", &[ChannelAttribute::Cache]).await);
    assert_eq!(status, 400);
    let (status, _) = status_of(client.channel("news", &[ChannelAttribute::UserCount]).await);
    assert_eq!(status, 400);

    let mut users = client.users("presence-room").await.expect("users");
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
    assert!(client
        .users("presence-empty")
        .await
        .expect("users")
        .is_empty());
    let (status, message) = status_of(client.users("news").await);
    assert_eq!(status, 400);
    assert!(message.contains("presence"), "{message}");
    let e = client.users("bad name").await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidRequest(_)), "{e}");

    // Leaving is reflected.
    drop(b);
    let deadline = Instant::now() + WAIT;
    loop {
        let users = client.users("presence-room").await.expect("users");
        if users == ["alice"] {
            break;
        }
        assert!(Instant::now() < deadline, "bob still listed: {users:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn user_endpoints_are_accepted() {
    let server = start().await;
    let client = api_client(&server);
    client
        .terminate_user_connections("42")
        .await
        .expect("terminates");
    client
        .send_to_user("42", "notice", &json!({"text": "hi"}))
        .await
        .expect("sends");
    let e = client.terminate_user_connections("").await.unwrap_err();
    assert!(matches!(e, ApiError::InvalidRequest(_)), "{e}");
}

#[tokio::test]
async fn encrypted_channel_auth_is_accepted_by_the_server() {
    let server = start().await;
    let client = api_client(&server);
    let mut a = connect(&server).await;
    let auth = client
        .authorize_channel(&a.socket_id, "private-encrypted-vault", None)
        .expect("authorizes");
    assert!(auth.shared_secret.is_some());
    subscribe(&mut a, &client, "private-encrypted-vault", None).await;
    let payload = json!({"nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"});
    client
        .trigger(
            ["private-encrypted-vault"],
            "secret",
            &payload,
            TriggerOptions::default(),
        )
        .await
        .expect("triggers");
    let event = a.recv().await;
    assert_eq!(event["data"], payload.to_string());
}

#[tokio::test]
async fn server_errors_keep_status_and_message() {
    let server = start_with(|config| {
        let mut other = config.apps[0].clone();
        other.id = warren_protocol::AppId::parse("off").expect("valid id");
        other.key = warren_protocol::AppKey::parse("off-key").expect("valid key");
        other.enabled = false;
        config.apps.push(other);
    })
    .await;

    let wrong_secret = Client::new(ClientConfig::new(
        server.http_url(),
        APP_ID,
        KEY,
        "not-the-secret",
    ))
    .expect("valid config");
    let (status, message) = status_of(wrong_secret.channels(ChannelsQuery::default()).await);
    assert_eq!(status, 401);
    assert!(message.starts_with("Invalid signature"), "{message}");

    let wrong_key = Client::new(ClientConfig::new(
        server.http_url(),
        APP_ID,
        "other-key",
        SECRET,
    ))
    .expect("valid config");
    let (status, _) = status_of(wrong_key.channel("x", &[]).await);
    assert_eq!(status, 401);

    let unknown = Client::new(ClientConfig::new(server.http_url(), "nope", KEY, SECRET))
        .expect("valid config");
    let e = unknown
        .trigger(["c"], "e", "d", TriggerOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(e.server_message().as_deref(), Some("Unknown app: nope"));
    assert_eq!(e.to_string(), "HTTP 404: Unknown app: nope");
    assert_eq!(e.body(), Some("Unknown app: nope\n"));

    let disabled = Client::new(ClientConfig::new(
        server.http_url(),
        "off",
        "off-key",
        SECRET,
    ))
    .expect("valid config");
    let (status, _) = status_of(disabled.users("presence-x").await);
    assert_eq!(status, 403);

    let client = api_client(&server);
    let big = "x".repeat(11 * 1024);
    let (status, message) = status_of(
        client
            .trigger(["c"], "e", &big, TriggerOptions::default())
            .await,
    );
    assert_eq!(status, 413);
    assert!(message.contains("limit"), "{message}");

    let (status, message) = status_of(
        client
            .trigger(
                ["private-encrypted-a", "b"],
                "e",
                "d",
                TriggerOptions::default(),
            )
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("encrypted"), "{message}");
}

#[tokio::test]
async fn transport_failures_and_timeouts_are_reported() {
    // Nothing listens on a port that was just freed.
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let client = Client::new(api_config(&addr)).expect("valid config");
    let e = client.users("presence-x").await.unwrap_err();
    assert!(matches!(e, ApiError::Transport(_)), "{e}");
    assert_eq!(e.status(), None);
    assert!(
        !e.to_string().contains("auth_signature"),
        "the URL is left out: {e}"
    );

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = silent.local_addr().expect("address");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let client = Client::new(api_config(&addr).with_timeout(Duration::from_millis(300)))
        .expect("valid config");
    let started = Instant::now();
    let e = client.users("presence-x").await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(started.elapsed() < WAIT);
    hold.abort();
}

#[tokio::test]
async fn one_connection_serves_many_requests() {
    let server = start().await;
    let (proxy, accepted) = counting_proxy(server.addr).await;
    let client = Client::new(api_config(&proxy)).expect("valid config");
    let clone = client.clone();
    for i in 0..25 {
        let c = if i % 2 == 0 { &client } else { &clone };
        c.trigger(["keepalive"], "e", &i, TriggerOptions::default())
            .await
            .expect("triggers");
        c.channel("keepalive", &[]).await.expect("channel");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "50 sequential requests (from a client and its clone) should share one connection"
    );
}
