//! The JSON-in-a-string `data` of Pusher frames.

use serde_json::{json, Value};

/// The `data` of a frame, which must be a JSON-encoded string.
pub fn decode_data(v: &Value) -> Value {
    let s = v["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data must be a string: {v}"));
    serde_json::from_str(s).unwrap_or_else(|_| panic!("data must hold JSON: {v}"))
}

/// The `channel_data` of a presence subscription: `user_id` and, if given, `user_info`.
pub fn presence_data(user_id: Value, info: Option<Value>) -> String {
    let mut v = json!({ "user_id": user_id });
    if let Some(i) = info {
        v["user_info"] = i;
    }
    v.to_string()
}
