//! What this daemon holds of one queue, in memory: the deliveries RabbitMQ handed its consumer
//! that no agent claimed yet (`ready`), the claimed ones (`held`: a lease is an unacked
//! delivery), and its consumer. Plain data and rules, no I/O.

use crate::record::Record;
use chrono::{DateTime, Utc};
use ikigai_actors::store::{Refusal, Settle, SettleWrite};
use ikigai_actors::task::{Claimed, Lease, Rank, Task};
use lapin::acker::Acker;
use lapin::Channel;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A message RabbitMQ delivered to this daemon, not yet acknowledged.
#[derive(Clone)]
pub struct Delivered {
    pub record: Record,
    pub acker: Acker,
    pub generation: u64,
}

/// A delivery claimed by an agent.
#[derive(Clone)]
pub struct Holding {
    pub delivered: Delivered,
    pub agent: String,
    pub lease_id: Uuid,
    pub claimed_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

impl Holding {
    /// The claim counts as an attempt while it lasts.
    pub fn attempts(&self) -> i32 {
        self.delivered.record.attempts + 1
    }

    pub fn task(&self) -> Task {
        let claimed = Claimed {
            attempts: self.attempts(),
            claimed_at: self.claimed_at,
            lease_until: self.lease_until,
        };
        self.delivered.record.task().claimed(&self.agent, claimed)
    }
}

/// The consumer of a queue's ready messages on this daemon.
pub enum Consumer {
    Stopped,
    Starting,
    Running { tag: String },
}

/// One queue's part of this daemon.
pub struct Lane {
    pub ready: HashMap<Uuid, Delivered>,
    pub held: HashMap<Uuid, Holding>,
    pub consumer: Consumer,
    /// The channel its deliveries come on, and its connection's generation.
    pub channel: Option<(Channel, u64)>,
    /// Consumers waiting here, as the queue actor last said.
    pub wanted: usize,
    /// When `wanted` last fell to 0.
    pub quiet_since: Option<Instant>,
    /// A change was announced on the feed and not read since.
    pub notified: bool,
    /// Tasks completed through this daemon since it started.
    pub completed: u64,
    /// The delay queues (by TTL in ms) this daemon published to.
    pub delays: BTreeSet<u64>,
}

impl Default for Lane {
    fn default() -> Self {
        Lane {
            ready: HashMap::new(),
            held: HashMap::new(),
            consumer: Consumer::Stopped,
            channel: None,
            wanted: 0,
            quiet_since: None,
            notified: false,
            completed: 0,
            delays: BTreeSet::new(),
        }
    }
}

impl Lane {
    /// Up to `limit` due ready tasks in claim order, after `after`.
    pub fn claimable(&self, after: Option<Rank>, limit: usize, now: DateTime<Utc>) -> Vec<Task> {
        let mut tasks: Vec<Task> = self
            .ready
            .values()
            .filter(|d| d.record.scheduled_for <= now)
            .map(|d| d.record.task())
            .filter(|t| after.is_none_or(|a| t.rank() > a))
            .collect();
        tasks.sort_by_key(Task::rank);
        tasks.truncate(limit);
        tasks
    }

    /// The earliest ready task not due yet.
    pub fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let times = self.ready.values().map(|d| d.record.scheduled_for);
        times.filter(|at| *at > now).min()
    }

    /// Claims ready task `id` for `lease`, when it is here and due.
    pub fn claim(&mut self, id: Uuid, lease: &Lease, now: DateTime<Utc>) -> Option<Claimed> {
        if self.ready.get(&id)?.record.scheduled_for > now {
            return None;
        }
        let delivered = self.ready.remove(&id)?;
        let lease_until = now + chrono::Duration::from_std(lease.duration).ok()?;
        let holding = Holding {
            delivered,
            agent: lease.agent.clone(),
            lease_id: lease.lease_id,
            claimed_at: now,
            lease_until,
        };
        let claimed = Claimed {
            attempts: holding.attempts(),
            claimed_at: now,
            lease_until,
        };
        self.held.insert(id, holding);
        Some(claimed)
    }

