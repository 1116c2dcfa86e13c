//! Inbound middleware: refuse client events whose data contains a banned word.
//!
//! `cargo run -p warren-server --example banned_words` serves the demo app (settings from
//! `WARREN_*` variables, as `warren serve`); a client event saying "spam" gets a
//! `pusher:error` instead of reaching the channel. Exercised by `tests/integration/extensions.rs`.

use warren_server::extend::{ClientMessage, ConnectionContext, InboundMiddleware, Verdict};
use warren_server::{Config, Server, ServerBuilder};

/// Refuses client events whose data mentions any of the words (case-insensitively).
pub struct BannedWords {
    words: Vec<String>,
}

impl BannedWords {
    pub fn new(words: &[&str]) -> Self {
        Self {
            words: words.iter().map(|w| w.to_lowercase()).collect(),
        }
    }
}

#[async_trait::async_trait]
impl InboundMiddleware for BannedWords {
    async fn on_message(&self, message: ClientMessage, cx: &ConnectionContext<'_>) -> Verdict {
        let ClientMessage::ClientEvent { data, .. } = &message else {
            return Verdict::Pass(message);
        };
        let data = data.to_lowercase();
        match self.words.iter().find(|w| data.contains(w.as_str())) {
            Some(word) => {
                tracing::info!(socket_id = %cx.socket_id(), word, "client event refused");
                Verdict::reject(format!(
                    "Client event rejected: the word {word:?} is banned"
                ))
            }
            None => Verdict::Pass(message),
        }
    }
}

/// The example's extension, on any builder.
pub fn extend(builder: ServerBuilder) -> ServerBuilder {
    builder.inbound_middleware(BannedWords::new(&["spam", "scam"]))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(None, std::env::vars())?;
    let server = extend(Server::builder(config)).start().await?;
    println!("banned_words example listening on {}", server.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
