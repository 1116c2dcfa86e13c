//! Rust SDK for Warren and other Pusher Channels compatible servers.
//!
//! * [`Client`]: the HTTP API of one app (publish events, query channels and users, terminate
//!   a user's connections) over one pool of keep-alive connections, every request signed as
//!   the protocol requires.
//! * [`ws::WsClient`]: a WebSocket client (subscriptions with auth, presence, client events,
//!   sign-in, reconnects, liveness) for Warren and any Pusher-compatible server.
//! * The helpers an application's own endpoints need: [`Client::authorize_channel`] and
//!   [`Client::authenticate_user`] for its auth endpoints, [`Client::verify_webhook`] for
//!   webhooks.
//!
//! ```no_run
//! use warren_client::{Client, ClientConfig, ChannelAttribute, TriggerOptions};
//!
//! # async fn run() -> Result<(), warren_client::ApiError> {
//! let client = Client::new(ClientConfig::new(
//!     "http://127.0.0.1:6001",
//!     "app-id",
//!     "app-key",
//!     "app-secret",
//! ))?;
//! client
//!     .trigger(["my-channel"], "my-event", &serde_json::json!({"message": "hello"}), TriggerOptions::default())
//!     .await?;
//! let room = client.channel("presence-room", &[ChannelAttribute::UserCount]).await?;
//! println!("{} users online", room.user_count.unwrap_or(0));
//! # Ok(())
//! # }
//! ```
//!
//! Errors from the server keep its status and message:
//!
//! ```no_run
//! # async fn run(client: warren_client::Client) {
//! match client.users("not-a-presence-channel").await {
//!     Ok(ids) => println!("{ids:?}"),
//!     Err(e) if e.status() == Some(400) => eprintln!("rejected: {}", e.server_message().unwrap_or_default()),
//!     Err(e) => eprintln!("{e}"),
//! }
//! # }
//! ```

mod auth;
mod client;
mod error;
mod request;
mod types;
pub mod ws;

pub use auth::{ChannelAuth, PresenceData, UserAuth, WebhookEvent, WebhookPayload};
pub use client::{Client, ClientConfig, DEFAULT_TIMEOUT};
pub use error::{ApiError, WebhookError};
pub use request::{
    encode_data, ApiRequest, BatchEvent, ChannelsQuery, TriggerOptions, MAX_BATCH_EVENTS,
    MAX_TRIGGER_CHANNELS,
};
pub use types::{
    BatchResult, CachedEvent, ChannelAttribute, ChannelAttributes, ChannelInfo, ChannelsList,
    TriggerResult, UnknownAttribute,
};
