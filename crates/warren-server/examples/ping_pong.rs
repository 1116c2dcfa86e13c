//! Custom client event: a client sends `my-app:ping`; the server answers that socket with
//! `my-app:pong`, and `my-app:shout` publishes the data to a channel the client is subscribed
//! to, from the server (so public channels work too).
//!
//! `cargo run -p warren-server --example ping_pong`. Exercised by
//! `tests/integration/extensions.rs`.

use warren_server::extend::{ClientEventHandler, ConnectionContext, CustomEvent, ErrorCode};
use warren_server::{Config, Server, ServerBuilder};

pub struct Ping;

#[async_trait::async_trait]
impl ClientEventHandler for Ping {
    async fn on_event(&self, event: CustomEvent, cx: &ConnectionContext<'_>) {
        let who = cx.user_id().unwrap_or("anonymous");
        let answer = serde_json::json!({ "echo": event.data, "user": who }).to_string();
        cx.send("my-app:pong", None, &answer);
    }
}

/// Publishes to a subscribed channel; anything else closes the connection (4009), to show
/// how a handler ends a connection with a Pusher code.
pub struct Shout;

#[async_trait::async_trait]
impl ClientEventHandler for Shout {
    async fn on_event(&self, event: CustomEvent, cx: &ConnectionContext<'_>) {
        let Some(channel) = event.channel.filter(|c| cx.is_subscribed(c)) else {
            return cx.close(
                ErrorCode::Unauthorized,
                "my-app:shout needs a subscribed channel",
            );
        };
        if let Err(e) = cx.publish(&channel, "my-app:shouted", &event.data).await {
            cx.send_error(None, &format!("my-app:shout failed: {e}"));
        }
    }
}

pub fn extend(builder: ServerBuilder) -> ServerBuilder {
    builder
        .client_event("my-app:ping", Ping)
        .client_event("my-app:shout", Shout)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None, std::env::vars())?;
    let server = extend(Server::builder(config)).start().await?;
    println!("ping_pong example listening on {}", server.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
