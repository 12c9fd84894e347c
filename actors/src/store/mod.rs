//! The storage traits actors call. Writes of every service travel through one [`Journal`] (the
//! group commit: one transaction per group, whatever the services); reads go through one trait
//! per service. One implementation per engine lives in the daemon crate (`src/postgres/`);
//! actors only ever see `Arc<dyn ...>`.

mod mailbox;
mod queue;

pub use crate::cache::CacheStore;
pub use crate::pubsub::PubSub;
pub use crate::storage::DocumentStore;
pub use crate::telemetry::TelemetrySink;
pub use mailbox::*;
pub use queue::*;

use async_trait::async_trait;
use thiserror::Error;

/// A storage failure, as actors see it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StoreError {
    /// The engine cannot be reached or refused for a passing reason; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The engine rejected the operation; retrying the same thing will fail again.
    #[error("storage error: {0}")]
    Rejected(String),
    /// A stored row cannot be decoded (plain SQL beside the daemon wrote it); retrying reads the
    /// same row.
    #[error("stored data cannot be decoded: {0}")]
    Undecodable(String),
}

impl StoreError {
    pub fn retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The writes of one group commit, all applied in one transaction: all or nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    pub mailbox: MailboxBatch,
    pub queue: QueueBatch,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.mailbox.len() + self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a committed batch produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Committed {
    pub mailbox: MailboxCommitted,
    pub queue: QueueCommitted,
}

/// Durable application of write groups.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Applies `batch` in one transaction and reports what it produced.
    async fn commit(&self, batch: Batch) -> Result<Committed, StoreError>;
}
