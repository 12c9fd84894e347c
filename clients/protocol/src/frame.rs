//! Frame bodies: one msgpack map per frame, decoded into requests, responses and pushes.
//!
//! Requests are `{"id": uint, "op": str, "args": map}`; responses `{"id", "ok": value}` or
//! `{"id", "err": {code, message, retriable}}`; server pushes `{"push": str, "data": value}`.
//! Every encoder here returns the whole frame, length prefix included.

use crate::check::{self, walk, Found};
use crate::error::ErrorBody;
use crate::raw::{self, Raw};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

pub use rmpv::Value;

/// A decoded request. `args` is still undecoded: each op decodes it with [`Raw::parse`] straight
/// into its argument struct.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub op: String,
    /// Always a map (`{}` when the request sent none).
    pub args: Raw,
    /// How deeply the values in `args` nest: `{"p": 1}` is 0, `{"p": [[1]]}` is 2 (the
    /// frame's other entries, which are ignored, do not count).
    pub depth: usize,
}

/// What a client reads from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Response {
        id: u64,
        result: Result<Raw, ErrorBody>,
    },
    Push {
        push: String,
        data: Value,
    },
}

/// Why a frame body could not be decoded.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    /// The bytes are not exactly one msgpack map: the stream can no longer be trusted.
    #[error("{0}")]
    BadFrame(String),
    /// A well-formed map whose fields are missing or mistyped; `id` is 0 when it was unreadable.
    #[error("{message}")]
    BadRequest { id: u64, message: String },
}

/// Why a value could not be encoded (a serializer refused it).
#[derive(Debug, Error)]
#[error("cannot encode frame: {0}")]
pub struct EncodeError(String);

/// Decodes one request frame body, and checks every value in it (see [`crate::check`]): one
/// that breaks a rule is a `BadRequest` naming it.
pub fn decode_request(body: &Bytes) -> Result<Request, DecodeError> {
    let mut found = Found::default();
    let request = match envelope(body, &mut found) {
        Some(request) => request,
        None => {
            let request = decode_request_value(body)?;
            found = Found::default();
            // rmpv reads the reserved marker 0xc1 as nil; the checks cannot read past it, so the
            // values after it would go unchecked.
            if walk(&mut &body[..], 0, &mut found).is_none() {
                return Err(DecodeError::BadFrame(
                    "not msgpack: the reserved marker 0xc1".into(),
                ));
            }
            request
        }
    };
    match found.refusal {
        Some(why) => {
            let op = request.op.replace('\0', "\\0");
            Err(bad_request(request.id, format!("{op}: {why}")))
        }
        None => Ok(request),
    }
}

/// Reads the usual request without building values: a map with string keys whose `id` is a
/// uint, `op` a UTF-8 string and `args` a map, nil or absent (other keys are skipped; the first
/// of duplicate keys counts), and nothing after it. `None` for anything else, which
/// [`decode_request_value`] then reads, naming what is wrong.
fn envelope(body: &Bytes, found: &mut Found) -> Option<Request> {
    let (mut id, mut op, mut args, mut depth) = (None, None, None, 0);
    raw::entries(body, found, |key, value, nests| {
        match key {
            "id" if id.is_none() => id = Some(raw::uint(value)?),
            "op" if op.is_none() => op = Some(raw::str(value)?.to_owned()),
            "args" if args.is_none() && raw::is_map(value) => {
                args = Some(Raw::new(body.slice_ref(value)));
                depth = args_depth(nests);
            }
            "args" if args.is_none() && raw::is_nil(value) => args = Some(Raw::empty_map()),
            "args" if args.is_none() => return None,
            _ => {}
        }
        Some(())
    })?;
    let args = args.unwrap_or_else(Raw::empty_map);
    Some(Request {
        id: id?,
        op: op?,
        args,
        depth,
    })
}

/// [`Request::depth`] of an args map that nests `nests` deep (the map itself is not counted).
fn args_depth(nests: usize) -> usize {
    nests.saturating_sub(1)
}

