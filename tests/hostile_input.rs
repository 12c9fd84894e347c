//! Hostile and broken input over the socket, as a specification (docs/protocol.md §5 and §6):
//! every class of bad value gets a typed error, the well-formed requests around it are answered,
//! the daemon keeps serving, and nothing in its log panicked or answered `internal`.

mod support;

use rmpv::Value;
use serde_json::json;
use std::collections::HashMap;
use support::{Daemon, Raw};

/// A task id no task has: settlements of it get past their depth and type checks.
const NO_TASK: &str = "0190f4c2-8a3e-7b1c-9d2e-3f4a5b6c7d8e";

/// `v` inside `levels` arrays.
fn nested(levels: usize, v: Value) -> Value {
    (0..levels).fold(v, |v, _| Value::Array(vec![v]))
}

/// The same in JSON, as the Rust client sends it.
fn nested_json(levels: usize) -> serde_json::Value {
    (0..levels).fold(json!("leaf"), |v, _| json!([v]))
}

/// `template` as msgpack with its string `"@"` replaced by `hole`, and how many containers of
/// the args (their own map not counted, as `[daemon] max_depth` counts) hold the hole.
fn with_hole(template: &serde_json::Value, hole: &Value) -> (Value, usize) {
    fn fill(t: &serde_json::Value, hole: &Value, level: usize, at: &mut usize) -> Value {
        match t {
            serde_json::Value::String(s) if s == "@" => {
                *at = level;
                hole.clone()
            }
            serde_json::Value::Array(items) => {
                Value::Array(items.iter().map(|i| fill(i, hole, level + 1, at)).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (Value::from(k.as_str()), fill(v, hole, level + 1, at)))
                    .collect(),
            ),
            other => rmpv::ext::to_value(other).unwrap(),
        }
    }
    let mut at = 0;
    let args = fill(template, hole, 0, &mut at);
    (args, at.saturating_sub(1))
}

/// Every op with a free-form value, the value at `"@"` (src/cmd/: every `Json` and `Packed` arg,
/// and the string args beside them that a value could be sent in place of).
fn free_form_ops() -> Vec<(&'static str, serde_json::Value)> {
    let user = json!({"role": "user", "content": "hi"});
    vec![
        ("queue.push", json!({"queue": "q", "payload": "@"})),
        (
            "queue.push_many",
            json!({"queue": "q", "tasks": [{"payload": "@"}]}),
        ),
        ("mailbox.send", json!({"mailbox": "admin", "payload": "@"})),
        ("storage.put", json!({"key": "k", "value": "@"})),
        ("cache.set", json!({"key": "k", "value": "@"})),
        ("pubsub.publish", json!({"topic": "t", "message": "@"})),
        ("telemetry.emit", json!({"event_type": "e", "payload": "@"})),
        ("queue.complete", json!({"id": NO_TASK, "result": "@"})),
        ("queue.fail", json!({"id": NO_TASK, "error": "@"})),
        (
            "llm.prompt",
            json!({"model": "m", "messages": [user], "metadata": "@"}),
        ),
        (
            "llm.prompt",
            json!({"model": "m", "messages": [user],
                   "tools": {"custom": [{"name": "t", "parameters": "@"}]}}),
        ),
        (
            "llm.prompt",
            json!({"model": "m", "messages": [{"role": "assistant",
                   "tool_calls": [{"id": "1", "name": "t", "arguments": "@"}]}]}),
        ),
        ("llm.tool_result", json!({"call_id": "c", "content": "@"})),
        (
            "agents.deploy",
            json!({"manifest": {"name": "a", "version": "1", "command": ["x"], "env": "@"}}),
        ),
    ]
}

