//! What an application's own endpoints need: signing channel subscriptions and user sign-ins
//! for its auth endpoints, and checking the webhooks the server sends it.
//!
//! All signature code lives in `warren_protocol::auth`; this module only shapes inputs and
//! outputs.

use serde::{Deserialize, Serialize};
use warren_protocol::auth::{
    encrypted_channel_shared_secret, sign_channel, sign_user, verify_webhook as signature_matches,
};
use warren_protocol::{ChannelKind, ChannelName};

use crate::client::Client;
use crate::error::{ApiError, WebhookError};
use crate::request::{check_channel, check_socket_id};

/// A presence channel member, as the auth endpoint vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceData {
    pub user_id: String,
    /// Anything the other members should see (name, avatar...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<serde_json::Value>,
}

impl PresenceData {
    pub fn new(user_id: impl Into<String>, user_info: Option<serde_json::Value>) -> Self {
        Self {
            user_id: user_id.into(),
            user_info,
        }
    }
}

/// The answer of an auth endpoint to a channel subscription; serialize it as the response
/// body. Fields that are `None` are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAuth {
    /// `"<key>:<signature>"`.
    pub auth: String,
    /// The presence member data exactly as signed (presence channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
    /// The channel's decryption key (`private-encrypted-` channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
}

/// The answer of a user-authentication endpoint (`pusher:signin`); serialize it as the
/// response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAuth {
    /// `"<key>:<signature>"`.
    pub auth: String,
    /// The user data exactly as signed.
    pub user_data: String,
}

/// A verified webhook request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// When the server sent it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub events: Vec<WebhookEvent>,
}

/// One webhook event. `name` says which fields are set: `channel_occupied`,
/// `channel_vacated`, `member_added` / `member_removed` (`user_id`), `client_event`
/// (`event`, `data`, `socket_id`, `user_id` on presence channels), `cache_miss`,
/// `subscription_count` (`subscription_count`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub name: String,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
}

impl Client {
    /// Signs a subscription to a private, encrypted or presence channel for the connection
    /// `socket_id`. Presence channels need `presence` (and only they accept it);
    /// `private-encrypted-` channels need the client's `encryption_master_key`.
    ///
    /// ```
    /// use warren_client::{Client, ClientConfig, PresenceData};
    ///
    /// let client = Client::new(ClientConfig::new("http://127.0.0.1:6001", "app-id", "app-key", "app-secret"))?;
    /// let private = client.authorize_channel("1234.1234", "private-orders", None)?;
    /// assert!(private.auth.starts_with("app-key:"));
    ///
    /// let member = PresenceData::new("42", Some(serde_json::json!({"name": "Ada"})));
    /// let presence = client.authorize_channel("1234.1234", "presence-room", Some(&member))?;
    /// assert_eq!(presence.channel_data.as_deref(), Some(r#"{"user_id":"42","user_info":{"name":"Ada"}}"#));
    /// // The body of the auth endpoint's answer:
    /// let body = serde_json::to_string(&presence).expect("serializes");
    /// # assert!(body.contains("channel_data"));
    /// # Ok::<(), warren_client::ApiError>(())
    /// ```
    pub fn authorize_channel(
        &self,
        socket_id: &str,
        channel: &str,
        presence: Option<&PresenceData>,
    ) -> Result<ChannelAuth, ApiError> {
        check_socket_id(socket_id)?;
        check_channel(channel)?;
        let kind = ChannelName::parse(channel, usize::MAX)
            .map(|c| c.kind())
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
        let channel_data = match (kind, presence) {
            (ChannelKind::Presence, Some(member)) => {
                if member.user_id.is_empty() {
                    return Err(ApiError::InvalidRequest(
                        "presence user_id must not be empty".into(),
                    ));
                }
                Some(serde_json::to_string(member).map_err(|e| {
                    ApiError::InvalidRequest(format!("presence data does not serialize: {e}"))
                })?)
            }
            (ChannelKind::Presence, None) => {
                return Err(ApiError::InvalidRequest(format!(
                    "{channel} is a presence channel: presence data (user_id) is required"
                )))
            }
            (_, Some(_)) => {
                return Err(ApiError::InvalidRequest(format!(
                    "{channel} is not a presence channel: presence data applies only to presence- channels"
                )))
            }
            (_, None) => None,
        };
        let shared_secret = if kind == ChannelKind::PrivateEncrypted {
            let master = self
                .config
                .encryption_master_key
                .as_deref()
                .ok_or_else(|| {
                    ApiError::Config(format!(
                    "{channel} is an encrypted channel: set encryption_master_key to authorize it"
                ))
                })?;
            Some(
                encrypted_channel_shared_secret(channel, master)
                    .map_err(|e| ApiError::Config(e.to_string()))?,
            )
        } else {
            None
        };
        let auth = sign_channel(
            &self.config.key,
            &self.config.secret,
            socket_id,
            channel,
            channel_data.as_deref(),
        );
        Ok(ChannelAuth {
            auth,
            channel_data,
            shared_secret,
        })
    }

