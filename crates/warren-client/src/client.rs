//! The HTTP API client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;
use warren_protocol::auth::{body_md5_hex, sign_rest_request, AUTH_VERSION};

use crate::error::ApiError;
use crate::request::{query_component, ApiRequest, BatchEvent, ChannelsQuery, TriggerOptions};
use crate::types::{
    BatchResult, ChannelAttribute, ChannelInfo, ChannelsList, TriggerResult, UsersResponse,
};

/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is and whose credentials to sign with.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host`, optionally with a path prefix the server is
    /// mounted under (`https://example.com/pusher`).
    pub base_url: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// Whole-request timeout, connecting included.
    pub timeout: Duration,
    /// Base64 of the 32-byte master key of `private-encrypted-` channels; needed only by
    /// [`Client::authorize_channel`] for such channels.
    pub encryption_master_key: Option<String>,
}

impl ClientConfig {
    /// A configuration with the default timeout ([`DEFAULT_TIMEOUT`]) and no encryption key.
    pub fn new(
        base_url: impl Into<String>,
        app_id: impl Into<String>,
        key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            app_id: app_id.into(),
            key: key.into(),
            secret: secret.into(),
            timeout: DEFAULT_TIMEOUT,
            encryption_master_key: None,
        }
    }

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the base64 master key of `private-encrypted-` channels.
    pub fn with_encryption_master_key(mut self, key: impl Into<String>) -> Self {
        self.encryption_master_key = Some(key.into());
        self
    }
}

