//! The mock's control routes, for test suites in other languages that cannot call [`MockLlm`]
//! directly: `POST /mock/replies` queues answers, `GET /mock/received` lists the requests seen.
//!
//! A reply is JSON in one of these shapes (`api` is `"anthropic"` or `"openai"`):
//! `{"api", "text", "input_tokens"?, "output_tokens"?}`,
//! `{"api", "tool_call": {"id", "name", "arguments"}}`,
//! `{"api", "status", "message"?, "retry_after"?}`, `{"api", "cut": "text"}`, and any of them
//! with `"delay_ms"` to wait first. The body is one reply or an array of them.

use super::{Api, Received, Reply, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// `POST /mock/replies`: queues one reply or an array of them, in order.
pub async fn replies(State(script): State<Shared>, Json(body): Json<Value>) -> Response {
    let items = match body {
        Value::Array(items) => items,
        one => vec![one],
    };
    let parsed: Result<Vec<(Api, Reply)>, String> = items.iter().map(parse).collect();
    match parsed {
        Ok(parsed) => {
            let mut s = script.lock().unwrap();
            for (api, reply) in parsed {
                s.replies.entry(api).or_default().push_back(reply);
            }
            Json(json!({"queued": items.len()})).into_response()
        }
        Err(why) => (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response(),
    }
}

/// `GET /mock/received`: every recorded request, oldest first, as `{api, headers, body}`.
pub async fn received(State(script): State<Shared>) -> Json<Value> {
    let s = script.lock().unwrap();
    Json(Value::Array(s.received.iter().map(render).collect()))
}

fn render(r: &Received) -> Value {
    json!({"api": api_name(r.api), "headers": r.headers, "body": r.body})
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
    }
}

fn parse(item: &Value) -> Result<(Api, Reply), String> {
    let api = match item["api"].as_str() {
        Some("anthropic") => Api::Anthropic,
        Some("openai") => Api::OpenAi,
        _ => {
            return Err(format!(
                "reply needs api \"anthropic\" or \"openai\": {item}"
            ))
        }
    };
    let reply = reply(item)?;
    Ok(match item["delay_ms"].as_u64() {
        Some(ms) => (
            api,
            Reply::Delay(Duration::from_millis(ms), Box::new(reply)),
        ),
        None => (api, reply),
    })
}

fn reply(item: &Value) -> Result<Reply, String> {
    let text = |key: &str| item[key].as_str().map(str::to_owned);
    if let Some(t) = text("text") {
        return Ok(Reply::Text {
            text: t,
            input_tokens: item["input_tokens"].as_u64().unwrap_or(10),
            output_tokens: item["output_tokens"].as_u64().unwrap_or(5),
        });
    }
    if let Some(call) = item.get("tool_call") {
        let field = |key: &str| call[key].as_str().unwrap_or_default().to_owned();
        return Ok(Reply::ToolCall {
            id: field("id"),
            name: field("name"),
            arguments: call["arguments"].clone(),
        });
    }
    if let Some(status) = item["status"].as_u64() {
        return Ok(Reply::Status {
            status: status as u16,
            message: text("message").unwrap_or_else(|| "mock error".into()),
            retry_after: item["retry_after"].as_u64(),
        });
    }
    match text("cut") {
        Some(t) => Ok(Reply::Cut { text: t }),
        None => Err(format!(
            "reply needs text, tool_call, status or cut: {item}"
        )),
    }
}