    /// Signs a user sign-in (`pusher:signin`) for the connection `socket_id`. `user_data`
    /// must be an object with a non-empty string `id`; it may carry `user_info` and
    /// `watchlist`.
    ///
    /// ```
    /// use warren_client::{Client, ClientConfig};
    ///
    /// let client = Client::new(ClientConfig::new("http://127.0.0.1:6001", "app-id", "app-key", "app-secret"))?;
    /// let signed = client.authenticate_user("1234.1234", &serde_json::json!({"id": "42"}))?;
    /// assert_eq!(signed.user_data, r#"{"id":"42"}"#);
    /// # Ok::<(), warren_client::ApiError>(())
    /// ```
    pub fn authenticate_user(
        &self,
        socket_id: &str,
        user_data: &serde_json::Value,
    ) -> Result<UserAuth, ApiError> {
        check_socket_id(socket_id)?;
        match user_data.get("id") {
            Some(serde_json::Value::String(id)) if !id.is_empty() => {}
            _ => {
                return Err(ApiError::InvalidRequest(
                    "user_data must be an object with a non-empty string \"id\"".into(),
                ))
            }
        }
        let user_data = user_data.to_string();
        let auth = sign_user(&self.config.key, &self.config.secret, socket_id, &user_data);
        Ok(UserAuth { auth, user_data })
    }

