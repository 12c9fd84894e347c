//! The group commit on Postgres: one transaction per group, whatever services its writes
//! belong to, run on the journal's own thread and connection. Each transaction names this
//! daemon (`ikigai.origin`) so that the notifications its writes trigger can be told apart from
//! other daemons'.

use super::{mailbox, queue, store_error, DbError};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use ikigai_actors::store::{Batch, Committed, Journal, StoreError};
use ikigai_actors::supervise::contain_future;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

/// Names this daemon for the notify triggers, and keeps the planner on the indexes: every
/// statement of a group reaches its rows by key (nested loops over the group's arrays). With
/// statistics taken while the table was small, the planner otherwise scans a whole index into
/// a hash table for each group (seen: 190,000 rows hashed to claim 4,800) or the whole table
/// (the seed's 29 claims/s until `ANALYZE`).
const SETUP: &str = "SELECT set_config('ikigai.origin', $1, true), \
     set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), \
     set_config('enable_mergejoin', 'off', true)";

/// A group and where its outcome goes.
type Group = (Batch, oneshot::Sender<Result<Committed, StoreError>>);

/// Commits groups on a thread of its own, over a connection of its own: the round trips of a
/// group (begin, statements, commit) then never wait behind the daemon's other work on its
/// main thread (seen: 1.2 to 2.2 ms for a `BEGIN` under queue load, as long as the group's
/// statements), and encoding parameters and decoding rows runs beside it.
pub struct PgJournal {
    groups: mpsc::UnboundedSender<Group>,
}

impl PgJournal {
    /// Starts the journal thread; its connection to `pg` is opened with the first group and
    /// again after a failure.
    pub fn start(pg: &tokio_postgres::Config, origin: String) -> Result<Self, DbError> {
        let pool = super::pool(pg, 1)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError::Journal(e.to_string()))?;
        let (groups, mut queued) = mpsc::unbounded_channel::<Group>();
        let serve = async move {
            while let Some((batch, done)) = queued.recv().await {
                let outcome = contain_future(commit(&pool, &batch, &origin)).await;
                let _ = done.send(outcome.unwrap_or_else(|p| {
                    error!(panic = %p.0, "a group commit panicked");
                    Err(StoreError::Rejected(format!(
                        "group commit panicked: {}",
                        p.0
                    )))
                }));
            }
        };
        std::thread::Builder::new()
            .name("ikigai-journal".into())
            .spawn(move || runtime.block_on(serve))
            .map_err(|e| DbError::Journal(e.to_string()))?;
        Ok(PgJournal { groups })
    }
}

#[async_trait]
impl Journal for PgJournal {
    async fn commit(&self, batch: Batch) -> Result<Committed, StoreError> {
        let stopped = || StoreError::Unavailable("the journal thread stopped".into());
        let (done, outcome) = oneshot::channel();
        self.groups.send((batch, done)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn commit(pool: &Pool, batch: &Batch, origin: &str) -> Result<Committed, StoreError> {
    let mut client = pool.get().await.map_err(store_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    let setup = tx.prepare_cached(SETUP).await.map_err(store_error)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&origin];
    let (_, mailbox, queue) = futures::try_join!(
        tx.execute(&setup, &params),
        mailbox::write(&tx, &batch.mailbox),
        queue::write(&tx, &batch.queue, origin),
    )
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(Committed { mailbox, queue })
}
