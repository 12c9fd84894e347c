//! Structured values (an `arbitrary` tree, see `ikigai_fuzz::tree`) sent as a payload through
//! the daemon's path: `decode_request`, the `[daemon] max_depth` check, then the args parsed as
//! `Json` and as `Packed`. A payload is refused exactly when the oracle (computed here on the
//! value, without the protocol crate) says it breaks a rule, its depth is measured exactly, and
//! an accepted payload is the JSON the oracle makes of it, both ways.
#![no_main]

use bytes::Bytes;
use ikigai_fuzz::tree::Tree;
use ikigai_fuzz::{depth, encode, json_of, payload_refusal};
use ikigai_protocol::{decode_request, DecodeError, Json, Packed, Value};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The shipped `[daemon] max_depth`.
const MAX_DEPTH: usize = 64;

/// Containers the walk follows one by one (`check::TRACKED_DEPTH`); deeper values count as
/// deeper than that and are not measured exactly.
const TRACKED: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args<P> {
    p: P,
}

/// What the daemon does with `{"p": payload}`: the payload as `Json` and as `Packed`, or the
/// refusal.
fn daemon(payload: &Value) -> Result<(Json, Packed), String> {
    let args = Value::Map(vec![(Value::from("p"), payload.clone())]);
    let fields = [("id", Value::from(1)), ("op", Value::from("storage.put")), ("args", args)];
    let body = encode(&Value::Map(fields.map(|(k, v)| (Value::from(k), v)).into()));
    let req = decode_request(&Bytes::from(body)).map_err(|e| match e {
        DecodeError::BadRequest { id: 1, message } => message,
        other => panic!("a well-formed request frame is not {other:?}"),
    })?;
    // {"p": payload}: the payload nests one level less than its args.
    let oracle = depth(payload);
    match oracle < TRACKED - 2 {
        true => assert_eq!(req.depth, oracle, "depth measured exactly"),
        false => assert!(req.depth > MAX_DEPTH, "depth {} of {oracle}", req.depth),
    }
    if req.depth > MAX_DEPTH {
        return Err(format!("nests {} levels deep", req.depth));
    }
    let json = req.args.parse::<Args<Json>>()?.p;
    let packed = req.args.parse::<Args<Packed>>()?.p;
    Ok((json, packed))
}

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = Tree::from_bytes(data) else {
        return;
    };
    let payload = tree.to_value();
    let broken = payload_refusal(&payload).or((depth(&payload) > MAX_DEPTH).then_some("depth"));
    match (daemon(&payload), broken) {
        (Ok((json, packed)), None) => {
            let want = json_of(&payload).expect("an accepted payload has a JSON form");
            assert_eq!(json.0, want);
            assert_eq!(serde_json::to_value(&packed).ok(), Some(want));
        }
        (Err(_), Some(_)) => {}
        (Ok(_), Some(rule)) => panic!("accepted although it breaks {rule}: {payload:?}"),
        (Err(why), None) => panic!("refused ({why}) although it breaks no rule: {payload:?}"),
    }
});
