//! Transactions across services. `tx.begin` opens a unit of work ([`Unit`]) on the engine that
//! can hold one (Postgres). An op given its id hands the unit the very write it would otherwise
//! hand its service, and turns what the unit answers into its reply; an error there (a stale
//! version, a settlement refused) undoes the whole transaction. What each write produced is
//! kept, and after `COMMIT` one step, [`Outcomes::apply`], tells the actors (a message reaches
//! its mailbox, a queue reloads, a cache entry is set...). `tx.rollback`, an error, the session
//! closing, or the deadline passing undoes all of it.
//!
//! A transaction spans only services whose backend is Postgres: an op inside one on any other
//! backend is refused, naming the service and its backend.

use crate::config::Backend;
use crate::error::Error;
use crate::services::Services;
use ikigai_actors::storage::{DocumentWrite, DocumentWritten};
use ikigai_actors::store::{
    MailboxBatch, MailboxCommitted, QueueBatch, QueueCommitted, Settle, Unit,
};
use ikigai_actors::SessionId;
use ikigai_protocol::Packed;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::warn;
use uuid::Uuid;

/// Open transactions per connection: each holds a pooled connection.
const MAX_OPEN: usize = 2;

/// What happens only once a transaction commits, with no write of its own inside it.
pub enum Later {
    /// The cache is not transactional: the entry is set after the commit.
    CacheSet {
        key: String,
        value: Packed,
        ttl: Option<Duration>,
    },
    /// A telemetry event of the agent, recorded after the commit.
    Event {
        agent: String,
        event_type: &'static str,
        payload: serde_json::Value,
    },
}

/// Each write of a transaction beside what it produced, and what waits for the commit.
#[derive(Default)]
pub struct Outcomes {
    mailbox: Vec<(MailboxBatch, MailboxCommitted)>,
    queue: Vec<(QueueBatch, QueueCommitted)>,
    later: Vec<Later>,
}

struct Open {
    unit: Box<dyn Unit>,
    outcomes: Outcomes,
}

type Slot = Rc<Mutex<Option<Open>>>;

/// The open transactions of one session.
#[derive(Default)]
pub struct Transactions {
    open: RefCell<HashMap<Uuid, Slot>>,
}

/// A service's part in transactions: its name and its backend.
fn transactional(service: &str, backend: Backend) -> Result<(), Error> {
    match backend {
        Backend::Postgres => Ok(()),
        other => Err(Error::BadRequest(format!(
            "{service} are on {other}: a transaction spans only services whose backend is postgres"
        ))),
    }
}

impl Transactions {
    /// Opens a transaction that is rolled back if still open after `limit`.
    pub async fn begin(self: &Rc<Self>, s: &Services, limit: Duration) -> Result<Uuid, Error> {
        if self.open.borrow().len() >= MAX_OPEN {
            let message = format!("at most {MAX_OPEN} transactions may be open per connection");
            return Err(Error::BadRequest(message));
        }
        let unit = s.units.begin().await?;
        let id = Uuid::new_v4();
        let open = Open {
            unit,
            outcomes: Outcomes::default(),
        };
        let slot = Rc::new(Mutex::new(Some(open)));
        self.open.borrow_mut().insert(id, slot);
        let txs = Rc::downgrade(self);
        tokio::task::spawn_local(async move {
            tokio::time::sleep(limit).await;
            if let Some(txs) = txs.upgrade() {
                let _ = txs.rollback(id).await;
            }
        });
        Ok(id)
    }

    /// Applies mailbox writes inside transaction `id`; `answer` makes the op's reply of them.
    pub async fn mailbox<T>(
        &self,
        s: &Services,
        id: Uuid,
        batch: MailboxBatch,
        answer: impl FnOnce(&MailboxCommitted) -> Result<T, Error>,
    ) -> Result<T, Error> {
        transactional("mailboxes", s.config.services.mailboxes)?;
        self.within(id, async |open| {
            let done = open.unit.mailbox(&batch).await?;
            let reply = answer(&done)?;
            open.outcomes.mailbox.push((batch, done));
            Ok(reply)
        })
        .await
    }

    /// Applies queue writes inside transaction `id`; `answer` makes the op's reply of them.
    pub async fn queue<T>(
        &self,
        s: &Services,
        id: Uuid,
        batch: QueueBatch,
        answer: impl FnOnce(&QueueCommitted) -> Result<T, Error>,
    ) -> Result<T, Error> {
        transactional("queues", s.config.services.queues)?;
        self.within(id, async |open| {
            let done = open.unit.queue(&batch).await?;
            let reply = answer(&done)?;
            open.outcomes.queue.push((batch, done));
            Ok(reply)
        })
        .await
    }

    /// Writes a document inside transaction `id` (a stale version undoes the transaction).
    pub async fn document(
        &self,
        s: &Services,
        id: Uuid,
        write: DocumentWrite,
    ) -> Result<DocumentWritten, Error> {
        transactional("documents", s.config.services.storage)?;
        self.within(id, async |open| Ok(open.unit.document(&write).await?))
            .await
    }

