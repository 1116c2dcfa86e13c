//! Signatures of the Pusher Channels protocol (docs/PROTOCOL.md: "Channel authorization",
//! "Users", "HTTP API", "Webhooks", "Encrypted channels").
//!
//! * Channel subscription and user sign-in `auth` fields: `"<app_key>:" + hex(HMAC-SHA256(secret, string))`.
//! * Shared secrets of `private-encrypted-` channels.
//! * Webhook signatures (`X-Pusher-Signature`).
//! * HTTP API (REST) request signing and full verification.
//!
//! Everything here is pure computation: no I/O, no clock (callers pass `now`), no panics on any input.
//!
//! Choices made where the protocol leaves room:
//! * Hex signatures are compared case-insensitively (they are decoded to bytes and the bytes compared in
//!   constant time). Every SDK sends lowercase; accepting uppercase costs no security.
//! * `auth_version` must be `1.0` when present; a missing `auth_version` is accepted.
//! * PHP-style array parameters `name[]=a&name[]=b` (and the indexed `name[0]=a&name[1]=b` that
//!   `http_build_query` produces) are merged into ONE parameter whose key is the bare name, `name`, and whose value
//!   is the values joined with `,` in order of appearance: `name=a,b`. This is what pusher-http-php signs (its
//!   `array_implode` uses the PHP array key, which has no brackets). Other repeated keys are kept as separate
//!   pairs (stable sort by key, so they keep their request order).
//! * The auth parameters (`auth_key`, `auth_timestamp`, `auth_version`, `auth_signature`, `body_md5`) may appear
//!   only once in a REST query; duplicates are a 400.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The only `auth_version` the HTTP API knows.
pub const AUTH_VERSION: &str = "1.0";

/// Default allowed clock skew for `auth_timestamp`, in seconds.
pub const DEFAULT_MAX_SKEW_SECS: i64 = 600;

// ---------------------------------------------------------------------------------------------------------------
// Primitives
// ---------------------------------------------------------------------------------------------------------------

fn hmac_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length (long keys are hashed, short ones padded), so this never fails.
    let mut mac =
        HmacSha256::new_from_slice(secret).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex HMAC-SHA256(secret, message).
pub fn hmac_sha256_hex(secret: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(secret, message))
}

/// Constant-time comparison of two byte strings (e.g. hex digests). Only the lengths leak.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Checks a hex signature (either case, surrounding whitespace ignored) against the raw expected MAC, in
/// constant time. Anything that is not 64 hex digits is simply a mismatch.
fn hex_signature_matches(given_hex: &str, expected: &[u8; 32]) -> bool {
    let given = given_hex.trim();
    if given.len() != 64 {
        return false;
    }
    let mut decoded = [0u8; 32];
    if hex::decode_to_slice(given, &mut decoded).is_err() {
        return false;
    }
    constant_time_eq(&decoded, expected)
}

// ---------------------------------------------------------------------------------------------------------------
// Channel and user auth (sections 6, 7)
// ---------------------------------------------------------------------------------------------------------------

/// Why a channel-subscription or sign-in `auth` field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The `auth` field is missing or empty.
    #[error("Auth info required")]
    Missing,
    /// The key part of `<key>:<signature>` is not the app's key.
    #[error("Invalid key in auth: the key part must be the app key")]
    WrongKey,
    /// The `auth` field is not of the form `<key>:<signature>`.
    #[error("Invalid auth format: expected \"<app_key>:<hex signature>\"")]
    Malformed,
    /// The signature does not match. `expected_string` is the string that should have been signed.
    #[error("Invalid signature: Expected HMAC SHA256 hex digest of {expected_string}")]
    BadSignature { expected_string: String },
    /// The encryption master key is not base64 of exactly 32 bytes.
    #[error("Invalid encryption master key: {0}")]
    InvalidMasterKey(String),
}

impl AuthError {
    /// The message Pusher puts in `pusher:error` / `pusher:subscription_error` for this failure, given the
    /// `auth` field the client sent, e.g.
    /// `Invalid signature: Expected HMAC SHA256 hex digest of 264774.13368624:private-x, but got 52aab...`.
    pub fn client_message(&self, auth: &str) -> String {
        match self {
            AuthError::BadSignature { expected_string } => {
                let got = auth.split_once(':').map_or(auth, |(_, sig)| sig);
                format!("Invalid signature: Expected HMAC SHA256 hex digest of {expected_string}, but got {got}")
            }
            other => other.to_string(),
        }
    }
}

/// The string signed for a channel subscription: `socket_id:channel`, or `socket_id:channel:channel_data` when
/// channel_data was sent (presence). `channel_data` must be the exact string the client sent.
pub fn channel_auth_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string signed for a user sign-in: `socket_id::user::user_data`.
pub fn user_auth_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// `"<key>:<hex sig>"` for a channel subscription, as clients send it.
pub fn sign_channel(
    app_key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let string = channel_auth_string(socket_id, channel, channel_data);
    format!(
        "{app_key}:{}",
        hmac_sha256_hex(secret.as_bytes(), string.as_bytes())
    )
}

/// `"<key>:<hex sig>"` for a user sign-in (signs `socket_id::user::user_data`).
pub fn sign_user(app_key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    let string = user_auth_string(socket_id, user_data);
    format!(
        "{app_key}:{}",
        hmac_sha256_hex(secret.as_bytes(), string.as_bytes())
    )
}

