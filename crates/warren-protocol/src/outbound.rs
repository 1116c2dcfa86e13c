//! Frames the server sends, built as JSON text exactly as the official clients expect
//! (docs/PROTOCOL.md, "Framing"): `data` is a JSON-encoded string everywhere except in
//! `pusher:error`, whose `data` is an object.
//!
//! Builders write into one `String` with the fixed parts spelled out, so building a frame costs
//! one allocation and the escaping of its variable parts.

use crate::names::SocketId;

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn with_capacity(extra: usize) -> String {
    String::with_capacity(64 + extra)
}

/// `pusher:connection_established`.
pub fn connection_established(socket_id: SocketId, activity_timeout_secs: u64) -> String {
    let inner =
        format!(r#"{{"socket_id":"{socket_id}","activity_timeout":{activity_timeout_secs}}}"#);
    let mut out = with_capacity(inner.len());
    out.push_str(r#"{"event":"pusher:connection_established","data":"#);
    push_json_str(&mut out, &inner);
    out.push('}');
    out
}

/// `pusher:error`; `code` is `None` for the non-fatal errors that real Pusher sends with `null`.
pub fn error(code: Option<u16>, message: &str) -> String {
    let mut out = with_capacity(message.len());
    out.push_str(r#"{"event":"pusher:error","data":{"code":"#);
    match code {
        Some(c) => out.push_str(&c.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(r#","message":"#);
    push_json_str(&mut out, message);
    out.push_str("}}");
    out
}

pub const PONG: &str = r#"{"event":"pusher:pong","data":"{}"}"#;
pub const PING: &str = r#"{"event":"pusher:ping","data":"{}"}"#;

/// `pusher_internal:subscription_succeeded` for a non-presence channel.
pub fn subscription_succeeded(channel: &str) -> String {
    let mut out = with_capacity(channel.len());
    out.push_str(r#"{"event":"pusher_internal:subscription_succeeded","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","data":"{}"}"#);
    out
}

/// `pusher_internal:subscription_succeeded` for a presence channel: every member once, in
/// `ids` and as a key of `hash` (`null` when it has no user_info), and their count.
pub fn presence_subscription_succeeded<'a>(
    channel: &str,
    members: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    let mut ids = String::from("[");
    let mut hash = String::from("{");
    let mut count = 0usize;
    for (id, info) in members {
        if count > 0 {
            ids.push(',');
            hash.push(',');
        }
        push_json_str(&mut ids, id);
        push_json_str(&mut hash, id);
        hash.push(':');
        hash.push_str(info.unwrap_or("null"));
        count += 1;
    }
    ids.push(']');
    hash.push('}');
    let inner = format!(r#"{{"presence":{{"ids":{ids},"hash":{hash},"count":{count}}}}}"#);
    let mut out = with_capacity(inner.len() * 2 + channel.len());
    out.push_str(r#"{"event":"pusher_internal:subscription_succeeded","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","data":"#);
    push_json_str(&mut out, &inner);
    out.push('}');
    out
}

/// `pusher_internal:member_added`, sent to the other subscribers on a user's first join.
pub fn member_added(channel: &str, user_id: &str, user_info: Option<&str>) -> String {
    let mut inner = String::with_capacity(32 + user_id.len());
    inner.push_str(r#"{"user_id":"#);
    push_json_str(&mut inner, user_id);
    inner.push_str(r#","user_info":"#);
    inner.push_str(user_info.unwrap_or("null"));
    inner.push('}');
    internal_event("pusher_internal:member_added", channel, &inner)
}

/// `pusher_internal:member_removed`, sent when a user's last connection leaves.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    let mut inner = String::with_capacity(16 + user_id.len());
    inner.push_str(r#"{"user_id":"#);
    push_json_str(&mut inner, user_id);
    inner.push('}');
    internal_event("pusher_internal:member_removed", channel, &inner)
}

fn internal_event(event: &str, channel: &str, data: &str) -> String {
    channel_event(event, channel, data, None)
}

/// `pusher_internal:subscription_count`: how many connections the channel has cluster-wide.
pub fn subscription_count(channel: &str, count: u64) -> String {
    internal_event(
        "pusher_internal:subscription_count",
        channel,
        &format!(r#"{{"subscription_count":{count}}}"#),
    )
}

/// `pusher:cache_miss`: a cache channel had nothing cached for the new subscriber. It has no
/// `data`, as Pusher sends it.
pub fn cache_miss(channel: &str) -> String {
    let mut out = with_capacity(channel.len());
    out.push_str(r#"{"event":"pusher:cache_miss","channel":"#);
    push_json_str(&mut out, channel);
    out.push('}');
    out
}

/// `pusher:signin_success`, echoing the signed `user_data` string exactly.
pub fn signin_success(user_data: &str) -> String {
    let mut inner = String::with_capacity(user_data.len() + user_data.len() / 8 + 16);
    inner.push_str(r#"{"user_data":"#);
    push_json_str(&mut inner, user_data);
    inner.push('}');
    let mut out = with_capacity(inner.len() * 2);
    out.push_str(r#"{"event":"pusher:signin_success","data":"#);
    push_json_str(&mut out, &inner);
    out.push('}');
    out
}

/// `pusher_internal:watchlist_events`: one entry per status that has users, online first.
pub fn watchlist_events<'a>(
    online: impl IntoIterator<Item = &'a str>,
    offline: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut inner = String::from(r#"{"events":["#);
    let mut first = true;
    for (name, ids) in [
        ("online", ids_array(online)),
        ("offline", ids_array(offline)),
    ] {
        let Some(ids) = ids else { continue };
        if !first {
            inner.push(',');
        }
        first = false;
        inner.push_str(r#"{"name":""#);
        inner.push_str(name);
        inner.push_str(r#"","user_ids":"#);
        inner.push_str(&ids);
        inner.push('}');
    }
    inner.push_str("]}");
    let mut out = with_capacity(inner.len() * 2);
    out.push_str(r#"{"event":"pusher_internal:watchlist_events","data":"#);
    push_json_str(&mut out, &inner);
    out.push('}');
    out
}

/// A JSON array of strings, `None` when there are none.
fn ids_array<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut out = String::from("[");
    for id in ids {
        if out.len() > 1 {
            out.push(',');
        }
        push_json_str(&mut out, id);
    }
    if out.len() == 1 {
        return None;
    }
    out.push(']');
    Some(out)
}

/// `pusher:subscription_error`, the shape Laravel Echo's `.error()` reads.
pub fn subscription_error(channel: &str, error_type: &str, message: &str, status: u16) -> String {
    let mut out = with_capacity(channel.len() + message.len());
    out.push_str(r#"{"event":"pusher:subscription_error","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","data":{"type":"#);
    push_json_str(&mut out, error_type);
    out.push_str(r#","error":"#);
    push_json_str(&mut out, message);
    out.push_str(r#","status":"#);
    out.push_str(&status.to_string());
    out.push_str("}}");
    out
}

/// An event on a channel: `{"event":..,"channel":..,"data":"<string>"}`, plus `user_id` for
/// client events on presence channels.
pub fn channel_event(event: &str, channel: &str, data: &str, user_id: Option<&str>) -> String {
    let mut out = with_capacity(event.len() + channel.len() + data.len() + data.len() / 8);
    out.push_str(r#"{"event":"#);
    push_json_str(&mut out, event);
    out.push_str(r#","channel":"#);
    push_json_str(&mut out, channel);
    out.push_str(r#","data":"#);
    push_json_str(&mut out, data);
    if let Some(uid) = user_id {
        out.push_str(r#","user_id":"#);
        push_json_str(&mut out, uid);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).expect("valid JSON")
    }

    fn data_of(s: &str) -> Value {
        let v = parse(s);
        let data = v["data"].as_str().expect("data is a string");
        parse(data)
    }

    #[test]
    fn signin_success_echoes_user_data_exactly() {
        let user_data = r#"{"id":"1","user_info":{"n":"é \"q\""}}"#;
        let f = signin_success(user_data);
        assert_eq!(parse(&f)["event"], "pusher:signin_success");
        assert_eq!(data_of(&f)["user_data"], user_data);
    }

    #[test]
    fn watchlist_events_list_each_status_with_users() {
        let f = watchlist_events(["1", "2"], ["3"]);
        assert_eq!(parse(&f)["event"], "pusher_internal:watchlist_events");
        assert_eq!(
            data_of(&f),
            json!({"events":[{"name":"online","user_ids":["1","2"]},{"name":"offline","user_ids":["3"]}]})
        );
        assert_eq!(
            data_of(&watchlist_events([], ["3"])),
            json!({"events":[{"name":"offline","user_ids":["3"]}]})
        );
        assert_eq!(data_of(&watchlist_events([], [])), json!({"events":[]}));
    }

    #[test]
    fn connection_established_matches_the_protocol() {
        let f = connection_established(SocketId::new(123, 456), 120);
        assert_eq!(
            f,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#
        );
    }

    #[test]
    fn error_data_is_an_object() {
        assert_eq!(
            parse(&error(Some(4001), "App key x does not exist")),
            json!({"event":"pusher:error","data":{"code":4001,"message":"App key x does not exist"}})
        );
        assert_eq!(parse(&error(None, "q\"\n"))["data"]["code"], Value::Null);
        assert_eq!(parse(&error(None, "q\"\n"))["data"]["message"], "q\"\n");
    }

    #[test]
    fn ping_pong_and_succeeded() {
        assert_eq!(data_of(PONG), json!({}));
        assert_eq!(parse(PING)["event"], "pusher:ping");
        let s = parse(&subscription_succeeded("c"));
        assert_eq!(
            s,
            json!({"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"})
        );
    }

    #[test]
    fn presence_succeeded_has_ids_hash_and_count() {
        let f = presence_subscription_succeeded(
            "presence-x",
            [("1", Some(r#"{"name":"A"}"#)), ("2", None)],
        );
        assert_eq!(
            data_of(&f),
            json!({"presence":{"ids":["1","2"],"hash":{"1":{"name":"A"},"2":null},"count":2}})
        );
        let empty = presence_subscription_succeeded("presence-x", []);
        assert_eq!(
            data_of(&empty),
            json!({"presence":{"ids":[],"hash":{},"count":0}})
        );
    }

    #[test]
    fn member_events() {
        let added = member_added("presence-x", "1", Some(r#"{"n":1}"#));
        assert_eq!(parse(&added)["event"], "pusher_internal:member_added");
        assert_eq!(data_of(&added), json!({"user_id":"1","user_info":{"n":1}}));
        let removed = member_removed("presence-x", "1");
        assert_eq!(data_of(&removed), json!({"user_id":"1"}));
        assert_eq!(parse(&removed)["channel"], "presence-x");
    }

    #[test]
    fn subscription_count_and_cache_miss() {
        let count = subscription_count("c", 3);
        assert_eq!(parse(&count)["event"], "pusher_internal:subscription_count");
        assert_eq!(parse(&count)["channel"], "c");
        assert_eq!(data_of(&count), json!({"subscription_count":3}));
        assert_eq!(
            parse(&cache_miss("cache-a")),
            json!({"event":"pusher:cache_miss","channel":"cache-a"})
        );
    }

    #[test]
    fn subscription_error_shape() {
        assert_eq!(
            parse(&subscription_error("private-a", "AuthError", "bad", 401)),
            json!({"event":"pusher:subscription_error","channel":"private-a","data":{"type":"AuthError","error":"bad","status":401}})
        );
    }

    #[test]
    fn channel_events_escape_everything() {
        let data = "{\"a\":\"\u{1}\\\t\u{7f}é\"}";
        let f = channel_event("client-e", "private-c", data, Some("7"));
        let v = parse(&f);
        assert_eq!(v["data"], data);
        assert_eq!(v["user_id"], "7");
        assert_eq!(v["channel"], "private-c");
        assert!(parse(&channel_event("e", "c", "", None))
            .get("user_id")
            .is_none());
    }
}