    /// Checks a webhook request: `X-Pusher-Key` must be this app's key and
    /// `X-Pusher-Signature` the HMAC of the exact body; then parses the body.
    ///
    /// ```
    /// use warren_client::{Client, ClientConfig};
    ///
    /// let client = Client::new(ClientConfig::new("http://127.0.0.1:6001", "app-id", "app-key", "app-secret"))?;
    /// let body = br#"{"time_ms":1403175510755,"events":[{"channel":"c","name":"channel_vacated"}]}"#;
    /// # let signature = warren_protocol::auth::sign_webhook("app-secret", body);
    /// // `signature` is the X-Pusher-Signature header of the request.
    /// let payload = client.verify_webhook("app-key", &signature, body).expect("valid");
    /// assert_eq!(payload.events[0].name, "channel_vacated");
    /// assert!(client.verify_webhook("app-key", "0000", body).is_err());
    /// # Ok::<(), warren_client::ApiError>(())
    /// ```
    pub fn verify_webhook(
        &self,
        key_header: &str,
        signature_header: &str,
        body: &[u8],
    ) -> Result<WebhookPayload, WebhookError> {
        if key_header.trim() != self.config.key {
            return Err(WebhookError::WrongKey {
                given: key_header.chars().take(64).collect(),
            });
        }
        if !signature_matches(&self.config.secret, body, signature_header) {
            return Err(WebhookError::InvalidSignature);
        }
        serde_json::from_slice(body).map_err(WebhookError::InvalidBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const MASTER: &str = "zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=";

    fn client(secret: &str) -> Client {
        Client::new(ClientConfig::new("http://127.0.0.1:6001", "3", KEY, secret))
            .expect("valid config")
    }

    /// The vectors of docs/PROTOCOL.md, "Channel authorization".
    #[test]
    fn channel_vectors() {
        let c = client(SECRET);
        let a = c
            .authorize_channel("1234.1234", "private-foobar", None)
            .expect("signs");
        assert_eq!(
            a.auth,
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")
        );
        assert_eq!(
            serde_json::to_value(&a).expect("serializes"),
            serde_json::json!({"auth": a.auth})
        );
        let u = c
            .authenticate_user("1234.1234", &serde_json::json!({"id": "12345"}))
            .expect("signs");
        assert_eq!(
            u.auth,
            format!("{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba")
        );
        assert_eq!(u.user_data, r#"{"id":"12345"}"#);
    }

    #[test]
    fn presence_signs_the_channel_data_it_returns() {
        let c = client(SECRET);
        let member = PresenceData::new("10", Some(serde_json::json!({"name": "Mr. Channels"})));
        let a = c
            .authorize_channel("1234.1234", "presence-foobar", Some(&member))
            .expect("signs");
        let data = a.channel_data.clone().expect("channel_data");
        assert_eq!(
            data,
            r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#
        );
        assert!(warren_protocol::auth::verify_channel_auth(
            &a.auth,
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(&data)
        )
        .is_ok());
        assert!(c
            .authorize_channel("1234.1234", "presence-foobar", None)
            .is_err());
        assert!(c
            .authorize_channel("1234.1234", "private-x", Some(&member))
            .is_err());
        assert!(c
            .authorize_channel(
                "1234.1234",
                "presence-x",
                Some(&PresenceData::new("", None))
            )
            .is_err());
        assert!(c.authorize_channel("nope", "private-x", None).is_err());
        assert!(c.authorize_channel("1.2", "private x", None).is_err());
    }

    #[test]
    fn encrypted_channels_need_the_master_key() {
        let c = client("tofu");
        let e = c
            .authorize_channel("123.456", "private-encrypted-bla", None)
            .unwrap_err();
        assert!(matches!(e, ApiError::Config(_)), "{e}");
        let c = Client::new(
            ClientConfig::new("http://127.0.0.1:6001", "3", KEY, SECRET)
                .with_encryption_master_key(MASTER),
        )
        .expect("valid");
        let a = c
            .authorize_channel("123.456", "private-encrypted-bla", None)
            .expect("signs");
        assert_eq!(
            a.shared_secret.as_deref(),
            Some("nlr49ISQHz91yS3cy/yWmW8wFMNeTnNL5tNHnbPJcLQ=")
        );
        assert!(a.channel_data.is_none());
    }

    #[test]
    fn user_data_needs_an_id() {
        let c = client("tofu");
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"id": ""}),
            serde_json::json!({"id": 5}),
            serde_json::json!("x"),
        ] {
            assert!(c.authenticate_user("1.2", &bad).is_err(), "{bad}");
        }
        let u = c
            .authenticate_user("123.456", &serde_json::json!({"id": "45678"}))
            .expect("signs");
        assert_eq!(
            u.auth,
            format!("{KEY}:f4b1fdeea7c93e32648c7230e32b172057c5623cace6cfce791c6e7035e0babd")
        );
    }

    /// The vector of docs/PROTOCOL.md, "Webhooks".
    #[test]
    fn webhooks() {
        let c = client("tofu");
        let body = br#"{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}"#;
        let sig = "c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5";
        let payload = c.verify_webhook(KEY, sig, body).expect("valid");
        assert_eq!(payload.time_ms, 1403175510755);
        assert_eq!(payload.events[0].channel, "test_channel");
        assert!(matches!(
            c.verify_webhook("other", sig, body),
            Err(WebhookError::WrongKey { .. })
        ));
        assert!(matches!(
            c.verify_webhook(KEY, &sig.replace('c', "d"), body),
            Err(WebhookError::InvalidSignature)
        ));
        let junk = b"not json";
        let sig = warren_protocol::auth::sign_webhook("tofu", junk);
        assert!(matches!(
            c.verify_webhook(KEY, &sig, junk),
            Err(WebhookError::InvalidBody(_))
        ));
    }
}
