//! `llm.prompt`, `llm.tool_result`, `threads.create` and `llm.usage`: the wire side of LLM access
//! (`src/llm` does the work).
//!
//! A streamed prompt pushes `{"push": "llm.delta", "data": {request, delta}}` before its reply;
//! a custom tool call is pushed as `{"push": "llm.tool_call", "data": {request, tool_call}}` and
//! answered with `llm.tool_result` on the same connection while the prompt is in flight.

use super::{require_admin, Empty};
use crate::error::Error;
use crate::llm::provider::{Message, ToolSpec};
use crate::llm::{Prompt, PromptEvent, PromptReply, ToolResult};
use crate::services::Services;
use crate::session::{Out, Session};
use ikigai_protocol::{encode_push, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptArgs {
    model: Option<String>,
    messages: Vec<Message>,
    thread: Option<String>,
    tools: Option<ToolsArg>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    metadata: Option<Json>,
    stream: Option<bool>,
    if_busy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ToolsArg {
    #[serde(default)]
    platform: Vec<String>,
    #[serde(default)]
    custom: Vec<ToolSpec>,
}

pub async fn prompt(
    args: PromptArgs,
    request: u64,
    s: &Services,
    session: &Session,
) -> Result<PromptReply, Error> {
    let tools = args.tools.unwrap_or_default();
    let metadata = args.metadata.map_or(serde_json::json!({}), |m| m.0);
    if !metadata.is_object() {
        return Err(Error::BadRequest("metadata must be a map".into()));
    }
    if args.messages.is_empty() {
        return Err(Error::BadRequest("messages must not be empty".into()));
    }
    if args.max_tokens == Some(0) {
        return Err(Error::BadRequest("max_tokens must be at least 1".into()));
    }
    if args.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(Error::BadRequest("temperature must be 0 to 2".into()));
    }
    let reject_if_busy = match args.if_busy.as_deref() {
        None | Some("wait") => false,
        Some("reject") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "if_busy {other:?} is not wait or reject"
            )))
        }
    };
    let thread = match args.thread.as_deref() {
        None => None,
        named => Some(s.llm.thread_of(&session.agent, named).await?),
    };
    let model = match args.model {
        Some(model) => model,
        None => s.llm.default_model(&session.agent).await?,
    };
    let prompt = Prompt {
        model,
        messages: args.messages,
        thread,
        reject_if_busy,
        platform_tools: tools.platform,
        custom_tools: tools.custom,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        metadata,
        stream: args.stream.unwrap_or(false),
    };
    let (events, forwarding) = match session.pushes() {
        Some(out) => {
            let (tx, rx) = mpsc::unbounded_channel();
            (
                Some(tx),
                Some(tokio::task::spawn_local(forward(out, request, rx))),
            )
        }
        None => (None, None),
    };
    let result = s.llm.prompt(prompt, s, session, events.as_ref()).await;
    drop(events);
    if let Some(forwarding) = forwarding {
        let _ = forwarding.await;
    }
    Ok(result?)
}

/// Pushes a prompt's events to its connection, in order: every one is queued before the reply.
async fn forward(out: Out, request: u64, mut events: mpsc::UnboundedReceiver<PromptEvent>) {
    while let Some(event) = events.recv().await {
        let frame = match event {
            PromptEvent::Delta(delta) => {
                encode_push("llm.delta", &json!({"request": request, "delta": delta}))
            }
            PromptEvent::ToolCall(call) => encode_push(
                "llm.tool_call",
                &json!({"request": request, "tool_call": call}),
            ),
        };
        let Ok(frame) = frame else { continue };
        if out.send(frame).await.is_err() {
            return;
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolResultArgs {
    call_id: String,
    content: Json,
    #[serde(default)]
    is_error: bool,
}

pub fn tool_result(args: ToolResultArgs, s: &Services, session: &Session) -> Result<Empty, Error> {
    let content = match args.content.0 {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    let result = ToolResult {
        content,
        is_error: args.is_error,
    };
    s.llm.tool_result(&session.agent, &args.call_id, result)?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateThreadArgs {
    context: Option<String>,
}

#[derive(Serialize)]
pub struct Created {
    id: String,
}

pub async fn create_thread(
    args: CreateThreadArgs,
    s: &Services,
    session: &Session,
) -> Result<Created, Error> {
    let id = s.llm.create_thread(&session.agent, args.context).await?;
    Ok(Created { id: id.to_string() })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageArgs {
    since_ms: Option<u64>,
}

#[derive(Serialize)]
pub struct UsageReply {
    usage: Vec<serde_json::Value>,
}

/// Tokens and cost per agent and model (admin only); the last 24 hours by default.
pub async fn usage(args: UsageArgs, s: &Services, session: &Session) -> Result<UsageReply, Error> {
    require_admin(session, "read everyone's LLM usage")?;
    let since = super::check_ms(
        "since_ms",
        args.since_ms.unwrap_or(24 * 3600 * 1000),
        0,
        Duration::MAX,
    )?;
    let usage = s.llm.usage(since).await?;
    Ok(UsageReply { usage })
}
