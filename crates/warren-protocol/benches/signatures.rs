//! Signature checks on the connection and API paths: channel auth and REST request auth.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use warren_protocol::auth::{
    body_md5_hex, sign_channel, sign_rest_request, verify_channel_auth, verify_rest_request,
};

fn channel_auth(c: &mut Criterion) {
    let auth = sign_channel("key", "secret", "1234.5678", "private-room", None);
    c.bench_function("verify_channel_auth private", |b| {
        b.iter(|| {
            verify_channel_auth(
                black_box(&auth),
                "key",
                "secret",
                "1234.5678",
                "private-room",
                None,
            )
        })
    });
    let data = r#"{"user_id":"42","user_info":{"name":"A"}}"#;
    let presence = sign_channel("key", "secret", "1234.5678", "presence-room", Some(data));
    c.bench_function("verify_channel_auth presence", |b| {
        b.iter(|| {
            verify_channel_auth(
                black_box(&presence),
                "key",
                "secret",
                "1234.5678",
                "presence-room",
                Some(data),
            )
        })
    });
}

fn rest_auth(c: &mut Criterion) {
    let body = br#"{"name":"e","channels":["c"],"data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    let now = 1_700_000_000i64;
    let mut params = vec![
        ("auth_key".to_owned(), "key".to_owned()),
        ("auth_timestamp".to_owned(), now.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
        ("body_md5".to_owned(), body_md5_hex(body)),
    ];
    let sig = sign_rest_request("secret", "POST", "/apps/1/events", &params);
    params.push(("auth_signature".to_owned(), sig));
    let query: String = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    c.bench_function("verify_rest_request events", |b| {
        b.iter(|| {
            verify_rest_request(
                "POST",
                "/apps/1/events",
                black_box(&query),
                body,
                |_| Some("secret".to_owned()),
                now,
                600,
            )
        })
    });
}

criterion_group!(benches, channel_auth, rest_auth);
criterion_main!(benches);
