//! An `arbitrary` tree of msgpack values: every kind a client can send (those without a JSON
//! form included), strings with and without U+0000, non-finite floats, and nests far deeper
//! than the daemon allows, built without deep recursion in the generator.

use arbitrary::{Arbitrary, Result, Unstructured};
use rmpv::Value;

/// How many containers one `Nest` may wrap around its value.
const MAX_NEST: u16 = 1500;

/// How deeply a whole tree may nest: far past every limit of the daemon, and within what the
/// encoders' and `Drop`'s recursion can take on the fuzzer's stack.
const MAX_DEPTH: usize = 1500;

/// One node of the tree.
#[derive(Debug, Arbitrary)]
pub enum Tree {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    F32(f32),
    F64(f64),
    /// Non-finite floats, which arbitrary floats rarely are.
    NonFinite(Special),
    Str(String),
    /// A string with U+0000 at `at` (modulo its length).
    NulStr(String, u8),
    /// Bytes sent as a msgpack `str`, valid UTF-8 or not.
    RawStr(Vec<u8>),
    Bin(Vec<u8>),
    Ext(i8, Vec<u8>),
    Array(Vec<Tree>),
    Map(Vec<(Key, Tree)>),
    /// `levels` arrays (or single-entry maps) around `inner`.
    Nest {
        levels: u16,
        maps: bool,
        inner: Box<Tree>,
    },
}

#[derive(Debug, Arbitrary)]
pub enum Special {
    Nan,
    Inf,
    NegInf,
    Nan32,
}

/// A map key: a string (perhaps with U+0000) or a value of another kind.
#[derive(Debug, Arbitrary)]
pub enum Key {
    Str(String),
    NulStr(String),
    Other(Tree),
}

impl Tree {
    /// The value, nested at most [`MAX_DEPTH`] deep (deeper containers are left empty).
    pub fn to_value(&self) -> Value {
        self.value(MAX_DEPTH)
    }

    /// The value, within `budget` containers.
    fn value(&self, budget: usize) -> Value {
        let inner = budget.saturating_sub(1);
        match self {
            Tree::Nil => Value::Nil,
            Tree::Bool(b) => Value::from(*b),
            Tree::Int(i) => Value::from(*i),
            Tree::Uint(u) => Value::from(*u),
            Tree::F32(f) => Value::F32(*f),
            Tree::F64(f) => Value::F64(*f),
            Tree::NonFinite(s) => s.to_value(),
            Tree::Str(s) => Value::from(s.as_str()),
            Tree::NulStr(s, at) => Value::from(with_nul(s, usize::from(*at)).as_str()),
            Tree::RawStr(bytes) => raw_str(bytes),
            Tree::Bin(b) => Value::Binary(b.clone()),
            Tree::Ext(t, b) => Value::Ext(*t, b.clone()),
            _ if budget == 0 => Value::Array(Vec::new()),
            Tree::Array(items) => Value::Array(items.iter().map(|t| t.value(inner)).collect()),
            Tree::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.value(inner), v.value(inner)))
                    .collect(),
            ),
            Tree::Nest {
                levels,
                maps,
                inner,
            } => {
                let levels = usize::from(levels % MAX_NEST).min(budget);
                (0..levels).fold(inner.value(budget - levels), |v, _| match maps {
                    true => Value::Map(vec![(Value::from("k"), v)]),
                    false => Value::Array(vec![v]),
                })
            }
        }
    }

    /// A tree from the fuzzer's bytes (empty input: `Nil`).
    pub fn from_bytes(data: &[u8]) -> Result<Tree> {
        Tree::arbitrary_take_rest(Unstructured::new(data))
    }
}

impl Special {
    fn to_value(&self) -> Value {
        match self {
            Special::Nan => Value::F64(f64::NAN),
            Special::Inf => Value::F64(f64::INFINITY),
            Special::NegInf => Value::F64(f64::NEG_INFINITY),
            Special::Nan32 => Value::F32(f32::NAN),
        }
    }
}

impl Key {
    fn value(&self, budget: usize) -> Value {
        match self {
            Key::Str(s) => Value::from(s.as_str()),
            Key::NulStr(s) => Value::from(with_nul(s, s.len()).as_str()),
            Key::Other(t) => t.value(budget),
        }
    }
}

/// `s` with U+0000 inserted at the char boundary at or before `at` (modulo its length + 1).
fn with_nul(s: &str, at: usize) -> String {
    let mut at = at % (s.len() + 1);
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    let mut out = s.to_owned();
    out.insert(at, '\0');
    out
}

/// A msgpack `str` holding `bytes` as they are.
fn raw_str(bytes: &[u8]) -> Value {
    let mut encoded = Vec::new();
    rmp::encode::write_str_len(&mut encoded, bytes.len() as u32).expect("writing to a Vec");
    encoded.extend_from_slice(bytes);
    rmpv::decode::read_value(&mut &encoded[..]).expect("a str is a value")
}