impl std::fmt::Debug for ClientConfig {
    /// The secret and the master key are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .field(
                "encryption_master_key",
                &self.encryption_master_key.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// A client of one app's HTTP API, plus the signing helpers an app's auth endpoint needs.
///
/// It holds one pool of keep-alive connections; clone it freely (clones share the pool) rather
/// than creating one per request.
///
/// ```no_run
/// use warren_client::{Client, ClientConfig, TriggerOptions};
///
/// # async fn run() -> Result<(), warren_client::ApiError> {
/// let client = Client::new(ClientConfig::new(
///     "http://127.0.0.1:6001",
///     "app-id",
///     "app-key",
///     "app-secret",
/// ))?;
/// client
///     .trigger(["my-channel"], "my-event", &serde_json::json!({"message": "hi"}), TriggerOptions::default())
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) config: ClientConfig,
    /// `base_url` without a trailing `/`.
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// Checks the configuration and builds the connection pool. Fails on a base URL that is
    /// not `http(s)://...`, empty credentials, or a master key that is not base64 of 32 bytes.
    pub fn new(config: ClientConfig) -> Result<Self, ApiError> {
        let base = config.base_url.trim().trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| ApiError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ApiError::Config(format!(
                "base_url {:?}: the scheme must be http or https",
                config.base_url
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ApiError::Config(format!(
                "base_url {:?}: must not have a query or fragment",
                config.base_url
            )));
        }
        for (what, value) in [
            ("app_id", &config.app_id),
            ("key", &config.key),
            ("secret", &config.secret),
        ] {
            if value.is_empty() {
                return Err(ApiError::Config(format!("{what} must not be empty")));
            }
        }
        if let Some(master) = &config.encryption_master_key {
            warren_protocol::auth::encrypted_channel_shared_secret("check", master)
                .map_err(|e| ApiError::Config(e.to_string()))?;
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Some(Duration::from_secs(60)))
            .tcp_nodelay(true)
            .user_agent(concat!("warren-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { config, base, http })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Signs and sends `request`, returning the server's JSON text on a 2xx answer.
    ///
    /// This is what the typed methods use; call it directly to get the server's answer
    /// verbatim.
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// use warren_client::{ApiRequest, ChannelsQuery};
    /// let json = client.execute(&ApiRequest::channels(&ChannelsQuery::default())?).await?;
    /// println!("{json}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn execute(&self, request: &ApiRequest) -> Result<String, ApiError> {
        let url = self.signed_url(request, unix_now());
        let mut builder = match request.method() {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        };
        if let Some(body) = request.body() {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(ApiError::Status {
                status: status.as_u16(),
                body: text,
            })
        }
    }

    /// The full URL of `request` with its auth parameters, signed at `timestamp`.
    fn signed_url(&self, request: &ApiRequest, timestamp: u64) -> String {
        let path = format!(
            "/apps/{}{}",
            crate::request::query_component(&self.config.app_id),
            request.path()
        );
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".to_owned(), self.config.key.clone()),
            ("auth_timestamp".to_owned(), timestamp.to_string()),
            ("auth_version".to_owned(), AUTH_VERSION.to_owned()),
        ];
        if let Some(body) = request.body() {
            params.push(("body_md5".to_owned(), body_md5_hex(body)));
        }
        params.extend(request.params().iter().cloned());
        let signature = sign_rest_request(&self.config.secret, request.method(), &path, &params);
        let mut url = format!("{}{path}?", self.base);
        for (key, value) in &params {
            url.push_str(&query_component(key));
            url.push('=');
            url.push_str(&query_component(value));
            url.push('&');
        }
        url.push_str("auth_signature=");
        url.push_str(&signature);
        url
    }

    async fn call<R: DeserializeOwned>(&self, request: &ApiRequest) -> Result<R, ApiError> {
        let body = self.execute(request).await?;
        // Some servers answer an empty 200 where `{}` is meant.
        let text = if body.trim().is_empty() { "{}" } else { &body };
        serde_json::from_str(text).map_err(|source| ApiError::Decode { body, source })
    }

    /// Publishes `event` on up to 100 channels. `data` is sent as the official SDKs do: a
    /// string verbatim, any other value as its JSON text (see [`crate::encode_data`]).
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// use warren_client::{ChannelAttribute, TriggerOptions};
    /// let result = client
    ///     .trigger(
    ///         ["presence-room", "news"],
    ///         "update",
    ///         "plain text is sent verbatim",
    ///         TriggerOptions { info: vec![ChannelAttribute::SubscriptionCount], ..Default::default() },
    ///     )
    ///     .await?;
    /// for (channel, attributes) in &result.channels {
    ///     println!("{channel}: {:?}", attributes.subscription_count);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn trigger<C, T>(
        &self,
        channels: C,
        event: &str,
        data: &T,
        options: TriggerOptions,
    ) -> Result<TriggerResult, ApiError>
    where
        C: IntoIterator,
        C::Item: AsRef<str>,
        T: Serialize + ?Sized,
    {
        self.call(&ApiRequest::trigger(channels, event, data, &options)?)
            .await
    }

    /// Publishes up to 10 events in one request. An empty batch sends nothing.
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// use warren_client::BatchEvent;
    /// client
    ///     .trigger_batch(vec![
    ///         BatchEvent::new("orders", "created", &serde_json::json!({"id": 1}))?,
    ///         BatchEvent::new("audit", "log", "order 1 created")?,
    ///     ])
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn trigger_batch(&self, events: Vec<BatchEvent>) -> Result<BatchResult, ApiError> {
        if events.is_empty() {
            return Ok(BatchResult::default());
        }
        self.call(&ApiRequest::trigger_batch(&events)?).await
    }

    /// The occupied channels, optionally filtered by prefix, with the requested attributes.
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// use warren_client::{ChannelAttribute, ChannelsQuery};
    /// let list = client
    ///     .channels(ChannelsQuery {
    ///         filter_by_prefix: Some("presence-".into()),
    ///         info: vec![ChannelAttribute::UserCount],
    ///     })
    ///     .await?;
    /// for (name, attributes) in list.channels {
    ///     println!("{name}: {} users", attributes.user_count.unwrap_or(0));
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn channels(&self, query: ChannelsQuery) -> Result<ChannelsList, ApiError> {
        self.call(&ApiRequest::channels(&query)?).await
    }

    /// One channel's state: occupied or not, and the requested attributes.
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// use warren_client::ChannelAttribute;
    /// let info = client.channel("presence-room", &[ChannelAttribute::UserCount]).await?;
    /// println!("occupied: {}, users: {:?}", info.occupied, info.user_count);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn channel(
        &self,
        name: &str,
        info: &[ChannelAttribute],
    ) -> Result<ChannelInfo, ApiError> {
        self.call(&ApiRequest::channel(name, info)?).await
    }

    /// The ids of the users in a presence channel.
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// for id in client.users("presence-room").await? {
    ///     println!("{id}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn users(&self, channel: &str) -> Result<Vec<String>, ApiError> {
        let response: UsersResponse = self.call(&ApiRequest::users(channel)?).await?;
        Ok(response.users.into_iter().map(|u| u.id).collect())
    }

    /// Closes every connection signed in as `user_id`.
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// client.terminate_user_connections("42").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn terminate_user_connections(&self, user_id: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .call(&ApiRequest::terminate_user_connections(user_id)?)
            .await?;
        Ok(())
    }

    /// Sends `event` to every connection signed in as `user_id` (through the
    /// `#server-to-user-<user_id>` channel). `data` is encoded as for [`Client::trigger`].
    ///
    /// ```no_run
    /// # async fn run(client: warren_client::Client) -> Result<(), warren_client::ApiError> {
    /// client.send_to_user("42", "notification", &serde_json::json!({"text": "hi"})).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_to_user<T: Serialize + ?Sized>(
        &self,
        user_id: &str,
        event: &str,
        data: &T,
    ) -> Result<(), ApiError> {
        let _: TriggerResult = self
            .call(&ApiRequest::send_to_user(user_id, event, data)?)
            .await?;
        Ok(())
    }
}

