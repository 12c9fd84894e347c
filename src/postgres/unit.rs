//! Units of work on Postgres: one transaction on a pooled connection of its own, named for this
//! daemon (`ikigai.origin`) so that the notifications its writes trigger at commit reach the
//! other daemons, and this one too (`ikigai.always_notify`): its actors learn of the writes
//! through the shared commit step, and a notification after it is harmless. The writes are the
//! journal's own functions, run inside the transaction.

use super::{mailbox, queue, storage, store_error};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Object, Pool};
use ikigai_actors::storage::{DocumentError, DocumentWrite, DocumentWritten};
use ikigai_actors::store::{
    MailboxBatch, MailboxCommitted, QueueBatch, QueueCommitted, StoreError, Unit, Units,
};

pub struct PgUnits {
    pool: Pool,
    origin: String,
}

impl PgUnits {
    pub fn new(pool: Pool, origin: String) -> Self {
        PgUnits { pool, origin }
    }
}

#[async_trait]
impl Units for PgUnits {
    async fn begin(&self) -> Result<Box<dyn Unit>, StoreError> {
        let conn = self.pool.get().await.map_err(store_error)?;
        let begin = format!(
            "BEGIN; SELECT set_config('ikigai.origin', '{}', true), \
             set_config('ikigai.always_notify', 'on', true)",
            self.origin.replace('\'', "''")
        );
        let mut unit = PgUnit {
            conn: Some(conn),
            origin: self.origin.clone(),
        };
        unit.client()?
            .batch_execute(&begin)
            .await
            .map_err(store_error)?;
        Ok(Box::new(unit))
    }
}

/// An open transaction; dropped unfinished, its connection is closed, which rolls it back.
struct PgUnit {
    conn: Option<Object>,
    origin: String,
}

impl PgUnit {
    fn client(&mut self) -> Result<&Object, StoreError> {
        self.conn
            .as_ref()
            .ok_or_else(|| StoreError::Rejected("the transaction has ended".into()))
    }

    /// Ends the transaction with `sql`; if that fails the connection is closed, not reused.
    async fn end(mut self: Box<Self>, sql: &str) -> Result<(), StoreError> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| StoreError::Rejected("ended".into()))?;
        match conn.batch_execute(sql).await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(Object::take(conn));
                Err(store_error(e))
            }
        }
    }
}

impl Drop for PgUnit {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

#[async_trait]
impl Unit for PgUnit {
    async fn mailbox(&mut self, batch: &MailboxBatch) -> Result<MailboxCommitted, StoreError> {
        let client = self.client()?;
        mailbox::write(client, batch).await.map_err(store_error)
    }

    async fn queue(&mut self, batch: &QueueBatch) -> Result<QueueCommitted, StoreError> {
        let origin = self.origin.clone();
        let client = self.client()?;
        queue::write(client, batch, &origin)
            .await
            .map_err(store_error)
    }

    async fn document(&mut self, write: &DocumentWrite) -> Result<DocumentWritten, DocumentError> {
        storage::write(&***self.client()?, write).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.end("COMMIT").await
    }

    async fn rollback(self: Box<Self>) {
        let _ = self.end("ROLLBACK").await;
    }
}