    /// Takes the claim `w` settles out of `held` (leaves it for an extension), or says why
    /// it cannot: the claimer and its live lease fence every settlement but expiry.
    pub fn settling(
        &mut self,
        w: &SettleWrite,
        ended: &Ended,
        now: DateTime<Utc>,
    ) -> Result<Holding, Refusal> {
        let Some(h) = self.held.get(&w.id) else {
            return Err(ended.refusal(w));
        };
        let live = h.lease_until > now || matches!(w.action, Settle::Expire);
        match () {
            _ if h.agent != w.agent => Err(Refusal::NotClaimer),
            _ if w.lease_id.is_some_and(|l| l != h.lease_id) => Err(Refusal::LeaseLost),
            _ if !live => Err(Refusal::LeaseLost),
            _ if matches!(w.action, Settle::Extend(_)) => Ok(h.clone()),
            _ => Ok(self.held.remove(&w.id).expect("looked up above")),
        }
    }

    /// Whether the consumer tagged `tag` is this lane's running one.
    pub fn consumes(&self, tag: &str) -> bool {
        matches!(&self.consumer, Consumer::Running { tag: t } if t == tag)
    }

    /// Extends the lease of held task `id` by `by` from `now`.
    pub fn extend(&mut self, id: Uuid, by: Duration, now: DateTime<Utc>) -> Option<Task> {
        let h = self.held.get_mut(&id)?;
        h.lease_until = now + chrono::Duration::from_std(by).ok()?;
        Some(h.task())
    }

    /// Forgets every delivery of a generation other than `generation` (its connection closed,
    /// and RabbitMQ requeued them); returns the claims lost.
    pub fn forget_other_generations(&mut self, generation: u64) -> Vec<Holding> {
        if self.channel.as_ref().is_some_and(|(_, g)| *g != generation) {
            self.channel = None;
        }
        self.ready.retain(|_, d| d.generation == generation);
        let lost: Vec<Uuid> = self
            .held
            .iter()
            .filter(|(_, h)| h.delivered.generation != generation)
            .map(|(id, _)| *id)
            .collect();
        lost.iter().filter_map(|id| self.held.remove(id)).collect()
    }
}

/// The tasks this daemon's claims on ended lately: how a later settlement of one is refused.
#[derive(Default)]
pub struct Ended {
    by_id: HashMap<Uuid, (String, String, bool)>,
    order: VecDeque<Uuid>,
}

/// Tasks [`Ended`] remembers; older ones are refused as not found.
const ENDED_KEPT: usize = 100_000;

impl Ended {
    /// Claim of `agent` on task `id` of `queue` ended, the task `finished` (completed or
    /// dead) or not (given back, retried, expired).
    pub fn record(&mut self, id: Uuid, queue: &str, agent: &str, finished: bool) {
        if self
            .by_id
            .insert(id, (queue.into(), agent.into(), finished))
            .is_none()
        {
            self.order.push_back(id);
        }
        while self.order.len() > ENDED_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    pub fn queue_of(&self, id: &Uuid) -> Option<String> {
        self.by_id.get(id).map(|(queue, _, _)| queue.clone())
    }

    pub fn refusal(&self, w: &SettleWrite) -> Refusal {
        match self.by_id.get(&w.id) {
            None => Refusal::NotFound,
            Some((_, _, true)) => Refusal::Finished,
            Some((_, agent, false)) if *agent == w.agent => Refusal::LeaseLost,
            Some(_) => Refusal::NotClaimer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(id: Uuid, agent: &str) -> SettleWrite {
        SettleWrite {
            id,
            agent: agent.into(),
            lease_id: None,
            action: Settle::Complete(None),
            payload: None,
        }
    }

    #[test]
    fn an_ended_claim_refuses_later_settlements_by_what_became_of_it() {
        let mut ended = Ended::default();
        let (done, moved, unknown) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        ended.record(done, "q", "a", true);
        ended.record(moved, "q", "a", false);
        assert_eq!(ended.refusal(&settle(done, "b")), Refusal::Finished);
        assert_eq!(ended.refusal(&settle(moved, "a")), Refusal::LeaseLost);
        assert_eq!(ended.refusal(&settle(moved, "b")), Refusal::NotClaimer);
        assert_eq!(ended.refusal(&settle(unknown, "a")), Refusal::NotFound);
        assert_eq!(ended.queue_of(&done).as_deref(), Some("q"));
    }

    #[test]
    fn ended_claims_are_remembered_up_to_a_bound() {
        let mut ended = Ended::default();
        let first = Uuid::new_v4();
        ended.record(first, "q", "a", true);
        for _ in 0..ENDED_KEPT {
            ended.record(Uuid::new_v4(), "q", "a", true);
        }
        assert_eq!(ended.refusal(&settle(first, "a")), Refusal::NotFound);
        assert_eq!(ended.by_id.len(), ENDED_KEPT);
    }
}
