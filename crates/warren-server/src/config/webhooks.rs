//! Webhook keys: `[webhooks]` (how they are sent) and each app's `[[apps.webhooks]]` (where).

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::fmt;

use serde::de::{self, IntoDeserializer};
use serde::{Deserialize, Deserializer};

use super::WebhookEventType;

/// The `[webhooks]` section: delivery settings shared by every endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Most events in one request.
    pub batch_max: usize,
    /// How long the first event of a batch waits for others.
    pub batch_window_ms: u64,
    /// How long a failing request is retried before its events are dropped.
    pub retry_for_secs: u64,
    /// One request's time limit.
    pub timeout_ms: u64,
    /// How long `channel_vacated` and `member_removed` wait for a return that cancels them.
    pub delay_removal_ms: u64,
    /// Events waiting for one endpoint; beyond it new ones are dropped (and counted).
    pub max_pending: usize,
    /// A single node keeps pending webhooks here, so they survive a restart.
    pub spool_dir: Option<PathBuf>,
    /// Requests one endpoint may have under way at once from one node.
    pub requests_in_flight: usize,
    /// Threads webhooks are sent from, apart from delivery's; 0: the ingress threads.
    pub threads: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            batch_max: 50,
            batch_window_ms: 100,
            retry_for_secs: 300,
            timeout_ms: 5000,
            delay_removal_ms: 3000,
            max_pending: 10_000,
            spool_dir: None,
            requests_in_flight: 4,
            threads: 1,
        }
    }
}

/// One `[[apps.webhooks]]` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` (checked by `validate`).
    pub url: String,
    /// The kinds it receives; absent: all of them.
    #[serde(default, deserialize_with = "event_types")]
    pub event_types: Option<Vec<WebhookEventType>>,
    /// Sent with every request, after Warren's own headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl WebhookConfig {
    /// An endpoint receiving every kind of event.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            event_types: None,
            headers: BTreeMap::new(),
        }
    }

    /// The URL's scheme and the headers' names and values (the field and what is wrong).
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            Ok(_) => {
                return Err((
                    "url",
                    format!("must be an http:// or https:// URL, got {:?}", self.url),
                ))
            }
            Err(e) => return Err(("url", format!("{e}: {:?}", self.url))),
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(("headers", format!("{name:?} is not a header name")));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err((
                    "headers",
                    format!("the value of {name:?} is not a header value"),
                ));
            }
        }
        Ok(())
    }

    pub fn wants(&self, kind: WebhookEventType) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&kind))
    }
}

/// A list, or (from a `WARREN_*` variable) one text of names separated by commas.
fn event_types<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<WebhookEventType>>, D::Error> {
    struct Kinds;

    impl<'de> de::Visitor<'de> for Kinds {
        type Value = Vec<WebhookEventType>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of webhook event types")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            let names = text.split(',').map(str::trim).filter(|n| !n.is_empty());
            names
                .map(|name| WebhookEventType::deserialize(name.into_deserializer()))
                .collect()
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut kinds = Vec::new();
            while let Some(kind) = seq.next_element()? {
                kinds.push(kind);
            }
            Ok(kinds)
        }
    }

    deserializer.deserialize_any(Kinds).map(Some)
}

#[cfg(test)]
mod tests {
    use figment::Source;

