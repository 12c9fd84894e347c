//! JSON-compatible payloads: the msgpack values that map to JSON without change.
//!
//! Payloads are stored as JSONB, so a value that JSON (or Postgres' JSONB) cannot hold is refused
//! rather than silently changed: binary and ext values, non-string map keys, NaN and infinite
//! floats, and strings containing U+0000.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A payload that is known to map to JSON exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(transparent)]
pub struct Json(pub Value);

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(Json)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("payload float {v} has no JSON form")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        checked_string(v).map(|s| Value::String(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        checked_string(&v)?;
        Ok(Value::String(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom(
            "payload contains binary data, which has no JSON form",
        ))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<Value, D::Error> {
        Err(de::Error::custom(
            "payload contains a msgpack ext value, which has no JSON form",
        ))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Json(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<MapKey>()? {
            let Json(v) = map.next_value()?;
            out.insert(key.0, v);
        }
        Ok(Value::Object(out))
    }
}

struct MapKey(String);

impl<'de> Deserialize<'de> for MapKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = MapKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string map key (JSON objects have string keys only)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MapKey, E> {
                checked_string(v).map(|s| MapKey(s.to_owned()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

pub(crate) fn checked_string<E: de::Error>(s: &str) -> Result<&str, E> {
    if s.contains('\0') {
        Err(E::custom(
            "payload string contains U+0000, which JSONB cannot store",
        ))
    } else {
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as Mp;

    fn parse(v: Mp) -> Result<Value, String> {
        crate::from_value::<Json>(v).map(|j| j.0)
    }

    #[test]
    fn json_shaped_values_pass_unchanged() {
        let v = Mp::Map(vec![
            (Mp::from("n"), Mp::from(-3)),
            (Mp::from("f"), Mp::F64(1.5)),
            (
                Mp::from("a"),
                Mp::Array(vec![Mp::Nil, Mp::from(true), Mp::from("s")]),
            ),
        ]);
        assert_eq!(
            parse(v).unwrap(),
            serde_json::json!({"n": -3, "f": 1.5, "a": [null, true, "s"]})
        );
    }

    #[test]
    fn values_without_a_json_form_are_refused() {
        assert!(parse(Mp::Binary(vec![1, 2])).is_err());
        assert!(parse(Mp::Map(vec![(Mp::from(1), Mp::from(2))])).is_err());
        assert!(parse(Mp::F64(f64::NAN)).is_err());
        assert!(parse(Mp::F64(f64::INFINITY)).is_err());
        assert!(parse(Mp::from("a\0b")).is_err());
        assert!(parse(Mp::Ext(3, vec![0])).is_err());
    }
}
