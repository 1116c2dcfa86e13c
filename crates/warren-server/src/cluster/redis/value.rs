//! Reading script replies. Redis answers are data from outside the process: every accessor
//! returns an error instead of assuming a shape.

use fred::types::Value;

use crate::cluster::BackendError;

pub fn bad(what: &str) -> BackendError {
    BackendError(format!("unexpected reply from Redis ({what})"))
}

pub fn array(v: Value, what: &str) -> Result<Vec<Value>, BackendError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        _ => Err(bad(what)),
    }
}

pub fn int(v: &Value, what: &str) -> Result<i64, BackendError> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::String(s) => s.parse().map_err(|_| bad(what)),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(what)),
        Value::Double(d) => Ok(*d as i64),
        Value::Null => Ok(0),
        _ => Err(bad(what)),
    }
}

pub fn string(v: &Value, what: &str) -> Result<String, BackendError> {
    match v {
        Value::String(s) => Ok(s.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| bad(what)),
        Value::Integer(i) => Ok(i.to_string()),
        _ => Err(bad(what)),
    }
}

/// The non-negative integer at `index` of a reply array.
pub fn count_at(items: &[Value], index: usize, what: &str) -> Result<u64, BackendError> {
    let v = items.get(index).ok_or_else(|| bad(what))?;
    Ok(int(v, what)?.max(0) as u64)
}

pub fn flag_at(items: &[Value], index: usize, what: &str) -> Result<bool, BackendError> {
    Ok(count_at(items, index, what)? == 1)
}
