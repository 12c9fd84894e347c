//! Providers: the normalised request and response every adapter speaks (`ChatRequest`,
//! `ChatResponse`, `ToolCall`, `Usage`, `StopReason`), how errors are classified
//! (`ProviderError`), and what an adapter must say about its wire format (`Wire`). The HTTP
//! exchange they share is `http.rs`.

pub mod anthropic;
mod http;
pub mod openai;
mod sse;

pub use http::{Deltas, Provider};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sse::SseEvent;
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

/// Who wrote a message. (Read from a string: msgpack values carry enums as plain strings.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(s: String) -> Result<Role, String> {
        Ok(match s.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => {
                return Err(format!(
                    "unknown role {s:?} (system, user, assistant, tool)"
                ))
            }
        })
    }
}

/// One message of a conversation, the same for every provider (and as stored in threads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    /// What an assistant message asked to call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Which call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl Message {
    pub fn assistant(response: &ChatResponse) -> Message {
        Message {
            role: Role::Assistant,
            content: response.content.clone(),
            tool_calls: response.tool_calls.clone(),
            tool_call_id: None,
            is_error: false,
        }
    }

    pub fn tool_result(call_id: &str, content: String, is_error: bool) -> Message {
        Message {
            role: Role::Tool,
            content,
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.to_owned()),
            is_error,
        }
    }
}

/// A call of a tool by the model; `arguments` is a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// A tool offered to the model: its name, what it does, and the JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Default: a tool without arguments (an object schema with no properties).
    #[serde(default = "no_parameters")]
    pub parameters: Value,
}

fn no_parameters() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// What is sent to one provider model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The provider's model name (not the alias).
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u64,
    pub temperature: Option<f64>,
}

/// Tokens of one answer. `input_tokens` counts the whole prompt, cached parts included; the
/// cache counts are the parts of it read from or written to the provider's prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    #[default]
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    /// The daemon's tool loop ran out of steps with tool calls still open.
    MaxSteps,
    Other,
}

/// One answer, the same for every provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub stop_reason: StopReason,
    /// The model the provider says answered.
    pub model: String,
}

/// Why a provider call failed, classified for retry and failover.
#[derive(Debug, Clone, Error)]
pub enum ProviderError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("no answer within the timeout")]
    Timeout,
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("unreadable answer: {0}")]
    Decode(String),
    /// The stream ended early or reported an error; `streamed` when text had already been
    /// pushed to the agent (then neither retry nor failover is possible).
    #[error("stream cut off: {message}")]
    StreamCut { message: String, streamed: bool },
}

impl ProviderError {
    /// Connection errors, timeouts, 429, 5xx (Anthropic's 529 included) and a stream cut before
    /// its first byte may succeed on another try.
    pub fn retriable(&self) -> bool {
        match self {
            ProviderError::Connect(_) | ProviderError::Timeout => true,
            ProviderError::Status { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Decode(_) => false,
            ProviderError::StreamCut { streamed, .. } => !streamed,
        }
    }

    pub fn streamed(&self) -> bool {
        matches!(self, ProviderError::StreamCut { streamed: true, .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Anthropic,
}

/// How one wire format maps to the normalised types.
trait Wire {
    fn path(&self) -> &'static str;
    fn auth(&self, key: &str) -> Vec<(&'static str, String)>;
    fn body(&self, req: &ChatRequest, stream: bool) -> Value;
    fn parse(&self, body: Value) -> Result<ChatResponse, ProviderError>;
    /// Applies one stream event to `partial`; returns the text delta it carried, if any.
    fn event(
        &self,
        event: &SseEvent,
        partial: &mut Partial,
    ) -> Result<Option<String>, ProviderError>;
}

/// Adds the options both formats spell alike: `temperature`, and `tools` (each spec in the
/// format's own shape) when there are any.
fn add_options(body: &mut Value, req: &ChatRequest, tool: impl Fn(&ToolSpec) -> Value) {
    if let Some(t) = req.temperature {
        body["temperature"] = serde_json::json!(t);
    }
    if !req.tools.is_empty() {
        body["tools"] = req.tools.iter().map(tool).collect();
    }
}

/// An answer being assembled from stream events.
#[derive(Default)]
struct Partial {
    text: String,
    /// Tool calls by their index in the stream: id, name, argument JSON so far.
    tools: BTreeMap<u64, (String, String, String)>,
    usage: Usage,
    stop_reason: StopReason,
    model: String,
    streamed: bool,
    done: bool,
}

impl Partial {
    fn finish(&mut self) -> Result<ChatResponse, ProviderError> {
        let tool_calls = std::mem::take(&mut self.tools)
            .into_values()
            .map(|(id, name, args)| ToolCall {
                id,
                name,
                arguments: parse_arguments(&args),
            })
            .collect();
        Ok(ChatResponse {
            content: std::mem::take(&mut self.text),
            tool_calls,
            usage: self.usage,
            stop_reason: self.stop_reason,
            model: std::mem::take(&mut self.model),
        })
    }
}

/// A tool call's argument JSON text as an object (`{}` when empty).
fn parse_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A JSON field as a count (0 when absent).
fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Parses one stream event's data as JSON.
fn event_json(event: &SseEvent) -> Result<Value, ProviderError> {
    serde_json::from_str(&event.data)
        .map_err(|e| ProviderError::Decode(format!("stream event: {e}")))
}
