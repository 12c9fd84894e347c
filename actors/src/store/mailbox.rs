//! The mailbox service's storage: the writes a group commit carries for it ([`MailboxJournal`]),
//! the reads of [`MailboxStore`], and the changes its feed reports ([`MailboxChange`]). The
//! Postgres implementation is `src/postgres/mailbox.rs`.

use super::StoreError;
use crate::message::{NewMessage, StoredMessage};
use async_trait::async_trait;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

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

/// What the mailbox part of a committed batch produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MailboxCommitted {
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

/// Durable application of the mailbox service's write groups.
#[async_trait]
pub trait MailboxJournal: Send + Sync + 'static {
    /// Applies `batch` all or nothing and reports what it produced; returns after it is durable.
    async fn commit(&self, batch: MailboxBatch) -> Result<MailboxCommitted, StoreError>;
}

/// A change to mailboxes that another writer made, as the mailbox feed reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum MailboxChange {
    /// Messages were committed for `mailbox` (`None`: which ones is not known).
    Sent {
        mailbox: String,
        ids: Option<Vec<Uuid>>,
    },
    /// Messages of `mailbox` were acknowledged.
    Acked { mailbox: String, ids: Vec<Uuid> },
    /// The daemon serving `mailbox` gave it up.
    Released { mailbox: String },
    /// Changes may have been missed (the feed reconnected): every mailbox re-reads.
    Missed,
}

/// Reads of the mailbox service (its writes go through its [`MailboxJournal`]).
#[async_trait]
pub trait MailboxStore: Send + Sync + 'static {
    /// Up to `limit` unread messages of `mailbox` with `seq > after_seq`, oldest first.
    async fn load_unread(
        &self,
        mailbox: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// The unread messages among `ids` of `mailbox`, oldest first.
    async fn load_ids(&self, mailbox: &str, ids: &[Uuid])
        -> Result<Vec<StoredMessage>, StoreError>;

    /// Takes the lease to serve `mailbox` for `lease`, if no other daemon holds a live one.
    async fn acquire(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Extends a lease this daemon still holds; false when it ran out or was taken.
    async fn renew(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError>;

    /// Gives up the lease and tells other daemons the mailbox is free.
    async fn release(&self, mailbox: &str) -> Result<(), StoreError>;

    /// Counters per mailbox (one mailbox, or all of them).
    async fn counts(&self, mailbox: Option<&str>) -> Result<Vec<MailboxCounts>, StoreError>;

    /// The largest payload (as JSON text, in bytes) one message may have on this engine, which
    /// the daemon checks before a send joins a group (one refused send would fail its whole
    /// group); `None`: whatever a frame holds.
    fn max_payload(&self) -> Option<usize> {
        None
    }
}