#[tokio::test]
async fn args_nested_beyond_max_depth_are_refused_in_every_op_that_takes_a_value() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    let mut sent = Vec::new();
    for (op, template) in free_form_ops() {
        for depth in [65, 129, 1000] {
            let (_, at) = with_hole(&template, &Value::Nil);
            let (args, _) = with_hole(&template, &nested(depth - at, Value::from(1)));
            let id = 10 + sent.len() as u64;
            raw.request(id, op, &args).await;
            sent.push((id, op, depth));
        }
    }
    // 100,000 levels, as bytes (a tree of values that deep would overflow this test's stack).
    let mut deep = vec![0x83, 0xa2, b'i', b'd', 9, 0xa2, b'o', b'p', 0xac];
    deep.extend(b"mailbox.send");
    deep.extend([0xa4, b'a', b'r', b'g', b's', 0x82, 0xa7]);
    deep.extend(b"mailbox");
    deep.extend([0xa1, b'm', 0xa7]);
    deep.extend(b"payload");
    deep.extend(std::iter::repeat_n(0x91, 100_000).chain([1]));
    let mut frame = (deep.len() as u32).to_be_bytes().to_vec();
    frame.extend(deep);
    raw.send(&frame).await;
    sent.push((9, "mailbox.send", 100_000));
    let replies = raw.frames_by_id(sent.len()).await;
    for (id, op, depth) in sent {
        let reply = &replies[&id];
        assert_eq!(
            reply["err"]["code"], "bad_request",
            "{op} at {depth}: {reply}"
        );
        let message = reply["err"]["message"].as_str().unwrap();
        assert!(
            message.contains("64 levels") && message.contains("[daemon] max_depth"),
            "{op} at {depth} names the limit: {message}"
        );
    }
    d.assert_serving().await;
    d.assert_no_panic_nor_internal();
}

#[tokio::test]
async fn values_64_levels_deep_are_accepted_and_read_back_intact() {
    let d = Daemon::start().await;
    let c = d.admin().await;
    let deep = nested_json(64);
    assert_read_back_everywhere(&d, &c, "deep", &deep).await;
    let inner = nested_json(62);
    let tasks = json!({"queue": "deep", "tasks": [{"payload": inner}]});
    call(&c, "queue.push_many", tasks).await;
    let got = call(&c, "queue.claim", json!({"queue": "deep", "max": 2})).await;
    assert_eq!(got["tasks"][0]["payload"], deep, "queue.push");
    assert_eq!(got["tasks"][1]["payload"], inner, "queue.push_many");
    let id = got["tasks"][0]["id"].clone();
    let done = call(&c, "queue.complete", json!({"id": id, "result": deep})).await;
    assert_eq!(done["result"], deep, "queue.complete");
    d.assert_no_panic_nor_internal();
}

/// The reply of `op`, which must succeed.
async fn call(c: &ikigai_client::Client, op: &str, args: serde_json::Value) -> serde_json::Value {
    let reply = c.call::<_, serde_json::Value>(op, &args).await;
    reply.unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// Stores `value` through every store (storage, cache, a mailbox, a queue, pub/sub, telemetry)
/// under `name`, and asserts that each reads it back as it was sent.
async fn assert_read_back_everywhere(
    d: &Daemon,
    c: &ikigai_client::Client,
    name: &str,
    value: &serde_json::Value,
) {
    let key = json!({ "key": name });
    let stores = [
        (
            "storage.put",
            json!({"key": name, "value": value}),
            "storage.get",
            key.clone(),
            "/document/value",
        ),
        (
            "cache.set",
            json!({"key": name, "value": value}),
            "cache.get",
            key,
            "/value",
        ),
        (
            "mailbox.send",
            json!({"mailbox": "admin", "payload": value}),
            "mailbox.receive",
            json!({"mailbox": "admin"}),
            "/messages/0/payload",
        ),
        (
            "queue.push",
            json!({"queue": name, "payload": value}),
            "queue.list",
            json!({ "queue": name }),
            "/tasks/0/payload",
        ),
    ];
    for (write, args, read, read_args, at) in stores {
        call(c, write, args).await;
        let reply = call(c, read, read_args).await;
        assert_eq!(
            reply.pointer(at),
            Some(value),
            "{write}, then {read}: {reply}"
        );
    }

    call(c, "pubsub.subscribe", json!({ "topic": name })).await;
    call(
        c,
        "pubsub.publish",
        json!({"topic": name, "message": value}),
    )
    .await;
    let push = c.next_push().await.expect("the publication is pushed");
    let data: serde_json::Value = ikigai_protocol::from_value(push.data).unwrap();
    assert_eq!(&data["message"], value, "pubsub");

    call(
        c,
        "telemetry.emit",
        json!({"event_type": name, "payload": value}),
    )
    .await;
    let emitted = support::wait_for("the event is written", secs(10), || async {
        let events = d.events("admin", name).await;
        events.first().map(|e| e["payload"].clone())
    })
    .await;
    assert_eq!(&emitted, value, "telemetry");
}

fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}

