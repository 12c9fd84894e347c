//! `RabbitQueues`: the queue service's stores on RabbitMQ (`QueueJournal`, `QueueStore` and
//! the feed). RabbitMQ is a broker: it delivers each ready task to one consumer, so this
//! engine's "claimable tasks" are the deliveries its consumer holds (`lane.rs`), its consumer
//! runs while an agent waits here (and [`LINGER`] after), and the feed announces deliveries.
//! Pushes and settlements are in `write.rs`, the consumer in `consume.rs`, reads in `read.rs`.

mod consume;
mod lane;
mod read;
mod write;

use crate::link::Link;
use crate::topology::Names;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ikigai_actors::store::{
    Feed, QueueBatch, QueueChange, QueueCommitted, QueueCounts, QueueJournal, QueueStore,
    StoreError, TaskState,
};
use ikigai_actors::task::{Rank, Task};
use lane::{Ended, Lane};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use uuid::Uuid;

/// How long a claim finding nothing here waits at least: the consumer's start and first
/// deliveries take a few round trips.
pub const FIRST_DELIVERY: Duration = Duration::from_millis(100);

/// How long the consumer of a queue keeps running after its last waiting agent; then it stops
/// and gives its unclaimed deliveries back to RabbitMQ, for the other daemons.
pub const LINGER: Duration = Duration::from_millis(500);

/// The queue service on RabbitMQ.
pub struct RabbitQueues {
    inner: Arc<Inner>,
    feed: Mutex<Option<Feed<QueueChange>>>,
}

struct Inner {
    link: Arc<Link>,
    names: Names,
    prefetch: u16,
    lanes: Mutex<HashMap<String, Lane>>,
    ended: Mutex<Ended>,
    changes: UnboundedSender<QueueChange>,
    seq: AtomicI64,
}

impl RabbitQueues {
    pub(crate) fn new(link: Arc<Link>, prefix: &str, prefetch: u16) -> RabbitQueues {
        let (changes, feed) = unbounded_channel();
        let inner = Inner {
            link,
            names: Names::new(prefix),
            prefetch,
            lanes: Mutex::default(),
            ended: Mutex::default(),
            changes,
            seq: AtomicI64::new(0),
        };
        RabbitQueues {
            inner: Arc::new(inner),
            feed: Mutex::new(Some(feed)),
        }
    }

    /// The feed: deliveries that reached this daemon, and consumers that ended.
    pub(crate) fn feed(&self) -> Feed<QueueChange> {
        let taken = self.feed.lock().unwrap().take();
        taken.unwrap_or_else(|| unbounded_channel().1)
    }
}

impl Inner {
    /// Runs `f` on `queue`'s lane (made on first use).
    fn lane<T>(&self, queue: &str, f: impl FnOnce(&mut Lane) -> T) -> T {
        let mut lanes = self.lanes.lock().unwrap();
        f(lanes.entry(queue.to_owned()).or_default())
    }

    /// Announces that `queue` has news for its actor, once until it reads.
    fn announce(&self, queue: &str) {
        let first = self.lane(queue, |l| !std::mem::replace(&mut l.notified, true));
        if first {
            let _ = self.changes.send(QueueChange::Changed(queue.to_owned()));
        }
    }

    /// A sequence number above every one this daemon gave (microseconds since the epoch, or
    /// the last one plus one): claim order among tasks of the same `created_at`.
    fn next_seq(&self, now: DateTime<Utc>) -> i64 {
        let micros = now.timestamp_micros();
        let prev = self.seq.fetch_max(micros, Ordering::SeqCst);
        if prev < micros {
            micros
        } else {
            self.seq.fetch_add(1, Ordering::SeqCst) + 1
        }
    }
}

#[async_trait]
impl QueueJournal for RabbitQueues {
    /// Pushes and settlements of a group run side by side, each acknowledged by the broker
    /// (publisher confirms); claims change only this daemon's memory. A group is not atomic
    /// on RabbitMQ: when one write fails, the group fails, and the others may have happened.
    async fn commit(&self, batch: QueueBatch) -> Result<QueueCommitted, StoreError> {
        if !batch.claim_next.is_empty() {
            return Err(StoreError::Rejected(
                "claims inside a transaction need Postgres".into(),
            ));
        }
        let pushed = self.inner.push_all(batch.pushes).await?;
        let claimed = self.inner.claim_all(batch.claims);
        let settled = self.inner.settle_all(batch.settles).await?;
        Ok(QueueCommitted {
            pushed,
            claimed,
            claimed_next: Vec::new(),
            settled,
        })
    }
}

#[async_trait]
impl QueueStore for RabbitQueues {
    async fn load_claimable(
        &self,
        queue: &str,
        after: Option<Rank>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.inner.lane(queue, |l| l.notified = false);
        self.inner.ensure_consumer(queue).await?;
        Ok(self
            .inner
            .lane(queue, |l| l.claimable(after, limit, Utc::now())))
    }

    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.inner.lane(queue, |l| l.next_due(Utc::now())))
    }

    /// None at start: RabbitMQ keeps the tasks, and a queue's actor starts when an agent uses
    /// it.
    async fn queues_with_work(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Nothing to do: the claims of this daemon's previous run were unacked deliveries of its
    /// connection, which RabbitMQ requeued when it closed.
    async fn release_claims_of(&self, _origin: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Nothing to do: a dead daemon's connection closes and RabbitMQ requeues its deliveries.
    async fn release_expired(&self, _grace: Duration) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn queue_of(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(self.inner.queue_of(id))
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts, StoreError> {
        self.inner.counts(queue).await
    }

    async fn list(
        &self,
        queue: &str,
        state: Option<TaskState>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.inner.list(queue, state, after, limit).await
    }

    fn delivers(&self) -> Option<Duration> {
        Some(FIRST_DELIVERY)
    }

    fn want(&self, queue: &str, waiting: usize) {
        self.inner.clone().want(queue, waiting);
    }
}
