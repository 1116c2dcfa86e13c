//! `GET /monitor`: the tap as Server-Sent Events, one JSON object per `data:` line.
//!
//! The first is `{"type":"attached",...}` (the tap is in place: what happens from now on is
//! reported); then one [`MonitorEvent`](crate::monitor::MonitorEvent) per event, and
//! `{"type":"dropped","count":n}` when the reader was too slow and `n` events were lost.
//! Filters: `app_id`, `channel_prefix`, `event`. The tap is detached when the client goes.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde_json::json;

use super::access::authorize;
use super::{Console, Refusal};
use crate::monitor::{Filter, Tap, TapItem};

pub(super) async fn monitor(
    State(console): State<Arc<Console>>,
    req: Request,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Refusal> {
    let (parts, _) = req.into_parts();
    let granted = authorize(&console, &parts, false)?;
    let filter = Filter {
        app: granted.app_filter()?,
        channel_prefix: granted.param("channel_prefix").map(str::to_owned),
        event: granted.param("event").map(str::to_owned),
    };
    let monitor = console.node.monitor();
    let tap = monitor.attach(filter);
    let hello = json!({
        "type": "attached",
        "app": tap.filter().app,
        "channel_prefix": tap.filter().channel_prefix,
        "event": tap.filter().event,
    })
    .to_string();
    let events = stream::unfold((tap, Some(hello)), |(tap, first)| async move {
        let data = match first {
            Some(hello) => hello,
            None => next_line(&tap).await,
        };
        Some((Ok(Event::default().data(data)), (tap, None)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn next_line(tap: &Tap) -> String {
    match tap.next().await {
        TapItem::Event(e) => serde_json::to_string(&*e).unwrap_or_default(),
        TapItem::Dropped(count) => json!({ "type": "dropped", "count": count }).to_string(),
    }
}
