//! The protocol's stable error codes and the error body carried by `{"err": ...}` responses.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable error code. The strings never change once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum ErrorCode {
    BadFrame,
    BadRequest,
    UnknownOp,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    Conflict,
    QuotaExceeded,
    Unavailable,
    Timeout,
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of `docs/protocol.md`.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::BadFrame,
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::QuotaExceeded,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
    ];

    /// The code as it travels on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

impl TryFrom<String> for ErrorCode {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown error code {s:?}"))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an error response: `{"code", "message", "retriable"}`, plus `retry_after_ms`
/// when the daemon knows when a retry can succeed (`quota_exceeded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    pub retriable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>, retriable: bool) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            retriable,
            retry_after_ms: None,
        }
    }

    /// Adds when a retry can succeed.
    pub fn retry_after(mut self, ms: Option<u64>) -> Self {
        self.retry_after_ms = ms;
        self
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}
