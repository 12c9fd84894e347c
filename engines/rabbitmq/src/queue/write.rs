//! The writes of a group: pushes (a confirmed publish to the ready queue or to a delay queue,
//! after a dedup key's test and set), claims (this daemon's memory: a claim is an unacked
//! delivery) and settlements (an ack, after the confirmed publish of what the task becomes:
//! its retry, its return to the ready queue, or its dead letter).

use super::consume::requeue;
use super::lane::Holding;
use super::Inner;
use crate::link::Published;
use crate::record::Record;
use crate::store_error;
use crate::topology::{self, DELAY_REDECLARE};
use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use ikigai_actors::store::{PushWrite, Pushed, Refusal, Settle, SettleWrite, StoreError};
use ikigai_actors::task::{Claimed, Task};
use lapin::options::{BasicAckOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A queue declared once per connection is declared again only after this long.
const KEEP: Duration = Duration::from_secs(24 * 3600);

/// Attempts at a dedup key's test and set when its holder finishes in between.
const DEDUP_TRIES: usize = 5;

/// What a settlement produced, and what to record of the claim that ended.
type Settled = Result<(Uuid, Result<Task, Refusal>), StoreError>;

impl Inner {
    pub(super) async fn push_all(&self, pushes: Vec<PushWrite>) -> Result<Vec<Pushed>, StoreError> {
        try_join_all(pushes.into_iter().map(|p| self.push(p))).await
    }

    async fn push(&self, write: PushWrite) -> Result<Pushed, StoreError> {
        let now = Utc::now();
        let record = Record::new(write.task, self.next_seq(now), now);
        if let Some(existing) = self.hold_key(&record).await? {
            return Ok(Pushed {
                task: existing.task(),
                created: false,
            });
        }
        self.send(&record, now).await?;
        Ok(Pushed {
            task: record.task(),
            created: true,
        })
    }

    /// Takes `record`'s dedup key for it; `Some(holder)` when another pending task has it.
    async fn hold_key(&self, record: &Record) -> Result<Option<Record>, StoreError> {
        let Some(key) = &record.dedup_key else {
            return Ok(None);
        };
        let name = self.names.dedup(&record.queue, key);
        for _ in 0..DEDUP_TRIES {
            self.link
                .declare(&name, topology::dedup_args(), None)
                .await?;
            let body = record.body();
            match self.link.publish(&name, &body, record.properties()).await? {
                Published::Stored => return Ok(None),
                Published::Unroutable => continue,
                Published::Refused => {
                    if let Some(holder) = self.peek(&name).await? {
                        return Ok(Some(holder));
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "dedup key {key:?} changed hands {DEDUP_TRIES} times"
        )))
    }

    /// The first message of `name`, left in place.
    async fn peek(&self, name: &str) -> Result<Option<Record>, StoreError> {
        let reads = self.link.reads().await?;
        let got = reads.basic_get(name, Default::default()).await;
        let Some(message) = got.map_err(store_error)? else {
            return Ok(None);
        };
        let record = Record::decode(&message.delivery.data);
        let acker = &message.delivery.acker;
        acker.nack(requeue()).await.map_err(store_error)?;
        record
            .map(Some)
            .map_err(|e| StoreError::Undecodable(format!("{name}: {e}")))
    }

    /// Frees `record`'s dedup key (its task finished).
    async fn free_key(&self, record: &Record) -> Result<(), StoreError> {
        let Some(key) = &record.dedup_key else {
            return Ok(());
        };
        let name = self.names.dedup(&record.queue, key);
        let reads = self.link.reads().await?;
        let deleted = reads
            .queue_delete(&name, QueueDeleteOptions::default())
            .await;
        self.link.forget(&name);
        deleted.map(drop).map_err(store_error)
    }

    /// Publishes `record` where it waits now: the ready queue when due, else the delay queue
    /// of its delay.
    pub(super) async fn send(&self, record: &Record, now: DateTime<Utc>) -> Result<(), StoreError> {
        let ready = self.names.ready(&record.queue);
        let delay = (record.scheduled_for - now).to_std().unwrap_or_default();
        if delay.is_zero() {
            return self
                .publish_to(&ready, topology::ready_args(), KEEP, record)
                .await;
        }
        // Its delay queue dead-letters into the ready queue, which must exist by then.
        self.link
            .declare(&ready, topology::ready_args(), Some(KEEP))
            .await?;
        let ttl = topology::delay_ttl(delay);
        let name = self.names.delay(&record.queue, ttl);
        let args = topology::delay_args(ttl, &ready);
        self.lane(&record.queue, |l| l.delays.insert(ttl.as_millis() as u64));
        self.publish_to(&name, args, DELAY_REDECLARE, record).await
    }

    /// Publishes `record` to queue `name`, declared with `args` within `fresh`; declares it
    /// again when it turned out to be gone.
    async fn publish_to(
        &self,
        name: &str,
        args: FieldTable,
        fresh: Duration,
        record: &Record,
    ) -> Result<(), StoreError> {
        let body = record.body();
        for _ in 0..2 {
            self.link.declare(name, args.clone(), Some(fresh)).await?;
            match self.link.publish(name, &body, record.properties()).await? {
                Published::Stored => return Ok(()),
                Published::Unroutable => self.link.forget(name),
                Published::Refused => break,
            }
        }
        Err(StoreError::Unavailable(format!(
            "RabbitMQ did not take the task into {name}"
        )))
    }

    pub(super) fn claim_all(
        &self,
        claims: Vec<ikigai_actors::store::ClaimWrite>,
    ) -> HashMap<Uuid, Claimed> {
        let now = Utc::now();
        let mut lanes = self.lanes.lock().unwrap();
        claims
            .into_iter()
            .filter_map(|c| {
                let lane = lanes.values_mut().find(|l| l.ready.contains_key(&c.id))?;
                lane.claim(c.id, &c.lease, now)
                    .map(|claimed| (c.id, claimed))
            })
            .collect()
    }

    pub(super) async fn settle_all(
        &self,
        settles: Vec<SettleWrite>,
    ) -> Result<HashMap<Uuid, Result<Task, Refusal>>, StoreError> {
        let done = try_join_all(settles.into_iter().map(|w| self.settle(w))).await?;
        Ok(done.into_iter().collect())
    }

    async fn settle(&self, w: SettleWrite) -> Settled {
        let now = Utc::now();
        let taken = {
            let mut lanes = self.lanes.lock().unwrap();
            let ended = self.ended.lock().unwrap();
            let found = lanes.iter_mut().find(|(_, l)| l.held.contains_key(&w.id));
            match found {
                Some((queue, lane)) => lane.settling(&w, &ended, now).map(|h| (queue.clone(), h)),
                None => Err(ended.refusal(&w)),
            }
        };
        let (queue, holding) = match taken {
            Ok(taken) => taken,
            Err(refusal) => return Ok((w.id, Err(refusal))),
        };
        if self.link.live().await?.generation != holding.delivered.generation {
            // Its connection closed since: RabbitMQ has requeued it.
            self.lane(&queue, |l| l.held.remove(&w.id));
            self.lost(&queue, vec![holding]);
            return Ok((w.id, Err(Refusal::LeaseLost)));
        }
        match self.apply(&queue, &holding, &w.action, now).await {
            Ok(task) => Ok((w.id, Ok(task))),
            Err(e) => {
                self.lane(&queue, |l| l.held.insert(w.id, holding));
                Err(e)
            }
        }
    }

    /// Carries out `action` on the claim `h` of a task of `queue`.
    async fn apply(
        &self,
        queue: &str,
        h: &Holding,
        action: &Settle,
        now: DateTime<Utc>,
    ) -> Result<Task, StoreError> {
        let record = &h.delivered.record;
        let exhausted = h.attempts() >= record.max_attempts;
        let task = match action {
            Settle::Extend(by) => {
                let extended = self.lane(queue, |l| l.extend(record.id, *by, now));
                return Ok(extended.unwrap_or_else(|| h.task()));
            }
            Settle::Complete(result) => {
                self.finish(h).await?;
                self.lane(queue, |l| l.completed += 1);
                Task {
                    completed_at: Some(now),
                    result: result.clone().map(Arc::new),
                    lease_until: None,
                    ..h.task()
                }
            }
            Settle::Release => {
                h.delivered
                    .acker
                    .nack(requeue())
                    .await
                    .map_err(store_error)?;
                record.task()
            }
            Settle::Fail { error, .. } if exhausted => self.bury(h, error.clone(), now).await?,
            Settle::Expire if exhausted => {
                let error = format!("lease expired on attempt {}", h.attempts());
                self.bury(h, error, now).await?
            }
            Settle::Fail { error, retry_in } => {
                let delay = retry_in.unwrap_or_else(|| backoff(h.attempts()));
                let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                self.again(h, Some(error.clone()), at, now).await?
            }
            Settle::Expire => self.again(h, record.error.clone(), now, now).await?,
        };
        let finished = !task.is_open();
        let mut ended = self.ended.lock().unwrap();
        ended.record(record.id, queue, &h.agent, finished);
        Ok(task)
    }

    /// The task of `h` waits again, for `at`, its claim counted.
    async fn again(
        &self,
        h: &Holding,
        error: Option<String>,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Task, StoreError> {
        let next = Record {
            attempts: h.attempts(),
            error,
            scheduled_for: at,
            ..h.delivered.record.clone()
        };
        self.send(&next, now).await?;
        ack(h).await?;
        Ok(next.task())
    }

    /// The task of `h` is dead: into the dead-letter queue.
    async fn bury(
        &self,
        h: &Holding,
        error: String,
        now: DateTime<Utc>,
    ) -> Result<Task, StoreError> {
        let dead = Record {
            attempts: h.attempts(),
            error: Some(error),
            failed_at: Some(now),
            ..h.delivered.record.clone()
        };
        let name = self.names.dead(&dead.queue);
        self.publish_to(&name, topology::plain_args(), KEEP, &dead)
            .await?;
        self.finish(h).await?;
        // A dead task keeps who held it last (as on Postgres).
        Ok(Task {
            claimed_by: Some(h.agent.clone()),
            claimed_at: Some(h.claimed_at),
            ..dead.task()
        })
    }

    /// Acknowledges `h` and frees its dedup key.
    async fn finish(&self, h: &Holding) -> Result<(), StoreError> {
        ack(h).await?;
        self.free_key(&h.delivered.record).await
    }

    /// Records the claims on `queue` lost with their connection as ended.
    pub(super) fn lost(&self, queue: &str, lost: Vec<Holding>) {
        let mut ended = self.ended.lock().unwrap();
        for h in lost {
            ended.record(h.delivered.record.id, queue, &h.agent, false);
        }
    }
}

async fn ack(h: &Holding) -> Result<(), StoreError> {
    let acked = h.delivered.acker.ack(BasicAckOptions::default()).await;
    acked.map_err(store_error)
}

/// The retry delay after the `attempts`-th attempt failed: 1 s doubling to 1 h, with ±25%
/// jitter (as on Postgres and Redis).
fn backoff(attempts: i32) -> Duration {
    let doublings = (attempts - 1).clamp(0, 12) as u32;
    let base = (1000u64 << doublings).min(3_600_000) as f64;
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_millis((base * jitter) as u64)
}
