//! Frame bodies: one msgpack map per frame, decoded into requests, responses and pushes.
//!
//! Requests are `{"id": uint, "op": str, "args": map}`; responses `{"id", "ok": value}` or
//! `{"id", "err": {code, message, retriable}}`; server pushes `{"push": str, "data": value}`.
//! Every encoder here returns the whole frame, length prefix included.

use crate::error::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

pub use rmpv::Value;

/// A decoded request. `args` is still untyped: each op converts it with [`from_value`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub op: String,
    pub args: Value,
}

/// What a client reads from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Response {
        id: u64,
        result: Result<Value, ErrorBody>,
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

/// Decodes one request frame body.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
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
        Some(v @ Value::Map(_)) => v,
        Some(Value::Nil) | None => Value::Map(Vec::new()),
        Some(_) => return Err(bad_request(id, "args must be a map")),
    };
    Ok(Request { id, op, args })
}

/// Decodes one frame body sent by the daemon.
pub fn decode_incoming(body: &[u8]) -> Result<Incoming, DecodeError> {
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
        (Some(ok), None) => Ok(ok),
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
    #[derive(Serialize)]
    struct Req<'a, T: ?Sized> {
        id: u64,
        op: &'a str,
        args: &'a T,
    }
    encode(&Req { id, op, args })
}

/// Converts an untyped msgpack value into `T`, with a message fit for a `bad_request`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    rmpv::ext::from_value(value).map_err(|e| e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    // Most frames are small: one allocation instead of a few growths.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[0u8; 4]);
    rmp_serde::encode::write_named(&mut out, value).map_err(|e| EncodeError(e.to_string()))?;
    let len = u32::try_from(out.len() - 4).map_err(|_| EncodeError("frame over 4 GiB".into()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
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

    fn body(frame: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4, "length prefix counts the body");
        &frame[4..]
    }

    #[test]
    fn request_round_trips_with_string_keys() {
        let frame =
            encode_request(7, "mailbox.send", &serde_json::json!({"mailbox": "b"})).unwrap();
        let req = decode_request(body(&frame)).unwrap();
        assert_eq!(req.id, 7);
        assert_eq!(req.op, "mailbox.send");
        assert_eq!(req.args["mailbox"].as_str(), Some("b"));
    }

    #[test]
    fn missing_args_are_an_empty_map() {
        let frame = encode_request(1, "ping", &()).unwrap();
        let req = decode_request(body(&frame)).unwrap();
        assert_eq!(req.args, Value::Map(vec![]));
    }

    #[test]
    fn non_map_and_trailing_bytes_are_bad_frames() {
        let arr = rmp_serde::to_vec(&[1, 2, 3]).unwrap();
        assert!(matches!(
            decode_request(&arr),
            Err(DecodeError::BadFrame(_))
        ));
        let mut two = rmp_serde::to_vec_named(&serde_json::json!({"id": 1})).unwrap();
        two.push(0xc0);
        assert!(matches!(
            decode_request(&two),
            Err(DecodeError::BadFrame(_))
        ));
        assert!(matches!(
            decode_request(&[0xc1]),
            Err(DecodeError::BadFrame(_))
        ));
    }

    #[test]
    fn mistyped_fields_are_bad_requests_that_keep_the_id() {
        let raw = rmp_serde::to_vec_named(&serde_json::json!({"id": 9, "op": 3})).unwrap();
        assert_eq!(
            decode_request(&raw),
            Err(DecodeError::BadRequest {
                id: 9,
                message: "op must be a string".into()
            })
        );
        let raw = rmp_serde::to_vec_named(&serde_json::json!({"op": "x"})).unwrap();
        assert!(matches!(
            decode_request(&raw),
            Err(DecodeError::BadRequest { id: 0, .. })
        ));
    }

    #[test]
    fn responses_and_pushes_decode() {
        let ok = encode_ok(3, &serde_json::json!({"x": 1})).unwrap();
        let Incoming::Response { id, result } = decode_incoming(body(&ok)).unwrap() else {
            panic!("expected a response")
        };
        assert_eq!(id, 3);
        assert_eq!(result.unwrap()["x"].as_u64(), Some(1));

        let err = encode_err(4, &ErrorBody::new(ErrorCode::NotFound, "gone", false));
        let Incoming::Response { result, .. } = decode_incoming(body(&err)).unwrap() else {
            panic!("expected a response")
        };
        assert_eq!(result.unwrap_err().code, ErrorCode::NotFound);

        let push = encode_push("sub-1", &"hi").unwrap();
        assert_eq!(
            decode_incoming(body(&push)).unwrap(),
            Incoming::Push {
                push: "sub-1".into(),
                data: Value::from("hi")
            }
        );
    }
}
