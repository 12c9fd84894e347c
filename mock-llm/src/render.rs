//! How a scripted reply looks in each wire format, as one JSON body or as SSE events.

use crate::{Api, Reply};
use axum::body::Body;
use axum::response::Response;
use serde_json::{json, Value};
use std::convert::Infallible;

/// The whole answer as one JSON body.
pub fn json(api: Api, model: &str, reply: &Reply) -> Value {
    match (api, reply) {
        (
            Api::OpenAi,
            Reply::ToolCall {
                id,
                name,
                arguments,
            },
        ) => openai(
            model,
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": id,
                "type": "function", "function": {"name": name, "arguments": arguments.to_string()}}]}),
            "tool_calls",
            (10, 5),
        ),
        (Api::OpenAi, reply) => openai(
            model,
            json!({"role": "assistant", "content": text(reply)}),
            "stop",
            usage(reply),
        ),
        (
            Api::Anthropic,
            Reply::ToolCall {
                id,
                name,
                arguments,
            },
        ) => anthropic(
            model,
            json!([{"type": "tool_use", "id": id, "name": name, "input": arguments}]),
            "tool_use",
            (10, 5),
        ),
        (Api::Anthropic, reply) => anthropic(
            model,
            json!([{"type": "text", "text": text(reply)}]),
            "end_turn",
            usage(reply),
        ),
    }
}

fn openai(model: &str, message: Value, finish: &str, (i, o): (u64, u64)) -> Value {
    json!({"id": "chatcmpl-mock", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}})
}

fn anthropic(model: &str, content: Value, stop: &str, (i, o): (u64, u64)) -> Value {
    json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop,
        "usage": {"input_tokens": i, "output_tokens": o}})
}

fn text(reply: &Reply) -> &str {
    match reply {
        Reply::Text { text, .. } | Reply::Cut { text } => text,
        _ => "",
    }
}

fn usage(reply: &Reply) -> (u64, u64) {
    match reply {
        Reply::Text {
            input_tokens,
            output_tokens,
            ..
        } => (*input_tokens, *output_tokens),
        _ => (10, 5),
    }
}

/// Text split into words, as a provider streams it.
fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

/// The answer as an SSE stream (ending early for [`Reply::Cut`]).
pub fn stream(api: Api, model: &str, reply: &Reply) -> Response {
    let events = match api {
        Api::OpenAi => openai_events(model, reply),
        Api::Anthropic => anthropic_events(model, reply),
    };
    let cut = matches!(reply, Reply::Cut { .. });
    let keep = if cut { events.len() / 2 } else { events.len() };
    let chunks: Vec<Result<String, Infallible>> = events.into_iter().take(keep).map(Ok).collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap()
}

fn data(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn openai_events(model: &str, reply: &Reply) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        data(
            json!({"id": "c", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(json!({"role": "assistant"}), Value::Null)];
    let finish = match reply {
        Reply::ToolCall {
            id,
            name,
            arguments,
        } => {
            let args = arguments.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                "function": {"name": name, "arguments": a}}]}),
                Value::Null,
            ));
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
                Value::Null,
            ));
            "tool_calls"
        }
        reply => {
            for piece in pieces(text(reply)) {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
            "stop"
        }
    };
    events.push(chunk(json!({}), json!(finish)));
    let (i, o) = usage(reply);
    events.push(data(
        json!({"id": "c", "object": "chat.completion.chunk", "model": model,
        "choices": [], "usage": {"prompt_tokens": i, "completion_tokens": o}}),
    ));
    events.push("data: [DONE]\n\n".into());
    events
}

fn anthropic_events(model: &str, reply: &Reply) -> Vec<String> {
    let event = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let (i, o) = usage(reply);
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
        "usage": {"input_tokens": i, "output_tokens": 1}}}),
    )];
    let stop = match reply {
        Reply::ToolCall {
            id,
            name,
            arguments,
        } => {
            events.push(event("content_block_start", json!({"type": "content_block_start",
                "index": 0, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
            let args = arguments.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            for part in [a, b] {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta",
                    "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            "tool_use"
        }
        reply => {
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start",
                "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for piece in pieces(text(reply)) {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta",
                    "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            "end_turn"
        }
    };
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop}, "usage": {"output_tokens": o}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}
