//! Telemetry: events of agents and of the daemon, batched into storage without blocking anyone.
//!
//! [`Telemetry`] is the handle every service holds: `emit` only queues the event for the
//! [`TelemetryWriter`] actor, which writes queued events in batches through a [`TelemetrySink`]
//! (the [`Outbox`] holds the batching and retry rules) and enforces retention.

mod outbox;
mod writer;

pub use outbox::{Outbox, Retry};
pub use writer::{Telemetry, TelemetryConfig, TelemetryWriter};

use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

/// The agent name the daemon's own events carry.
pub const DAEMON_AGENT: &str = "daemon";

/// One event, accepted and not yet written.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryEvent {
    /// UUIDv7, chosen when the event is accepted.
    pub id: Uuid,
    pub agent: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    /// When the event was accepted (not when its batch was written).
    pub created_at: DateTime<Utc>,
}

impl TelemetryEvent {
    pub fn new(agent: &str, event_type: &str, payload: serde_json::Value) -> Self {
        TelemetryEvent {
            id: Uuid::now_v7(),
            agent: agent.to_owned(),
            event_type: event_type.to_owned(),
            payload,
            created_at: Utc::now(),
        }
    }
}

/// A search over stored events; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryQuery {
    pub agent: Option<String>,
    pub event_type: Option<String>,
    /// Inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    /// Full-text search over the payload's strings (web-search syntax: `"a phrase"`, `-not`).
    pub text: Option<String>,
    pub limit: usize,
}

/// Why an event was not accepted.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum TelemetryError {
    /// Too many events are waiting to be written (storage slow or down); retry later.
    #[error("{0} telemetry events are waiting to be written; retry later")]
    Full(usize),
}

/// Durable storage of telemetry events.
#[async_trait]
pub trait TelemetrySink: Send + Sync + 'static {
    /// Writes a batch of events, all or nothing.
    async fn write(&self, events: &[TelemetryEvent]) -> Result<(), StoreError>;

    /// The events matching `query`, newest first, at most `query.limit`.
    async fn query(&self, query: &TelemetryQuery) -> Result<Vec<TelemetryEvent>, StoreError>;

    /// Deletes at most `batch` events created before `before`; returns how many it deleted.
    async fn purge(&self, before: DateTime<Utc>, batch: usize) -> Result<u64, StoreError>;
}
