//! Msgpack left undecoded until someone needs it.
//!
//! A [`Raw`] is the bytes of one value, a slice of the frame it came in (not a copy), decoded by
//! its reader straight into the type it wants. [`entries`] walks the top-level map of a frame,
//! handing over each value's bytes without decoding them (checking them as it goes, see
//! [`crate::check`]): the frame decoders' fast path.

use bytes::Bytes;
use serde::de::{Deserialize, DeserializeOwned};

use crate::check::{length, walk, Found};
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

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
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

/// Calls `f` with each key of the map `body` holds, its value's bytes and how deeply that value
/// nests (a scalar is 0, `[[1]]` is 2), in order, checking every key and value on the way into
/// `found` (the map itself counts as one level). `None` when `body` is not exactly one map with
/// string keys, or as soon as `f` says `None`.
pub(crate) fn entries<'a>(
    body: &'a [u8],
    found: &mut Found,
    mut f: impl FnMut(&'a str, &'a [u8], usize) -> Option<()>,
) -> Option<()> {
    let mut cur = body;
    let len = match rmp::decode::read_marker(&mut cur).ok()? {
        rmp::Marker::FixMap(n) => usize::from(n),
        rmp::Marker::Map16 => length(&mut cur, 2)?,
        rmp::Marker::Map32 => length(&mut cur, 4)?,
        _ => return None,
    };
    found.depth = found.depth.max(1);
    for _ in 0..len {
        let (key, rest) = rmp::decode::read_str_from_slice(cur).ok()?;
        found.text(key);
        cur = rest;
        let value = cur;
        // The deepest this value reaches, counted from the map (1), then merged back.
        let around = std::mem::take(&mut found.depth);
        walk(&mut cur, 1, found)?;
        let depth = found.depth.saturating_sub(1);
        found.depth = found.depth.max(around);
        f(key, value.get(..value.len() - cur.len())?, depth)?;
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