/// Sends each `(op, args)` pipelined, then asserts that every one is answered `bad_request`;
/// returns the messages by op, for the cases that check what they say.
async fn all_bad_requests(raw: &mut Raw, cases: &[(&str, Value)]) -> HashMap<String, String> {
    for (i, (op, args)) in cases.iter().enumerate() {
        raw.request(100 + i as u64, op, args).await;
    }
    let replies = raw.frames_by_id(cases.len()).await;
    let mut messages = HashMap::new();
    for (i, (op, args)) in cases.iter().enumerate() {
        let reply = &replies[&(100 + i as u64)];
        assert_eq!(reply["err"]["code"], "bad_request", "{op} {args}: {reply}");
        let message = reply["err"]["message"].as_str().unwrap().to_owned();
        messages.insert(op.to_string(), message);
    }
    messages
}

fn mp(v: serde_json::Value) -> Value {
    rmpv::ext::to_value(v).unwrap()
}

#[tokio::test]
async fn nul_in_any_string_or_key_is_a_bad_request_never_internal() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    let nul = "a\u{0}b";
    let cases: Vec<(&str, Value)> = vec![
        (
            "mailbox.send",
            mp(json!({"mailbox": "m", "payload": {"s": nul}})),
        ),
        ("storage.put", mp(json!({"key": "k", "value": {nul: 1}}))),
        ("storage.put", mp(json!({"key": nul, "value": 1}))),
        ("agents.get", mp(json!({ "name": nul }))),
        ("threads.create", mp(json!({ "context": nul }))),
        ("storage.list", mp(json!({ "prefix": nul }))),
        ("telemetry.query", mp(json!({ "text": nul }))),
        ("telemetry.query", mp(json!({ "event_type": nul }))),
        (
            "telemetry.emit",
            mp(json!({"event_type": nul, "payload": 1})),
        ),
        ("mailbox.send", mp(json!({"mailbox": nul, "payload": 1}))),
        ("mailbox.peek", mp(json!({ "mailbox": nul }))),
        ("mailbox.stats", mp(json!({ "mailbox": nul }))),
        ("queue.push", mp(json!({"queue": nul, "payload": 1}))),
        ("queue.stats", mp(json!({ "queue": nul }))),
        ("queue.list", mp(json!({ "queue": nul }))),
        ("queue.fail", mp(json!({"id": NO_TASK, "error": nul}))),
        ("cache.get", mp(json!({ "key": nul }))),
        ("pubsub.subscribe", mp(json!({ "topic": nul }))),
        ("agents.token", mp(json!({ "name": nul }))),
        (
            "mailbox.send",
            mp(json!({"mailbox": "m", "payload": 1, nul: 1})),
        ),
        ("ping\u{0}", mp(json!({}))),
    ];
    let messages = all_bad_requests(&mut raw, &cases).await;
    assert!(messages["agents.get"].contains("U+0000"), "{messages:?}");
    d.assert_serving().await;
    d.assert_no_panic_nor_internal();
}

#[tokio::test]
async fn floats_without_a_json_form_are_refused() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    let mut cases = Vec::new();
    for float in [
        Value::F64(f64::NAN),
        Value::F64(f64::INFINITY),
        Value::F32(f32::NEG_INFINITY),
    ] {
        for (op, template) in free_form_ops().into_iter().take(8) {
            cases.push((op, with_hole(&template, &float).0));
        }
    }
    let messages = all_bad_requests(&mut raw, &cases).await;
    assert!(
        messages["storage.put"].contains("NaN or infinite"),
        "{messages:?}"
    );
    d.assert_serving().await;
    d.assert_no_panic_nor_internal();
}

#[tokio::test]
async fn extreme_numbers_round_trip_through_every_store() {
    let d = Daemon::start().await;
    let c = d.admin().await;
    let numbers = json!([
        u64::MAX,
        i64::MIN,
        i64::MAX,
        0,
        -1,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        0.1,
        0.30000000000000004,
        1.0000000000000002,
        123456789.12345679,
        1e21,
        1.5e-7,
        2.0
    ]);
    assert_read_back_everywhere(&d, &c, "n", &numbers).await;
    d.assert_no_panic_nor_internal();
}

