//! A scripted LLM provider for tests and benches: a real HTTP/1.1 server on 127.0.0.1 that speaks
//! the OpenAI Chat Completions (`POST /v1/chat/completions`) and Anthropic Messages
//! (`POST /v1/messages`) wire formats, plain JSON or SSE streams (when the request says
//! `"stream": true`). Each path answers from its own queue of scripted [`Reply`]s, then with
//! `"ok"`; every request (headers and body) is recorded for assertions. Suites in other languages
//! script it over HTTP (`control`).

mod control;
mod render;
pub mod testdb;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The two wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    OpenAi,
    Anthropic,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A text answer with its usage.
    Text {
        text: String,
        input_tokens: u64,
        output_tokens: u64,
    },
    /// A call of one tool.
    ToolCall {
        id: String,
        name: String,
        arguments: Value,
    },
    /// An error status with the provider's error body (529 is Anthropic's `overloaded_error`).
    Status {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    /// Waits, then answers.
    Delay(Duration, Box<Reply>),
    /// A stream that sends `text` and then ends without its final events.
    Cut { text: String },
    /// A text answer whose usage is counted from the request, as a provider's tokenizer would
    /// (about four bytes of the request's JSON per input token).
    Counted(String),
}

impl Reply {
    pub fn text(text: &str) -> Reply {
        Reply::Text {
            text: text.to_owned(),
            input_tokens: 10,
            output_tokens: 5,
        }
    }

    pub fn counted(text: &str) -> Reply {
        Reply::Counted(text.to_owned())
    }

    pub fn tool_call(id: &str, name: &str, arguments: Value) -> Reply {
        Reply::ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments,
        }
    }

    pub fn status(status: u16, message: &str) -> Reply {
        Reply::Status {
            status,
            message: message.to_owned(),
            retry_after: None,
        }
    }
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub api: Api,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Script {
    replies: HashMap<Api, VecDeque<Reply>>,
    received: Vec<Received>,
    recording: bool,
}

type Shared = Arc<Mutex<Script>>;

/// A running mock provider; stops when dropped.
pub struct MockLlm {
    addr: SocketAddr,
    script: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl MockLlm {
    /// Starts a server on an ephemeral loopback port (on the current tokio runtime).
    pub async fn start() -> MockLlm {
        let script: Shared = Arc::new(Mutex::new(Script {
            recording: true,
            ..Script::default()
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/mock/replies", post(control::replies))
            .route("/mock/received", axum::routing::get(control::received))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockLlm {
            addr,
            script,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, the `base_url` of a provider.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues an answer for the next request of `api`.
    pub fn push(&self, api: Api, reply: Reply) {
        let mut script = self.script.lock().unwrap();
        script.replies.entry(api).or_default().push_back(reply);
    }

    /// The requests received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Stops recording requests (for long benchmark runs).
    pub fn stop_recording(&self) {
        self.script.lock().unwrap().recording = false;
    }

    /// Records requests again (after [`MockLlm::stop_recording`]).
    pub fn start_recording(&self) {
        self.script.lock().unwrap().recording = true;
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn openai(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    answer(Api::OpenAi, s, headers, body).await
}

async fn anthropic(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    answer(Api::Anthropic, s, headers, body).await
}

async fn answer(api: Api, script: Shared, headers: HeaderMap, body: Value) -> Response {
    let stream = body["stream"] == Value::Bool(true);
    let model = body["model"].as_str().unwrap_or("mock").to_owned();
    let request_bytes = body.to_string().len() as u64;
    let mut reply = {
        let mut s = script.lock().unwrap();
        if s.recording {
            let headers = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            s.received.push(Received { api, headers, body });
        }
        let queue = s.replies.entry(api).or_default();
        queue.pop_front().unwrap_or_else(|| Reply::text("ok"))
    };
    while let Reply::Delay(wait, next) = reply {
        tokio::time::sleep(wait).await;
        reply = *next;
    }
    if let Reply::Counted(text) = reply {
        reply = Reply::Text {
            output_tokens: text.len() as u64 / 4 + 1,
            text,
            input_tokens: request_bytes / 4,
        };
    }
    if let Reply::Status {
        status,
        message,
        retry_after,
    } = &reply
    {
        return error(api, *status, message, *retry_after);
    }
    match stream {
        true => render::stream(api, &model, &reply),
        false => Json(render::json(api, &model, &reply)).into_response(),
    }
}

fn error(api: Api, status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let kind = match status {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400 => "invalid_request_error",
        _ => "api_error",
    };
    let body = match api {
        Api::OpenAi => serde_json::json!({"error": {"message": message, "type": kind}}),
        Api::Anthropic => {
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}
