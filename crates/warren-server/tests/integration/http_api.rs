//! The Pusher HTTP API: endpoints, shapes, limits.

use serde_json::json;

use warren_testkit::api::{api, api_get, api_post};
use warren_testkit::http::http;
use warren_testkit::server::start;
use warren_testkit::signing::{now_secs, signed_target};
use warren_testkit::ws::{connect, decode_data, presence_data};
use warren_testkit::{KEY, SECRET, WAIT};

const EVENTS: &str = "/apps/app-id/events";
const BATCH: &str = "/apps/app-id/batch_events";

#[tokio::test]
async fn trigger_reaches_subscribers_with_string_data() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.subscribed("news", None).await;
    let r = api_post(
        &server,
        EVENTS,
        json!({"name":"flash","channels":["news"],"data":"{\"x\":1}"}),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert_eq!(
        c.recv().await,
        json!({"event":"flash","channel":"news","data":"{\"x\":1}"})
    );
    // Non-string data is forwarded as its JSON text.
    api_post(
        &server,
        EVENTS,
        json!({"name":"obj","channel":"news","data":{"y":[1,2]}}),
    )
    .await;
    assert_eq!(decode_data(&c.recv().await), json!({"y":[1,2]}));
}

#[tokio::test]
async fn trigger_to_several_channels_and_duplicates_deliver_once() {
    let server = start().await;
    let mut a = connect(&server).await;
    a.subscribed("a1", None).await;
    a.subscribed("a2", None).await;
    let r = api_post(
        &server,
        EVENTS,
        json!({"name":"e","channels":["a1","a2","a1"],"data":"d"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut got = vec![
        a.recv().await["channel"].as_str().unwrap_or("").to_owned(),
        a.recv().await["channel"].as_str().unwrap_or("").to_owned(),
    ];
    got.sort();
    assert_eq!(got, ["a1", "a2"]);
    a.assert_silent().await;
}

#[tokio::test]
async fn socket_id_excludes_that_connection() {
    let server = start().await;
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.subscribed("ex", None).await;
    b.subscribed("ex", None).await;
    let r = api_post(
        &server,
        EVENTS,
        json!({"name":"e","channel":"ex","data":"d","socket_id":a.socket_id}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(b.recv().await["event"], "e");
    a.assert_silent().await;
    // In the query string too.
    let body = json!({"name":"q","channel":"ex","data":"d"}).to_string();
    let r = api(
        &server,
        "POST",
        EVENTS,
        &[("socket_id", &b.socket_id)],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.recv().await["event"], "q");
    b.assert_silent().await;
}

#[tokio::test]
async fn trigger_info_reports_counts_per_channel() {
    let server = start().await;
    let mut a = connect(&server).await;
    a.subscribed("presence-i", Some(&presence_data(json!("u1"), None)))
        .await;
    let mut b = connect(&server).await;
    b.subscribed("presence-i", Some(&presence_data(json!("u1"), None)))
        .await;
    b.subscribed("plain-i", None).await;
    let r = api_post(
        &server,
        EVENTS,
        json!({"name":"e","channels":["presence-i","plain-i"],"data":"d","info":"user_count,subscription_count"}),
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"channels":{"presence-i":{"user_count":1,"subscription_count":2},"plain-i":{"subscription_count":1}}})
    );
}

#[tokio::test]
async fn batch_events_deliver_and_report_index_aligned_info() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.subscribed("b1", None).await;
    let r = api_post(
        &server,
        BATCH,
        json!({"batch":[
            {"name":"one","channel":"b1","data":"1","info":"subscription_count"},
            {"name":"two","channel":"b2","data":"2"}
        ]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"batch":[{"subscription_count":1},{}]}));
    assert_eq!(c.recv().await["event"], "one");
    let plain = api_post(
        &server,
        BATCH,
        json!({"batch":[{"name":"three","channel":"b1","data":"3"}]}),
    )
    .await;
    assert_eq!(plain.json(), json!({}));
    assert_eq!(c.recv().await["event"], "three");
}

#[tokio::test]
async fn batch_is_all_or_nothing_and_limited_to_ten() {
    let server = start().await;
    let mut c = connect(&server).await;
    c.subscribed("bb", None).await;
    let r = api_post(
        &server,
        BATCH,
        json!({"batch":[{"name":"ok","channel":"bb","data":"1"},{"name":"bad","channel":"bad channel","data":"2"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("batch[1]"), "{}", r.body);
    c.assert_silent().await;
    let eleven: Vec<_> = (0..11)
        .map(|i| json!({"name":"e","channel":"bb","data":i.to_string()}))
        .collect();
    assert_eq!(
        api_post(&server, BATCH, json!({ "batch": eleven }))
            .await
            .status,
        400
    );
    assert_eq!(
        api_post(&server, BATCH, json!({ "batch": [] }))
            .await
            .status,
        400
    );
    c.assert_silent().await;
}

#[tokio::test]
async fn channels_lists_occupied_channels_with_filters() {
    let server = start().await;
    let empty = api_get(&server, "/apps/app-id/channels", &[]).await;
    assert_eq!((empty.status, empty.json()), (200, json!({"channels":{}})));
    let mut a = connect(&server).await;
    a.subscribed("news", None).await;
    a.subscribed("presence-room", Some(&presence_data(json!("1"), None)))
        .await;
    let mut b = connect(&server).await;
    b.subscribed("presence-room", Some(&presence_data(json!("2"), None)))
        .await;
    let all = api_get(&server, "/apps/app-id/channels", &[]).await.json();
    assert_eq!(all, json!({"channels":{"news":{},"presence-room":{}}}));
    let presence = api_get(
        &server,
        "/apps/app-id/channels",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
    )
    .await;
    assert_eq!(
        presence.json(),
        json!({"channels":{"presence-room":{"user_count":2}}})
    );
    let bad = api_get(&server, "/apps/app-id/channels", &[("info", "user_count")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("presence-"), "{}", bad.body);
    // Vacated channels disappear.
    a.close().await;
    b.close().await;
    let mut gone = false;
    for _ in 0..50 {
        if api_get(&server, "/apps/app-id/channels", &[]).await.json() == json!({"channels":{}}) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone);
}

#[tokio::test]
async fn channel_info_attributes() {
    let server = start().await;
    let r = api_get(
        &server,
        "/apps/app-id/channels/nobody",
        &[("info", "subscription_count")],
    )
    .await;
    assert_eq!(r.json(), json!({"occupied":false,"subscription_count":0}));
    let mut a = connect(&server).await;
    a.subscribed("presence-c", Some(&presence_data(json!("1"), None)))
        .await;
    let mut b = connect(&server).await;
    b.subscribed("presence-c", Some(&presence_data(json!("1"), None)))
        .await;
    let r = api_get(
        &server,
        "/apps/app-id/channels/presence-c",
        &[("info", "user_count,subscription_count")],
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"occupied":true,"user_count":1,"subscription_count":2})
    );
    let r = api_get(&server, "/apps/app-id/channels/presence-c", &[]).await;
    assert_eq!(r.json(), json!({"occupied":true}));
    assert_eq!(
        api_get(
            &server,
            "/apps/app-id/channels/plain",
            &[("info", "user_count")]
        )
        .await
        .status,
        400
    );
    assert_eq!(
        api_get(&server, "/apps/app-id/channels/plain", &[("info", "bogus")])
            .await
            .status,
        400
    );
    // `cache` only applies to cache channels; with nothing kept there is no `cache` entry.
    assert_eq!(
        api_get(&server, "/apps/app-id/channels/plain", &[("info", "cache")])
            .await
            .status,
        400
    );
    let r = api_get(
        &server,
        "/apps/app-id/channels/cache-x",
        &[("info", "cache")],
    )
    .await;
    assert_eq!(r.json(), json!({"occupied":false}));
}

#[tokio::test]
async fn channel_names_in_the_path_are_percent_decoded() {
    let server = start().await;
    let mut a = connect(&server).await;
    a.subscribed("private-a=b@c,d.e;f", None).await;
    let r = api_get(
        &server,
        "/apps/app-id/channels/private-a%3Db%40c%2Cd.e%3Bf",
        &[],
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({"occupied":true})));
    assert_eq!(
        api_get(&server, "/apps/app-id/channels/bad%20name", &[])
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn users_of_a_presence_channel() {
    let server = start().await;
    let mut a = connect(&server).await;
    a.subscribed("presence-u", Some(&presence_data(json!(5), None)))
        .await;
    let mut b = connect(&server).await;
    b.subscribed("presence-u", Some(&presence_data(json!("x"), None)))
        .await;
    let r = api_get(&server, "/apps/app-id/channels/presence-u/users", &[]).await;
    let mut ids: Vec<String> = r.json()["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_str().expect("string id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["5", "x"]);
    assert_eq!(
        api_get(&server, "/apps/app-id/channels/presence-empty/users", &[])
            .await
            .json(),
        json!({"users":[]})
    );
    assert_eq!(
        api_get(&server, "/apps/app-id/channels/private-u/users", &[])
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn terminate_connections_answers_both_routes() {
    let server = start().await;
    let r = api(
        &server,
        "POST",
        "/apps/app-id/users/42/terminate_connections",
        &[],
        "{}",
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let r = api(
        &server,
        "POST",
        "/users/42/terminate_connections",
        &[],
        "{}",
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
    let target = signed_target(
        "POST",
        "/users/42/terminate_connections",
        &[],
        "{}",
        "unknown-key",
        SECRET,
        now_secs(),
    );
    assert_eq!(http(&server, "POST", &target, "{}").await.status, 404);
}

#[tokio::test]
async fn limits_and_validation() {
    let server = start().await;
    let big = "x".repeat(10 * 1024 + 1);
    let r = api_post(
        &server,
        EVENTS,
        json!({"name":"e","channel":"c","data":big}),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    let exactly = "x".repeat(10 * 1024);
    assert_eq!(
        api_post(
            &server,
            EVENTS,
            json!({"name":"e","channel":"c","data":exactly})
        )
        .await
        .status,
        200
    );
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    assert_eq!(
        api_post(
            &server,
            EVENTS,
            json!({"name":"e","channels":many,"data":"d"})
        )
        .await
        .status,
        400
    );
    let hundred: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    assert_eq!(
        api_post(
            &server,
            EVENTS,
            json!({"name":"e","channels":hundred,"data":"d"})
        )
        .await
        .status,
        200
    );
    let long_name = "n".repeat(201);
    assert_eq!(
        api_post(
            &server,
            EVENTS,
            json!({"name":long_name,"channel":"c","data":"d"})
        )
        .await
        .status,
        400
    );
    for body in [
        json!({"name":"e","channel":"bad name","data":"d"}),
        json!({"name":"e","channel":"c","data":"d","socket_id":"nope"}),
        json!({"name":"e","channels":"c","data":"d"}),
        json!({"name":"e","data":"d"}),
        json!({"name":"e","channel":"c"}),
        json!({"channel":"c","data":"d"}),
        json!({"name":"e","channels":[],"data":"d"}),
        json!({"name":"e","channels":["private-encrypted-a","b"],"data":"d"}),
        json!({"name":"","channel":"c","data":"d"}),
        json!(["not", "an", "object"]),
    ] {
        let r = api_post(&server, EVENTS, body.clone()).await;
        assert_eq!(r.status, 400, "{body} -> {}", r.body);
        assert!(!r.body.trim().is_empty());
    }
    for raw in ["", "   ", "{not json", "{\"name\":1}"] {
        let r = api(&server, "POST", EVENTS, &[], raw).await;
        assert_eq!(r.status, 400, "{raw:?} -> {}", r.body);
    }
}

#[tokio::test]
async fn oversize_bodies_are_refused_before_they_are_buffered() {
    let server = start().await;
    let huge = format!(
        "{{\"name\":\"e\",\"channel\":\"c\",\"data\":\"{}\"}}",
        "x".repeat(2_000_000)
    );
    let r = api(&server, "POST", EVENTS, &[], &huge).await;
    assert_eq!(r.status, 413, "{}", r.body);
}

#[tokio::test]
async fn keep_alive_and_pipelining() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start().await;
    let body = json!({"name":"e","channel":"c","data":"d"}).to_string();
    let one = |ts| {
        let target = signed_target("POST", EVENTS, &[], &body, KEY, SECRET, ts);
        format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut s = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    // Three requests in one write: three responses on the same connection.
    let pipelined = format!("{}{}{}", one(now_secs()), one(now_secs()), one(now_secs()));
    s.write_all(pipelined.as_bytes()).await.expect("write");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("HTTP/1.1 200").count() < 3 {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "connection closed after: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // And the connection is still open for a fourth.
    s.write_all(one(now_secs()).as_bytes())
        .await
        .expect("write");
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}