/// Decodes a request through a tree of values: the general path, which names every problem.
fn decode_request_value(body: &[u8]) -> Result<Request, DecodeError> {
    let mut map = decode_map(body)?;
    let id = match field(&map, "id") {
        Some(Value::Integer(i)) => i
            .as_u64()
            .ok_or_else(|| bad_request(0, "id must be a uint"))?,
        Some(_) => return Err(bad_request(0, "id must be a uint")),
        None => return Err(bad_request(0, "missing field id")),
    };
    let op = match field(&map, "op") {
        Some(Value::String(s)) => s
            .as_str()
            .ok_or_else(|| bad_request(id, "op must be valid UTF-8"))?
            .to_owned(),
        Some(_) => return Err(bad_request(id, "op must be a string")),
        None => return Err(bad_request(id, "missing field op")),
    };
    let args = match take(&mut map, "args") {
        Some(v @ Value::Map(_)) => Raw::of(&v),
        Some(Value::Nil) | None => Raw::empty_map(),
        Some(_) => return Err(bad_request(id, "args must be a map")),
    };
    let depth = args_depth(check::depth(args.as_bytes()));
    Ok(Request {
        id,
        op,
        args,
        depth,
    })
}

/// Decodes one frame body sent by the daemon.
pub fn decode_incoming(body: &Bytes) -> Result<Incoming, DecodeError> {
    match ok_response(body) {
        Some(response) => Ok(response),
        None => decode_incoming_value(body),
    }
}

/// Reads the usual response without building values: a map of a uint `id` and an `ok` value,
/// nothing else. `None` for anything else (errors, pushes), which [`decode_incoming_value`] reads.
fn ok_response(body: &Bytes) -> Option<Incoming> {
    let (mut id, mut ok) = (None, None);
    raw::entries(body, &mut Found::default(), |key, value, _| {
        match key {
            "id" if id.is_none() => id = Some(raw::uint(value)?),
            "ok" if ok.is_none() => ok = Some(Raw::new(body.slice_ref(value))),
            _ => return None,
        }
        Some(())
    })?;
    Some(Incoming::Response {
        id: id?,
        result: Ok(ok?),
    })
}

/// Decodes a frame sent by the daemon through a tree of values: the general path.
fn decode_incoming_value(body: &[u8]) -> Result<Incoming, DecodeError> {
    let mut map = decode_map(body)?;
    if let Some(push) = field(&map, "push") {
        let push = push
            .as_str()
            .ok_or_else(|| bad_request(0, "push must be a string"))?
            .to_owned();
        let data = take(&mut map, "data").unwrap_or(Value::Nil);
        return Ok(Incoming::Push { push, data });
    }
    let id = field(&map, "id")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad_request(0, "response without a uint id"))?;
    let result = match (take(&mut map, "ok"), take(&mut map, "err")) {
        (_, Some(err)) => Err(from_value::<ErrorBody>(err).map_err(|m| bad_request(id, m))?),
        (Some(ok), None) => Ok(Raw::of(&ok)),
        (None, None) => return Err(bad_request(id, "response has neither ok nor err")),
    };
    Ok(Incoming::Response { id, result })
}

/// Encodes `{"id", "ok": value}`.
pub fn encode_ok<T: Serialize + ?Sized>(id: u64, ok: &T) -> Result<Vec<u8>, EncodeError> {
    #[derive(Serialize)]
    struct Ok<'a, T: ?Sized> {
        id: u64,
        ok: &'a T,
    }
    encode(&Ok { id, ok })
}

/// Encodes `{"id", "err": {...}}`.
pub fn encode_err(id: u64, err: &ErrorBody) -> Vec<u8> {
    #[derive(Serialize)]
    struct Err<'a> {
        id: u64,
        err: &'a ErrorBody,
    }
    encode(&Err { id, err }).expect("an error body always encodes")
}

/// Encodes a server push `{"push", "data"}`.
pub fn encode_push<T: Serialize + ?Sized>(push: &str, data: &T) -> Result<Vec<u8>, EncodeError> {
    #[derive(Serialize)]
    struct Push<'a, T: ?Sized> {
        push: &'a str,
        data: &'a T,
    }
    encode(&Push { push, data })
}

/// Encodes a request `{"id", "op", "args"}`.
pub fn encode_request<T: Serialize + ?Sized>(
    id: u64,
    op: &str,
    args: &T,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    encode_request_into(&mut out, id, op, args)?;
    Ok(out)
}

