//! What the fuzz targets share: independent oracles for the protocol's rules, computed on
//! `rmpv` values without the protocol crate's own checks, and the values the targets build.

pub mod chunked;
pub mod tree;

use rmpv::Value;

/// The first rule of `docs/protocol.md` (section 6) that `v` breaks as a payload, if any.
pub fn payload_refusal(v: &Value) -> Option<&'static str> {
    match v {
        Value::Binary(_) => Some("bin"),
        Value::Ext(..) => Some("ext"),
        Value::String(s) if s.as_str().is_none() => Some("invalid UTF-8"),
        Value::Map(entries) => entries.iter().find_map(|(k, v)| {
            if !k.is_str() {
                return Some("non-string key");
            }
            payload_refusal(k).or_else(|| payload_refusal(v))
        }),
        Value::Array(items) => items.iter().find_map(payload_refusal),
        _ => frame_refusal(v),
    }
}

/// The first rule that every value of a request frame must meet (no U+0000 in any string or
/// key, no NaN or infinite float) that something in `v` breaks.
pub fn frame_refusal(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(s) if s.as_bytes().contains(&0) => Some("NUL"),
        Value::F32(f) if !f.is_finite() => Some("float"),
        Value::F64(f) if !f.is_finite() => Some("float"),
        Value::Map(entries) => entries
            .iter()
            .find_map(|(k, v)| frame_refusal(k).or_else(|| frame_refusal(v))),
        Value::Array(items) => items.iter().find_map(frame_refusal),
        _ => None,
    }
}

/// Whether `v` holds a `str` that is not UTF-8, anywhere.
pub fn has_invalid_utf8(v: &Value) -> bool {
    match v {
        Value::String(s) => s.as_str().is_none(),
        Value::Map(entries) => entries
            .iter()
            .any(|(k, v)| has_invalid_utf8(k) || has_invalid_utf8(v)),
        Value::Array(items) => items.iter().any(has_invalid_utf8),
        _ => false,
    }
}

/// How many containers surround the deepest value in `v` (a scalar is 0, `[[1]]` is 2); map
/// keys count like values.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            let inner = entries.iter().map(|(k, v)| depth(k).max(depth(v)));
            1 + inner.max().unwrap_or(0)
        }
        _ => 0,
    }
}

/// The JSON a payload stands for (`docs/protocol.md` section 6: keys sorted, the last of
/// repeated keys wins, float32 widened), or `None` when it has none.
pub fn json_of(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => J::from(u),
            (None, Some(n)) => J::from(n),
            (None, None) => return None,
        },
        Value::F32(f) => J::Number(serde_json::Number::from_f64(f64::from(*f))?),
        Value::F64(f) => J::Number(serde_json::Number::from_f64(*f)?),
        Value::String(s) => J::String(s.as_str().filter(|s| !s.contains('\0'))?.to_owned()),
        Value::Array(items) => J::Array(items.iter().map(json_of).collect::<Option<_>>()?),
        Value::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                let J::String(k) = json_of(k).filter(|_| k.is_str())? else {
                    return None;
                };
                map.insert(k, json_of(v)?);
            }
            J::Object(map)
        }
        Value::Binary(_) | Value::Ext(..) => return None,
    })
}

/// The value of the first entry of `map` whose key is the string `name` (the protocol's rule for
/// repeated keys in a request).
pub fn field<'a>(map: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// The msgpack encoding of `v`.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("writing to a Vec cannot fail");
    out
}
