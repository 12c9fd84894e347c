//! A unit of work: a transaction an agent holds open across the services whose engine can take
//! part in it. Inside one, an op hands the unit the very write it would otherwise hand its
//! service (a [`MailboxBatch`], a [`QueueBatch`], a [`DocumentWrite`]); what the unit answers
//! becomes true, for other readers and for the actors, only when it commits.

use super::{MailboxBatch, MailboxCommitted, QueueBatch, QueueCommitted, StoreError};
use crate::storage::{DocumentError, DocumentWrite, DocumentWritten};
use async_trait::async_trait;

/// An open transaction. Dropping it without [`Unit::commit`] rolls it back.
#[async_trait]
pub trait Unit: Send {
    /// Applies mailbox writes inside the transaction.
    async fn mailbox(&mut self, batch: &MailboxBatch) -> Result<MailboxCommitted, StoreError>;

    /// Applies queue writes inside the transaction.
    async fn queue(&mut self, batch: &QueueBatch) -> Result<QueueCommitted, StoreError>;

    /// Writes a document inside the transaction.
    async fn document(&mut self, write: &DocumentWrite) -> Result<DocumentWritten, DocumentError>;

    /// Makes every write durable at once; on an error nothing was.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Undoes every write.
    async fn rollback(self: Box<Self>);
}

/// Opens units of work on one engine.
#[async_trait]
pub trait Units: Send + Sync + 'static {
    async fn begin(&self) -> Result<Box<dyn Unit>, StoreError>;
}
