//! Warren as a library, watched from Rust: an embedding program attaches a tap to the
//! server's monitor and keeps an audit trail of what was published on `orders-` channels.
//!
//! Run it with `cargo run -p warren-server --example monitor_tap`; `cargo test` runs it too
//! (its test checks what it reports).

use std::collections::BTreeMap;
use std::time::Duration;

use warren_client::{Client, ClientConfig, TriggerOptions};
use warren_server::config::{DEMO_APP_ID, DEMO_APP_KEY, DEMO_APP_SECRET};
use warren_server::monitor::{EventKind, Filter, TapItem};
use warren_server::{Config, Server};

/// Starts a server, publishes a few events through its HTTP API and returns how many
/// publishes the tap saw per `orders-` channel.
async fn audit() -> anyhow::Result<BTreeMap<String, usize>> {
    let mut config = Config::default();
    config.server.port = 0;
    let server = Server::start(config).await?;
    // Everything published on `orders-` channels of the demo app, on this node (and on every
    // node, with the Redis backend). The tap lives until it is dropped.
    let tap = server.monitor().attach(Filter {
        app: Some(DEMO_APP_ID.into()),
        channel_prefix: Some("orders-".into()),
        event: None,
    });

    let api = Client::new(ClientConfig::new(
        format!("http://{}", server.addr),
        DEMO_APP_ID,
        DEMO_APP_KEY,
        DEMO_APP_SECRET,
    ))?;
    for channel in ["orders-eu", "orders-us", "orders-eu", "invoices"] {
        api.trigger([channel], "created", "{}", TriggerOptions::default())
            .await?;
    }

    let mut published = BTreeMap::new();
    // The tap is a queue: read until it stays empty for a moment.
    while let Ok(item) = tokio::time::timeout(Duration::from_millis(300), tap.next()).await {
        match item {
            TapItem::Event(e) => {
                if let EventKind::ApiPublish { channel, event, .. } = &e.kind {
                    println!("{} {} published {event} on {channel}", e.at_ms, e.node);
                    *published.entry(channel.clone()).or_insert(0) += 1;
                }
            }
            TapItem::Dropped(n) => println!("{n} events dropped: this reader was too slow"),
        }
    }
    Ok(published)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    for (channel, count) in audit().await? {
        println!("{channel}: {count} publishes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_tap_reports_the_orders_publishes_and_nothing_else() {
        let published = super::audit().await.expect("runs");
        let expected = [("orders-eu".to_owned(), 2), ("orders-us".to_owned(), 1)];
        assert_eq!(published, expected.into_iter().collect());
    }
}
