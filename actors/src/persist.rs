//! The persistence actor: owns the writes of one service and commits them in groups through
//! that service's journal.
//!
//! While one commit is in flight, every write that arrives joins the next group, and the next
//! group is committed in one transaction as soon as the current one finishes. Each writer's
//! callback runs only after its group has committed (or failed), in submission order: a send is
//! acknowledged after its commit and never before.
//!
//! Mailboxes have one persister. [`Lanes`] runs three for the queues side by side: the pushes
//! commit on a lane of their own, so that a push (and the consumer it wakes) never waits behind a group of claims and
//! settlements, and so do its claims, so that a consumer's next claim never waits behind the
//! completions of the others.

use crate::message::{NewMessage, StoredMessage};
use crate::store::{
    AckWrite, AttemptsWrite, ClaimWrite, MailboxBatch, MailboxCommitted, MailboxJournal, PushWrite,
    Pushed, QueueBatch, QueueCommitted, QueueJournal, Refusal, SettleWrite, StoreError,
};
use crate::supervise::contain;
use crate::task::{Claimed, Task};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;
use tracing::{debug, error};
use uuid::Uuid;

/// Most writes in one group; a larger backlog is split over several commits.
pub const MAX_GROUP: usize = 4096;

/// One durable write.
#[derive(Debug)]
pub enum Write {
    Send(NewMessage),
    Ack(Vec<AckWrite>),
    Attempts(Vec<AttemptsWrite>),
    Push(Vec<PushWrite>),
    Claim(Vec<ClaimWrite>),
    Settle(Vec<SettleWrite>),
}

/// What a write produced once its group committed.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Sent(StoredMessage),
    /// The ids of the `Ack` write that changed from unread to read.
    Acked(Vec<Uuid>),
    Recorded,
    /// One per pushed task, in order.
    Pushed(Vec<Pushed>),
    /// The claims that took effect, by task id (the others were taken meanwhile).
    Claimed(HashMap<Uuid, Claimed>),
    /// One per settlement, in order.
    Settled(Vec<(Uuid, Result<Task, Refusal>)>),
}

/// Called once with the write's outcome after its group committed or failed.
pub type Done = Box<dyn FnOnce(Result<Outcome, StoreError>) + Send>;

/// Submits a write; `done` runs after the commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persist {
    pub write: Write,
    pub done: Done,
}

/// Answers once every write submitted before it has been committed or has failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush(pub oneshot::Sender<()>);

/// Where a persister commits: the journal of the one service whose writes it carries.
#[derive(Clone)]
pub enum Journal {
    Mailbox(Arc<dyn MailboxJournal>),
    Queue(Arc<dyn QueueJournal>),
}

/// The writes of one group.
#[derive(Debug, Default)]
struct Batch {
    mailbox: MailboxBatch,
    queue: QueueBatch,
}

/// What a committed group produced.
#[derive(Debug, Default)]
struct Committed {
    mailbox: MailboxCommitted,
    queue: QueueCommitted,
}

impl Journal {
    async fn commit(&self, batch: Batch) -> Result<Committed, StoreError> {
        match self {
            Journal::Mailbox(j) if batch.queue.is_empty() => Ok(Committed {
                mailbox: j.commit(batch.mailbox).await?,
                ..Committed::default()
            }),
            Journal::Queue(j) if batch.mailbox.is_empty() => Ok(Committed {
                queue: j.commit(batch.queue).await?,
                ..Committed::default()
            }),
            _ => Err(StoreError::Rejected(
                "a persister was handed another service's writes".into(),
            )),
        }
    }
}

/// The queue's three persisters, each with its own journal: pushes on one, claims on another,
/// settlements on the main one. Each lane keeps its own
/// rules (groups, order, ack after commit). Splitting them keeps every write's meaning, because
/// no write depends on another lane's write that has not committed: a claim takes a task from
/// the window, which holds committed tasks only (pushed, or given back by a committed
/// settlement), and a settlement follows its committed claim (a push claimed in its own insert
/// is one write). Nor do the lanes wait on each other in a cycle: claims skip locked rows and
/// so never wait; a push can wait on the main lane only for a row the main lane holds (a
/// pending task with the same dedup key), and the main lane never touches a row before its
/// push and its claim committed.
#[derive(Clone)]
pub struct Lanes {
    pub main: Addr<Persister>,
    pub pushes: Addr<Persister>,
    pub claims: Addr<Persister>,
}

impl Lanes {
    /// Submits `write` to its lane; `done` runs after that lane committed it.
    pub fn persist(&self, write: Write, done: Done) {
        let lane = match write {
            Write::Push(_) => &self.pushes,
            Write::Claim(_) => &self.claims,
            _ => &self.main,
        };
        lane.do_send(Persist { write, done });
    }

    /// Returns once every write submitted to any lane before the call has committed or failed.
    pub async fn flush(&self) {
        let flushed = [&self.main, &self.pushes, &self.claims].map(|lane| {
            let (done, flushed) = oneshot::channel();
            lane.do_send(Flush(done));
            flushed
        });
        let _ = futures::future::join_all(flushed).await;
    }
}

