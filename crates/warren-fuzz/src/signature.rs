//! REST request signatures: a request signed over its parameters in one form verifies when
//! its query is written in another (any order, any key case, any valid percent-encoding,
//! `+` or `%20` for spaces), and a request whose parameters were changed does not.
//!
//! Input: bytes 0-1 choose how the query is written; the rest, split at `0xff`, gives the
//! parameter keys and values in turn.

use warren_protocol::auth::{
    body_md5_hex, normalize_params, sign_rest_request, verify_rest_request,
};

const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";
const NOW: i64 = 1_700_000_000;
const METHOD: &str = "POST";
const PATH: &str = "/apps/1/events";

pub fn check(data: &[u8]) {
    let [style, order, rest @ ..] = data else {
        return;
    };
    let params = params_of(rest);
    let body = rest.get(..rest.len().min(8)).unwrap_or_default();
    let mut signed = params.clone();
    signed.push(("auth_key".into(), KEY.into()));
    signed.push(("auth_timestamp".into(), NOW.to_string()));
    signed.push(("auth_version".into(), "1.0".into()));
    signed.push(("body_md5".into(), body_md5_hex(body)));
    let signature = sign_rest_request(SECRET, METHOD, PATH, &signed);
    let mut sent = signed.clone();
    sent.push(("auth_signature".into(), signature));
    let rotate = usize::from(*order) % sent.len();
    sent.rotate_left(rotate);
    if order & 0x80 != 0 {
        sent.reverse();
    }
    let query = write_query(&sent, *style);
    let secret = |key: &str| (key == KEY).then(|| SECRET.to_owned());
    let verified = verify_rest_request(METHOD, PATH, &query, body, secret, NOW, 600);
    let verified = verified.unwrap_or_else(|e| panic!("{query:?} refused: {e}"));
    assert_eq!(verified, normalize_params(&signed), "{query:?}");

    // One byte of a value changed after signing: refused.
    if let Some((k, v)) = params.first() {
        let mut tampered = sent.clone();
        if let Some(p) = tampered.iter_mut().find(|(pk, _)| pk == k) {
            p.1 = format!("{v}x");
        }
        let query = write_query(&tampered, *style);
        assert!(verify_rest_request(METHOD, PATH, &query, body, secret, NOW, 600).is_err());
    }
}

/// Parameters from the fuzzer's bytes: distinct lowercase keys that are neither Pusher's own
/// nor PHP arrays (those are merged before signing, which is tested elsewhere).
fn params_of(bytes: &[u8]) -> Vec<(String, String)> {
    let pieces: Vec<String> = bytes
        .split(|b| *b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in pieces.chunks(2) {
        let key = pair[0].to_ascii_lowercase();
        let value = pair.get(1).cloned().unwrap_or_default();
        if key.is_empty()
            || key.starts_with("auth_")
            || key == "body_md5"
            || key.contains(['[', ']'])
            || params.iter().any(|(k, _)| *k == key)
        {
            continue;
        }
        params.push((key, value));
    }
    params
}

/// A query string in one of the forms clients write.
fn write_query(params: &[(String, String)], style: u8) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let key = if style & 1 != 0 {
                k.to_ascii_uppercase()
            } else {
                k.clone()
            };
            format!("{}={}", encode(&key, style), encode(v, style))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str, style: u8) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        let plain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        match b {
            b' ' if style & 2 != 0 => out.push('+'),
            _ if plain && style & 4 == 0 => out.push(b as char),
            _ if style & 8 != 0 => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sample_verifies_in_every_style() {
        for style in 0..16u8 {
            let mut input = vec![style, 3];
            input.extend_from_slice(b"name\xffhello world\xffChannels\xffa,b&c=d+e%");
            super::check(&input);
        }
    }
}
