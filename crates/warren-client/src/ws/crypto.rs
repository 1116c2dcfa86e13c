//! Decryption of `private-encrypted-` channel events: NaCl secretbox (XSalsa20-Poly1305)
//! with the channel's shared secret, as pusher-js does.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use serde::Deserialize;

/// A channel's 32-byte key, from the base64 `shared_secret` of its auth answer.
pub(crate) fn parse_shared_secret(b64: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("shared_secret is not base64: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("shared_secret must be 32 bytes, got {}", bytes.len()))
}

#[derive(Deserialize)]
struct Sealed<'a> {
    nonce: &'a str,
    ciphertext: &'a str,
}

/// Opens `{"nonce":"<b64 24 bytes>","ciphertext":"<b64>"}` into its plaintext.
pub(crate) fn decrypt(key: &[u8; 32], data: &str) -> Result<String, String> {
    let sealed: Sealed<'_> = serde_json::from_str(data)
        .map_err(|e| format!("not an encrypted payload {{nonce, ciphertext}}: {e}"))?;
    let nonce = STANDARD
        .decode(sealed.nonce)
        .map_err(|e| format!("nonce is not base64: {e}"))?;
    if nonce.len() != 24 {
        return Err(format!("nonce must be 24 bytes, got {}", nonce.len()));
    }
    let ciphertext = STANDARD
        .decode(sealed.ciphertext)
        .map_err(|e| format!("ciphertext is not base64: {e}"))?;
    let cipher = XSalsa20Poly1305::new(key.into());
    let plain = cipher
        .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
        .map_err(|_| "authentication failed (wrong key or altered message)".to_owned())?;
    String::from_utf8(plain).map_err(|_| "the plaintext is not UTF-8".to_owned())
}

#[cfg(test)]
pub(crate) fn encrypt(key: &[u8; 32], nonce: &[u8; 24], plaintext: &str) -> String {
    let cipher = XSalsa20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(nonce.into(), plaintext.as_bytes())
        .expect("encrypts");
    serde_json::json!({"nonce": STANDARD.encode(nonce), "ciphertext": STANDARD.encode(ct)})
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        // The shared secret of docs/PROTOCOL.md, "Encrypted channels".
        let key =
            parse_shared_secret("nlr49ISQHz91yS3cy/yWmW8wFMNeTnNL5tNHnbPJcLQ=").expect("32 bytes");
        let sealed = encrypt(&key, &[7u8; 24], r#"{"message":"hi"}"#);
        assert_eq!(decrypt(&key, &sealed).as_deref(), Ok(r#"{"message":"hi"}"#));
        let mut other = key;
        other[0] ^= 1;
        assert!(decrypt(&other, &sealed).is_err());
        assert!(decrypt(&key, "{}").is_err());
        assert!(decrypt(&key, r#"{"nonce":"AAAA","ciphertext":"AAAA"}"#).is_err());
        assert!(parse_shared_secret("AAAA").is_err());
        assert!(parse_shared_secret("***").is_err());
    }
}
