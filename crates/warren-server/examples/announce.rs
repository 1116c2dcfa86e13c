//! Custom broadcast type: an `announce` broadcast reaches the handler on every node of the
//! cluster (through Redis when clustered), and each node keeps what it heard. Node-local work
//! of this kind (a cache to drop, a setting to reload) is what broadcasts are for.
//!
//! `cargo run -p warren-server --example announce` broadcasts once a second. Exercised by
//! `tests/integration/extensions.rs`, on two nodes over Redis.

use std::sync::Arc;

use parking_lot::Mutex;
use warren_server::extend::{Broadcast, ServerHandle};
use warren_server::{Config, Server, ServerBuilder};

/// What one node heard: every announcement, in order.
#[derive(Default)]
pub struct Heard(Mutex<Vec<String>>);

impl Heard {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

/// Keeps each `announce` broadcast's text on this node.
pub fn extend(builder: ServerBuilder, heard: Arc<Heard>) -> ServerBuilder {
    builder.broadcast_handler("announce", move |b: &Broadcast, server: &ServerHandle| {
        let text = b.text().unwrap_or("<binary>").to_owned();
        tracing::info!(node = server.node_id(), %text, "announcement");
        heard.0.lock().push(text);
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None, std::env::vars())?;
    let heard = Arc::new(Heard::default());
    let server = extend(Server::builder(config), heard.clone())
        .start()
        .await?;
    println!("announce example listening on {}", server.addr);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => server.broadcast("announce", format!("tick {n}")).await?,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("heard {} announcements", heard.all().len());
    Ok(())
}
