//! Msgpack left undecoded until someone needs it.
//!
//! A [`Raw`] is the bytes of one value, a slice of the frame it came in (not a copy), decoded by
//! its reader straight into the type it wants. [`entries`] walks the top-level map of a frame,
//! handing over each value's bytes without decoding them: the frame decoders' fast path.

use bytes::Bytes;
use serde::de::{Deserialize, DeserializeOwned};

use rmpv::Value;

/// How deeply values may nest (rmpv's limit, which the decoders' general path applies).
const MAX_DEPTH: usize = 1024;

/// `{}`.
const EMPTY_MAP: &[u8] = &[0x80];

/// The msgpack bytes of one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw(Bytes);

impl Raw {
    /// `bytes` must hold exactly one value (the decoders check it).
    pub(crate) fn new(bytes: Bytes) -> Raw {
        Raw(bytes)
    }

    pub(crate) fn empty_map() -> Raw {
        Raw(Bytes::from_static(EMPTY_MAP))
    }

    /// Encodes a value.
    pub(crate) fn of(value: &Value) -> Raw {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, value).expect("writing to a Vec cannot fail");
        Raw(bytes.into())
    }

    /// Decodes into `T`, with a message fit for a `bad_request`. Human-readable, as
    /// [`crate::from_value`] is: ids and timestamps travel as strings.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        let mut de = rmp_serde::Deserializer::from_read_ref(&self.0[..]).with_human_readable();
        Deserialize::deserialize(&mut de).map_err(|e: rmp_serde::decode::Error| e.to_string())
    }

    /// Decodes into an untyped value (through borrowed values: reading from a slice rather than
    /// through `io::Read` halves the cost).
    pub fn value(&self) -> Result<Value, String> {
        rmpv::decode::read_value_ref_with_max_depth(&mut &self.0[..], MAX_DEPTH)
            .map(|v| v.to_owned())
            .map_err(|e| e.to_string())
    }
}

/// Calls `f` with each key of the map `body` holds and its value's bytes, in order. `None` when
/// `body` is not exactly one map with string keys, or as soon as `f` says `None`.
pub(crate) fn entries<'a>(
    body: &'a [u8],
    mut f: impl FnMut(&'a str, &'a [u8]) -> Option<()>,
) -> Option<()> {
    let mut cur = body;
    let len = match rmp::decode::read_marker(&mut cur).ok()? {
        rmp::Marker::FixMap(n) => usize::from(n),
        rmp::Marker::Map16 => length(&mut cur, 2)?,
        rmp::Marker::Map32 => length(&mut cur, 4)?,
        _ => return None,
    };
    for _ in 0..len {
        let (key, rest) = rmp::decode::read_str_from_slice(cur).ok()?;
        cur = rest;
        let value = cur;
        skip(&mut cur, 0)?;
        f(key, &value[..value.len() - cur.len()])?;
    }
    cur.is_empty().then_some(())
}

/// The uint that `value` holds.
pub(crate) fn uint(mut value: &[u8]) -> Option<u64> {
    rmp::decode::read_int(&mut value).ok()
}

/// The UTF-8 string that `value` holds.
pub(crate) fn str(value: &[u8]) -> Option<&str> {
    rmp::decode::read_str_from_slice(value).ok().map(|(s, _)| s)
}

/// Whether `value` holds a map.
pub(crate) fn is_map(value: &[u8]) -> bool {
    matches!(value.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

/// Whether `value` holds nil.
pub(crate) fn is_nil(value: &[u8]) -> bool {
    value.first() == Some(&0xc0)
}

/// Skips one value; `None` when the bytes do not hold one (or it nests too deeply).
fn skip(cur: &mut &[u8], depth: usize) -> Option<()> {
    use rmp::Marker as M;
    if depth > MAX_DEPTH {
        return None;
    }
    let (bytes, values) = match rmp::decode::read_marker(cur).ok()? {
        M::Null | M::True | M::False | M::FixPos(_) | M::FixNeg(_) => (0, 0),
        M::U8 | M::I8 => (1, 0),
        M::U16 | M::I16 => (2, 0),
        M::U32 | M::I32 | M::F32 => (4, 0),
        M::U64 | M::I64 | M::F64 => (8, 0),
        M::FixStr(n) => (usize::from(n), 0),
        M::Str8 | M::Bin8 => (length(cur, 1)?, 0),
        M::Str16 | M::Bin16 => (length(cur, 2)?, 0),
        M::Str32 | M::Bin32 => (length(cur, 4)?, 0),
        M::FixExt1 => (2, 0),
        M::FixExt2 => (3, 0),
        M::FixExt4 => (5, 0),
        M::FixExt8 => (9, 0),
        M::FixExt16 => (17, 0),
        M::Ext8 => (length(cur, 1)? + 1, 0),
        M::Ext16 => (length(cur, 2)? + 1, 0),
        M::Ext32 => (length(cur, 4)? + 1, 0),
        M::FixArray(n) => (0, usize::from(n)),
        M::Array16 => (0, length(cur, 2)?),
        M::Array32 => (0, length(cur, 4)?),
        M::FixMap(n) => (0, 2 * usize::from(n)),
        M::Map16 => (0, 2 * length(cur, 2)?),
        M::Map32 => (0, 2 * length(cur, 4)?),
        M::Reserved => return None,
    };
    *cur = cur.get(bytes..)?;
    (0..values).try_for_each(|_| skip(cur, depth + 1))
}

/// Reads a big-endian length of `n` bytes.
fn length(cur: &mut &[u8], n: usize) -> Option<usize> {
    let (head, rest) = (cur.get(..n)?, cur.get(n..)?);
    *cur = rest;
    Some(head.iter().fold(0, |len, b| len << 8 | usize::from(*b)))
}