/// Verifies `auth` (`<key>:<hexsig>`) against `expected_string` signed with `secret`.
fn verify_auth_field(
    auth: &str,
    app_key: &str,
    secret: &str,
    expected_string: String,
) -> Result<(), AuthError> {
    if auth.is_empty() {
        return Err(AuthError::Missing);
    }
    let Some((key, sig)) = auth.split_once(':') else {
        return Err(AuthError::Malformed);
    };
    if key.is_empty() || sig.is_empty() {
        return Err(AuthError::Malformed);
    }
    // The app key is public; a plain comparison leaks nothing worth hiding, but constant time costs nothing.
    if !constant_time_eq(key.as_bytes(), app_key.as_bytes()) {
        return Err(AuthError::WrongKey);
    }
    let expected = hmac_sha256(secret.as_bytes(), expected_string.as_bytes());
    if hex_signature_matches(sig, &expected) {
        Ok(())
    } else {
        Err(AuthError::BadSignature { expected_string })
    }
}

/// Verifies a channel subscription's `auth` field `"<key>:<hexsig>"`.
pub fn verify_channel_auth(
    auth: &str,
    app_key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> Result<(), AuthError> {
    verify_auth_field(
        auth,
        app_key,
        secret,
        channel_auth_string(socket_id, channel, channel_data),
    )
}

/// Verifies a `pusher:signin` `auth` field `"<key>:<hexsig>"` over `socket_id::user::user_data`.
pub fn verify_user_auth(
    auth: &str,
    app_key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
) -> Result<(), AuthError> {
    verify_auth_field(
        auth,
        app_key,
        secret,
        user_auth_string(socket_id, user_data),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// End-to-end encrypted channels (section 12)
// ---------------------------------------------------------------------------------------------------------------

/// Base64 decoding that accepts the standard alphabet with or without padding.
const LENIENT_STANDARD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The `shared_secret` of a `private-encrypted-` channel: base64(SHA256(channel_name ‖ master_key)), where the
/// master key is given base64-encoded and must decode to exactly 32 bytes.
pub fn encrypted_channel_shared_secret(
    channel: &str,
    master_key_base64: &str,
) -> Result<String, AuthError> {
    let master_key = LENIENT_STANDARD
        .decode(master_key_base64.trim())
        .map_err(|e| AuthError::InvalidMasterKey(format!("not valid base64 ({e})")))?;
    if master_key.len() != 32 {
        return Err(AuthError::InvalidMasterKey(format!(
            "must decode to 32 bytes, got {}",
            master_key.len()
        )));
    }
    let mut hasher = Sha256::new();
    hasher.update(channel.as_bytes());
    hasher.update(&master_key);
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
}

// ---------------------------------------------------------------------------------------------------------------
// Webhooks (section 11)
// ---------------------------------------------------------------------------------------------------------------

/// `X-Pusher-Signature`: lowercase hex HMAC-SHA256(secret, exact body).
pub fn sign_webhook(secret: &str, body: &[u8]) -> String {
    hmac_sha256_hex(secret.as_bytes(), body)
}

/// Checks an `X-Pusher-Signature` header value (hex, either case) in constant time.
pub fn verify_webhook(secret: &str, body: &[u8], signature_header: &str) -> bool {
    hex_signature_matches(signature_header, &hmac_sha256(secret.as_bytes(), body))
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP API request signing (section 10)
// ---------------------------------------------------------------------------------------------------------------

/// Why a REST request failed authentication. [`RestAuthError::status`] gives the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestAuthError {
    /// The query string does not decode to UTF-8.
    #[error("Invalid query string: parameter {0} is not valid UTF-8 after percent-decoding")]
    InvalidQueryEncoding(String),
    /// An auth parameter appears more than once.
    #[error("Duplicate query parameter {0}")]
    DuplicateParam(String),
    #[error("Missing auth_key")]
    MissingAuthKey,
    /// The auth_key is unknown or does not belong to the app.
    #[error("Invalid auth_key: {0}")]
    UnknownAuthKey(String),
    #[error("Missing auth_timestamp")]
    MissingTimestamp,
    #[error("Invalid auth_timestamp: {0}")]
    InvalidTimestamp(String),
    #[error("Timestamp expired: Given timestamp ({given}) not within {max_skew_secs}s of server time ({now})")]
    TimestampExpired {
        given: i64,
        now: i64,
        max_skew_secs: i64,
    },
    #[error("Invalid auth_version: {0} (only 1.0 is supported)")]
    InvalidAuthVersion(String),
    #[error("Missing body_md5: required when the request has a body")]
    MissingBodyMd5,
    #[error("body_md5 does not match: expected {expected}, got {given}")]
    BodyMd5Mismatch { expected: String, given: String },
    #[error("Missing auth_signature")]
    MissingSignature,
    /// `string_to_sign` is the exact string the client should have signed.
    #[error(
        "Invalid signature: you should have sent HmacSHA256Hex(\"{}\", your_secret_key), but you sent \"{given}\"",
        escape_newlines(.string_to_sign)
    )]
    InvalidSignature {
        string_to_sign: String,
        given: String,
    },
}

impl RestAuthError {
    /// HTTP status for this error: 400 for a malformed query, 401 for authentication failures.
    pub fn status(&self) -> u16 {
        match self {
            RestAuthError::InvalidQueryEncoding(_) | RestAuthError::DuplicateParam(_) => 400,
            _ => 401,
        }
    }
}

fn escape_newlines(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

/// Lowercase hex MD5 of the raw body (`body_md5`).
pub fn body_md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// If `key` (already lowercased) is a PHP array key `name[]` or `name[<digits>]`, returns `name`.
fn php_array_base(key: &str) -> Option<&str> {
    let inner = key.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let (base, index) = (&inner[..open], &inner[open + 1..]);
    if base.is_empty()
        || base.contains(['[', ']'])
        || !index.bytes().all(|b| b.is_ascii_digit())
        || SINGLE_PARAMS.contains(&base)
    {
        // Auth parameters are never arrays: `auth_key[]` stays a literal (unknown) key.
        return None;
    }
    Some(base)
}

/// Normalizes decoded parameters for signing: drops `auth_signature`, lowercases keys, merges PHP array params
/// (`name[]=a&name[]=b` -> `name` = `a,b`), and sorts by key (stable, so repeated plain keys keep their order).
pub fn normalize_params(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(params.len());
    // Index in `out` of each merged array parameter, by base name.
    let mut arrays: Vec<(String, usize)> = Vec::new();
    for (key, value) in params {
        let key = key.to_ascii_lowercase();
        if key == "auth_signature" {
            continue;
        }
        match php_array_base(&key) {
            Some(base) => {
                if let Some((_, idx)) = arrays.iter().find(|(b, _)| b == base) {
                    let merged = &mut out[*idx].1;
                    merged.push(',');
                    merged.push_str(value);
                } else {
                    arrays.push((base.to_owned(), out.len()));
                    out.push((base.to_owned(), value.clone()));
                }
            }
            None => out.push((key, value.clone())),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The canonical query string that is signed: see [`normalize_params`], then `k=v` joined with `&`, unescaped.
/// PHP arrays `name[]=a&name[]=b` (or `name[0]=a&name[1]=b`) become `name=a,b` (bare key, no brackets).
pub fn canonical_query(params: &[(String, String)]) -> String {
    join_params(&normalize_params(params))
}

fn join_params(params: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// `METHOD\npath\nquery`, method uppercased.
pub fn rest_string_to_sign(method: &str, path: &str, canonical_query: &str) -> String {
    format!("{}\n{path}\n{canonical_query}", method.to_ascii_uppercase())
}

/// `auth_signature` for a REST request: hex HMAC-SHA256 of [`rest_string_to_sign`] over [`canonical_query`].
pub fn sign_rest_request(
    secret: &str,
    method: &str,
    path: &str,
    params: &[(String, String)],
) -> String {
    let string = rest_string_to_sign(method, path, &canonical_query(params));
    hmac_sha256_hex(secret.as_bytes(), string.as_bytes())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (`+` is a space). Malformed `%` escapes are kept literally.
fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// Parses a raw query string (a leading `?` is ignored): split on `&`, split each piece on its first `=` (no `=`
/// means an empty value), percent-decode keys and values (`+` is a space). Empty pieces are skipped. Keys keep
/// their case here. Fails only when a decoded key or value is not UTF-8.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, RestAuthError> {
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    let mut out = Vec::new();
    for piece in raw.split('&') {
        if piece.is_empty() {
            continue;
        }
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let key =
            percent_decode(k).map_err(|_| RestAuthError::InvalidQueryEncoding(truncate(k)))?;
        let value =
            percent_decode(v).map_err(|_| RestAuthError::InvalidQueryEncoding(truncate(k)))?;
        out.push((key, value));
    }
    Ok(out)
}

/// Shortens attacker-controlled text echoed in error messages.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Parameters that may appear only once.
const SINGLE_PARAMS: [&str; 5] = [
    "auth_key",
    "auth_timestamp",
    "auth_version",
    "auth_signature",
    "body_md5",
];

/// Full verification of an HTTP API request (section 10, steps 1-5).
///
/// * `method`: HTTP method (any case); `path`: path relative to the mount point, e.g. `/apps/3/events`;
/// * `raw_query`: the raw query string; `body`: the raw body bytes;
/// * `secret_for_key`: the app's secret for an `auth_key`, or `None` if the key is unknown / not the app's;
/// * `now_unix`, `max_skew_secs`: server time and allowed `auth_timestamp` skew (usually 600).
///
/// Checks in order: query decoding, duplicate auth params, `auth_key` present and known, `auth_signature`
/// present, `auth_timestamp` within the window, `auth_version` (`1.0` if present), `body_md5` (required and
/// checked whenever the body is non-empty or `body_md5` is present), then the signature in constant time.
///
/// On success returns the normalized parameters (see [`normalize_params`]: lowercased keys, PHP arrays merged,
/// `auth_signature` removed, sorted by key).
pub fn verify_rest_request(
    method: &str,
    path: &str,
    raw_query: &str,
    body: &[u8],
    secret_for_key: impl Fn(&str) -> Option<String>,
    now_unix: i64,
    max_skew_secs: i64,
) -> Result<Vec<(String, String)>, RestAuthError> {
    let raw_params = parse_query(raw_query)?;

    let mut signature: Option<&str> = None;
    let mut seen = [false; SINGLE_PARAMS.len()];
    for (key, value) in &raw_params {
        let lower = key.to_ascii_lowercase();
        if let Some(i) = SINGLE_PARAMS.iter().position(|p| *p == lower) {
            if seen[i] {
                return Err(RestAuthError::DuplicateParam(SINGLE_PARAMS[i].to_owned()));
            }
            seen[i] = true;
            if lower == "auth_signature" {
                signature = Some(value);
            }
        }
    }

    let params = normalize_params(&raw_params);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let auth_key = get("auth_key")
        .filter(|k| !k.is_empty())
        .ok_or(RestAuthError::MissingAuthKey)?;
    let secret = secret_for_key(auth_key)
        .ok_or_else(|| RestAuthError::UnknownAuthKey(truncate(auth_key)))?;
    let signature = signature.ok_or(RestAuthError::MissingSignature)?;

    let timestamp = get("auth_timestamp").ok_or(RestAuthError::MissingTimestamp)?;
    let given: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| RestAuthError::InvalidTimestamp(truncate(timestamp)))?;
    let max_skew = max_skew_secs.max(0);
    if now_unix.abs_diff(given) > max_skew.unsigned_abs() {
        return Err(RestAuthError::TimestampExpired {
            given,
            now: now_unix,
            max_skew_secs: max_skew,
        });
    }

    if let Some(version) = get("auth_version") {
        if version != AUTH_VERSION {
            return Err(RestAuthError::InvalidAuthVersion(truncate(version)));
        }
    }

    match get("body_md5") {
        Some(given_md5) => {
            let expected = body_md5_hex(body);
            if !constant_time_eq(
                given_md5.trim().to_ascii_lowercase().as_bytes(),
                expected.as_bytes(),
            ) {
                return Err(RestAuthError::BodyMd5Mismatch {
                    expected,
                    given: truncate(given_md5),
                });
            }
        }
        None if !body.is_empty() => return Err(RestAuthError::MissingBodyMd5),
        None => {}
    }

    let string_to_sign = rest_string_to_sign(method, path, &join_params(&params));
    let expected = hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes());
    if !hex_signature_matches(signature, &expected) {
        return Err(RestAuthError::InvalidSignature {
            string_to_sign,
            given: truncate(signature),
        });
    }

    Ok(params)
}

// ---------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // ---- section 6 vectors ----

    #[test]
    fn auth_private_vector() {
        assert_eq!(
            channel_auth_string("1234.1234", "private-foobar", None),
            "1234.1234:private-foobar"
        );
        let auth = sign_channel(KEY, SECRET, "1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            verify_channel_auth(&auth, KEY, SECRET, "1234.1234", "private-foobar", None),
            Ok(())
        );
    }

    #[test]
    fn auth_user_vector() {
        let auth = sign_user(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            auth,
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        assert_eq!(
            verify_user_auth(&auth, KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#),
            Ok(())
        );
        assert_eq!(user_auth_string("1234.1234", "x"), "1234.1234::user::x");
    }

    #[test]
    fn auth_presence_vector() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        assert_eq!(
            channel_auth_string("1234.1234", "presence-foobar", Some(data)),
            format!("1234.1234:presence-foobar:{data}")
        );
        let auth = sign_channel(KEY, SECRET, "1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            auth,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        assert_eq!(
            verify_channel_auth(
                &auth,
                KEY,
                SECRET,
                "1234.1234",
                "presence-foobar",
                Some(data)
            ),
            Ok(())
        );
        // Signature over the channel alone does not authorize the channel_data.
        let no_data = sign_channel(KEY, SECRET, "1234.1234", "presence-foobar", None);
        assert!(matches!(
            verify_channel_auth(
                &no_data,
                KEY,
                SECRET,
                "1234.1234",
                "presence-foobar",
                Some(data)
            ),
            Err(AuthError::BadSignature { .. })
        ));
    }

    #[test]
    fn auth_tofu_vectors() {
        assert_eq!(
            hmac_sha256_hex(b"tofu", b"123.456:test"),
            "efa6cf7644a0b35cba36aa0f776f3cbf7bb60e95ea2696bde1dbe8403b61bd7c"
        );
        assert_eq!(
            sign_channel("k", "tofu", "123.456", "test", None),
            "k:efa6cf7644a0b35cba36aa0f776f3cbf7bb60e95ea2696bde1dbe8403b61bd7c"
        );
        assert_eq!(
            sign_user("k", "tofu", "123.456", r#"{"id":"45678"}"#),
            "k:f4b1fdeea7c93e32648c7230e32b172057c5623cace6cfce791c6e7035e0babd"
        );
        assert_eq!(
            sign_channel(
                "k",
                "tofu",
                "123.456",
                "private-encrypted-bla",
                Some(r#""foo""#)
            ),
            "k:962c48b78bf93d98ff4c92ee7dff04865821455b7b401e9d60a9e0a90af2c105"
        );
        assert_eq!(
            verify_channel_auth(
                "k:962c48b78bf93d98ff4c92ee7dff04865821455b7b401e9d60a9e0a90af2c105",
                "k",
                "tofu",
                "123.456",
                "private-encrypted-bla",
                Some(r#""foo""#)
            ),
            Ok(())
        );
    }

    // ---- auth failures ----

    #[test]
    fn auth_failures() {
        let sig = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        let v = |auth: &str| {
            verify_channel_auth(auth, KEY, SECRET, "1234.1234", "private-foobar", None)
        };
        assert_eq!(v(""), Err(AuthError::Missing));
        assert_eq!(v(&format!("wrongkey:{sig}")), Err(AuthError::WrongKey));
        assert_eq!(v(sig), Err(AuthError::Malformed));
        assert_eq!(v(&format!("{KEY}:")), Err(AuthError::Malformed));
        assert_eq!(v(&format!(":{sig}")), Err(AuthError::Malformed));
        let bad = AuthError::BadSignature {
            expected_string: "1234.1234:private-foobar".into(),
        };
        assert_eq!(v(&format!("{KEY}:{}", &sig[..63])), Err(bad.clone()));
        assert_eq!(v(&format!("{KEY}:{sig}0")), Err(bad.clone()));
        assert_eq!(v(&format!("{KEY}:{}", "0".repeat(64))), Err(bad.clone()));
        assert_eq!(v(&format!("{KEY}:{}", "z".repeat(64))), Err(bad.clone()));
        assert_eq!(v(&format!("{KEY}:{sig}:extra")), Err(bad.clone()));
        // Wrong socket / channel / secret.
        let auth = format!("{KEY}:{sig}");
        assert!(
            verify_channel_auth(&auth, KEY, SECRET, "1234.1235", "private-foobar", None).is_err()
        );
        assert!(
            verify_channel_auth(&auth, KEY, SECRET, "1234.1234", "private-foobaz", None).is_err()
        );
        assert!(
            verify_channel_auth(&auth, KEY, "other", "1234.1234", "private-foobar", None).is_err()
        );
        assert!(verify_user_auth(&auth, KEY, SECRET, "1234.1234", "{}").is_err());
        // Uppercase hex is accepted (decoded before comparison).
        assert_eq!(v(&format!("{KEY}:{}", sig.to_ascii_uppercase())), Ok(()));
        // Pusher's message.
        assert_eq!(
            bad.client_message("278d425bdf160c739803:52aab"),
            "Invalid signature: Expected HMAC SHA256 hex digest of 1234.1234:private-foobar, but got 52aab"
        );
        assert_eq!(AuthError::Missing.client_message(""), "Auth info required");
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    // ---- section 12 ----

    #[test]
    fn encrypted_shared_secret_vector() {
        assert_eq!(
            encrypted_channel_shared_secret(
                "private-encrypted-bla",
                "zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU="
            )
            .unwrap(),
            "nlr49ISQHz91yS3cy/yWmW8wFMNeTnNL5tNHnbPJcLQ="
        );
        // Padding optional.
        assert_eq!(
            encrypted_channel_shared_secret(
                "private-encrypted-bla",
                "zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU"
            )
            .unwrap(),
            "nlr49ISQHz91yS3cy/yWmW8wFMNeTnNL5tNHnbPJcLQ="
        );
        assert!(matches!(
            encrypted_channel_shared_secret("private-encrypted-bla", "c2hvcnQ="),
            Err(AuthError::InvalidMasterKey(_))
        ));
        assert!(matches!(
            encrypted_channel_shared_secret("private-encrypted-bla", "not base64!!"),
            Err(AuthError::InvalidMasterKey(_))
        ));
        assert!(encrypted_channel_shared_secret("x", "").is_err());
    }

    // ---- section 11 ----

    #[test]
    fn webhook_vector() {
        let body = br#"{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}"#;
        let sig = "c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5";
        assert_eq!(sign_webhook("tofu", body), sig);
        assert!(verify_webhook("tofu", body, sig));
        assert!(verify_webhook("tofu", body, &sig.to_ascii_uppercase()));
        assert!(verify_webhook("tofu", body, &format!(" {sig}\r\n")));
        assert!(!verify_webhook("tofu2", body, sig));
        assert!(!verify_webhook("tofu", &body[1..], sig));
        assert!(!verify_webhook("tofu", body, ""));
        assert!(!verify_webhook("tofu", body, &sig[..62]));
    }

    // ---- section 10 ----

    const EVENTS_BODY: &str =
        r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const EVENTS_SIG: &str = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    fn events_query(sig: &str) -> String {
        format!(
            "auth_key={KEY}&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature={sig}"
        )
    }

    fn lookup(key: &str) -> Option<String> {
        match key {
            KEY => Some(SECRET.to_owned()),
            "f00d" => Some("tofu".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn rest_events_vector() {
        assert_eq!(
            body_md5_hex(EVENTS_BODY.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let params = pairs(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ]);
        assert_eq!(
            sign_rest_request(SECRET, "POST", "/apps/3/events", &params),
            EVENTS_SIG
        );
        assert_eq!(
            sign_rest_request(SECRET, "post", "/apps/3/events", &params),
            EVENTS_SIG
        );
        let ok = verify_rest_request(
            "POST",
            "/apps/3/events",
            &events_query(EVENTS_SIG),
            EVENTS_BODY.as_bytes(),
            lookup,
            1353088179,
            600,
        )
        .unwrap();
        assert_eq!(ok, params);
    }

    #[test]
    fn rest_get_with_body_vector() {
        assert_eq!(
            body_md5_hex(b"example body"),
            "165d5e6d7ca8f73b3853ce45addf42fc"
        );
        let sig = "a650196dc427ebe837226f8565ca9232198c6d1b9455eaa72374a9dc0b620e7b";
        let params = pairs(&[
            ("auth_key", "f00d"),
            ("auth_timestamp", "1234567890"),
            ("auth_version", "1.0"),
            ("body_md5", "165d5e6d7ca8f73b3853ce45addf42fc"),
        ]);
        assert_eq!(sign_rest_request("tofu", "GET", "/event", &params), sig);
        // Query order does not matter.
        let q = format!(
            "body_md5=165d5e6d7ca8f73b3853ce45addf42fc&auth_signature={sig}&auth_version=1.0&auth_timestamp=1234567890&auth_key=f00d"
        );
        assert!(verify_rest_request(
            "GET",
            "/event",
            &q,
            b"example body",
            lookup,
            1234567890,
            600
        )
        .is_ok());
    }

    #[test]
    fn rest_string_to_sign_format() {
        assert_eq!(
            rest_string_to_sign("get", "/apps/1/channels", "a=b"),
            "GET\n/apps/1/channels\na=b"
        );
        assert_eq!(rest_string_to_sign("POST", "/p", ""), "POST\n/p\n");
    }

    #[test]
    fn rest_timestamp_window() {
        let v = |now: i64| {
            verify_rest_request(
                "POST",
                "/apps/3/events",
                &events_query(EVENTS_SIG),
                EVENTS_BODY.as_bytes(),
                lookup,
                now,
                600,
            )
        };
        assert!(v(1353088179 + 600).is_ok());
        assert!(v(1353088179 - 600).is_ok());
        let late = v(1353088179 + 601).unwrap_err();
        assert_eq!(late.status(), 401);
        assert_eq!(
            late,
            RestAuthError::TimestampExpired {
                given: 1353088179,
                now: 1353088780,
                max_skew_secs: 600
            }
        );
        let err = v(1700000000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Timestamp expired: Given timestamp (1353088179) not within 600s of server time (1700000000)"
        );
        // Timestamp in the future.
        let early = v(1353088179 - 601).unwrap_err();
        assert!(matches!(early, RestAuthError::TimestampExpired { .. }));
        assert_eq!(early.status(), 401);
        // Extreme values do not overflow.
        assert!(v(i64::MIN).is_err());
        assert!(v(i64::MAX).is_err());
    }

    #[test]
    fn rest_auth_param_failures() {
        let body = EVENTS_BODY.as_bytes();
        let path = "/apps/3/events";
        let v = |q: &str| verify_rest_request("POST", path, q, body, lookup, 1353088179, 600);
        let md5 = "ec365a775a4cd0599faeb73354201b6f";

        let e = v(&format!(
            "auth_timestamp=1353088179&body_md5={md5}&auth_signature=x"
        ))
        .unwrap_err();
        assert_eq!(e, RestAuthError::MissingAuthKey);
        assert_eq!(e.to_string(), "Missing auth_key");
        assert_eq!(e.status(), 401);

        let e = v(&format!(
            "auth_key=nope&auth_timestamp=1353088179&body_md5={md5}&auth_signature=x"
        ))
        .unwrap_err();
        assert!(matches!(e, RestAuthError::UnknownAuthKey(_)));
        assert_eq!(e.status(), 401);

        let e = v(&format!(
            "auth_key={KEY}&auth_timestamp=1353088179&body_md5={md5}"
        ))
        .unwrap_err();
        assert_eq!(e, RestAuthError::MissingSignature);

        let e = v(&format!("auth_key={KEY}&body_md5={md5}&auth_signature=x")).unwrap_err();
        assert_eq!(e, RestAuthError::MissingTimestamp);

        let e = v(&format!(
            "auth_key={KEY}&auth_timestamp=soon&body_md5={md5}&auth_signature=x"
        ))
        .unwrap_err();
        assert!(matches!(e, RestAuthError::InvalidTimestamp(_)));

        let e = v(&format!(
            "auth_key={KEY}&auth_timestamp=1353088179&auth_version=2.0&body_md5={md5}&auth_signature=x"
        ))
        .unwrap_err();
        assert!(matches!(e, RestAuthError::InvalidAuthVersion(_)));
        assert!(e.to_string().starts_with("Invalid auth_version"));

        let e = v(&format!("{}&auth_key=other", events_query(EVENTS_SIG))).unwrap_err();
        assert_eq!(e, RestAuthError::DuplicateParam("auth_key".into()));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn rest_missing_auth_version_accepted() {
        let params = pairs(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ]);
        let sig = sign_rest_request(SECRET, "POST", "/apps/3/events", &params);
        let q = format!(
            "auth_key={KEY}&auth_timestamp=1353088179&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature={sig}"
        );
        assert!(verify_rest_request(
            "POST",
            "/apps/3/events",
            &q,
            EVENTS_BODY.as_bytes(),
            lookup,
            1353088179,
            600
        )
        .is_ok());
    }

    #[test]
    fn rest_body_md5_rules() {
        let path = "/apps/3/events";
        // Missing body_md5 with a body.
        let params = pairs(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
        ]);
        let sig = sign_rest_request(SECRET, "POST", path, &params);
        let q = format!(
            "auth_key={KEY}&auth_timestamp=1353088179&auth_version=1.0&auth_signature={sig}"
        );
        let e = verify_rest_request(
            "POST",
            path,
            &q,
            EVENTS_BODY.as_bytes(),
            lookup,
            1353088179,
            600,
        )
        .unwrap_err();
        assert_eq!(e, RestAuthError::MissingBodyMd5);
        assert_eq!(e.status(), 401);
        // The same request without a body is fine (no body_md5 needed).
        assert!(verify_rest_request("POST", path, &q, b"", lookup, 1353088179, 600).is_ok());

        // Mismatching body_md5 (body changed after signing).
        let e = verify_rest_request(
            "POST",
            path,
            &events_query(EVENTS_SIG),
            b"{\"name\":\"evil\"}",
            lookup,
            1353088179,
            600,
        )
        .unwrap_err();
        assert!(matches!(e, RestAuthError::BodyMd5Mismatch { .. }));
        assert!(e.to_string().starts_with("body_md5 does not match"));
        assert_eq!(e.status(), 401);

        // Uppercase body_md5 is accepted; it is signed as sent.
        let up = "EC365A775A4CD0599FAEB73354201B6F";
        let params = pairs(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", up),
        ]);
        let sig = sign_rest_request(SECRET, "POST", path, &params);
        let q = format!("auth_key={KEY}&auth_timestamp=1353088179&auth_version=1.0&body_md5={up}&auth_signature={sig}");
        assert!(verify_rest_request(
            "POST",
            path,
            &q,
            EVENTS_BODY.as_bytes(),
            lookup,
            1353088179,
            600
        )
        .is_ok());
    }

    #[test]
    fn rest_python_body_md5_on_get() {
        // pusher-http-python sends body_md5 of the empty body on GET; it must match and is part of the signature.
        let empty_md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(body_md5_hex(b""), empty_md5);
        let q_base =
            format!("auth_key=f00d&auth_timestamp=1234567890&auth_version=1.0&body_md5={empty_md5}&info=user_count");
        // Independently computed with Python's hmac module.
        let sig = "af7605d60fbd7d4daeab8ee9b64ee150d8607decf050e3c320f788bcee88b496";
        let params = parse_query(&q_base).unwrap();
        assert_eq!(
            sign_rest_request("tofu", "GET", "/apps/3/channels", &params),
            sig
        );
        let q = format!("{q_base}&auth_signature={sig}");
        let out = verify_rest_request("GET", "/apps/3/channels", &q, b"", lookup, 1234567890, 600)
            .unwrap();
        assert!(out.contains(&("info".to_string(), "user_count".to_string())));
        // A wrong body_md5 on GET is rejected.
        let q = format!(
            "auth_key=f00d&auth_timestamp=1234567890&auth_version=1.0&body_md5=00000000000000000000000000000000&info=user_count&auth_signature={sig}"
        );
        assert!(matches!(
            verify_rest_request("GET", "/apps/3/channels", &q, b"", lookup, 1234567890, 600),
            Err(RestAuthError::BodyMd5Mismatch { .. })
        ));
    }

    #[test]
    fn rest_percent_encoded_info() {
        // pusher-http-php percent-encodes the comma; the signature is over the decoded value.
        let sig = "39200a55a9a9b5832b23a7580cb1fd83d0f87e8e56d92a9cf712d98d5a23631c";
        let q = format!(
            "auth_key=f00d&auth_signature={sig}&auth_timestamp=1234567890&auth_version=1.0&info=user_count%2Csubscription_count"
        );
        let out = verify_rest_request(
            "GET",
            "/apps/3/channels/presence-x",
            &q,
            b"",
            lookup,
            1234567890,
            600,
        )
        .unwrap();
        assert!(out.contains(&(
            "info".to_string(),
            "user_count,subscription_count".to_string()
        )));
        // Same with a literal comma.
        let q = q.replace("%2C", ",");
        assert!(verify_rest_request(
            "GET",
            "/apps/3/channels/presence-x",
            &q,
            b"",
            lookup,
            1234567890,
            600
        )
        .is_ok());
        // Different path -> invalid signature.
        let e = verify_rest_request(
            "GET",
            "/apps/3/channels/presence-y",
            &q,
            b"",
            lookup,
            1234567890,
            600,
        )
        .unwrap_err();
        assert!(matches!(e, RestAuthError::InvalidSignature { .. }));
    }

    #[test]
    fn rest_php_array_params() {
        let sig = "6988adbd20b05b96da4e73ba6780ad813af6247ba6d0fa2100e6fbaffa56b649";
        // `name[]` form, percent-encoded brackets, and indexed form all canonicalize to `info=a,b`.
        for info in [
            "info[]=user_count&info[]=subscription_count",
            "info%5B%5D=user_count&info%5B%5D=subscription_count",
            "info%5B0%5D=user_count&info%5B1%5D=subscription_count",
        ] {
            let q = format!("auth_key=f00d&auth_timestamp=1234567890&{info}&auth_version=1.0&auth_signature={sig}");
            let params = parse_query(&q).unwrap();
            assert_eq!(
                canonical_query(&params),
                "auth_key=f00d&auth_timestamp=1234567890&auth_version=1.0&info=user_count,subscription_count"
            );
            let out =
                verify_rest_request("GET", "/apps/3/channels", &q, b"", lookup, 1234567890, 600)
                    .unwrap();
            assert!(out.contains(&(
                "info".to_string(),
                "user_count,subscription_count".to_string()
            )));
        }
    }

    #[test]
    fn canonical_query_rules() {
        let params = pairs(&[
            ("b", "2"),
            ("AUTH_KEY", "k"),
            ("auth_signature", "dropme"),
            ("a", "x y"),
            ("Auth_Signature", "dropme too"),
            ("c[]", "1"),
            ("c[]", "2"),
            ("d[x]", "kept"),
            ("e", "1"),
            ("e", "0"),
        ]);
        assert_eq!(
            canonical_query(&params),
            "a=x y&auth_key=k&b=2&c=1,2&d[x]=kept&e=1&e=0"
        );
        assert_eq!(canonical_query(&[]), "");
        assert_eq!(canonical_query(&pairs(&[("[]", "v")])), "[]=v");
    }

    #[test]
    fn rest_invalid_signature_message() {
        let bad = "0".repeat(64);
        let e = verify_rest_request(
            "POST",
            "/apps/3/events",
            &events_query(&bad),
            EVENTS_BODY.as_bytes(),
            lookup,
            1353088179,
            600,
        )
        .unwrap_err();
        assert_eq!(e.status(), 401);
        assert_eq!(
            e.to_string(),
            format!(
                "Invalid signature: you should have sent HmacSHA256Hex(\"POST\\n/apps/3/events\\nauth_key={KEY}&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f\", your_secret_key), but you sent \"{bad}\""
            )
        );
        // Uppercase signature accepted; wrong method rejected.
        assert!(verify_rest_request(
            "POST",
            "/apps/3/events",
            &events_query(&EVENTS_SIG.to_ascii_uppercase()),
            EVENTS_BODY.as_bytes(),
            lookup,
            1353088179,
            600,
        )
        .is_ok());
        assert!(verify_rest_request(
            "PUT",
            "/apps/3/events",
            &events_query(EVENTS_SIG),
            EVENTS_BODY.as_bytes(),
            lookup,
            1353088179,
            600,
        )
        .is_err());
        // Wrong secret for the key.
        assert!(verify_rest_request(
            "POST",
            "/apps/3/events",
            &events_query(EVENTS_SIG),
            EVENTS_BODY.as_bytes(),
            |_| Some("other".to_owned()),
            1353088179,
            600,
        )
        .is_err());
    }

    #[test]
    fn parse_query_rules() {
        assert_eq!(
            parse_query("?a=1&&b=x+y%20z&c&d=e=f&=g&%zz=%4").unwrap(),
            pairs(&[
                ("a", "1"),
                ("b", "x y z"),
                ("c", ""),
                ("d", "e=f"),
                ("", "g"),
                ("%zz", "%4")
            ])
        );
        assert_eq!(parse_query("").unwrap(), vec![]);
        assert_eq!(parse_query("&&&").unwrap(), vec![]);
        assert_eq!(parse_query("n=%C3%A9").unwrap(), pairs(&[("n", "é")]));
        let e = parse_query("a=%FF").unwrap_err();
        assert!(matches!(e, RestAuthError::InvalidQueryEncoding(_)));
        assert_eq!(e.status(), 400);
        assert!(parse_query("%C3=1").is_err());
        // Invalid UTF-8 makes the whole verification a 400.
        let e = verify_rest_request("GET", "/", "auth_key=%80", b"", lookup, 0, 600).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    /// Tiny deterministic generator for the no-panic property test.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn string(&mut self) -> String {
            const ALPHABET: &[&str] = &[
                "a",
                "Z",
                "0",
                "9",
                "f",
                "=",
                "&",
                "%",
                "%2",
                "%2C",
                "%FF",
                "%C3",
                "%A9",
                "+",
                "[",
                "]",
                "[]",
                ":",
                "?",
                " ",
                "é",
                "\u{1F600}",
                "\n",
                "auth_key",
                "auth_signature",
                "auth_timestamp",
                "body_md5",
                "auth_version",
                "1.0",
                "-",
                "99999999999999999999",
                "f00d",
                "info[]",
                "[0]",
            ];
            let len = self.next() % 24;
            (0..len)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = Lcg(42);
        for _ in 0..5000 {
            let (a, b, c, d) = (rng.string(), rng.string(), rng.string(), rng.string());
            let _ = verify_channel_auth(&a, &b, &c, &d, &a, Some(&b));
            let _ = verify_channel_auth(&a, "f00d", "tofu", &c, &d, None);
            let _ = verify_user_auth(&a, &b, &c, &d, &a);
            let _ = encrypted_channel_shared_secret(&a, &b);
            let _ = verify_webhook(&a, b.as_bytes(), &c);
            if let Ok(params) = parse_query(&a) {
                let _ = canonical_query(&params);
                let _ = sign_rest_request(&b, &c, &d, &params);
            }
            let q = format!("auth_key=f00d&auth_timestamp=1234567890&{a}&auth_signature={b}");
            let now = (rng.next() as i64).wrapping_mul(if rng.next().is_multiple_of(2) {
                1 << 31
            } else {
                -1
            });
            let skew = rng.next() as i64 - (1 << 30);
            for query in [a.as_str(), q.as_str()] {
                if let Err(e) = verify_rest_request(&c, &d, query, b.as_bytes(), lookup, now, skew)
                {
                    let _ = (e.to_string(), e.status());
                }
            }
            let _ = AuthError::BadSignature {
                expected_string: a.clone(),
            }
            .client_message(&b);
        }
    }
}
