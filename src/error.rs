//! The daemon's request error, and its mapping to the protocol's stable error codes: the one
//! place where internal failures become `{code, message, retriable}` and get logged.

use crate::agents::deploy::DeployError;
use crate::agents::AgentError;
use crate::llm::{LlmError, RouteError};
use ikigai_actors::cache::CacheError;
use ikigai_actors::mailbox::MailboxError;
use ikigai_actors::pubsub::PubSubError;
use ikigai_actors::queue::QueueError;
use ikigai_actors::storage::DocumentError;
use ikigai_actors::store::StoreError;
use ikigai_actors::telemetry::TelemetryError;
use ikigai_protocol::{ErrorBody, ErrorCode};
use thiserror::Error;
use tracing::{debug, warn};

/// Why a request failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    PubSub(#[from] PubSubError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    fn code(&self) -> (ErrorCode, bool) {
        match self {
            Error::BadRequest(_) => (ErrorCode::BadRequest, false),
            Error::UnknownOp(_) => (ErrorCode::UnknownOp, false),
            Error::Unauthenticated(_) => (ErrorCode::Unauthenticated, false),
            Error::PermissionDenied(_) => (ErrorCode::PermissionDenied, false),
            Error::NotFound(_) => (ErrorCode::NotFound, false),
            Error::Conflict(_) => (ErrorCode::Conflict, false),
            Error::Unavailable(_) => (ErrorCode::Unavailable, true),
            Error::Telemetry(TelemetryError::Full(_)) => (ErrorCode::Unavailable, true),
            Error::Document(DocumentError::Conflict { .. }) => (ErrorCode::Conflict, false),
            Error::Document(DocumentError::Store(e)) => store_code(e),
            Error::Cache(CacheError::TooLarge { .. }) => (ErrorCode::BadRequest, false),
            Error::Cache(CacheError::NotInteger(_) | CacheError::Overflow(_)) => {
                (ErrorCode::Conflict, false)
            }
            Error::Cache(CacheError::Panicked(_)) => (ErrorCode::Internal, true),
            Error::Cache(CacheError::Store(e)) => store_code(e),
            Error::PubSub(PubSubError::Store(e)) => store_code(e),
            Error::PubSub(PubSubError::Stopped) => (ErrorCode::Unavailable, true),
            Error::Store(e) => store_code(e),
            Error::Mailbox(MailboxError::Store(e)) => store_code(e),
            Error::Mailbox(MailboxError::NotLoaded(_) | MailboxError::Restarted(_)) => {
                (ErrorCode::Unavailable, true)
            }
            Error::Mailbox(MailboxError::Panicked { .. }) => (ErrorCode::Internal, true),
            Error::Queue(e) => queue_code(e),
            Error::Llm(e) => llm_code(e),
            Error::Agent(e) => agent_code(e),
            Error::Internal(_) => (ErrorCode::Internal, false),
        }
    }

    /// The wire form of this error; server-side failures are logged here, once.
    pub fn to_body(&self, op: &str) -> ErrorBody {
        let (code, retriable) = self.code();
        match code {
            ErrorCode::Internal | ErrorCode::Unavailable => {
                warn!(op, code = %code, error = %self, "request failed")
            }
            _ => debug!(op, code = %code, error = %self, "request refused"),
        }
        let retry_after_ms = match self {
            Error::Llm(LlmError::QuotaExceeded { retry_after_ms, .. }) => Some(*retry_after_ms),
            _ => None,
        };
        ErrorBody::new(code, self.to_string(), retriable).retry_after(retry_after_ms)
    }
}

fn queue_code(e: &QueueError) -> (ErrorCode, bool) {
    match e {
        QueueError::Store(e) => store_code(e),
        QueueError::NotLoaded(_) | QueueError::Restarted(_) => (ErrorCode::Unavailable, true),
        QueueError::Panicked { .. } => (ErrorCode::Internal, true),
        QueueError::NotFound(_) => (ErrorCode::NotFound, false),
        QueueError::NotClaimer(_) => (ErrorCode::PermissionDenied, false),
        QueueError::LeaseLost(_) | QueueError::Finished(_) => (ErrorCode::Conflict, false),
    }
}

fn llm_code(e: &LlmError) -> (ErrorCode, bool) {
    use crate::llm::provider::ProviderError;
    match e {
        LlmError::BadRequest(_) => (ErrorCode::BadRequest, false),
        LlmError::PermissionDenied(_) => (ErrorCode::PermissionDenied, false),
        LlmError::QuotaExceeded { .. } => (ErrorCode::QuotaExceeded, true),
        LlmError::NotFound(_) => (ErrorCode::NotFound, false),
        LlmError::Conflict(_) => (ErrorCode::Conflict, false),
        LlmError::Unavailable(_) => (ErrorCode::Unavailable, true),
        LlmError::NotConfigured(_) => (ErrorCode::Unavailable, false),
        LlmError::Provider(RouteError::Refused { error, .. }) => match error {
            ProviderError::Status {
                status: 401 | 403, ..
            } => (ErrorCode::Unavailable, false),
            _ => (ErrorCode::BadRequest, false),
        },
        LlmError::Provider(_) => (ErrorCode::Unavailable, true),
        LlmError::ToolTimeout(_) => (ErrorCode::Timeout, false),
        LlmError::Store(e) => store_code(e),
        LlmError::Internal(_) => (ErrorCode::Internal, false),
    }
}

fn agent_code(e: &AgentError) -> (ErrorCode, bool) {
    match e {
        AgentError::NotDeployed(_) => (ErrorCode::NotFound, false),
        AgentError::Deploy(DeployError::Path { .. }) => (ErrorCode::BadRequest, false),
        AgentError::Deploy(DeployError::Io { .. }) => (ErrorCode::Internal, false),
        AgentError::Store(e) => store_code(e),
        AgentError::Gone => (ErrorCode::Unavailable, true),
        AgentError::NoCommand(_) => (ErrorCode::BadRequest, false),
    }
}

fn store_code(e: &StoreError) -> (ErrorCode, bool) {
    match e {
        StoreError::Unavailable(_) => (ErrorCode::Unavailable, true),
        StoreError::Rejected(_) => (ErrorCode::Internal, false),
        StoreError::Undecodable(_) => (ErrorCode::Unavailable, false),
    }
}
