use super::*;
use crate::outbound;

fn parse(text: &str) -> ServerMessage {
    match ServerMessage::parse(text) {
        Ok(m) => m,
        Err(e) => panic!("{text}: {e}"),
    }
}

fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name, MAX_CHANNEL_NAME_LENGTH).expect("valid channel name")
}

fn user(id: &str) -> UserId {
    UserId::parse(id, 128).expect("valid user id")
}

fn member(id: &str, info: Option<&str>) -> PresenceMember {
    PresenceMember {
        user_id: user(id),
        user_info: info.map(Arc::from),
    }
}

fn bad_data(text: &str) -> (String, String) {
    match ServerMessage::parse(text) {
        Err(ServerMessageError::BadData { event, reason }) => (event, reason),
        other => panic!("{text}: expected BadData, got {other:?}"),
    }
}

/// Every builder of `outbound` decodes to the variant it builds, with the same values.
#[test]
fn every_outbound_builder_round_trips() {
    assert_eq!(
        parse(&outbound::connection_established(
            SocketId::new(123, 456),
            120
        )),
        ServerMessage::ConnectionEstablished {
            socket_id: SocketId::new(123, 456),
            activity_timeout: Some(Duration::from_secs(120)),
        }
    );
    assert_eq!(
        parse(&outbound::error(Some(4001), "App key x does not exist")),
        ServerMessage::Error {
            code: Some(4001),
            message: "App key x does not exist".into()
        }
    );
    assert_eq!(
        parse(&outbound::error(None, "quote \" newline \n")),
        ServerMessage::Error {
            code: None,
            message: "quote \" newline \n".into()
        }
    );
    assert_eq!(parse(outbound::PING), ServerMessage::Ping);
    assert_eq!(parse(outbound::PONG), ServerMessage::Pong);
    assert_eq!(
        parse(&outbound::subscription_succeeded("private-a")),
        ServerMessage::SubscriptionSucceeded {
            channel: channel("private-a"),
            presence: None
        }
    );
    assert_eq!(
        parse(&outbound::presence_subscription_succeeded(
            "presence-x",
            [("1", Some(r#"{"name":"A"}"#)), ("2", None)],
        )),
        ServerMessage::SubscriptionSucceeded {
            channel: channel("presence-x"),
            presence: Some(PresenceSnapshot {
                members: vec![member("1", Some(r#"{"name":"A"}"#)), member("2", None)],
                count: 2
            })
        }
    );
    assert_eq!(
        parse(&outbound::presence_subscription_succeeded("presence-x", [])),
        ServerMessage::SubscriptionSucceeded {
            channel: channel("presence-x"),
            presence: Some(PresenceSnapshot {
                members: vec![],
                count: 0
            })
        }
    );
    assert_eq!(
        parse(&outbound::member_added(
            "presence-x",
            "7",
            Some(r#"{"n":"\"q\""}"#)
        )),
        ServerMessage::MemberAdded {
            channel: channel("presence-x"),
            member: member("7", Some(r#"{"n":"\"q\""}"#))
        }
    );
    assert_eq!(
        parse(&outbound::member_added("presence-x", "7", None)),
        ServerMessage::MemberAdded {
            channel: channel("presence-x"),
            member: member("7", None)
        }
    );
    assert_eq!(
        parse(&outbound::member_removed("presence-x", "7")),
        ServerMessage::MemberRemoved {
            channel: channel("presence-x"),
            user_id: user("7")
        }
    );
    assert_eq!(
        parse(&outbound::subscription_error(
            "private-a",
            "AuthError",
            "bad",
            401
        )),
        ServerMessage::SubscriptionError {
            channel: "private-a".into(),
            refusal: SubscriptionRefusal {
                error_type: Some("AuthError".into()),
                error: Some("bad".into()),
                status: Some(401)
            }
        }
    );
    let data = "{\"a\":\"\u{1}\\\t\u{7f}é\"}";
    assert_eq!(
        parse(&outbound::channel_event(
            "client-e",
            "presence-c",
            data,
            Some("7")
        )),
        ServerMessage::ChannelEvent(ChannelEvent {
            event: EventName::parse("client-e").expect("valid"),
            channel: channel("presence-c"),
            data: data.into(),
            user_id: Some(user("7"))
        })
    );
    assert_eq!(
        parse(&outbound::channel_event("e", "news", "", None)),
        ServerMessage::ChannelEvent(ChannelEvent {
            event: EventName::parse("e").expect("valid"),
            channel: channel("news"),
            data: String::new(),
            user_id: None
        })
    );
}

#[test]
fn messages_no_builder_makes_yet() {
    let signin = parse(
        r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"{\\\"id\\\":\\\"42\\\",\\\"user_info\\\":{\\\"n\\\":1}}\"}"}"#,
    );
    assert_eq!(
        signin,
        ServerMessage::SigninSuccess(SignedInUser {
            id: user("42"),
            user_info: Some(Arc::from(r#"{"n":1}"#)),
            user_data: r#"{"id":"42","user_info":{"n":1}}"#.into()
        })
    );
    assert_eq!(
        parse(
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"1\",2]},{\"name\":\"offline\",\"user_ids\":[]}]}"}"#
        ),
        ServerMessage::WatchlistEvents(vec![
            WatchlistEvent {
                status: UserStatus::Online,
                user_ids: vec![user("1"), user("2")]
            },
            WatchlistEvent {
                status: UserStatus::Offline,
                user_ids: vec![]
            }
        ])
    );
    assert_eq!(
        parse(
            r#"{"event":"pusher_internal:subscription_count","channel":"news","data":"{\"subscription_count\":3}"}"#
        ),
        ServerMessage::SubscriptionCount {
            channel: channel("news"),
            count: 3
        }
    );
    assert_eq!(
        parse(r#"{"event":"pusher:cache_miss","channel":"cache-news"}"#),
        ServerMessage::CacheMiss {
            channel: channel("cache-news")
        }
    );
}

#[test]
fn data_may_be_an_object_where_a_string_is_usual() {
    assert_eq!(
        parse(
            r#"{"event":"pusher:connection_established","data":{"socket_id":"1.2","activity_timeout":30}}"#
        ),
        ServerMessage::ConnectionEstablished {
            socket_id: SocketId::new(1, 2),
            activity_timeout: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(
        parse(
            r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":{"user_id":"u"}}"#
        ),
        ServerMessage::MemberAdded {
            channel: channel("presence-a"),
            member: member("u", None)
        }
    );
    // And the object-only ones may come as strings.
    assert_eq!(
        parse(r#"{"event":"pusher:error","data":"{\"code\":4201,\"message\":\"m\"}"}"#),
        ServerMessage::Error {
            code: Some(4201),
            message: "m".into()
        }
    );
    // An event's data string is the raw JSON text when the data was not a string.
    match parse(r#"{"event":"e","channel":"c","data":{"a": [1, 2]}}"#) {
        ServerMessage::ChannelEvent(e) => assert_eq!(e.data, r#"{"a": [1, 2]}"#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn numeric_user_ids_become_strings() {
    let succeeded = parse(
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-a","data":"{\"presence\":{\"ids\":[10,\"11\"],\"hash\":{\"10\":{\"a\":1},\"12\":null},\"count\":3}}"}"#,
    );
    assert_eq!(
        succeeded,
        ServerMessage::SubscriptionSucceeded {
            channel: channel("presence-a"),
            presence: Some(PresenceSnapshot {
                // ids first, in order; then what only `hash` names.
                members: vec![
                    member("10", Some(r#"{"a":1}"#)),
                    member("11", None),
                    member("12", None)
                ],
                count: 3
            })
        }
    );
    assert_eq!(
        parse(
            r#"{"event":"pusher_internal:member_removed","channel":"presence-a","data":"{\"user_id\":10}"}"#
        ),
        ServerMessage::MemberRemoved {
            channel: channel("presence-a"),
            user_id: user("10")
        }
    );
    match parse(r#"{"event":"client-x","channel":"presence-a","data":"1","user_id":7}"#) {
        ServerMessage::ChannelEvent(e) => assert_eq!(e.user_id, Some(user("7"))),
        other => panic!("{other:?}"),
    }
    match parse(r#"{"event":"client-x","channel":"presence-a","data":"1","user_id":null}"#) {
        ServerMessage::ChannelEvent(e) => assert_eq!(e.user_id, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_internal_events_are_a_variant_not_an_error() {
    assert_eq!(
        parse(r#"{"event":"pusher:new_thing","data":"{\"x\":1}"}"#),
        ServerMessage::Unknown {
            event: "pusher:new_thing".into(),
            channel: None,
            data: Some(r#"{"x":1}"#.into())
        }
    );
    assert_eq!(
        parse(r#"{"event":"pusher_internal:later","channel":"anything goes"}"#),
        ServerMessage::Unknown {
            event: "pusher_internal:later".into(),
            channel: Some("anything goes".into()),
            data: None
        }
    );
    // Old-style names that v7 servers no longer send are unknown too.
    assert!(matches!(
        parse(r#"{"event":"pusher:subscription_succeeded","channel":"c","data":"{}"}"#),
        ServerMessage::Unknown { .. }
    ));
    // Extra fields are ignored.
    assert_eq!(
        parse(r#"{"event":"pusher:ping","data":{},"extra":[1]}"#),
        ServerMessage::Ping
    );
}

#[test]
fn refusals_and_succeeded_data_are_lenient() {
    assert_eq!(
        parse(r#"{"event":"pusher:subscription_error","channel":"private-a","data":"Forbidden"}"#),
        ServerMessage::SubscriptionError {
            channel: "private-a".into(),
            refusal: SubscriptionRefusal {
                error_type: None,
                error: Some("Forbidden".into()),
                status: None
            }
        }
    );
    assert_eq!(
        parse(r#"{"event":"pusher:subscription_error","channel":"private-a","data":{}}"#),
        ServerMessage::SubscriptionError {
            channel: "private-a".into(),
            refusal: SubscriptionRefusal {
                error_type: None,
                error: None,
                status: None
            }
        }
    );
    for data in ["", r#","data":null"#, r#","data":"{}""#, r#","data":"""#] {
        assert_eq!(
            parse(&format!(
                r#"{{"event":"pusher_internal:subscription_succeeded","channel":"c"{data}}}"#
            )),
            ServerMessage::SubscriptionSucceeded {
                channel: channel("c"),
                presence: None
            },
            "{data}"
        );
    }
    // No count: the number of members.
    match parse(
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-a","data":{"presence":{"ids":["a","a"]}}}"#,
    ) {
        ServerMessage::SubscriptionSucceeded {
            presence: Some(p), ..
        } => assert_eq!((p.members.len(), p.count), (1, 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_messages_are_typed_errors() {
    let err = |text: &str| ServerMessage::parse(text).expect_err(text);
    assert_eq!(err("not json"), ServerMessageError::NotJson);
    assert_eq!(err("{\"event\":"), ServerMessageError::NotJson);
    assert_eq!(err(""), ServerMessageError::NotJson);
    assert_eq!(err("[1]"), ServerMessageError::NotAnObject);
    assert_eq!(err("\"pusher:ping\""), ServerMessageError::NotAnObject);
    assert_eq!(err("{}"), ServerMessageError::MissingEvent);
    assert_eq!(err(r#"{"event":null}"#), ServerMessageError::MissingEvent);
    assert!(matches!(
        err(r#"{"event":5}"#),
        ServerMessageError::Malformed(_)
    ));
    assert!(matches!(
        err(r#"{"event":"e","channel":["c"]}"#),
        ServerMessageError::Malformed(_)
    ));
    assert_eq!(
        ServerMessage::parse(r#"{"event":"my-event","data":"x"}"#),
        Ok(ServerMessage::Unknown {
            event: "my-event".into(),
            channel: None,
            data: Some("x".into())
        }),
        "an event for the connection itself"
    );
    assert_eq!(
        err(r#"{"event":"pusher_internal:subscription_count","data":"{}"}"#),
        ServerMessageError::MissingChannel {
            event: "pusher_internal:subscription_count".into()
        }
    );
    assert_eq!(
        err(r#"{"event":"pusher_internal:member_added","data":"{}"}"#).event(),
        Some("pusher_internal:member_added")
    );

    for (text, reason) in [
        (
            r#"{"event":"pusher:connection_established"}"#,
            "missing `data`",
        ),
        (
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"x\"}"}"#,
            "socket id",
        ),
        (
            r#"{"event":"pusher:connection_established","data":"[]"}"#,
            "must be an object",
        ),
        (
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":-1}"}"#,
            "invalid value",
        ),
        (
            r#"{"event":"pusher:error","data":{"code":70000,"message":"m"}}"#,
            "out of range",
        ),
        (
            r#"{"event":"pusher:error","data":{"code":"4001"}}"#,
            "invalid type",
        ),
        (
            r#"{"event":"pusher:subscription_error","channel":"c","data":{"status":1e9}}"#,
            "invalid type",
        ),
        (
            r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":"{\"user_id\":true}"}"#,
            "string or a number",
        ),
        (
            r#"{"event":"pusher_internal:member_removed","channel":"presence-a","data":"{}"}"#,
            "missing field",
        ),
        (
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-a","data":"{\"presence\":{\"ids\":[{}]}}"}"#,
            "string or a number",
        ),
        (
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-a","data":"{\"presence\":{\"hash\":{\"\":null}}}"}"#,
            "empty",
        ),
        (
            r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"{}\"}"}"#,
            "no `id`",
        ),
        (
            r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"nope\"}"}"#,
            "user_data",
        ),
        (
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"away\"}]}"}"#,
            "unknown watchlist event",
        ),
        (
            r#"{"event":"pusher_internal:subscription_count","channel":"c","data":"{\"subscription_count\":\"3\"}"}"#,
            "invalid type",
        ),
        (
            r#"{"event":"e","channel":"bad name","data":""}"#,
            "channel name",
        ),
        (r#"{"event":"pusher:cache_miss","channel":""}"#, "empty"),
        (
            r#"{"event":"client-x","channel":"private-a","data":"","user_id":[1]}"#,
            "string or a number",
        ),
    ] {
        let (_, got) = bad_data(text);
        assert!(got.contains(reason), "{text}: {got:?} lacks {reason:?}");
    }
    let long_event = format!(r#"{{"event":"{}","channel":"c"}}"#, "e".repeat(201));
    assert!(bad_data(&long_event).1.contains("longer than"));
}

/// Cut anywhere, or with any byte changed, a valid message decodes or fails: never panics.
#[test]
fn damaged_messages_never_panic() {
    let samples = [
        outbound::connection_established(SocketId::new(1, 2), 120),
        outbound::error(Some(4001), "no"),
        outbound::presence_subscription_succeeded("presence-x", [("1", Some("{\"a\":[1]}"))]),
        outbound::member_added("presence-x", "1", Some("{}")),
        outbound::member_removed("presence-x", "1"),
        outbound::subscription_error("private-a", "AuthError", "bad", 401),
        outbound::channel_event("client-e", "presence-c", "{\"x\":\"é\"}", Some("7")),
        r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"{\\\"id\\\":1}\"}"}"#.into(),
        r#"{"event":"pusher_internal:watchlist_events","data":{"events":[{"name":"online","user_ids":[1]}]}}"#.into(),
    ];
    for sample in &samples {
        for cut in 0..sample.len() {
            if let Some(prefix) = sample.get(..cut) {
                let _ = ServerMessage::parse(prefix);
            }
        }
        let bytes = sample.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'"', b'{', b'}', b'\\', b'0', b'x', b':', b','] {
                let mut damaged = bytes.to_vec();
                damaged[i] = replacement;
                if let Ok(text) = std::str::from_utf8(&damaged) {
                    let _ = ServerMessage::parse(text);
                }
            }
        }
    }
}

#[test]
fn event_names_are_the_wire_names() {
    assert_eq!(parse(outbound::PING).event(), "pusher:ping");
    assert_eq!(
        parse(&outbound::member_removed("presence-x", "1")).event(),
        "pusher_internal:member_removed"
    );
    assert_eq!(
        parse(&outbound::channel_event("my-event", "c", "", None)).event(),
        "my-event"
    );
    assert_eq!(parse(r#"{"event":"pusher:new"}"#).event(), "pusher:new");
}

#[test]
fn a_refusal_names_the_channel_as_asked_even_when_invalid() {
    assert_eq!(
        parse(&outbound::subscription_error(
            "",
            "InvalidChannel",
            "channel name must not be empty",
            400
        )),
        ServerMessage::SubscriptionError {
            channel: String::new(),
            refusal: SubscriptionRefusal {
                error_type: Some("InvalidChannel".into()),
                error: Some("channel name must not be empty".into()),
                status: Some(400)
            }
        }
    );
}