/// The group-commit actor.
pub struct Persister {
    journal: Journal,
    next: Vec<Persist>,
    committing: bool,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Persister {
    pub fn new(journal: Journal) -> Self {
        Persister {
            journal,
            next: Vec::new(),
            committing: false,
            flushes: Vec::new(),
        }
    }

    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.next.is_empty() {
            self.flushes.drain(..).for_each(|f| {
                let _ = f.send(());
            });
            return;
        }
        let take = self.next.len().min(MAX_GROUP);
        let group: Vec<Persist> = self.next.drain(..take).collect();
        let (batch, group) = split_group(group);
        let writes = batch.mailbox.len() + batch.queue.len();
        self.committing = true;
        let journal = self.journal.clone();
        let commit = async move {
            let started = std::time::Instant::now();
            let result = journal.commit(batch).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            debug!(writes, ok = result.is_ok(), ms, "group committed");
            result
        };
        ctx.spawn(commit.into_actor(self).map(move |result, act, ctx| {
            if let Err(p) = contain(|| distribute(group, result)) {
                error!(panic = %p.0, "distributing a commit's outcomes panicked");
            }
            act.committing = false;
            act.commit_next(ctx);
        }));
    }
}

impl Actor for Persister {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16 * 1024);
    }
}

impl Handler<Persist> for Persister {
    type Result = ();

    fn handle(&mut self, msg: Persist, ctx: &mut Context<Self>) {
        self.next.push(msg);
        if !self.committing {
            self.commit_next(ctx);
        }
    }
}

impl Handler<Flush> for Persister {
    type Result = ();

    fn handle(&mut self, msg: Flush, ctx: &mut Context<Self>) {
        self.flushes.push(msg.0);
        if !self.committing {
            self.commit_next(ctx);
        }
    }
}

/// The callbacks of a group, with the shape of each write kept for matching outcomes.
type Callbacks = Vec<(Kind, Done)>;

enum Kind {
    Send,
    Ack(Vec<Uuid>),
    Attempts,
    Push(usize),
    Claim(Vec<Uuid>),
    Settle(Vec<Uuid>),
}

fn split_group(group: Vec<Persist>) -> (Batch, Callbacks) {
    let mut batch = Batch::default();
    let mut callbacks = Vec::with_capacity(group.len());
    for Persist { write, done } in group {
        callbacks.push((add(&mut batch, write), done));
    }
    (batch, callbacks)
}

/// Adds `write` to `batch`, returning what its callback will need to find its outcome.
fn add(batch: &mut Batch, write: Write) -> Kind {
    match write {
        Write::Send(m) => {
            batch.mailbox.sends.push(m);
            Kind::Send
        }
        Write::Ack(acks) => {
            let ids = acks.iter().map(|a| a.id).collect();
            batch.mailbox.acks.extend(acks);
            Kind::Ack(ids)
        }
        Write::Attempts(a) => {
            batch.mailbox.attempts.extend(a);
            Kind::Attempts
        }
        Write::Push(pushes) => {
            let n = pushes.len();
            batch.queue.pushes.extend(pushes);
            Kind::Push(n)
        }
        Write::Claim(claims) => {
            let ids = claims.iter().map(|c| c.id).collect();
            batch.queue.claims.extend(claims);
            Kind::Claim(ids)
        }
        Write::Settle(settles) => {
            let ids = settles.iter().map(|s| s.id).collect();
            batch.queue.settles.extend(settles);
            Kind::Settle(ids)
        }
    }
}

fn distribute(callbacks: Callbacks, result: Result<Committed, StoreError>) {
    let mut committed = match result {
        Ok(c) => c,
        Err(e) => {
            callbacks
                .into_iter()
                .for_each(|(_, done)| done(Err(e.clone())));
            return;
        }
    };
    let mut sent = std::mem::take(&mut committed.mailbox.sent).into_iter();
    let mut pushed = std::mem::take(&mut committed.queue.pushed).into_iter();
    for (kind, done) in callbacks {
        let outcome = match kind {
            Kind::Send => match sent.next() {
                Some(m) => Ok(Outcome::Sent(m)),
                None => Err(StoreError::Rejected(
                    "store returned fewer rows than sent".into(),
                )),
            },
            // An id acknowledged twice in one group counts for the first writer only.
            Kind::Ack(ids) => Ok(Outcome::Acked(
                ids.into_iter()
                    .filter(|id| committed.mailbox.acked.remove(id))
                    .collect(),
            )),
            Kind::Attempts => Ok(Outcome::Recorded),
            Kind::Push(n) => Ok(Outcome::Pushed(pushed.by_ref().take(n).collect())),
            Kind::Claim(ids) => Ok(Outcome::Claimed(
                ids.iter()
                    .filter_map(|id| committed.queue.claimed.remove_entry(id))
                    .collect(),
            )),
            Kind::Settle(ids) => Ok(Outcome::Settled(
                ids.into_iter()
                    .map(|id| {
                        let r = committed.queue.settled.remove(&id);
                        (id, r.unwrap_or(Err(Refusal::NotFound)))
                    })
                    .collect(),
            )),
        };
        done(outcome);
    }
}
