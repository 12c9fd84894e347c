//! The HTTP exchange every provider shares: one POST with the adapter's body and auth headers,
//! the classification of failures (status, `Retry-After`, transport), and SSE streaming through
//! the adapter's event decoder. API keys are scrubbed from every message it returns.

use super::sse::SseParser;
use super::{anthropic, openai, ChatRequest, ChatResponse, Kind, Partial, ProviderError, Wire};
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;
/// Where streamed text deltas go as they arrive.
pub type Deltas<'a> = &'a dyn Fn(&str);

/// A configured provider endpoint.
pub struct Provider {
    pub name: String,
    kind: Kind,
    base_url: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl Provider {
    pub fn new(
        name: &str,
        kind: Kind,
        base_url: &str,
        key: Option<String>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Provider, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Provider {
            name: name.to_owned(),
            kind,
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
            client,
        })
    }

    fn wire(&self) -> &'static dyn Wire {
        match self.kind {
            Kind::OpenAi => &openai::OpenAi,
            Kind::Anthropic => &anthropic::Anthropic,
        }
    }

    /// One call: an answer, or a classified error. With `deltas` the answer is streamed.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        deltas: Option<Deltas<'_>>,
    ) -> Result<ChatResponse, ProviderError> {
        let wire = self.wire();
        let mut post = self
            .client
            .post(format!("{}{}", self.base_url, wire.path()))
            .json(&wire.body(req, deltas.is_some()));
        if let Some(key) = &self.key {
            for (name, value) in wire.auth(key) {
                post = post.header(name, value);
            }
        }
        let response = post.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(response).await);
        }
        match deltas {
            None => {
                let body = response.bytes().await.map_err(|e| self.transport(e))?;
                let body = serde_json::from_slice(&body)
                    .map_err(|e| ProviderError::Decode(e.to_string()))?;
                wire.parse(body)
            }
            Some(deltas) => self.stream(wire, response, deltas).await,
        }
    }

    async fn stream(
        &self,
        wire: &dyn Wire,
        response: reqwest::Response,
        deltas: Deltas<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let mut parser = SseParser::default();
        let mut partial = Partial::default();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let cut = |message: String, streamed| ProviderError::StreamCut { message, streamed };
            let chunk = chunk.map_err(|e| cut(self.scrub(&e.to_string()), partial.streamed))?;
            for event in parser.feed(&chunk) {
                let delta = wire.event(&event, &mut partial).map_err(|e| match e {
                    ProviderError::StreamCut { message, .. } => cut(message, partial.streamed),
                    other => other,
                })?;
                if let Some(text) = delta.filter(|t| !t.is_empty()) {
                    partial.streamed = true;
                    deltas(&text);
                }
                if partial.done {
                    return partial.finish();
                }
            }
        }
        Err(ProviderError::StreamCut {
            message: "the provider closed the stream before its end".into(),
            streamed: partial.streamed,
        })
    }

    fn transport(&self, e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            return ProviderError::Timeout;
        }
        ProviderError::Connect(self.scrub(&e.without_url().to_string()))
    }

    async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(86_400.0)));
        let text = response.text().await.unwrap_or_default();
        ProviderError::Status {
            status,
            message: self.scrub(&error_message(&text)),
            retry_after,
        }
    }

    /// Removes the API key from text a provider (or a proxy) may have echoed.
    fn scrub(&self, text: &str) -> String {
        match &self.key {
            Some(key) if !key.is_empty() => text.replace(key.as_str(), "[redacted]"),
            _ => text.to_owned(),
        }
    }
}

/// The message of a provider's error body (`{"error": {"message"}}` in both formats).
fn error_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str().or(v["message"].as_str()));
    match message {
        Some(m) => m.to_owned(),
        None => text.chars().take(500).collect(),
    }
}
