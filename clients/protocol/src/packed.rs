//! JSON-compatible values kept as their msgpack encoding.
//!
//! A [`Packed`] is checked once, as it is decoded, against the same rules as [`crate::Json`], and
//! is written from its bytes into any serde format (a reply frame, JSON text) without a tree of
//! values being built, allocated or dropped: the cache's values, which are stored, served and
//! logged many times for each time they are set.

use bytes::Bytes;
use rmp::Marker;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::fmt;

/// A JSON-compatible value as msgpack. Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Bytes);

impl Packed {
    /// The size of the encoding, in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: every value takes at least one byte.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The integer this value is, if it is one that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        let mut cur = &self.0[..];
        let n = rmp::decode::read_int(&mut cur).ok()?;
        cur.is_empty().then_some(n)
    }

    pub fn from_i64(n: i64) -> Packed {
        let mut out = Vec::with_capacity(9);
        rmp::encode::write_sint(&mut out, n).expect("writing to a Vec cannot fail");
        Packed(out.into())
    }

    /// The msgpack encoding, for an engine that stores it as it is.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads back what [`Packed::as_bytes`] gave: exactly one msgpack value, checked as a
    /// decoded value is (an engine's storage may hold bytes someone else wrote).
    pub fn from_msgpack(bytes: &[u8]) -> Result<Packed, String> {
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
        let packed = Packed::deserialize(&mut de).map_err(|e| e.to_string())?;
        match usize::try_from(de.position()) {
            Ok(read) if read == bytes.len() => Ok(packed),
            _ => Err("bytes follow the msgpack value".into()),
        }
    }
}

impl fmt::Debug for Packed {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => write!(f, "Packed({json})"),
            Err(_) => write!(f, "Packed({:?})", self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Most values are small: one allocation rather than a few growths.
        let mut out = Vec::with_capacity(128);
        Pack(&mut out).deserialize(d)?;
        Ok(Packed(out.into()))
    }
}

/// Decodes one value, appending its msgpack to the buffer.
struct Pack<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Pack<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// What a write to a `Vec` cannot do.
fn infallible<T, E>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|_| unreachable!("writing to a Vec cannot fail"))
}

impl<'de> Visitor<'de> for Pack<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        infallible(rmp::encode::write_bool(self.0, v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        infallible(rmp::encode::write_sint(self.0, v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        infallible(rmp::encode::write_uint(self.0, v));
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if !v.is_finite() {
            return Err(E::custom(format!("payload float {v} has no JSON form")));
        }
        infallible(rmp::encode::write_f64(self.0, v));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        crate::payload::checked_string(v)?;
        infallible(rmp::encode::write_str(self.0, v));
        Ok(())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Err(E::custom(
            "payload contains binary data, which has no JSON form",
        ))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        infallible(rmp::encode::write_nil(self.0));
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(
            "payload contains a msgpack ext value, which has no JSON form",
        ))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let start = self.0.len();
        let mut n = 0u32;
        while seq.next_element_seed(Pack(self.0))?.is_some() {
            n += 1;
        }
        let mut head = Vec::with_capacity(5);
        infallible(rmp::encode::write_array_len(&mut head, n));
        self.0.splice(start..start, head);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let start = self.0.len();
        let mut n = 0u32;
        while map.next_key_seed(PackKey(self.0))?.is_some() {
            map.next_value_seed(Pack(self.0))?;
            n += 1;
        }
        let mut head = Vec::with_capacity(5);
        infallible(rmp::encode::write_map_len(&mut head, n));
        self.0.splice(start..start, head);
        Ok(())
    }
}

/// Decodes a map key, which must be a string, appending it to the buffer.
struct PackKey<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for PackKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for PackKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string map key (JSON objects have string keys only)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        Pack(self.0).visit_str(v)
    }
}

impl Serialize for Packed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Next(&Cell::new(&self.0[..])).serialize(s)
    }
}

/// The error of a [`Packed`] whose bytes are not what its constructors write (never seen).
fn corrupt<T, E: ser::Error>(_: T) -> E {
    E::custom("a packed value is not valid msgpack")
}

/// The value at a cursor into a [`Packed`]'s bytes; serializing it moves the cursor past it.
struct Next<'a, 'b>(&'b Cell<&'a [u8]>);

