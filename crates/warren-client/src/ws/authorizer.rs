//! Where channel authorizations and user sign-ins come from: a callback, the application's
//! HTTP auth endpoints (pusher-js's convention), or local signing with the app secret.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::auth::{ChannelAuth, PresenceData, UserAuth};
use crate::client::Client;
use crate::request::query_component;

/// The future an authorizer returns; the error is a human-readable message.
pub type AuthFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// What the client asks to subscribe to a private, encrypted or presence channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAuthRequest {
    pub socket_id: String,
    pub channel_name: String,
}

/// Signs channel subscriptions. Implemented by [`HttpAuthorizer`], [`LocalAuthorizer`] and by
/// any `Fn(ChannelAuthRequest) -> impl Future<Output = Result<ChannelAuth, E>>` closure
/// (`E: Display`).
///
/// ```
/// use warren_client::ChannelAuth;
/// use warren_client::ws::{ChannelAuthRequest, WsConfig};
///
/// let config = WsConfig::new("ws://127.0.0.1:6001", "app-key").with_channel_authorizer(
///     |req: ChannelAuthRequest| async move {
///         // Ask your backend; here a fixed answer.
///         Ok::<_, String>(ChannelAuth { auth: format!("app-key:sig-for-{}", req.channel_name), channel_data: None, shared_secret: None })
///     },
/// );
/// # let _ = config;
/// ```
pub trait ChannelAuthorizer: Send + Sync + 'static {
    fn authorize(&self, request: ChannelAuthRequest) -> AuthFuture<ChannelAuth>;
}

/// Signs user sign-ins (`pusher:signin`). Implemented by [`HttpAuthorizer`],
/// [`LocalAuthorizer`] and by any `Fn(String /* socket id */) -> impl Future<Output =
/// Result<UserAuth, E>>` closure.
pub trait UserAuthenticator: Send + Sync + 'static {
    fn authenticate(&self, socket_id: String) -> AuthFuture<UserAuth>;
}

impl<F, Fut, E> ChannelAuthorizer for F
where
    F: Fn(ChannelAuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ChannelAuth, E>> + Send + 'static,
    E: Display,
{
    fn authorize(&self, request: ChannelAuthRequest) -> AuthFuture<ChannelAuth> {
        let fut = self(request);
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    }
}

impl<F, Fut, E> UserAuthenticator for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<UserAuth, E>> + Send + 'static,
    E: Display,
{
    fn authenticate(&self, socket_id: String) -> AuthFuture<UserAuth> {
        let fut = self(socket_id);
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    }
}

/// The application's auth endpoint, called as pusher-js does: a form POST of
/// `socket_id=...&channel_name=...` (channels, e.g. `/pusher/auth`) or `socket_id=...` (user
/// sign-in, e.g. `/pusher/user-auth`), answered with JSON `{"auth", "channel_data"?,
/// "shared_secret"?}` or `{"auth", "user_data"}`.
#[derive(Debug, Clone)]
pub struct HttpAuthorizer {
    endpoint: String,
    headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
    http: reqwest::Client,
}

impl HttpAuthorizer {
    /// An authorizer posting to `endpoint` (a full `http(s)://` URL) with a 10 s timeout.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("warren-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            params: Vec::new(),
            http,
        }
    }

    /// Adds a header to every request (a session cookie, a bearer token, a CSRF token...).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a form field to every request.
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Uses this HTTP client (for its TLS, proxy or timeout settings).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    fn post<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        mut form: Vec<(&'static str, String)>,
    ) -> AuthFuture<T> {
        let mut body = String::new();
        for (k, v) in form
            .drain(..)
            .map(|(k, v)| (k.to_owned(), v))
            .chain(self.params.iter().cloned())
        {
            if !body.is_empty() {
                body.push('&');
            }
            body.push_str(&query_component(&k));
            body.push('=');
            body.push_str(&query_component(&v));
        }
        let mut request = self
            .http
            .post(&self.endpoint)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        for (k, v) in &self.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            let response = request
                .send()
                .await
                .map_err(|e| format!("{endpoint}: {}", e.without_url()))?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| format!("{endpoint}: {}", e.without_url()))?;
            if !status.is_success() {
                let text: String = text.trim().chars().take(200).collect();
                return Err(format!("{endpoint} answered {}: {text}", status.as_u16()));
            }
            serde_json::from_str(&text).map_err(|e| {
                format!("{endpoint} answered something that is not an auth response: {e}")
            })
        })
    }
}

impl ChannelAuthorizer for HttpAuthorizer {
    fn authorize(&self, request: ChannelAuthRequest) -> AuthFuture<ChannelAuth> {
        self.post(vec![
            ("socket_id", request.socket_id),
            ("channel_name", request.channel_name),
        ])
    }
}

impl UserAuthenticator for HttpAuthorizer {
    fn authenticate(&self, socket_id: String) -> AuthFuture<UserAuth> {
        self.post(vec![("socket_id", socket_id)])
    }
}

/// Signs locally with the app secret of a [`Client`]: for trusted processes only (servers,
/// tests, load generators), never for code shipped to end users.
#[derive(Debug, Clone)]
pub struct LocalAuthorizer {
    client: Client,
    presence: Option<PresenceData>,
    user_data: Option<serde_json::Value>,
}

impl LocalAuthorizer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            presence: None,
            user_data: None,
        }
    }

    /// The member to join presence channels as.
    pub fn with_presence(mut self, member: PresenceData) -> Self {
        self.presence = Some(member);
        self
    }

    /// The user data to sign in with (an object with a string `id`).
    pub fn with_user_data(mut self, user_data: serde_json::Value) -> Self {
        self.user_data = Some(user_data);
        self
    }
}

impl ChannelAuthorizer for LocalAuthorizer {
    fn authorize(&self, request: ChannelAuthRequest) -> AuthFuture<ChannelAuth> {
        let presence = request
            .channel_name
            .starts_with("presence-")
            .then_some(self.presence.as_ref())
            .flatten();
        let result = self
            .client
            .authorize_channel(&request.socket_id, &request.channel_name, presence)
            .map_err(|e| e.to_string());
        Box::pin(std::future::ready(result))
    }
}

impl UserAuthenticator for LocalAuthorizer {
    fn authenticate(&self, socket_id: String) -> AuthFuture<UserAuth> {
        let result = match &self.user_data {
            Some(data) => self
                .client
                .authenticate_user(&socket_id, data)
                .map_err(|e| e.to_string()),
            None => Err("no user data configured (LocalAuthorizer::with_user_data)".into()),
        };
        Box::pin(std::future::ready(result))
    }
}