/// Appends the frame of a request `{"id", "op", "args"}` to `out` (left as it was on error).
pub fn encode_request_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    id: u64,
    op: &str,
    args: &T,
) -> Result<(), EncodeError> {
    #[derive(Serialize)]
    struct Req<'a, T: ?Sized> {
        id: u64,
        op: &'a str,
        args: &'a T,
    }
    encode_into(out, &Req { id, op, args })
}

/// Converts an untyped msgpack value into `T`, with a message fit for a `bad_request`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    rmpv::ext::from_value(value).map_err(|e| e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    // Most frames are small: one allocation instead of a few growths.
    let mut out = Vec::with_capacity(256);
    encode_into(&mut out, value)?;
    Ok(out)
}

/// Appends one frame (length prefix and body) to `out`; on error `out` is left as it was.
fn encode_into<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    let body = rmp_serde::encode::write_named(out, value)
        .map_err(|e| EncodeError(e.to_string()))
        .and_then(|()| {
            u32::try_from(out.len() - start - 4).map_err(|_| EncodeError("frame over 4 GiB".into()))
        });
    match body {
        Ok(len) => {
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn decode_map(body: &[u8]) -> Result<Vec<(Value, Value)>, DecodeError> {
    let mut cursor = body;
    let value = rmpv::decode::read_value(&mut cursor)
        .map_err(|e| DecodeError::BadFrame(format!("not msgpack: {e}")))?;
    if !cursor.is_empty() {
        return Err(DecodeError::BadFrame(format!(
            "{} trailing bytes after the msgpack map",
            cursor.len()
        )));
    }
    match value {
        Value::Map(entries) => Ok(entries),
        other => Err(DecodeError::BadFrame(format!(
            "frame is a msgpack {}, not a map",
            kind(&other)
        ))),
    }
}

fn field<'a>(map: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// Moves a field's value out of the map.
fn take(map: &mut [(Value, Value)], name: &str) -> Option<Value> {
    map.iter_mut()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| std::mem::replace(v, Value::Nil))
}

fn bad_request(id: u64, message: impl Into<String>) -> DecodeError {
    DecodeError::BadRequest {
        id,
        message: message.into(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn decode(body: &[u8]) -> Result<Request, DecodeError> {
        decode_request(&Bytes::copy_from_slice(body))
    }

    fn incoming(body: &[u8]) -> Result<Incoming, DecodeError> {
        decode_incoming(&Bytes::copy_from_slice(body))
    }

    fn body(frame: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4, "length prefix counts the body");
        &frame[4..]
    }

    #[test]
    fn request_round_trips_with_string_keys() {
        let frame =
            encode_request(7, "mailbox.send", &serde_json::json!({"mailbox": "b"})).unwrap();
        let req = decode(body(&frame)).unwrap();
        assert_eq!(req.id, 7);
        assert_eq!(req.op, "mailbox.send");
        let args: serde_json::Value = req.args.parse().unwrap();
        assert_eq!(args["mailbox"].as_str(), Some("b"));
    }

    #[test]
    fn the_fast_path_reads_what_the_general_path_reads() {
        let value = serde_json::json!({"key": "k", "value": {"a": [1, -2.5, null, "s"]}});
        let binary = Value::Map(vec![(Value::from("b"), Value::Binary(vec![1]))]);
        let bodies = [
            body(&encode_request(9, "cache.set", &value).unwrap()).to_vec(),
            body(&encode_request(u64::MAX, "ping", &()).unwrap()).to_vec(),
            body(&encode_request(3, "x", &binary).unwrap()).to_vec(),
            // {"z": [1, 2, 3], "id": 4, "id": 5, "op": "o", "args": nil}: an unknown key,
            // duplicate keys (the first counts), nil args.
            [
                0x85, 0xa1, b'z', 0x93, 1, 2, 3, 0xa2, b'i', b'd', 4, 0xa2, b'i', b'd', 5,
            ]
            .into_iter()
            .chain([
                0xa2, b'o', b'p', 0xa1, b'o', 0xa4, b'a', b'r', b'g', b's', 0xc0,
            ])
            .collect(),
        ];
        for bytes in bodies.map(Bytes::from) {
            let fast = envelope(&bytes, &mut Found::default())
                .expect("the usual shape takes the fast path");
            assert_eq!(Ok(fast), decode_request_value(&bytes));
        }
        let odd = Value::Map(vec![(Value::from(1), Value::from(2))]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &odd).unwrap();
        let odd = Bytes::from(bytes);
        assert!(
            envelope(&odd, &mut Found::default()).is_none(),
            "a non-string key takes the general path"
        );

        let ok = Bytes::copy_from_slice(body(&encode_ok(7, &value).unwrap()));
        let fast = ok_response(&ok).expect("an ok response takes the fast path");
        assert_eq!(Ok(fast), decode_incoming_value(&ok));
    }

    #[test]
    fn args_keep_the_payload_checks() {
        let args = |v: Value| {
            let frame = encode_request(1, "x", &Value::Map(vec![(Value::from("p"), v)])).unwrap();
            decode(body(&frame)).unwrap().args
        };
        #[derive(serde::Deserialize, Debug)]
        struct P {
            #[allow(dead_code)]
            p: crate::Json,
        }
        assert!(args(Value::from("ok")).parse::<P>().is_ok());
        assert!(args(Value::Binary(vec![1])).parse::<P>().is_err());
        assert!(args(Value::Ext(3, vec![0])).parse::<P>().is_err());
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(Value::from(1), |v, _| Value::Array(vec![v]))
    }

    fn with_arg(v: Value) -> Vec<u8> {
        encode_request(5, "x", &Value::Map(vec![(Value::from("p"), v)])).unwrap()
    }

    #[test]
    fn a_request_knows_how_deeply_its_args_nest() {
        let depth = |v| decode(body(&with_arg(v))).unwrap().depth;
        assert_eq!(depth(Value::from(1)), 0);
        assert_eq!(depth(nested(64)), 64);
        assert_eq!(depth(nested(65)), 65);
        // {"id": 5, "op": "x", "args": {"p": [[[...1]]]}}, 5000 arrays deep, as bytes.
        let mut deep = vec![0x83, 0xa2, b'i', b'd', 5, 0xa2, b'o', b'p', 0xa1, b'x'];
        deep.extend([0xa4, b'a', b'r', b'g', b's', 0x81, 0xa1, b'p']);
        deep.extend(std::iter::repeat_n(0x91, 5000).chain([1]));
        let depth_of_deep = decode(&deep).unwrap().depth;
        assert!(depth_of_deep > 1000, "any depth is measured, none recursed");
        let general = Value::Map(vec![
            (Value::from("id"), Value::from(5)),
            (Value::from("op"), Value::from("x")),
            (Value::from(1), Value::from(1)),
            (
                Value::from("args"),
                Value::Map(vec![(Value::from("p"), nested(3))]),
            ),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &general).unwrap();
        assert_eq!(
            decode(&bytes).unwrap().depth,
            3,
            "the general path measures too"
        );
    }

    #[test]
    fn the_reserved_marker_anywhere_is_a_bad_frame() {
        // {"z": 0xc1, "id": 5, "op": "x", "args": {"p": "a\0b"}}, and 0xc1 inside the args.
        let tail = [
            0xa2, b'o', b'p', 0xa1, b'x', 0xa4, b'a', b'r', b'g', b's', 0x81, 0xa1, b'p',
        ];
        let mut before = vec![0x84, 0xa1, b'z', 0xc1, 0xa2, b'i', b'd', 5];
        before.extend(tail);
        before.extend([0xa3, b'a', 0, b'b']);
        let mut inside = vec![0x83, 0xa2, b'i', b'd', 5];
        inside.extend(tail);
        inside.extend([0x92, 0xc1, 0xa3, b'a', 0, b'b']);
        for body in [before, inside] {
            assert!(matches!(decode(&body), Err(DecodeError::BadFrame(_))));
        }
    }

    #[test]
    fn entries_beside_the_args_do_not_count_in_their_depth() {
        // {"id": 5, "op": "x", "args": {"p": [[1]]}, <key>: 100 arrays deep}: a string key
        // takes the fast path, an integer key the general one.
        for key in [Value::from("z"), Value::from(7)] {
            let frame = Value::Map(vec![
                (Value::from("id"), Value::from(5)),
                (Value::from("op"), Value::from("x")),
                (
                    Value::from("args"),
                    Value::Map(vec![(Value::from("p"), nested(2))]),
                ),
                (key, nested(100)),
            ]);
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &frame).unwrap();
            assert_eq!(decode(&bytes).unwrap().depth, 2);
        }
    }

    #[test]
    fn nul_anywhere_and_non_finite_floats_are_bad_requests_that_keep_the_id() {
        let key = Value::Map(vec![(Value::from("k\0"), Value::from(1))]);
        let refused = [
            with_arg(Value::from("a\0b")),
            with_arg(Value::Array(vec![key])),
            with_arg(Value::F64(f64::NAN)),
            encode_request(5, "x\0", &()).unwrap(),
            encode_request(5, "x", &Value::Map(vec![(Value::from("\0"), Value::Nil)])).unwrap(),
        ];
        for frame in refused {
            match decode(body(&frame)) {
                Err(DecodeError::BadRequest { id: 5, message }) => {
                    assert!(!message.contains('\0'), "{message:?}")
                }
                other => panic!("expected a bad request, got {other:?}"),
            }
        }
        assert!(decode(body(&with_arg(Value::F64(f64::MAX)))).is_ok());
    }

    #[test]
    fn requests_append_to_a_buffer_whole_or_not_at_all() {
        let mut out = encode_request(1, "a", &()).unwrap();
        let first = out.len();
        encode_request_into(&mut out, 2, "b", &()).unwrap();
        assert_eq!(decode(body(&out[first..])).unwrap().op, "b");
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        assert!(encode_request_into(&mut out, 3, "c", &Refuses).is_err());
        assert_eq!(
            decode(body(&out[first..])).unwrap().id,
            2,
            "nothing appended"
        );
    }

    #[test]
    fn missing_args_are_an_empty_map() {
        let frame = encode_request(1, "ping", &()).unwrap();
        let req = decode(body(&frame)).unwrap();
        assert_eq!(
            req.args.parse::<serde_json::Value>(),
            Ok(serde_json::json!({}))
        );
    }

    #[test]
    fn non_map_and_trailing_bytes_are_bad_frames() {
        let arr = rmp_serde::to_vec(&[1, 2, 3]).unwrap();
        assert!(matches!(decode(&arr), Err(DecodeError::BadFrame(_))));
        let mut two = rmp_serde::to_vec_named(&serde_json::json!({"id": 1})).unwrap();
        two.push(0xc0);
        assert!(matches!(decode(&two), Err(DecodeError::BadFrame(_))));
        assert!(matches!(decode(&[0xc1]), Err(DecodeError::BadFrame(_))));
    }

    #[test]
    fn mistyped_fields_are_bad_requests_that_keep_the_id() {
        let raw = rmp_serde::to_vec_named(&serde_json::json!({"id": 9, "op": 3})).unwrap();
        assert_eq!(
            decode(&raw),
            Err(DecodeError::BadRequest {
                id: 9,
                message: "op must be a string".into()
            })
        );
        let raw = rmp_serde::to_vec_named(&serde_json::json!({"op": "x"})).unwrap();
        assert!(matches!(
            decode(&raw),
            Err(DecodeError::BadRequest { id: 0, .. })
        ));
    }

    #[test]
    fn responses_and_pushes_decode() {
        let ok = encode_ok(3, &serde_json::json!({"x": 1})).unwrap();
        let Incoming::Response { id, result } = incoming(body(&ok)).unwrap() else {
            panic!("expected a response")
        };
        assert_eq!(id, 3);
        assert_eq!(result.unwrap().value().unwrap()["x"].as_u64(), Some(1));

        let err = encode_err(4, &ErrorBody::new(ErrorCode::NotFound, "gone", false));
        let Incoming::Response { result, .. } = incoming(body(&err)).unwrap() else {
            panic!("expected a response")
        };
        assert_eq!(result.unwrap_err().code, ErrorCode::NotFound);

        let push = encode_push("sub-1", &"hi").unwrap();
        assert_eq!(
            incoming(body(&push)).unwrap(),
            Incoming::Push {
                push: "sub-1".into(),
                data: Value::from("hi")
            }
        );
    }
}