impl Serialize for Next<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut cur = self.0.get();
        let marker = Marker::from_u8(*cur.first().ok_or_else(|| corrupt(()))?);
        let ok = match marker {
            Marker::Null => {
                cur = &cur[1..];
                s.serialize_unit()
            }
            Marker::True | Marker::False => {
                let v = rmp::decode::read_bool(&mut cur).map_err(corrupt)?;
                s.serialize_bool(v)
            }
            Marker::U64 => s.serialize_u64(rmp::decode::read_int(&mut cur).map_err(corrupt)?),
            Marker::FixPos(_)
            | Marker::FixNeg(_)
            | Marker::U8
            | Marker::U16
            | Marker::U32
            | Marker::I8
            | Marker::I16
            | Marker::I32
            | Marker::I64 => s.serialize_i64(rmp::decode::read_int(&mut cur).map_err(corrupt)?),
            Marker::F32 => s.serialize_f32(rmp::decode::read_f32(&mut cur).map_err(corrupt)?),
            Marker::F64 => s.serialize_f64(rmp::decode::read_f64(&mut cur).map_err(corrupt)?),
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let (v, rest) = rmp::decode::read_str_from_slice(cur).map_err(corrupt)?;
                cur = rest;
                s.serialize_str(v)
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = rmp::decode::read_array_len(&mut cur).map_err(corrupt)?;
                self.0.set(cur);
                let mut seq = s.serialize_seq(Some(n as usize))?;
                for _ in 0..n {
                    seq.serialize_element(self)?;
                }
                return seq.end();
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let n = rmp::decode::read_map_len(&mut cur).map_err(corrupt)?;
                self.0.set(cur);
                let mut map = s.serialize_map(Some(n as usize))?;
                for _ in 0..n {
                    map.serialize_entry(self, self)?;
                }
                return map.end();
            }
            _ => return Err(corrupt(())),
        };
        self.0.set(cur);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as Mp;
    use serde_json::json;

    fn packed(v: &Mp) -> Result<Packed, String> {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, v).unwrap();
        let mut de = rmp_serde::Deserializer::from_read_ref(&bytes[..]);
        Packed::deserialize(&mut de).map_err(|e| e.to_string())
    }

    #[test]
    fn msgpack_bytes_come_back_as_the_same_value_and_others_are_refused() {
        let p = Packed::deserialize(json!({"a": [1, "x", null], "f": 2.5})).unwrap();
        assert_eq!(Packed::from_msgpack(p.as_bytes()), Ok(p.clone()));
        let mut longer = p.as_bytes().to_vec();
        longer.push(0x01);
        assert!(Packed::from_msgpack(&longer).is_err(), "two values");
        assert!(Packed::from_msgpack(&[]).is_err());
        assert!(Packed::from_msgpack(&[0xc4, 0x01, 0x00]).is_err(), "binary");
        assert!(
            Packed::from_msgpack(&[0xa1, 0x00]).is_err(),
            "NUL in a string"
        );
    }

    #[test]
    fn json_shaped_values_keep_their_meaning_through_msgpack_and_json() {
        let v = Mp::Map(vec![
            (Mp::from("n"), Mp::from(-3)),
            (Mp::from("big"), Mp::from(u64::MAX)),
            (Mp::from("f"), Mp::F64(1.5)),
            (
                Mp::from("a"),
                Mp::Array(vec![Mp::Nil, Mp::from(true), Mp::from("s")]),
            ),
            (Mp::from("empty"), Mp::Map(vec![])),
        ]);
        let expected =
            json!({"n": -3, "big": u64::MAX, "f": 1.5, "a": [null, true, "s"], "empty": {}});
        let p = packed(&v).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap(), expected);
        let again = Packed::deserialize(expected.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            expected,
            "and packs again from JSON"
        );
        let frame = rmp_serde::to_vec(&p).unwrap();
        assert_eq!(rmpv::decode::read_value(&mut &frame[..]).unwrap(), v);
    }

    #[test]
    fn containers_of_every_length_class_round_trip() {
        for n in [0usize, 15, 16, 65_536] {
            let map: serde_json::Map<String, serde_json::Value> =
                (0..n).map(|i| (i.to_string(), json!(i))).collect();
            let v = json!({"list": vec![1; n], "map": map});
            let p = Packed::deserialize(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(&p).unwrap(), v);
        }
    }

    #[test]
    fn values_without_a_json_form_are_refused() {
        assert!(packed(&Mp::Binary(vec![1, 2])).is_err());
        assert!(packed(&Mp::Map(vec![(Mp::from(1), Mp::from(2))])).is_err());
        assert!(packed(&Mp::F64(f64::NAN)).is_err());
        assert!(packed(&Mp::F64(f64::INFINITY)).is_err());
        assert!(packed(&Mp::from("a\0b")).is_err());
        assert!(packed(&Mp::Ext(3, vec![0])).is_err());
    }

    #[test]
    fn integers_are_read_back_and_others_are_not() {
        assert_eq!(Packed::from_i64(-41).as_i64(), Some(-41));
        assert_eq!(Packed::from_i64(i64::MAX).as_i64(), Some(i64::MAX));
        assert_eq!(Packed::deserialize(json!(7)).unwrap().as_i64(), Some(7));
        assert_eq!(Packed::deserialize(json!(7.5)).unwrap().as_i64(), None);
        assert_eq!(Packed::deserialize(json!("7")).unwrap().as_i64(), None);
        assert_eq!(Packed::deserialize(json!([7])).unwrap().as_i64(), None);
    }
}
