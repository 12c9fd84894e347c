//! The Anthropic Messages wire format (`POST /v1/messages`). Its `input_tokens` exclude cache
//! reads and writes; the normalised `input_tokens` add them back so that every provider counts
//! the whole prompt.

use super::{
    add_options, count, event_json, ChatRequest, ChatResponse, Message, Partial, ProviderError,
    Role, SseEvent, StopReason, ToolCall, Usage, Wire,
};
use serde_json::{json, Value};

pub struct Anthropic;

/// The API version this adapter speaks.
const VERSION: &str = "2023-06-01";

impl Wire for Anthropic {
    fn path(&self) -> &'static str {
        "/v1/messages"
    }

    fn auth(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", key.to_owned()),
            ("anthropic-version", VERSION.to_owned()),
        ]
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Value {
        let system: Vec<&str> = req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let mut body = json!({
            "model": req.model,
            "max_tokens": req.max_tokens,
            "messages": messages(&req.messages),
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        add_options(&mut body, req, |t| {
            json!({"name": t.name, "description": t.description,
                "input_schema": t.parameters})
        });
        if stream {
            body["stream"] = json!(true);
        }
        body
    }

    fn parse(&self, body: Value) -> Result<ChatResponse, ProviderError> {
        let Some(blocks) = body["content"].as_array() else {
            return Err(ProviderError::Decode("no content in the answer".into()));
        };
        let mut response = ChatResponse {
            usage: usage(&body["usage"]),
            stop_reason: stop_reason(&body["stop_reason"]),
            model: body["model"].as_str().unwrap_or("").to_owned(),
            ..ChatResponse::default()
        };
        for block in blocks {
            match block["type"].as_str() {
                Some("text") => response
                    .content
                    .push_str(block["text"].as_str().unwrap_or("")),
                Some("tool_use") => response.tool_calls.push(ToolCall {
                    id: block["id"].as_str().unwrap_or("").to_owned(),
                    name: block["name"].as_str().unwrap_or("").to_owned(),
                    arguments: block["input"].clone(),
                }),
                _ => {}
            }
        }
        Ok(response)
    }

    fn event(&self, event: &SseEvent, p: &mut Partial) -> Result<Option<String>, ProviderError> {
        let data = event_json(event)?;
        match data["type"].as_str().unwrap_or_default() {
            "message_start" => {
                p.usage = usage(&data["message"]["usage"]);
                p.model = data["message"]["model"].as_str().unwrap_or("").to_owned();
            }
            "content_block_start" if data["content_block"]["type"] == "tool_use" => {
                let block = &data["content_block"];
                let id = block["id"].as_str().unwrap_or("").to_owned();
                let name = block["name"].as_str().unwrap_or("").to_owned();
                p.tools
                    .insert(count(&data["index"]), (id, name, String::new()));
            }
            "content_block_delta" => return Ok(block_delta(&data, p)),
            "message_delta" => {
                p.stop_reason = stop_reason(&data["delta"]["stop_reason"]);
                p.usage.output_tokens = count(&data["usage"]["output_tokens"]);
            }
            "message_stop" => p.done = true,
            "error" => {
                return Err(ProviderError::StreamCut {
                    message: data["error"]["message"]
                        .as_str()
                        .unwrap_or("error")
                        .to_owned(),
                    streamed: false,
                })
            }
            _ => {}
        }
        Ok(None)
    }
}

fn block_delta(data: &Value, p: &mut Partial) -> Option<String> {
    let delta = &data["delta"];
    match delta["type"].as_str() {
        Some("text_delta") => {
            let text = delta["text"].as_str().unwrap_or("").to_owned();
            p.text.push_str(&text);
            Some(text)
        }
        Some("input_json_delta") => {
            if let Some(entry) = p.tools.get_mut(&count(&data["index"])) {
                entry
                    .2
                    .push_str(delta["partial_json"].as_str().unwrap_or(""));
            }
            None
        }
        _ => None,
    }
}

/// Messages as content blocks; consecutive messages of one role (tool results, mostly) merge
/// into one, as the API requires alternating turns.
fn messages(all: &[Message]) -> Vec<Value> {
    let mut out: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in all.iter().filter(|m| m.role != Role::System) {
        let role = if m.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        };
        let blocks = blocks(m);
        match out.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    out.into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

fn blocks(m: &Message) -> Vec<Value> {
    if m.role == Role::Tool {
        return vec![json!({"type": "tool_result", "tool_use_id": m.tool_call_id,
            "content": m.content, "is_error": m.is_error})];
    }
    let text = (!m.content.is_empty()).then(|| json!({"type": "text", "text": m.content}));
    let calls = m
        .tool_calls
        .iter()
        .map(|c| json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
    text.into_iter().chain(calls).collect()
}

/// Adds cache reads and writes back into `input_tokens`.
fn usage(u: &Value) -> Usage {
    let read = count(&u["cache_read_input_tokens"]);
    let write = count(&u["cache_creation_input_tokens"]);
    Usage {
        input_tokens: count(&u["input_tokens"]) + read + write,
        output_tokens: count(&u["output_tokens"]),
        cache_read_tokens: read,
        cache_write_tokens: write,
    }
}

fn stop_reason(v: &Value) -> StopReason {
    match v.as_str() {
        Some("end_turn") | None => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some(_) => StopReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_reads_and_writes_are_added_to_the_input() {
        let u = usage(&json!({"input_tokens": 40, "output_tokens": 7,
            "cache_read_input_tokens": 50, "cache_creation_input_tokens": 10}));
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens),
            (100, 50, 10)
        );
    }

    #[test]
    fn tool_results_merge_into_one_user_turn() {
        let call = |id: &str| Message::tool_result(id, "ok".into(), false);
        let out = messages(&[call("a"), call("b")]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["content"].as_array().unwrap().len(), 2);
    }
}
