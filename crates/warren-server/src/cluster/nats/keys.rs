//! Names of every NATS subject, key-value bucket and key, all under the configured prefix.
//!
//! Channel names, user ids, app ids and instance ids may hold characters that mean something
//! in a subject or a key (`.` separates tokens) or are not allowed there (`@` `,` `;` `=` `~`
//! `#`). [`encode`] maps any text onto `[A-Za-z0-9-]` plus `_` as its escape, which is valid
//! in a subject token, a key token and a bucket name alike.
//!
//! INVARIANT(names-injective): [`encode`] is injective (every `_` it writes starts an escape
//! of exactly two hex digits), so two channels never share a subject or a key.

use warren_protocol::{AppId, ChannelName};

/// `text` as one subject or key token: ASCII letters, digits and `-` as they are, every other
/// byte as `_` and two uppercase hex digits.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// The text [`encode`] made `token` from; `None` for anything it cannot have made.
pub fn decode(token: &str) -> Option<String> {
    let mut out = Vec::with_capacity(token.len());
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        if b == b'_' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            if hex.bytes().any(|h| h.is_ascii_lowercase()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b);
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The names of one cluster (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    /// The prefix, encoded: the first token of every subject and part of every bucket name.
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: encode(prefix),
        }
    }

    /// The subject that carries one Pusher channel's events between nodes.
    pub fn events(&self, app: &AppId, channel: &ChannelName) -> String {
        format!(
            "warren.{}.ev.{}.{}",
            self.prefix,
            encode(app.as_str()),
            encode(channel.as_str())
        )
    }

    /// The subject every node listens to for custom broadcasts.
    pub fn broadcasts(&self) -> String {
        format!("warren.{}.bc", self.prefix)
    }

    /// A subject nobody listens to: requests to it confirm a round trip (see `Inner::confirm`).
    pub fn probe(&self) -> String {
        format!("warren.{}.probe", self.prefix)
    }

    /// A bucket of this cluster: `warren_<prefix>_<what>`.
    pub fn bucket(&self, what: &str) -> String {
        format!("warren_{}_{what}", self.prefix)
    }

    /// The bucket of what one node instance contributed (see `registry`).
    pub fn ledger_bucket(&self, instance: &str) -> String {
        self.bucket(&format!("own_{}", encode(instance)))
    }

    /// A key of one app's item (a channel, a user): `<app>.<item>`.
    pub fn app_item(app: &AppId, item: &str) -> String {
        format!("{}.{}", encode(app.as_str()), encode(item))
    }

    /// The first token of an app's keys in the channel bucket, with its dot.
    pub fn app_prefix(app: &AppId) -> String {
        format!("{}.", encode(app.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_plain_names_and_escapes_the_rest() {
        assert_eq!(encode("news-1"), "news-1");
        assert_eq!(encode("a.b"), "a_2Eb");
        assert_eq!(encode("presence-x@y,z;w=v"), "presence-x_40y_2Cz_3Bw_3Dv");
        assert_eq!(encode("#server-to-user-7"), "_23server-to-user-7");
        assert_eq!(encode("a_b"), "a_5Fb");
        assert_eq!(encode("n1~0a"), "n1_7E0a");
        assert_eq!(encode("é"), "_C3_A9");
    }

    #[test]
    fn encoding_round_trips_and_never_collides() {
        let names = [
            "",
            "a",
            "a.b",
            "a_2Eb",
            "a_b",
            "_",
            "__",
            "x=y",
            "é",
            "#server-to-user-u.1",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let token = encode(name);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{token}"
            );
            assert_eq!(decode(&token).as_deref(), Some(name));
            assert!(seen.insert(token), "{name} collides");
        }
        for bad in ["a.b", "_2", "_zz", "_2e", "a b"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn subjects_and_keys() {
        let keys = Keys::new("warren:t.1");
        let app = AppId::parse("app.1").unwrap();
        let ch = ChannelName::parse("presence-a.b", 200).unwrap();
        assert_eq!(
            keys.events(&app, &ch),
            "warren.warren_3At_2E1.ev.app_2E1.presence-a_2Eb"
        );
        assert_eq!(keys.broadcasts(), "warren.warren_3At_2E1.bc");
        assert_eq!(keys.bucket("ch"), "warren_warren_3At_2E1_ch");
        assert_eq!(Keys::app_item(&app, ch.as_str()), "app_2E1.presence-a_2Eb");
        assert_eq!(Keys::app_prefix(&app), "app_2E1.");
        assert_eq!(keys.ledger_bucket("n~1"), "warren_warren_3At_2E1_own_n_7E1");
    }
}
