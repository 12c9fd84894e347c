//! Arbitrary bytes as a request frame's body through `decode_request`: it answers a request or a
//! typed error, never panics. A `BadFrame` is a body that is not exactly one msgpack map; a
//! request it returns is the one the body holds (first `id`, `op` and `args` of the map), breaks
//! no rule that every value must meet (no U+0000 anywhere, finite floats), reports how deeply
//! its args nest, and encodes back into a frame that decodes to the same request.
#![no_main]

use bytes::Bytes;
use ikigai_fuzz::{depth, encode, field, frame_refusal, has_invalid_utf8};
use ikigai_protocol::{decode_request, DecodeError, Request, Value};
use libfuzzer_sys::fuzz_target;

/// Deeper than any input of the runs' `-max_len` can nest: the oracle reads every body whole.
const ORACLE_DEPTH: usize = 1 << 16;

/// The body as one value, if it is exactly one.
fn whole(body: &[u8], max_depth: usize) -> Option<Value> {
    let mut cur = body;
    let value = rmpv::decode::read_value_with_max_depth(&mut cur, max_depth).ok()?;
    cur.is_empty().then_some(value)
}

/// The request a well-formed map holds, or `None` when its `id`, `op` or `args` is missing or
/// mistyped.
fn request_of(map: &[(Value, Value)]) -> Option<(u64, String, Value)> {
    let id = field(map, "id")?.as_u64()?;
    let op = field(map, "op")?.as_str()?.to_owned();
    let args = match field(map, "args") {
        None | Some(Value::Nil) => Value::Map(Vec::new()),
        Some(args @ Value::Map(_)) => args.clone(),
        Some(_) => return None,
    };
    Some((id, op, args))
}

fn check_request(req: &Request, map: &[(Value, Value)], whole: &Value) {
    let (id, op, args) = request_of(map).expect("a request only from a well-formed map");
    assert_eq!((req.id, &req.op), (id, &op));
    // `Raw::value` reads what the daemon's `max_depth` allows, and far more, not everything; a
    // `str` that is not UTF-8 (refused by every op's parse) it reads as `bin`.
    let readable = depth(&args) < 500 && !has_invalid_utf8(&args);
    if readable {
        assert_eq!(req.args.value().as_ref(), Ok(&args));
    }
    assert_eq!(frame_refusal(whole), None, "a request breaks no rule");
    assert_eq!(req.depth, depth(&args) - 1, "depth below the args map");
    let fields = [("id", Value::from(id)), ("op", Value::from(op.as_str()))];
    let mut map: Vec<_> = fields.map(|(k, v)| (Value::from(k), v)).into();
    map.push((Value::from("args"), args.clone()));
    // The same request, its integers perhaps shorter: compared as values.
    let again = decode_request(&encode(&Value::Map(map)).into()).expect("decodes again");
    assert_eq!((again.id, &again.op, again.depth), (id, &op, req.depth));
    if readable {
        assert_eq!(
            again.args.value(),
            Ok(args),
            "re-encoding reproduces the request"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let decoded = decode_request(&body);
    let value = whole(data, ORACLE_DEPTH);
    let map = match &value {
        Some(Value::Map(map)) => Some(map),
        _ => None,
    };
    match (&decoded, map) {
        (Ok(req), Some(map)) => check_request(req, map, value.as_ref().unwrap()),
        (Ok(req), None) => panic!("{req:?} from a body that is not one map"),
        // The general path reads values at most 1024 deep: a deeper map is not msgpack to it,
        // nor is one holding the reserved marker 0xc1 (which rmpv reads as nil).
        (Err(DecodeError::BadFrame(_)), Some(_)) => {
            assert!(whole(data, 1024).is_none() || data.contains(&0xc1))
        }
        (Err(DecodeError::BadFrame(_)), None) => {}
        (Err(DecodeError::BadRequest { id, message }), Some(map)) => {
            assert!(!message.contains('\0'), "{message:?}");
            let request = request_of(map);
            if let Some((want, ..)) = &request {
                assert_eq!(id, want, "a bad request keeps a readable id");
            }
            let broken = frame_refusal(value.as_ref().unwrap());
            assert!(
                request.is_none() || broken.is_some(),
                "refused for no reason"
            );
        }
        (Err(e @ DecodeError::BadRequest { .. }), None) => panic!("{e:?} from no map"),
    }
});
