//! The group commit on Postgres: one transaction per group, whatever services its writes
//! belong to, run on the journal's own thread and connection. The connection names this daemon
//! (`ikigai.origin`) so that the notifications its writes trigger can be told apart from other
//! daemons'.

use super::{mailbox, queue, store_error, DbError};
use async_trait::async_trait;
use deadpool_postgres::{ClientWrapper, Hook, HookError, Metrics, Pool};
use ikigai_actors::store::{Batch, Committed, Journal, QueueCommitted, StoreError};
use ikigai_actors::supervise::contain_future;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

/// Run once on each journal connection: names this daemon for the notify triggers, and keeps
/// the planner on the indexes: every statement of a group reaches its rows by key (nested loops
/// over the group's arrays). With statistics taken while the table was small, the planner
/// otherwise scans a whole index into a hash table for each group (seen: 190,000 rows hashed to
/// claim 4,800) or the whole table (the seed's 29 claims/s until `ANALYZE`).
const SETUP: &str = "SELECT set_config('ikigai.origin', $1, false), \
     set_config('enable_seqscan', 'off', false), set_config('enable_hashjoin', 'off', false), \
     set_config('enable_mergejoin', 'off', false)";

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
        let pool = super::pool_builder(pg, 1)
            .post_create(setup(origin.clone()))
            .build()
            .map_err(|e| DbError::Journal(e.to_string()))?;
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

/// Prepares a new journal connection with [`SETUP`].
fn setup(origin: String) -> Hook {
    Hook::async_fn(move |client: &mut ClientWrapper, _: &Metrics| {
        let origin = origin.clone();
        Box::pin(async move {
            client
                .execute(SETUP, &[&origin])
                .await
                .map_err(HookError::Backend)?;
            Ok(())
        })
    })
}

async fn commit(pool: &Pool, batch: &Batch, origin: &str) -> Result<Committed, StoreError> {
    let mut client = pool.get().await.map_err(store_error)?;
    if pushes_alone(batch) {
        let pushed = queue::push(&client, &batch.queue.pushes, origin)
            .await
            .map_err(store_error)?;
        return Ok(Committed {
            mailbox: Default::default(),
            queue: QueueCommitted {
                pushed,
                claimed: Default::default(),
                settled: Default::default(),
            },
        });
    }
    let tx = client.transaction().await.map_err(store_error)?;
    let (mailbox, queue) = futures::try_join!(
        mailbox::write(&tx, &batch.mailbox),
        queue::write(&tx, &batch.queue, origin),
    )
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(Committed { mailbox, queue })
}

/// A group of pushes alone (every group of the push lane) is one `INSERT`, which is a
/// transaction by itself: committed before its answer comes back, without the `BEGIN` and
/// `COMMIT` round trips (a third of a waiting consumer's wake-up). The tasks a dedup key
/// collided with are then read after that commit, as a later statement of a transaction would.
fn pushes_alone(batch: &Batch) -> bool {
    batch.mailbox.is_empty() && batch.queue.claims.is_empty() && batch.queue.settles.is_empty()
}
