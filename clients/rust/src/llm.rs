//! Typed calls for LLM access: `client.prompt(..)` and `client.prompt_stream(..)` (a `Stream`
//! of typed `llm.delta` pushes ending with the reply), custom tools answered by handlers in
//! this client (`llm.tool_call` pushes → `llm.tool_result`), `client.threads().create` and
//! `client.llm_usage`. Memory and context of threads: `memory.rs`.

use crate::client::{Owner, Route};
use crate::{Client, ClientError, Push};
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl ChatMessage {
    /// A message of `role` with this text.
    pub fn new(role: &str, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("user", content)
    }
}

/// A call of a tool by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Json,
}

/// What a custom tool's handler answers: the content for the model, or an error it is told of.
pub type ToolOutcome = Result<Json, String>;

type Handler = dyn Fn(Json) -> Pin<Box<dyn Future<Output = ToolOutcome> + Send>> + Send + Sync;

/// A tool the agent offers the model and runs itself: when the model calls it, the daemon
/// pushes the call and this client runs `handler` with its arguments and answers.
#[derive(Clone)]
pub struct CustomTool {
    pub name: String,
    pub description: String,
    /// The JSON schema of the arguments.
    pub parameters: Json,
    handler: Arc<Handler>,
}

impl CustomTool {
    /// A tool answered by `handler`.
    pub fn new<F, Fut>(name: &str, description: &str, parameters: Json, handler: F) -> CustomTool
    where
        F: Fn(Json) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ToolOutcome> + Send + 'static,
    {
        CustomTool {
            name: name.into(),
            description: description.into(),
            parameters,
            handler: Arc::new(move |args| Box::pin(handler(args))),
        }
    }
}

impl std::fmt::Debug for CustomTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomTool")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Serialize for CustomTool {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Spec<'a> {
            name: &'a str,
            description: &'a str,
            parameters: &'a Json,
        }
        Spec {
            name: &self.name,
            description: &self.description,
            parameters: &self.parameters,
        }
        .serialize(s)
    }
}

/// The tools offered to the model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tools {
    /// Platform tools the daemon runs (`query_telemetry`, `create_task`, `send_message`...).
    pub platform: Vec<String>,
    pub custom: Vec<CustomTool>,
}

/// An `llm.prompt`; unset fields take the daemon's defaults (`model`: the agent's default
/// model).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Prompt {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// A thread id from `threads().create`, or [`crate::DEFAULT_THREAD`]: its context goes
    /// first, and this exchange is appended.
    pub thread: Option<String>,
    pub tools: Option<Tools>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub metadata: Option<Json>,
    /// On a thread another prompt is running on: wait for it (the default), or fail at once.
    /// Sent only when set, so that prompts stay what daemons before section 18 accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_busy: Option<IfBusy>,
}

/// What a prompt on a busy thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IfBusy {
    /// Waits until the running prompt has finished.
    Wait,
    /// Fails at once with `conflict`.
    Reject,
}

/// Token counts of a prompt, summed over its tool loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

/// The reply of `llm.prompt`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PromptReply {
    pub id: String,
    pub content: String,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub cost_usd: f64,
    pub model: String,
    pub provider: String,
    pub provider_model: String,
    pub stop_reason: String,
    pub steps: u64,
    pub thread: Option<String>,
}

/// What a streamed prompt yields: text as it arrives, each custom tool call as it is
/// answered, then the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptEvent {
    /// `llm.delta`: the next piece of the answer's text.
    Delta(String),
    /// `llm.tool_call`: the model called a custom tool; its handler's answer has been sent.
    ToolCall(ToolCall),
    /// The reply: the whole answer and its usage. The stream ends after it.
    Done(Box<PromptReply>),
}

/// A prompt in flight, as a `Stream` of [`PromptEvent`]s; an error ends it.
pub struct PromptStream {
    events: mpsc::UnboundedReceiver<Result<PromptEvent, ClientError>>,
}

impl Stream for PromptStream {
    type Item = Result<PromptEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl PromptStream {
    /// Waits for the reply, skipping the text and tool events.
    pub async fn reply(mut self) -> Result<PromptReply, ClientError> {
        while let Some(event) = self.events.recv().await {
            if let PromptEvent::Done(reply) = event? {
                return Ok(*reply);
            }
        }
        Err(ClientError::Closed)
    }
}

/// The threads of LLM conversations, as `client.threads()` gives them.
#[derive(Clone, Copy)]
pub struct Threads<'a> {
    client: &'a Client,
}

/// A created thread; `client.thread(&thread)` is its context and conversation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Thread {
    pub id: String,
}

impl AsRef<str> for Thread {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

impl Threads<'_> {
    /// A new thread of the caller's, `context` sent as a system message before its history.
    pub async fn create(&self, context: Option<&str>) -> Result<Thread, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            context: Option<&'a str>,
        }
        self.client.call("threads.create", &Args { context }).await
    }
}

/// One row of `llm.usage`: an agent's use of one alias.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UsageRow {
    pub agent: String,
    pub model: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens: u64,
    pub cost_usd: f64,
    pub errors: u64,
}