    /// Records what happens once transaction `id` commits (or never).
    pub async fn later(&self, s: &Services, id: Uuid, later: Later) -> Result<(), Error> {
        if let Later::CacheSet { .. } = later {
            transactional("cache entries", s.config.services.cache)?;
        }
        self.within(id, async |open| {
            open.outcomes.later.push(later);
            Ok(())
        })
        .await
    }

    /// Runs `f` on transaction `id`. An error aborts the whole transaction.
    async fn within<T>(
        &self,
        id: Uuid,
        f: impl AsyncFnOnce(&mut Open) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let slot = self.slot(id)?;
        let mut guard = slot.lock().await;
        let open = guard.as_mut().ok_or_else(|| gone(id))?;
        match f(open).await {
            Ok(value) => Ok(value),
            Err(e) => {
                drop(guard);
                // Rolled back before the error is answered, so that what it locked is free
                // for the caller's next request (a closed connection frees it only later).
                let _ = self.rollback(id).await;
                Err(e)
            }
        }
    }

    /// Commits transaction `id`; returns what the actors must now learn.
    pub async fn commit(&self, id: Uuid) -> Result<Outcomes, Error> {
        let open = self.take(id).await?;
        open.unit.commit().await?;
        Ok(open.outcomes)
    }

    /// Rolls transaction `id` back.
    pub async fn rollback(&self, id: Uuid) -> Result<(), Error> {
        self.take(id).await?.unit.rollback().await;
        Ok(())
    }

    /// Abandons every open transaction (the session closed): dropping a unit rolls it back.
    pub fn abandon_all(&self) {
        for (_, slot) in self.open.borrow_mut().drain() {
            if let Ok(mut guard) = slot.try_lock() {
                guard.take();
            }
        }
    }

    async fn take(&self, id: Uuid) -> Result<Open, Error> {
        let slot = self.open.borrow_mut().remove(&id).ok_or_else(|| gone(id))?;
        let open = slot.lock().await.take();
        open.ok_or_else(|| gone(id))
    }

    fn slot(&self, id: Uuid) -> Result<Slot, Error> {
        self.open.borrow().get(&id).cloned().ok_or_else(|| gone(id))
    }
}

impl Outcomes {
    /// Tells the actors what a committed transaction did, as if each write had gone through
    /// them; `session` held the transaction (its claims are released when it closes).
    pub async fn apply(self, s: &Services, session: SessionId) {
        for (batch, done) in self.mailbox {
            mailbox_committed(s, batch, done);
        }
        for (batch, done) in self.queue {
            queue_committed(s, session, batch, done);
        }
        for later in self.later {
            match later {
                Later::CacheSet { key, value, ttl } => {
                    if let Err(e) = s.cache.set(key, value, ttl).await {
                        warn!(error = %e, "a committed transaction's cache entry was not set");
                    }
                }
                Later::Event {
                    agent,
                    event_type,
                    payload,
                } => s.telemetry.record(&agent, event_type, payload),
            }
        }
    }
}

fn mailbox_committed(s: &Services, batch: MailboxBatch, done: MailboxCommitted) {
    done.sent.into_iter().for_each(|m| s.mailboxes.committed(m));
    let mut acked: HashMap<String, Vec<Uuid>> = HashMap::new();
    for ack in batch
        .acks
        .into_iter()
        .filter(|a| done.acked.contains(&a.id))
    {
        acked.entry(ack.mailbox).or_default().push(ack.id);
    }
    acked
        .into_iter()
        .for_each(|(mailbox, ids)| s.mailboxes.forget(&mailbox, ids));
}

/// Pushes reload their queue; claims are held by the queue as if claimed through it; a queue
/// moves the lease it holds on an extended task, and after any other settlement forgets the
/// lease and reloads (the task may be claimable).
fn queue_committed(s: &Services, session: SessionId, batch: QueueBatch, done: QueueCommitted) {
    let pushed: BTreeSet<&str> = done.pushed.iter().map(|p| p.task.queue.as_str()).collect();
    pushed.into_iter().for_each(|queue| s.queues.changed(queue));
    for (next, tasks) in batch.claim_next.iter().zip(&done.claimed_next) {
        s.queues.adopt(&next.queue, session, &next.lease, tasks);
    }
    for write in &batch.settles {
        let Some(Ok(task)) = done.settled.get(&write.id) else {
            continue;
        };
        match (&write.action, task.lease_until) {
            (Settle::Extend(_), Some(until)) => {
                s.queues.extended_elsewhere(&task.queue, task.id, until)
            }
            _ => s.queues.settled_elsewhere(&task.queue, task.id),
        }
    }
}

fn gone(id: Uuid) -> Error {
    Error::NotFound(format!(
        "no open transaction {id}: it was committed, rolled back, failed, or ran past its time limit"
    ))
}
