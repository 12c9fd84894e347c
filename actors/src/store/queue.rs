//! The queue service's storage: the writes a group commit carries for it (pushes, claims and
//! settlements) and what they produced ([`QueueJournal`]), the reads of [`QueueStore`], and the
//! changes its feed reports ([`QueueChange`]). The Postgres implementation is
//! `src/postgres/queue.rs`.

use super::StoreError;
use crate::task::{Claimed, Lease, NewTask, Rank, Task};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Inserts a task, already claimed by `claim` when a consumer was waiting for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushWrite {
    pub task: NewTask,
    pub claim: Option<Lease>,
}

/// Claims a task if it is still claimable.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimWrite {
    pub id: Uuid,
    pub lease: Lease,
}

/// Claims up to `max` of the best claimable tasks of `queue`, as the store ranks them (a claim
/// inside a transaction, which no queue actor picks for).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimNext {
    pub queue: String,
    pub max: usize,
    pub lease: Lease,
}

/// What the claimer does with its task.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Done: store the result.
    Complete(Option<serde_json::Value>),
    /// Failed: retry after `retry_in` (or exponential backoff) until `max_attempts`, then dead.
    Fail {
        error: String,
        retry_in: Option<Duration>,
    },
    /// Renew the lease for this long from now.
    Extend(Duration),
    /// Give the task back untouched (the claim does not count as an attempt).
    Release,
    /// The lease ran out or its session ended: claimable again with the attempt counted, or
    /// dead when attempts are exhausted.
    Expire,
}

/// A settlement by `agent`, fenced by `lease_id` when the daemon knows the claim.
#[derive(Debug, Clone, PartialEq)]
pub struct SettleWrite {
    pub id: Uuid,
    pub agent: String,
    pub lease_id: Option<Uuid>,
    pub action: Settle,
    /// The task's payload when the daemon holds it: the store need not read it back.
    pub payload: Option<Arc<serde_json::Value>>,
}

/// The queue writes of one group commit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct QueueBatch {
    pub pushes: Vec<PushWrite>,
    pub claims: Vec<ClaimWrite>,
    pub claim_next: Vec<ClaimNext>,
    pub settles: Vec<SettleWrite>,
}

impl QueueBatch {
    pub fn len(&self) -> usize {
        self.pushes.len() + self.claims.len() + self.claim_next.len() + self.settles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One push's outcome: the task (the existing one when `dedup_key` was pending already).
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    pub task: Task,
    pub created: bool,
}

/// Why a settlement changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    /// Claimed by another agent, or never claimed by this one.
    NotClaimer,
    /// The lease ran out (and may have gone to someone else).
    LeaseLost,
    /// Completed or dead already.
    Finished,
}

/// What the queue part of a committed batch produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct QueueCommitted {
    /// One per push, in order.
    pub pushed: Vec<Pushed>,
    /// The claims that took effect, by task id.
    pub claimed: HashMap<Uuid, Claimed>,
    /// One per `claim_next`, in order: the tasks it claimed.
    pub claimed_next: Vec<Vec<Task>>,
    /// Every settlement's outcome, by task id: the task as it is now, or why nothing changed.
    pub settled: HashMap<Uuid, Result<Task, Refusal>>,
}

/// Counters of one queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueCounts {
    pub pending: u64,
    pub scheduled: u64,
    pub claimed: u64,
    pub completed: u64,
    pub dead: u64,
}

/// The task states `queue.list` can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    Scheduled,
    Claimed,
    Completed,
    Dead,
}

/// Durable application of the queue service's write groups.
#[async_trait]
pub trait QueueJournal: Send + Sync + 'static {
    /// Applies `batch` all or nothing and reports what it produced; returns after it is durable.
    async fn commit(&self, batch: QueueBatch) -> Result<QueueCommitted, StoreError>;
}

/// A change to queues that another writer made, as the queue feed reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueChange {
    /// Tasks of `queue` may have become claimable.
    Changed(String),
    /// Changes may have been missed (the feed reconnected): every queue reloads.
    Missed,
}

impl TaskState {
    pub const ALL: [TaskState; 5] = [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Claimed,
        TaskState::Completed,
        TaskState::Dead,
    ];

    /// Its name on the wire (`queue.list`) and in the engines' indexes.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Scheduled => "scheduled",
            TaskState::Claimed => "claimed",
            TaskState::Completed => "completed",
            TaskState::Dead => "dead",
        }
    }

    pub fn parse(name: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl QueueBatch {
    /// A batch of the pushes of `tasks`, none claimed in its insert.
    pub fn pushes(tasks: Vec<NewTask>) -> QueueBatch {
        let pushes = tasks
            .into_iter()
            .map(|task| PushWrite { task, claim: None })
            .collect();
        QueueBatch {
            pushes,
            ..QueueBatch::default()
        }
    }
}

/// Reads of the queue service (its writes go through its [`QueueJournal`]).
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Up to `limit` claimable tasks of `queue` (due, unclaimed, open), in claim order, ranked
    /// after `after` when given.
    async fn load_claimable(
        &self,
        queue: &str,
        after: Option<Rank>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;

    /// When the next scheduled (not yet due) task of `queue` becomes due.
    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Queues holding open tasks.
    async fn queues_with_work(&self) -> Result<Vec<String>, StoreError>;

    /// Releases every open claim taken through daemon `origin` (whose sessions are all gone);
    /// returns the queues touched.
    async fn release_claims_of(&self, origin: &str) -> Result<Vec<String>, StoreError>;

    /// Releases claims whose lease ran out more than `grace` ago, whoever took them (a daemon
    /// that died); returns the queues touched.
    async fn release_expired(&self, grace: Duration) -> Result<Vec<String>, StoreError>;

    /// The queue a task belongs to.
    async fn queue_of(&self, id: Uuid) -> Result<Option<String>, StoreError>;

    async fn counts(&self, queue: &str) -> Result<QueueCounts, StoreError>;

    /// Tasks of `queue` in `state` (all when `None`), oldest first, after `after` (a seq).
    async fn list(
        &self,
        queue: &str,
        state: Option<TaskState>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;

    /// `Some(first)` when the engine is a broker, which delivers each task to one daemon that
    /// asks for it instead of letting every daemon read every claimable task: then
    /// [`load_claimable`](QueueStore::load_claimable) returns only what was delivered here, a
    /// push is never claimed in its insert, a task a settlement reopens goes back to the broker
    /// (the feed announces it when it is delivered here again), the actor tells the engine how
    /// many consumers wait ([`want`](QueueStore::want)), and a claim finding nothing waits at
    /// least `first`, the time the broker's first deliveries take. `None` (the default): every
    /// claimable task is in the store for any daemon to claim by id.
    fn delivers(&self) -> Option<Duration> {
        None
    }

    /// `waiting` consumers wait on `queue` in this daemon (called on a broker only, whenever
    /// the number changes).
    fn want(&self, _queue: &str, _waiting: usize) {}
}
