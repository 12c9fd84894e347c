//! The OpenAI Chat Completions wire format (`POST /v1/chat/completions`), which OpenAI-compatible
//! servers (vLLM, llama.cpp, Ollama, OpenRouter) speak too. `prompt_tokens` include cached
//! tokens, as the normalised `input_tokens` do.

use super::{
    add_options, count, event_json, parse_arguments, ChatRequest, ChatResponse, Message, Partial,
    ProviderError, Role, SseEvent, StopReason, ToolCall, Usage, Wire,
};
use serde_json::{json, Value};

pub struct OpenAi;

impl Wire for OpenAi {
    fn path(&self) -> &'static str {
        "/v1/chat/completions"
    }

    fn auth(&self, key: &str) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {key}"))]
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Value {
        let mut body = json!({
            "model": req.model,
            "messages": req.messages.iter().map(message).collect::<Vec<_>>(),
            "max_tokens": req.max_tokens,
        });
        add_options(&mut body, req, |t| {
            json!({"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}})
        });
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    fn parse(&self, body: Value) -> Result<ChatResponse, ProviderError> {
        let choice = &body["choices"][0];
        if !choice.is_object() {
            return Err(ProviderError::Decode("no choices in the answer".into()));
        }
        let msg = &choice["message"];
        let tool_calls = msg["tool_calls"]
            .as_array()
            .map(|calls| calls.iter().map(tool_call).collect())
            .unwrap_or_default();
        Ok(ChatResponse {
            content: msg["content"].as_str().unwrap_or("").to_owned(),
            tool_calls,
            usage: usage(&body["usage"]),
            stop_reason: stop_reason(&choice["finish_reason"]),
            model: body["model"].as_str().unwrap_or("").to_owned(),
        })
    }

    fn event(&self, event: &SseEvent, p: &mut Partial) -> Result<Option<String>, ProviderError> {
        if event.data.trim() == "[DONE]" {
            p.done = true;
            return Ok(None);
        }
        let chunk = event_json(event)?;
        if let Some(message) = chunk["error"]["message"].as_str() {
            return Err(ProviderError::StreamCut {
                message: message.to_owned(),
                streamed: false,
            });
        }
        if let Some(model) = chunk["model"].as_str() {
            p.model = model.to_owned();
        }
        if chunk["usage"].is_object() {
            p.usage = usage(&chunk["usage"]);
        }
        let choice = &chunk["choices"][0];
        if !choice["finish_reason"].is_null() {
            p.stop_reason = stop_reason(&choice["finish_reason"]);
        }
        let delta = &choice["delta"];
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let entry = p.tools.entry(count(&call["index"])).or_default();
            if let Some(id) = call["id"].as_str() {
                entry.0 = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                entry.1.push_str(name);
            }
            if let Some(args) = call["function"]["arguments"].as_str() {
                entry.2.push_str(args);
            }
        }
        let text = delta["content"].as_str().map(str::to_owned);
        if let Some(t) = &text {
            p.text.push_str(t);
        }
        Ok(text)
    }
}

fn message(m: &Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Tool => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
        Role::Assistant if m.tool_calls.is_empty() => {
            json!({"role": "assistant", "content": m.content})
        }
        Role::Assistant => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function", "function": {
                    "name": c.name, "arguments": c.arguments.to_string()}})
                })
                .collect();
            let content = (!m.content.is_empty()).then_some(&m.content);
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
    }
}

fn tool_call(v: &Value) -> ToolCall {
    ToolCall {
        id: v["id"].as_str().unwrap_or("").to_owned(),
        name: v["function"]["name"].as_str().unwrap_or("").to_owned(),
        arguments: parse_arguments(v["function"]["arguments"].as_str().unwrap_or("")),
    }
}

/// `prompt_tokens` already include `prompt_tokens_details.cached_tokens`.
fn usage(u: &Value) -> Usage {
    Usage {
        input_tokens: count(&u["prompt_tokens"]),
        output_tokens: count(&u["completion_tokens"]),
        cache_read_tokens: count(&u["prompt_tokens_details"]["cached_tokens"]),
        cache_write_tokens: 0,
    }
}

fn stop_reason(v: &Value) -> StopReason {
    match v.as_str() {
        Some("stop") | None => StopReason::EndTurn,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some(_) => StopReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_are_part_of_the_input() {
        let u = usage(&json!({"prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 60}}));
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (100, 60, 7)
        );
    }
}