#[tokio::test]
async fn durations_out_of_their_range_are_bad_requests() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    let ten_years = 10 * 366 * 24 * 3600 * 1000u64;
    let too_long = [1u64 << 63, u64::MAX, ten_years + 1];
    let mut cases = Vec::new();
    for ms in too_long
        .map(Value::from)
        .into_iter()
        .chain([Value::from(-1)])
    {
        let at = |t: serde_json::Value| with_hole(&t, &ms).0;
        cases.extend([
            (
                "cache.set",
                at(json!({"key": "k", "value": 1, "ttl_ms": "@"})),
            ),
            (
                "mailbox.receive",
                at(json!({"mailbox": "admin", "visibility_ms": "@"})),
            ),
            (
                "mailbox.receive",
                at(json!({"mailbox": "admin", "wait_ms": "@"})),
            ),
            (
                "queue.push",
                at(json!({"queue": "q", "payload": 1, "delay_ms": "@"})),
            ),
            (
                "queue.push_many",
                at(json!({"queue": "q", "tasks": [{"payload": 1, "delay_ms": "@"}]})),
            ),
            ("queue.claim", at(json!({"queue": "q", "lease_ms": "@"}))),
            ("queue.claim", at(json!({"queue": "q", "wait_ms": "@"}))),
            ("queue.extend", at(json!({"id": NO_TASK, "lease_ms": "@"}))),
            (
                "queue.fail",
                at(json!({"id": NO_TASK, "error": "e", "retry_in_ms": "@"})),
            ),
            ("llm.usage", at(json!({"since_ms": "@"}))),
        ]);
    }
    // Zero where the range starts at 1.
    cases.extend([
        (
            "cache.set",
            mp(json!({"key": "k", "value": 1, "ttl_ms": 0})),
        ),
        (
            "mailbox.receive",
            mp(json!({"mailbox": "admin", "visibility_ms": 0})),
        ),
        ("queue.claim", mp(json!({"queue": "q", "lease_ms": 0}))),
        ("queue.extend", mp(json!({"id": NO_TASK, "lease_ms": 0}))),
    ]);
    all_bad_requests(&mut raw, &cases).await;

    // The longest ttl is kept, not expired at once. (Pipelined requests run concurrently:
    // the get is sent once the set is answered.)
    raw.request(
        1,
        "cache.set",
        &json!({"key": "long", "value": 1, "ttl_ms": ten_years}),
    )
    .await;
    let set = raw.frame().await.expect("the set's reply");
    assert_eq!(set["ok"], json!({}), "{set:?}");
    raw.request(2, "cache.get", &json!({"key": "long"})).await;
    let get = raw.frame().await.expect("the get's reply");
    assert_eq!(get["ok"]["value"], 1, "{get:?}");
    d.assert_serving().await;
    d.assert_no_panic_nor_internal();
}

#[tokio::test]
async fn mistyped_missing_and_unknown_args_get_typed_errors() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    let cases: Vec<(&str, Value)> = vec![
        ("mailbox.send", mp(json!({"mailbox": 5, "payload": 1}))),
        (
            "mailbox.receive",
            mp(json!({"mailbox": "admin", "max": "3"})),
        ),
        (
            "storage.put",
            mp(json!({"key": "k", "value": 1, "if_version": "1"})),
        ),
        (
            "queue.push_many",
            mp(json!({"queue": "q", "tasks": {"payload": 1}})),
        ),
        ("queue.push", mp(json!({"queue": ["q"], "payload": 1}))),
        ("cache.get_many", mp(json!({"keys": {"a": 1}}))),
        ("mailbox.ack", mp(json!({"mailbox": "admin", "ids": "x"}))),
        (
            "llm.prompt",
            mp(json!({"model": "m", "messages": {"role": "user"}})),
        ),
        ("agents.deploy", mp(json!({"manifest": []}))),
        ("telemetry.query", mp(json!({"limit": -1}))),
        ("mailbox.send", mp(json!({}))),
        ("queue.complete", mp(json!({}))),
        ("storage.get", mp(json!({}))),
        (
            "mailbox.send",
            mp(json!({"mailbox": "m", "payload": 1, "extra": 1})),
        ),
        ("queue.complete", mp(json!({"id": "not a uuid"}))),
        ("mailbox.send", Value::Array(vec![Value::from(1)])),
        ("storage.get", Value::from("k")),
    ];
    all_bad_requests(&mut raw, &cases).await;

    raw.request(7, "no.such_op", &json!({})).await;
    Raw::assert_err(raw.frame().await, 7, "unknown_op");
    for envelope in [
        json!({"op": "ping", "args": {}}),
        json!({"id": "7", "op": "ping"}),
        json!({"id": -1, "op": "ping"}),
        json!({"id": 1.5, "op": "ping"}),
    ] {
        raw.send(&frame_of(&mp(envelope))).await;
        Raw::assert_err(raw.frame().await, 0, "bad_request");
    }
    raw.send(&frame_of(&mp(json!({"id": 8, "op": 5})))).await;
    Raw::assert_err(raw.frame().await, 8, "bad_request");
    d.assert_serving().await;
    d.assert_no_panic_nor_internal();
}