/// The URL carries the signature and the key: leave it out of error messages.
fn transport(e: reqwest::Error) -> ApiError {
    ApiError::Transport(e.without_url())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new(ClientConfig::new(
            "http://127.0.0.1:1/",
            "3",
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
        ))
        .expect("valid config")
    }

    /// The signed URL verifies with the protocol crate's verifier, the one the server uses.
    #[test]
    fn signed_urls_verify() {
        let c = client();
        let requests = [
            ApiRequest::trigger(
                ["project-3"],
                "foo",
                "{\"some\":\"data\"}",
                &Default::default(),
            )
            .expect("valid"),
            ApiRequest::channels(&ChannelsQuery {
                filter_by_prefix: Some("presence-".into()),
                info: vec![
                    ChannelAttribute::UserCount,
                    ChannelAttribute::SubscriptionCount,
                ],
            })
            .expect("valid"),
            ApiRequest::channel("#server-to-user-a", &[ChannelAttribute::Cache]).expect("valid"),
        ];
        for req in &requests {
            let url = c.signed_url(req, 1353088179);
            let rest = url
                .strip_prefix("http://127.0.0.1:1")
                .expect("base without slash");
            let (path, query) = rest.split_once('?').expect("query");
            let body = req.body().unwrap_or_default();
            let params = warren_protocol::auth::verify_rest_request(
                req.method(),
                path,
                query,
                body,
                |k| (k == "278d425bdf160c739803").then(|| "7ad3773142a6692b25b8".to_owned()),
                1353088179,
                600,
            )
            .unwrap_or_else(|e| panic!("{url}: {e}"));
            for (k, v) in req.params() {
                assert!(params.contains(&(k.clone(), v.clone())), "{k}={v} in {url}");
            }
        }
        assert!(c
            .signed_url(&requests[1], 1)
            .contains("info=user_count%2Csubscription_count"));
    }

    /// The vector of docs/PROTOCOL.md, "HTTP API": same body, key, secret and timestamp, same signature.
    #[test]
    fn protocol_vector() {
        let c = client();
        // The vector's body has `name` first, then `channels`, then `data`, as ours does.
        let req = ApiRequest::trigger(
            ["project-3"],
            "foo",
            "{\"some\":\"data\"}",
            &Default::default(),
        )
        .expect("valid");
        assert_eq!(
            req.body().map(String::from_utf8_lossy).as_deref(),
            Some(r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#)
        );
        let url = c.signed_url(&req, 1353088179);
        assert!(
            url.contains("body_md5=ec365a775a4cd0599faeb73354201b6f"),
            "{url}"
        );
        assert!(
            url.ends_with(
                "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
            ),
            "{url}"
        );
    }

    #[test]
    fn config_is_checked() {
        let base = ClientConfig::new("http://localhost:6001", "a", "k", "s");
        assert!(Client::new(base.clone()).is_ok());
        for bad in ["localhost:6001", "ftp://x", "http://x/?q=1", "not a url"] {
            let mut c = base.clone();
            c.base_url = bad.into();
            assert!(matches!(Client::new(c), Err(ApiError::Config(_))), "{bad}");
        }
        let mut c = base.clone();
        c.secret.clear();
        assert!(Client::new(c).is_err());
        assert!(Client::new(base.clone().with_encryption_master_key("short")).is_err());
        assert!(Client::new(
            base.with_encryption_master_key("zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=")
        )
        .is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = ClientConfig::new("http://x", "a", "k", "very-secret")
            .with_encryption_master_key("also-secret");
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("also-secret"));
    }
}
