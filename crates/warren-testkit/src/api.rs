//! The HTTP API of the demo app: requests signed by hand ([`api`], [`api_get`],
//! [`api_post`]) for tests that check what the server answers, and a `warren-client`
//! ([`api_client`]) for tests that only need the API to work.

use serde_json::Value;
use warren_client::{Client, ClientConfig};

use crate::http::{http, Response};
use crate::signing::{now_secs, signed_target};
use crate::{Endpoint, APP_ID, KEY, MASTER_KEY, SECRET};

/// A correctly signed request for the demo app.
pub async fn api(
    to: &impl Endpoint,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
) -> Response {
    let target = signed_target(method, path, params, body, KEY, SECRET, now_secs());
    http(to, method, &target, body).await
}

/// A signed GET with `params`.
pub async fn api_get(to: &impl Endpoint, path: &str, params: &[(&str, &str)]) -> Response {
    api(to, "GET", path, params, "").await
}

/// A signed POST of `body`.
pub async fn api_post(to: &impl Endpoint, path: &str, body: Value) -> Response {
    api(to, "POST", path, &[], &body.to_string()).await
}

/// The demo app's client configuration, with [`MASTER_KEY`] for encrypted channels.
pub fn api_config(to: &impl Endpoint) -> ClientConfig {
    ClientConfig::new(to.http_url(), APP_ID, KEY, SECRET).with_encryption_master_key(MASTER_KEY)
}

/// A `warren-client` API client for the demo app.
pub fn api_client(to: &impl Endpoint) -> Client {
    Client::new(api_config(to)).expect("valid client configuration")
}
