//! The node's inbound budget (`server.max_inbound_messages_per_sec`): client messages beyond
//! it are handled later, not refused, and the paced connection's deliveries go on meanwhile.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_protocol::wsframe::{Frame, FrameReader};
use warren_testkit::api::api_post;
use warren_testkit::raw::{masked_text, raw_tcp_upgrade, read_socket_id};
use warren_testkit::server::start_with;
use warren_testkit::WAIT;

const PER_SEC: u32 = 200;
const PINGS: usize = 400;

#[tokio::test]
async fn a_flood_over_the_node_budget_is_paced_and_its_deliveries_go_on() {
    let server = start_with(|c| c.server.max_inbound_messages_per_sec = Some(PER_SEC)).await;
    let mut s = raw_tcp_upgrade(&server).await;
    read_socket_id(&mut s).await;
    let sub = json!({"event":"pusher:subscribe","data":{"channel":"news"}});
    let mut burst = masked_text(sub.to_string().as_bytes());
    for _ in 0..PINGS {
        burst.extend(masked_text(br#"{"event":"pusher:ping","data":{}}"#));
    }
    let started = Instant::now();
    s.write_all(&burst).await.expect("the burst is taken");

    let mut reader = FrameReader::new();
    let (mut pongs, mut published, mut news_at_pong) = (0, false, None);
    let deadline = tokio::time::Instant::now() + WAIT * 4;
    loop {
        while let Some(frame) = reader.next().expect("well-formed frames") {
            let Frame::Text(text) = frame else {
                panic!("only text frames expected")
            };
            let msg: serde_json::Value = serde_json::from_slice(text).expect("json");
            match msg["event"].as_str() {
                Some("pusher:pong") => pongs += 1,
                Some("pusher_internal:subscription_succeeded") => {}
                Some("news-flash") => news_at_pong = Some(pongs),
                _ => panic!("nothing is refused: {msg}"),
            }
        }
        if pongs == PINGS {
            break;
        }
        // Once the first pongs show the connection is being paced, publish to it.
        if pongs > 0 && !published {
            published = true;
            let body = json!({"name":"news-flash","channel":"news","data":"{}"});
            assert_eq!(
                api_post(&server, "/apps/app-id/events", body).await.status,
                200
            );
        }
        let n = tokio::time::timeout_at(deadline, s.read(reader.spare()))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "every pong within the bound: {pongs} after {:?}",
                    started.elapsed()
                )
            })
            .expect("read");
        assert_ne!(n, 0, "the connection stays open");
        reader.filled(n);
    }
    let took = started.elapsed();
    // 401 messages at 200 a second, taken 8 at a time with 2 ms of burst: the last eight
    // cannot start before 49 × 40 ms.
    assert!(
        took >= Duration::from_millis(1900),
        "{PINGS} pings answered in {took:?}: the budget was not applied"
    );
    let at = news_at_pong.expect("the event was delivered");
    assert!(
        at < PINGS,
        "the event waited for the whole flood to be handled ({at} pongs before it)"
    );
}