impl Client {
    /// Prompts a model and waits for the answer, running custom tools' handlers as it goes.
    pub async fn prompt(&self, prompt: &Prompt) -> Result<PromptReply, ClientError> {
        self.start_prompt(prompt, false).await?.reply().await
    }

    /// Prompts a model with `stream: true`: the answer's text arrives as
    /// [`PromptEvent::Delta`]s before [`PromptEvent::Done`].
    pub async fn prompt_stream(&self, prompt: &Prompt) -> Result<PromptStream, ClientError> {
        self.start_prompt(prompt, true).await
    }

    /// Answers a custom tool call (`llm.tool_result`); [`Client::prompt`] does this itself for
    /// the tools it was given handlers for.
    pub async fn tool_result(
        &self,
        call_id: &str,
        content: &Json,
        is_error: bool,
    ) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            call_id: &'a str,
            content: &'a Json,
            is_error: bool,
        }
        let args = Args {
            call_id,
            content,
            is_error,
        };
        self.call_unit("llm.tool_result", &args).await
    }

    /// LLM conversation threads.
    pub fn threads(&self) -> Threads<'_> {
        Threads { client: self }
    }

    /// Usage per agent and alias over the last `since_ms` (default 24 hours); `admin` only.
    pub async fn llm_usage(&self, since_ms: Option<u64>) -> Result<Vec<UsageRow>, ClientError> {
        #[derive(Serialize)]
        struct Args {
            since_ms: Option<u64>,
        }
        #[derive(Deserialize)]
        struct Rows {
            usage: Vec<UsageRow>,
        }
        let rows: Rows = self.call("llm.usage", &Args { since_ms }).await?;
        Ok(rows.usage)
    }

    /// Writes the prompt with its pushes routed to a task that answers tool calls and turns
    /// the rest into events.
    async fn start_prompt(
        &self,
        prompt: &Prompt,
        stream: bool,
    ) -> Result<PromptStream, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            #[serde(flatten)]
            prompt: &'a Prompt,
            stream: bool,
        }
        let id = self.next_id();
        let (route, pushes): (Route, _) = mpsc::unbounded_channel();
        self.route(Owner::Request(id), route);
        let args = Args { prompt, stream };
        let pending = match self.submit_as(id, "llm.prompt", &args, None).await {
            Ok(pending) => pending,
            Err(e) => {
                self.unroute(&Owner::Request(id));
                return Err(e);
            }
        };
        let (events, rx) = mpsc::unbounded_channel();
        let handlers = prompt.tools.iter().flat_map(|t| t.custom.clone()).collect();
        let driver = Driver {
            client: self.clone(),
            id,
            handlers,
            events,
        };
        tokio::spawn(driver.run(pending, pushes));
        Ok(PromptStream { events: rx })
    }
}

/// Follows one prompt: forwards its deltas, answers its tool calls, ends with its reply.
struct Driver {
    client: Client,
    id: u64,
    handlers: Vec<CustomTool>,
    events: mpsc::UnboundedSender<Result<PromptEvent, ClientError>>,
}

impl Driver {
    async fn run(self, pending: crate::Pending, mut pushes: mpsc::UnboundedReceiver<Push>) {
        let reply = pending.reply::<PromptReply>();
        tokio::pin!(reply);
        let end = loop {
            tokio::select! {
                biased;
                Some(push) = pushes.recv() => self.pushed(push).await,
                reply = &mut reply => break reply,
            }
        };
        self.client.unroute(&Owner::Request(self.id));
        // Pushes are written before the reply, and the reader routes them in order.
        while let Ok(push) = pushes.try_recv() {
            self.pushed(push).await;
        }
        let _ = self
            .events
            .send(end.map(|r| PromptEvent::Done(Box::new(r))));
    }

    async fn pushed(&self, push: Push) {
        #[derive(Deserialize)]
        struct Delta {
            delta: String,
        }
        #[derive(Deserialize)]
        struct Called {
            tool_call: ToolCall,
        }
        let event = match push.push.as_str() {
            "llm.delta" => {
                ikigai_protocol::from_value::<Delta>(push.data).map(|d| PromptEvent::Delta(d.delta))
            }
            _ => match ikigai_protocol::from_value::<Called>(push.data) {
                Ok(called) => Ok(self.answer(called.tool_call).await),
                Err(e) => Err(e),
            },
        };
        let _ = self.events.send(event.map_err(ClientError::Decode));
    }

    /// Runs the handler of the called tool (in a task of its own, so that a panic in it is
    /// only a failed call) and sends its answer; an unknown tool or a failing handler is
    /// reported to the model as an error.
    async fn answer(&self, call: ToolCall) -> PromptEvent {
        let handler = self.handlers.iter().find(|t| t.name == call.name);
        let outcome = match handler {
            Some(tool) => tokio::spawn((tool.handler)(call.arguments.clone()))
                .await
                .unwrap_or_else(|e| Err(format!("the tool's handler failed: {e}"))),
            None => Err(format!(
                "this client has no handler for tool {:?}",
                call.name
            )),
        };
        let (content, is_error) = match outcome {
            Ok(content) => (content, false),
            Err(message) => (Json::String(message), true),
        };
        let _ = self.client.tool_result(&call.id, &content, is_error).await;
        PromptEvent::ToolCall(call)
    }
}
