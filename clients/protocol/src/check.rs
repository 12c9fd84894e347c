//! What every value of a request must be, checked while the frame decoders walk its bytes (the
//! walk they make anyway to cut the frame into fields, so the checks cost no pass of their own):
//! no U+0000 in any string or map key (Postgres TEXT and JSONB cannot store it), no NaN or
//! infinite float (JSON has no form for them), and how deeply it nests, which the daemon holds
//! against its `[daemon] max_depth`. Every msgpack integer (−2^63 to 2^64−1) and every finite
//! float reads back from JSONB with its value; nothing else needs checking for numbers.

/// Containers followed one by one; deeper ones are skipped whole, counted as deeper than this.
const TRACKED_DEPTH: usize = 1024;

/// What a walk found: how deeply the values nest, and the first rule a value broke.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Found {
    /// The most containers seen around one value (a map holding a scalar is 1).
    pub depth: usize,
    pub refusal: Option<&'static str>,
}

impl Found {
    fn refuse(&mut self, why: &'static str) {
        self.refusal.get_or_insert(why);
    }

    /// Checks a map key or a string read outside [`walk`].
    pub(crate) fn text(&mut self, s: &str) {
        if s.contains('\0') {
            self.refuse(NUL);
        }
    }
}

const NUL: &str = "a string or map key contains U+0000, which Postgres cannot store";
const FLOAT: &str = "a float is NaN or infinite, which JSON cannot hold";

/// Moves `cur` past one value nested in `depth` containers, recording what it finds. `None`
/// when the bytes do not hold a value.
pub(crate) fn walk(cur: &mut &[u8], depth: usize, found: &mut Found) -> Option<()> {
    if depth > TRACKED_DEPTH {
        found.depth = found.depth.max(depth);
        return skip_all(cur, 1);
    }
    let head = head(cur)?;
    let bytes = cur.get(..head.bytes)?;
    match head.kind {
        Kind::Str if bytes.contains(&0) => found.refuse(NUL),
        Kind::F32 if !f32::from_be_bytes(bytes.try_into().ok()?).is_finite() => found.refuse(FLOAT),
        Kind::F64 if !f64::from_be_bytes(bytes.try_into().ok()?).is_finite() => found.refuse(FLOAT),
        Kind::Container => found.depth = found.depth.max(depth + 1),
        _ => {}
    }
    *cur = cur.get(head.bytes..)?;
    (0..head.values).try_for_each(|_| walk(cur, depth + 1, found))
}

/// How deeply the one value in `bytes` nests (a scalar is 0, `[[1]]` is 2); 0 when `bytes`
/// hold no value.
pub(crate) fn depth(mut bytes: &[u8]) -> usize {
    let mut found = Found::default();
    walk(&mut bytes, 0, &mut found).map_or(0, |()| found.depth)
}

/// Moves `cur` past `n` values without looking into them (no recursion, whatever the depth).
fn skip_all(cur: &mut &[u8], mut n: usize) -> Option<()> {
    while n > 0 {
        let head = head(cur)?;
        *cur = cur.get(head.bytes..)?;
        n = n - 1 + head.values;
    }
    Some(())
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    F32,
    F64,
    Container,
    Other,
}

/// One value's marker, read: its kind, the bytes that follow it, and how many values it holds.
struct Head {
    kind: Kind,
    bytes: usize,
    values: usize,
}

