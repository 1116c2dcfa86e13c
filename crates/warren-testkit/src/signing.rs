//! API request signatures put together by hand, as the official SDKs do, rather than through
//! `warren-client`: the server's tests must not share a mistake with the SDK they serve.

use warren_protocol::auth::{body_md5_hex, sign_rest_request};

/// Seconds since the epoch, as SDKs put in `auth_timestamp`.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The full request target of a signed API request: `params`, then the auth parameters
/// (with `body_md5` for a non-empty body) and the signature, percent-encoded.
pub fn signed_target(
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
    key: &str,
    secret: &str,
    timestamp: i64,
) -> String {
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("auth_key".into(), key.into()));
    all.push(("auth_timestamp".into(), timestamp.to_string()));
    all.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        all.push(("body_md5".into(), body_md5_hex(body.as_bytes())));
    }
    let signature = sign_rest_request(secret, method, path, &all);
    all.push(("auth_signature".into(), signature));
    let query: Vec<String> = all
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
