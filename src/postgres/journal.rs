//! The group commit on Postgres: one transaction per group, whatever services its writes
//! belong to. Each transaction names this daemon (`ikigai.origin`) so that the notifications
//! its writes trigger can be told apart from other daemons'.

use super::{mailbox, queue, store_error};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use ikigai_actors::store::{Batch, Committed, Journal, StoreError};

/// Names this daemon for the notify triggers, and keeps the planner on the indexes: every
/// statement of a group reaches its rows by key (nested loops over the group's arrays). With
/// statistics taken while the table was small, the planner otherwise scans a whole index into
/// a hash table for each group (seen: 190,000 rows hashed to claim 4,800) or the whole table
/// (the seed's 29 claims/s until `ANALYZE`).
const SETUP: &str = "SELECT set_config('ikigai.origin', $1, true), \
     set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), \
     set_config('enable_mergejoin', 'off', true)";

pub struct PgJournal {
    pool: Pool,
    origin: String,
}

impl PgJournal {
    pub fn new(pool: Pool, origin: String) -> Self {
        PgJournal { pool, origin }
    }
}

#[async_trait]
impl Journal for PgJournal {
    async fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        let mut client = self.pool.get().await.map_err(store_error)?;
        let tx = client.transaction().await.map_err(store_error)?;
        let origin = tx.prepare_cached(SETUP);
        let origin = origin.await.map_err(store_error)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&self.origin];
        let (_, mailbox, queue) = futures::try_join!(
            tx.execute(&origin, &params),
            mailbox::write(&tx, &batch.mailbox),
            queue::write(&tx, &batch.queue, &self.origin),
        )
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(Committed { mailbox, queue })
    }
}