fn head(cur: &mut &[u8]) -> Option<Head> {
    use rmp::Marker as M;
    let (kind, bytes, values) = match rmp::decode::read_marker(cur).ok()? {
        M::Null | M::True | M::False | M::FixPos(_) | M::FixNeg(_) => (Kind::Other, 0, 0),
        M::U8 | M::I8 => (Kind::Other, 1, 0),
        M::U16 | M::I16 => (Kind::Other, 2, 0),
        M::U32 | M::I32 => (Kind::Other, 4, 0),
        M::U64 | M::I64 => (Kind::Other, 8, 0),
        M::F32 => (Kind::F32, 4, 0),
        M::F64 => (Kind::F64, 8, 0),
        M::FixStr(n) => (Kind::Str, usize::from(n), 0),
        M::Str8 => (Kind::Str, length(cur, 1)?, 0),
        M::Str16 => (Kind::Str, length(cur, 2)?, 0),
        M::Str32 => (Kind::Str, length(cur, 4)?, 0),
        M::Bin8 => (Kind::Other, length(cur, 1)?, 0),
        M::Bin16 => (Kind::Other, length(cur, 2)?, 0),
        M::Bin32 => (Kind::Other, length(cur, 4)?, 0),
        M::FixExt1 => (Kind::Other, 2, 0),
        M::FixExt2 => (Kind::Other, 3, 0),
        M::FixExt4 => (Kind::Other, 5, 0),
        M::FixExt8 => (Kind::Other, 9, 0),
        M::FixExt16 => (Kind::Other, 17, 0),
        M::Ext8 => (Kind::Other, length(cur, 1)? + 1, 0),
        M::Ext16 => (Kind::Other, length(cur, 2)? + 1, 0),
        M::Ext32 => (Kind::Other, length(cur, 4)? + 1, 0),
        M::FixArray(n) => (Kind::Container, 0, usize::from(n)),
        M::Array16 => (Kind::Container, 0, length(cur, 2)?),
        M::Array32 => (Kind::Container, 0, length(cur, 4)?),
        M::FixMap(n) => (Kind::Container, 0, 2 * usize::from(n)),
        M::Map16 => (Kind::Container, 0, 2 * length(cur, 2)?),
        M::Map32 => (Kind::Container, 0, 2 * length(cur, 4)?),
        M::Reserved => return None,
    };
    // A container cannot hold more values than bytes remain: no count beyond the frame.
    if values > cur.len() {
        return None;
    }
    Some(Head {
        kind,
        bytes,
        values,
    })
}

/// Reads a big-endian length of `n` bytes.
pub(crate) fn length(cur: &mut &[u8], n: usize) -> Option<usize> {
    let (head, rest) = (cur.get(..n)?, cur.get(n..)?);
    *cur = rest;
    Some(head.iter().fold(0, |len, b| len << 8 | usize::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn found(v: &Value) -> Option<Found> {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, v).unwrap();
        let mut found = Found::default();
        let mut cur = &bytes[..];
        walk(&mut cur, 0, &mut found)?;
        assert!(cur.is_empty(), "the walk ends after the value");
        Some(found)
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(Value::from(1), |v, _| Value::Array(vec![v]))
    }

    #[test]
    fn depth_counts_the_containers_around_the_deepest_value() {
        assert_eq!(found(&Value::from(1)).unwrap().depth, 0);
        assert_eq!(found(&nested(1)).unwrap().depth, 1);
        let map = Value::Map(vec![(Value::from("k"), nested(64))]);
        assert_eq!(found(&map).unwrap().depth, 65);
    }

    #[test]
    fn values_deeper_than_those_followed_are_walked_without_recursion() {
        let bytes: Vec<u8> = std::iter::repeat_n(0x91, 100_000).chain([1]).collect();
        let deep = found_bytes(&bytes).unwrap();
        assert!(deep.depth > TRACKED_DEPTH);
        assert_eq!(deep.refusal, None);
    }

    #[test]
    fn nul_in_strings_and_keys_and_non_finite_floats_are_refused() {
        let key = Value::Map(vec![(Value::from("a\0"), Value::from(1))]);
        let deep_str = Value::Array(vec![Value::Array(vec![Value::from("x\0y")])]);
        for v in [key, deep_str] {
            assert_eq!(found(&v).unwrap().refusal, Some(NUL));
        }
        for v in [Value::F64(f64::NAN), Value::F32(f32::INFINITY)] {
            assert_eq!(found(&v).unwrap().refusal, Some(FLOAT));
        }
        for v in [
            Value::F64(f64::MAX),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
        ] {
            assert_eq!(found(&v).unwrap().refusal, None);
        }
    }

    #[test]
    fn truncated_values_and_impossible_counts_are_not_values() {
        assert!(found_bytes(&[0x92, 0x01]).is_none());
        assert!(found_bytes(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(found_bytes(&[0xc1]).is_none());
    }

    fn found_bytes(mut bytes: &[u8]) -> Option<Found> {
        let mut found = Found::default();
        walk(&mut bytes, 0, &mut found).map(|()| found)
    }
}
