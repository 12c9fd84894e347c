//! The storage trait of the mailbox service (the other services' traits are re-exported here). One implementation per engine lives in the daemon
//! crate (`src/postgres/mailbox.rs`); actors only ever see `Arc<dyn MailboxStore>`.

pub use crate::cache::CacheStore;
pub use crate::pubsub::PubSub;
pub use crate::storage::DocumentStore;
pub use crate::telemetry::TelemetrySink;

use crate::message::{NewMessage, StoredMessage};
use async_trait::async_trait;
use std::collections::HashSet;
use thiserror::Error;
use uuid::Uuid;

/// A storage failure, as actors see it.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The engine cannot be reached or refused for a passing reason; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The engine rejected the operation; retrying the same thing will fail again.
    #[error("storage error: {0}")]
    Rejected(String),
}

impl StoreError {
    pub fn retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Marks one delivered message read.
#[derive(Debug, Clone, PartialEq)]
pub struct AckWrite {
    pub id: Uuid,
    pub mailbox: String,
    pub reader: String,
    /// Deliveries seen in memory, recorded with the acknowledgement.
    pub attempts: u32,
}

/// Records how often a message was delivered (written when it is handed back for redelivery).
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptsWrite {
    pub id: Uuid,
    pub attempts: u32,
}

/// The writes of one group commit. They are applied in one transaction: all or nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MailboxBatch {
    pub sends: Vec<NewMessage>,
    pub acks: Vec<AckWrite>,
    pub attempts: Vec<AttemptsWrite>,
}

impl MailboxBatch {
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.acks.is_empty() && self.attempts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sends.len() + self.acks.len() + self.attempts.len()
    }
}

/// What a committed batch produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Committed {
    /// One per `sends` entry, in the same order.
    pub sent: Vec<StoredMessage>,
    /// The ids whose acknowledgement changed a row (unread before, read now).
    pub acked: HashSet<Uuid>,
}

/// Counters of one mailbox as the store sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxCounts {
    pub mailbox: String,
    pub unread: u64,
    pub read: u64,
    pub oldest_unread: Option<chrono::DateTime<chrono::Utc>>,
}

/// Durable storage of mailbox messages.
#[async_trait]
pub trait MailboxStore: Send + Sync + 'static {
    /// Applies a group of writes in one transaction and reports what it produced.
    async fn commit(&self, batch: &MailboxBatch) -> Result<Committed, StoreError>;

    /// Up to `limit` unread messages of `mailbox` with `seq > after_seq`, oldest first.
    async fn load_unread(
        &self,
        mailbox: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Names of the mailboxes that hold unread messages.
    async fn mailboxes_with_unread(&self) -> Result<Vec<String>, StoreError>;

    /// Counters per mailbox (one mailbox, or all of them).
    async fn counts(&self, mailbox: Option<&str>) -> Result<Vec<MailboxCounts>, StoreError>;
}