    use super::super::{Config, ConfigError};
    use super::*;

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::parse(text, Source::Custom(String::new()), env)
    }

    const APP: &str = "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\n";

    #[test]
    fn endpoints_and_settings_from_the_file() {
        let text = format!(
            r#"{APP}
            [[apps.webhooks]]
            url = "https://example.com/hooks"
            event_types = ["member_added", "member_removed"]
            headers = {{ "X-Custom" = "v" }}
            [[apps.webhooks]]
            url = "http://10.0.0.1:8080/"
            [webhooks]
            batch_max = 10
            batch_window_ms = 0
            retry_for_secs = 60
            timeout_ms = 1000
            delay_removal_ms = 0
            max_pending = 5
            requests_in_flight = 2
            threads = 0
            "#
        );
        let config = parse(&text, &[]).unwrap();
        let hooks = &config.apps[0].webhooks;
        assert_eq!(hooks.len(), 2);
        assert_eq!(
            hooks[0].event_types,
            Some(vec![
                WebhookEventType::MemberAdded,
                WebhookEventType::MemberRemoved
            ])
        );
        assert!(hooks[0].wants(WebhookEventType::MemberAdded));
        assert!(!hooks[0].wants(WebhookEventType::ClientEvent));
        assert_eq!(hooks[0].headers["X-Custom"], "v");
        assert!(
            hooks[1].wants(WebhookEventType::ClientEvent),
            "omitted: all"
        );
        let w = &config.webhooks;
        assert_eq!(
            (
                w.batch_max,
                w.batch_window_ms,
                w.retry_for_secs,
                w.timeout_ms
            ),
            (10, 0, 60, 1000)
        );
        assert_eq!((w.delay_removal_ms, w.max_pending), (0, 5));
        assert_eq!((w.requests_in_flight, w.threads), (2, 0));
        assert_eq!(WebhooksConfig::default().retry_for_secs, 300);
        assert_eq!(WebhooksConfig::default().delay_removal_ms, 3000);
    }

    #[test]
    fn endpoints_and_settings_from_variables() {
        let config = parse(
            APP,
            &[
                ("WARREN_APPS__0__WEBHOOKS__0__URL", "http://h/1"),
                (
                    "WARREN_APPS__0__WEBHOOKS__0__EVENT_TYPES",
                    "client_event, cache_miss",
                ),
                ("WARREN_APPS__0__WEBHOOKS__1__URL", "http://h/2"),
                ("WARREN_WEBHOOKS__DELAY_REMOVAL_MS", "250"),
                ("WARREN_WEBHOOKS__SPOOL_DIR", "/tmp/spool"),
            ],
        )
        .unwrap();
        let hooks = &config.apps[0].webhooks;
        assert_eq!(hooks[0].url, "http://h/1");
        assert_eq!(
            hooks[0].event_types,
            Some(vec![
                WebhookEventType::ClientEvent,
                WebhookEventType::CacheMiss
            ])
        );
        assert_eq!(hooks[1], WebhookConfig::new("http://h/2"));
        assert_eq!(config.webhooks.delay_removal_ms, 250);
        assert_eq!(config.webhooks.spool_dir, Some(PathBuf::from("/tmp/spool")));
    }

    #[test]
    fn mistakes_are_named() {
        let hook = |line: &str| format!("{APP}[[apps.webhooks]]\n{line}\n");
        let cases = [
            (
                hook("url = \"ftp://h/\""),
                "apps.0.webhooks.0.url: must be an http:// or https://",
            ),
            (
                hook("url = \"not a url\""),
                "apps.0.webhooks.0.url: relative URL",
            ),
            (
                hook("url = \"http://h\"\nevent_types = [\"joined\"]"),
                "event_types.0: unknown variant: found `joined`",
            ),
            (
                hook("url = \"http://h\"\nheaders = { \"a b\" = \"v\" }"),
                "apps.0.webhooks.0.headers",
            ),
            (
                hook("uri = \"http://h\""),
                "apps.0.webhooks.0.uri: unknown field: found `uri`",
            ),
            (
                format!("{APP}[webhooks]\nbatch_max = 0"),
                "webhooks.batch_max: must be at least 1",
            ),
            (
                format!("{APP}[webhooks]\nrequests_in_flight = 0"),
                "webhooks.requests_in_flight: must be at least 1",
            ),
            (
                format!("{APP}[webhooks]\nrequests_in_flight = 65"),
                "webhooks.requests_in_flight: must be at most 64, got 65",
            ),
            (
                format!("{APP}[webhooks]\nthreads = 65"),
                "webhooks.threads: must be at most 64, got 65",
            ),
            (
                format!("{APP}[cluster]\nbackend = \"redis\"\n[webhooks]\nspool_dir = \"/x\""),
                "webhooks.spool_dir: is for a single node",
            ),
        ];
        for (text, want) in cases {
            let got = parse(&text, &[]).expect_err(&text).to_string();
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
        let got = parse(
            APP,
            &[(
                "WARREN_APPS__0__WEBHOOKS__0__EVENT_TYPES",
                "member_added,nope",
            )],
        )
        .expect_err("refused")
        .to_string();
        assert!(got.contains("`nope`"), "{got}");
    }
}
