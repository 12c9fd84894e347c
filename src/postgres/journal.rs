//! The group commit on Postgres, for mailboxes and queues alike: one transaction per group, run
//! on the journal's own thread and connection. The connection names this daemon
//! (`ikigai.origin`) so that the notifications its writes trigger can be told apart from other
//! daemons'.

use super::{mailbox, queue, store_error, DbError};
use async_trait::async_trait;
use deadpool_postgres::{ClientWrapper, GenericClient, Hook, HookError, Metrics, Pool};
use ikigai_actors::store::{
    MailboxBatch, MailboxCommitted, MailboxJournal, QueueBatch, QueueCommitted, QueueJournal,
    StoreError,
};
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

/// The writes of one group (a journal serves one service, so one part is empty).
#[derive(Default)]
struct Batch {
    mailbox: MailboxBatch,
    queue: QueueBatch,
}

#[derive(Default)]
struct Committed {
    mailbox: MailboxCommitted,
    queue: QueueCommitted,
}

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

impl PgJournal {
    async fn commit(&self, batch: Batch) -> Result<Committed, StoreError> {
        let stopped = || StoreError::Unavailable("the journal thread stopped".into());
        let (done, outcome) = oneshot::channel();
        self.groups.send((batch, done)).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

#[async_trait]
impl MailboxJournal for PgJournal {
    async fn commit(&self, mailbox: MailboxBatch) -> Result<MailboxCommitted, StoreError> {
        let batch = Batch {
            mailbox,
            ..Batch::default()
        };
        Ok(PgJournal::commit(self, batch).await?.mailbox)
    }
}

#[async_trait]
impl QueueJournal for PgJournal {
    async fn commit(&self, queue: QueueBatch) -> Result<QueueCommitted, StoreError> {
        let batch = Batch {
            queue,
            ..Batch::default()
        };
        Ok(PgJournal::commit(self, batch).await?.queue)
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
    if one_statement(batch) {
        return write(&client, batch, origin).await.map_err(store_error);
    }
    let tx = client.transaction().await.map_err(store_error)?;
    let committed = write(&tx, batch, origin).await.map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(committed)
}

async fn write(
    client: &impl GenericClient,
    batch: &Batch,
    origin: &str,
) -> Result<Committed, tokio_postgres::Error> {
    let (mailbox, queue) = futures::try_join!(
        mailbox::write(client, &batch.mailbox),
        queue::write(client, &batch.queue, origin),
    )?;
    Ok(Committed { mailbox, queue })
}

/// A group of one kind of write other than settlements (sends, acks, attempt counts, pushes or
/// claims alone: every group of the push and claim lanes, and the main lane's when only
/// mailboxes write) is one statement, and a statement is a transaction by itself: Postgres
/// commits it before answering, so the group needs no `BEGIN` and `COMMIT` round trips (~0.2 ms
/// of a waiting consumer's ~0.9 ms wake-up here). The tasks a push's dedup key collided with are
/// then read after that commit, as a later statement of a transaction would read them.
/// Settlements stay in a transaction: run alone, completions made wake-ups slower
/// (docs/benchmarks.md).
fn one_statement(batch: &Batch) -> bool {
    let (m, q) = (&batch.mailbox, &batch.queue);
    let kinds = [
        m.sends.is_empty(),
        m.acks.is_empty(),
        m.attempts.is_empty(),
        q.pushes.is_empty(),
        q.claims.is_empty(),
        q.claim_next.is_empty(),
    ];
    q.settles.is_empty() && kinds.iter().filter(|empty| !**empty).count() == 1
}
