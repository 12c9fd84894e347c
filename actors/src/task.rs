//! Domain types of the queue service: a task before and after it is committed, and the lease a
//! claim takes on it.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A task accepted from a producer, not yet committed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: Uuid,
    pub queue: String,
    pub payload: Arc<serde_json::Value>,
    pub priority: i32,
    /// When it may first be claimed; `None` for now.
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    /// A key that is pending at most once per queue.
    pub dedup_key: Option<String>,
}

/// A committed task, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: Uuid,
    pub seq: i64,
    pub queue: String,
    pub payload: Arc<serde_json::Value>,
    pub priority: i32,
    pub scheduled_for: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Claims so far (a released claim does not count).
    pub attempts: i32,
    pub max_attempts: i32,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub lease_until: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub result: Option<Arc<serde_json::Value>>,
    pub dedup_key: Option<String>,
}

/// What the store assigns when it inserts a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    pub seq: i64,
    pub scheduled_for: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// What a committed claim wrote into its task's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub attempts: i32,
    pub claimed_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

impl NewTask {
    /// The task as stored, from what the store assigned, claimed by `claim` when it went
    /// straight to a waiting consumer.
    pub fn stored(&self, inserted: Inserted, claim: Option<(&Lease, Claimed)>) -> Task {
        let task = Task {
            id: self.id,
            seq: inserted.seq,
            queue: self.queue.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            scheduled_for: inserted.scheduled_for,
            created_at: inserted.created_at,
            attempts: 0,
            max_attempts: self.max_attempts,
            claimed_by: None,
            claimed_at: None,
            lease_until: None,
            completed_at: None,
            failed_at: None,
            error: None,
            result: None,
            dedup_key: self.dedup_key.clone(),
        };
        match claim {
            Some((lease, claimed)) => task.claimed(&lease.agent, claimed),
            None => task,
        }
    }
}

/// The candidates whose claim took effect (in `won`), claimed by `agent`, in candidate order.
pub fn won_by(candidates: Vec<Task>, mut won: HashMap<Uuid, Claimed>, agent: &str) -> Vec<Task> {
    candidates
        .into_iter()
        .filter_map(|t| won.remove(&t.id).map(|c| t.claimed(agent, c)))
        .collect()
}

impl Task {
    /// This task with a committed claim by `agent` applied.
    pub fn claimed(self, agent: &str, claimed: Claimed) -> Task {
        Task {
            attempts: claimed.attempts,
            claimed_by: Some(agent.to_owned()),
            claimed_at: Some(claimed.claimed_at),
            lease_until: Some(claimed.lease_until),
            ..self
        }
    }

    /// Order of claiming: priority descending, then oldest first (the seed's order).
    pub fn rank(&self) -> Rank {
        Rank(std::cmp::Reverse(self.priority), self.created_at, self.seq)
    }

    /// Neither completed nor dead.
    pub fn is_open(&self) -> bool {
        self.completed_at.is_none() && self.failed_at.is_none()
    }
}

/// The claim order of a task; smaller is claimed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank(pub std::cmp::Reverse<i32>, pub DateTime<Utc>, pub i64);

/// A claim: who holds the task, for how long, under which lease id (the fencing token).
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub agent: String,
    pub lease_id: Uuid,
    pub duration: Duration,
}

impl Lease {
    pub fn new(agent: String, duration: Duration) -> Self {
        Lease {
            agent,
            lease_id: Uuid::new_v4(),
            duration,
        }
    }
}