/// `body` as a frame: its length, then its msgpack.
fn frame_of(body: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, body).unwrap();
    let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
    frame.extend(bytes);
    frame
}

#[tokio::test]
async fn well_formed_requests_in_a_hostile_burst_are_all_answered() {
    let d = Daemon::start().await;
    let c = d.admin().await;
    c.call::<_, serde_json::Value>("storage.put", &json!({"key": "before", "value": {"n": 1}}))
        .await
        .unwrap();
    let mut raw = Raw::hello(&d).await;
    let deep = nested(1000, Value::from(1));
    let hostile: Vec<(&str, Value)> = vec![
        (
            "storage.put",
            with_hole(&json!({"key": "x", "value": "@"}), &deep).0,
        ),
        (
            "mailbox.send",
            mp(json!({"mailbox": "m", "payload": "\u{0}"})),
        ),
        (
            "cache.set",
            with_hole(&json!({"key": "x", "value": "@"}), &Value::F64(f64::NAN)).0,
        ),
        (
            "cache.set",
            mp(json!({"key": "x", "value": 1, "ttl_ms": u64::MAX})),
        ),
        ("queue.push", mp(json!({"queue": 5, "payload": 1}))),
    ];
    let mut burst = Vec::new();
    for (i, (op, args)) in hostile.iter().enumerate() {
        let good = 2 * i as u64;
        burst.extend(
            ikigai_protocol::encode_request(good + 1000, "storage.get", &json!({"key": "before"}))
                .unwrap(),
        );
        burst.extend(ikigai_protocol::encode_request(good + 1001, op, args).unwrap());
    }
    burst.extend(
        ikigai_protocol::encode_request(2000, "queue.push", &json!({"queue": "b", "payload": 1}))
            .unwrap(),
    );
    burst.extend(ikigai_protocol::encode_request(2001, "ping", &json!({})).unwrap());
    raw.send(&burst).await;
    let replies = raw.frames_by_id(2 * hostile.len() + 2).await;
    for i in 0..hostile.len() as u64 {
        let good = &replies[&(2 * i + 1000)];
        assert_eq!(good["ok"]["document"]["value"], json!({"n": 1}), "{good}");
        let bad = &replies[&(2 * i + 1001)];
        assert_eq!(bad["err"]["code"], "bad_request", "{bad}");
    }
    assert!(replies[&2000]["ok"]["id"].is_string(), "{}", replies[&2000]);
    assert_eq!(replies[&2001]["ok"], json!({}));
    d.assert_serving().await;
    d.assert_no_panic_nor_internal();
}

/// `n` distinct three-letter words, each with its separator: the search text Postgres stores
/// most of per byte.
fn distinct_words(n: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let word = |i: usize| [i / 1296, i / 36 % 36, i % 36].map(|d| letters[d] as char);
    (0..n)
        .map(|i| format!("{} ", String::from_iter(word(i))))
        .collect()
}

#[tokio::test]
async fn a_telemetry_payload_too_long_to_search_is_refused_and_its_neighbours_are_written() {
    let d = Daemon::start().await;
    let c = d.admin().await;
    let emit = |event_type: &'static str, text: String| {
        let args = json!({"event_type": event_type, "payload": {"text": text}});
        let c = &c;
        async move {
            c.call::<_, serde_json::Value>("telemetry.emit", &args)
                .await
        }
    };
    // 1.4 MB of strings, whose search text (2.4 MB) Postgres cannot store.
    let unsearchable = (0..200_000).map(|i| format!("w{i}x ")).collect();
    let too_long = emit("big", unsearchable).await;
    support::assert_code(too_long, ikigai_client::ErrorCode::BadRequest);
    emit("limit", distinct_words(32 * 1024)).await.unwrap();
    emit("small", "beside".into()).await.unwrap();
    for event_type in ["limit", "small"] {
        support::wait_until(event_type, secs(10), || async {
            d.events("admin", event_type).await.len() == 1
        })
        .await;
    }
    d.assert_no_panic_nor_internal();
    assert!(!d.log().contains("writing telemetry failed"), "{}", d.log());
}
