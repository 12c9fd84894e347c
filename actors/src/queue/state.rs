//! The rules of one queue, as a plain struct: a window of claimable tasks in claim order,
//! waiting consumers, and the leases of claims taken through this daemon.
//!
//! Postgres is the truth; this is a cache that makes claims cheap. Every claim is still a
//! conditional write (`claimed_by IS NULL`), so a stale window costs a wasted candidate, never a
//! double claim. The window holds the best `capacity` known claimable tasks; when a task is
//! dropped or not admitted, `backlog` says Postgres holds more and the window is reloaded when
//! it runs low.

use crate::message::SessionId;
use crate::task::{Lease, Rank, Task};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Where a consumer's claimed tasks go.
pub type ClaimReply = oneshot::Sender<Result<Vec<Task>, super::QueueError>>;

/// A consumer waiting for a task.
pub struct Waiter {
    pub session: SessionId,
    pub lease: Lease,
    pub max: usize,
    /// When a waiting claim gives up and answers with no task; `None` for a claim that returns
    /// at once when nothing is claimable. The actor keeps this deadline, not the session, so
    /// that a claim already being written when it passes is still handed over, never wasted.
    pub until: Option<Instant>,
    pub reply: ClaimReply,
}

/// A claim taken through this daemon, until it is settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub session: SessionId,
    pub agent: String,
    pub lease_id: Uuid,
    pub deadline: Instant,
    /// The task's payload, when the claim was taken here (not adopted from a transaction), so
    /// that settling it need not read the payload back.
    pub payload: Option<Arc<serde_json::Value>>,
}

/// Live counters of one queue actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveCounts {
    pub ready: usize,
    pub held: usize,
    pub waiting: usize,
}

pub struct QueueState {
    name: String,
    capacity: usize,
    ready: BTreeMap<Rank, Task>,
    ranks: HashMap<Uuid, Rank>,
    /// Candidates whose claim write is in flight: never handed out twice.
    claiming: HashSet<Uuid>,
    held: HashMap<Uuid, Held>,
    deadlines: BTreeSet<(Instant, Uuid)>,
    waiters: VecDeque<Waiter>,
    backlog: bool,
    loaded: bool,
}

impl QueueState {
    pub fn new(name: String, capacity: usize) -> Self {
        QueueState {
            name,
            capacity: capacity.max(1),
            ready: BTreeMap::new(),
            ranks: HashMap::new(),
            claiming: HashSet::new(),
            held: HashMap::new(),
            deadlines: BTreeSet::new(),
            waiters: VecDeque::new(),
            backlog: false,
            loaded: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Forgets everything; the next load rebuilds the window from the store.
    pub fn reset(&mut self) {
        *self = QueueState::new(std::mem::take(&mut self.name), self.capacity);
    }

    /// Replaces the window with the store's best claimable tasks; `more` says the page was full.
    pub fn loaded(&mut self, page: Vec<Task>, more: bool) {
        self.ready.clear();
        self.ranks.clear();
        for task in page {
            if !self.claiming.contains(&task.id) && !self.held.contains_key(&task.id) {
                self.insert(task);
            }
        }
        self.backlog = more;
        self.loaded = true;
    }

    /// Adds the next page read from the store (tasks ranked after [`QueueState::worst`]).
    pub fn paged(&mut self, page: Vec<Task>, more: bool) {
        for task in page {
            let known = self.ranks.contains_key(&task.id) || self.claiming.contains(&task.id);
            if !known && !self.held.contains_key(&task.id) {
                self.insert(task);
            }
        }
        self.backlog = more;
    }

    /// The rank of the last task in the window: the store's next page starts after it.
    pub fn worst(&self) -> Option<Rank> {
        self.ready.last_key_value().map(|(rank, _)| *rank)
    }

    /// True when the window runs low and the store holds more.
    pub fn needs_page(&self) -> bool {
        self.loaded && self.backlog && self.ready.len() <= self.capacity / 2
    }

    /// Takes a claimable task (pushed, released or retried). Keeps the invariant of the window:
    /// while `backlog` is set, every claimable task outside it ranks after its worst task. So a
    /// task that ranks after the worst stays in the store, and a better one pushes out the worst
    /// when the window is full.
    pub fn offer(&mut self, task: Task) {
        if !self.loaded || self.ranks.contains_key(&task.id) || self.claiming.contains(&task.id) {
            return;
        }
        let beats_worst = self.worst().is_some_and(|worst| task.rank() < worst);
        if self.backlog && !beats_worst {
            return;
        }
        if self.ready.len() >= self.capacity {
            if !beats_worst {
                self.backlog = true;
                return;
            }
            if let Some((_, evicted)) = self.ready.pop_last() {
                self.ranks.remove(&evicted.id);
            }
            self.backlog = true;
        }
        self.insert(task);
    }

    fn insert(&mut self, task: Task) {
        let rank = task.rank();
        self.ranks.insert(task.id, rank);
        self.ready.insert(rank, task);
    }

    /// Takes up to `max` of the best tasks as claim candidates.
    pub fn take(&mut self, max: usize) -> Vec<Task> {
        let mut out = Vec::with_capacity(max.min(self.ready.len()));
        while out.len() < max {
            let Some((_, task)) = self.ready.pop_first() else {
                break;
            };
            self.ranks.remove(&task.id);
            self.claiming.insert(task.id);
            out.push(task);
        }
        out
    }

    /// The claim write of these candidates committed (won or lost): they are no longer pending.
    pub fn drop_candidates(&mut self, ids: &[Uuid]) {
        for id in ids {
            self.claiming.remove(id);
        }
    }

    /// Records a claim taken through this daemon.
    pub fn hold(&mut self, id: Uuid, held: Held) {
        self.deadlines.insert((held.deadline, id));
        self.held.insert(id, held);
    }

    /// Takes over a claim committed outside the actor (inside a transaction): the task leaves
    /// the window if it was there, and its lease is held like one taken here.
    pub fn adopt(&mut self, id: Uuid, held: Held) {
        if let Some(rank) = self.ranks.remove(&id) {
            self.ready.remove(&rank);
        }
        self.hold(id, held);
    }

    /// The claim write failed: the candidates are claimable again.
    pub fn claim_failed(&mut self, candidates: Vec<Task>) {
        for task in candidates {
            self.claiming.remove(&task.id);
            self.offer(task);
        }
    }

    pub fn held(&self, id: &Uuid) -> Option<&Held> {
        self.held.get(id)
    }

    /// The claim ended (completed, failed, released, expired, or lost): forget its lease.
    pub fn unhold(&mut self, id: &Uuid) -> Option<Held> {
        let held = self.held.remove(id)?;
        self.deadlines.remove(&(held.deadline, *id));
        Some(held)
    }

    /// Moves a lease's deadline (after an extension committed).
    pub fn extend(&mut self, id: &Uuid, deadline: Instant) {
        if let Some(mut held) = self.unhold(id) {
            held.deadline = deadline;
            self.hold(*id, held);
        }
    }

    /// Leases whose deadline passed; they stay held until their expiry commits.
    pub fn expired(&mut self, now: Instant) -> Vec<(Uuid, Held)> {
        let mut due = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(held) = self.held.get(&id) {
                due.push((id, held.clone()));
            }
        }
        due
    }

    /// The leases held by a closed session.
    pub fn held_by(&self, session: SessionId) -> Vec<(Uuid, Held)> {
        let held = self.held.iter().filter(|(_, h)| h.session == session);
        held.map(|(id, h)| (*id, h.clone())).collect()
    }

    pub fn park(&mut self, waiter: Waiter) {
        self.waiters.retain(|w| !w.reply.is_closed());
        self.waiters.push_back(waiter);
    }

    /// The oldest consumer still waiting, removed from the line.
    pub fn next_waiter(&mut self) -> Option<Waiter> {
        while let Some(w) = self.waiters.pop_front() {
            if !w.reply.is_closed() {
                return Some(w);
            }
        }
        None
    }

    /// Puts a waiter back at the head of the line (its claim found nothing); one that does not
    /// wait, or whose wait is over, gets an empty answer instead.
    pub fn unpark(&mut self, waiter: Waiter) {
        match waiter.until {
            Some(until) if until > Instant::now() => {
                if !waiter.reply.is_closed() {
                    self.waiters.push_front(waiter);
                }
            }
            _ => {
                let _ = waiter.reply.send(Ok(Vec::new()));
            }
        }
    }

    /// Answers, with no task, the waiters whose wait is over at `now`.
    pub fn stop_waiting(&mut self, now: Instant) {
        let (over, waiting): (VecDeque<Waiter>, VecDeque<Waiter>) =
            std::mem::take(&mut self.waiters)
                .into_iter()
                .partition(|w| w.until.is_none_or(|until| until <= now));
        self.waiters = waiting;
        for w in over {
            let _ = w.reply.send(Ok(Vec::new()));
        }
    }

    /// Nothing here lives only in memory: no consumer waits, no claim is held or being made.
    pub fn is_quiet(&self) -> bool {
        self.counts().waiting == 0 && self.held.is_empty() && self.claiming.is_empty()
    }

    /// The earliest moment a held lease runs out or a waiting claim's wait is over, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lease = self.deadlines.first().map(|&(deadline, _)| deadline);
        let wait = self.waiters.iter().filter_map(|w| w.until).min();
        lease.into_iter().chain(wait).min()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn counts(&self) -> LiveCounts {
        LiveCounts {
            ready: self.ready.len(),
            held: self.held.len(),
            waiting: self.waiters.iter().filter(|w| !w.reply.is_closed()).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Inserted, NewTask};
    use chrono::{TimeZone, Utc};
    use std::sync::Arc;
    use std::time::Duration;

    fn task(seq: i64, priority: i32) -> Task {
        let new = NewTask {
            id: Uuid::from_u128(seq as u128),
            queue: "q".into(),
            payload: Arc::new(serde_json::json!(seq)),
            priority,
            run_at: None,
            max_attempts: 3,
            dedup_key: None,
        };
        let inserted = Inserted {
            seq,
            scheduled_for: Utc.timestamp_opt(0, 0).unwrap(),
            created_at: Utc.timestamp_opt(1_000 + seq, 0).unwrap(),
        };
        new.stored(inserted, None)
    }

    fn seqs(tasks: &[Task]) -> Vec<i64> {
        tasks.iter().map(|t| t.seq).collect()
    }

    fn loaded(capacity: usize) -> QueueState {
        let mut q = QueueState::new("q".into(), capacity);
        q.loaded(vec![], false);
        q
    }

    fn held(session: SessionId) -> Held {
        Held {
            session,
            agent: "a".into(),
            lease_id: Uuid::new_v4(),
            deadline: Instant::now(),
            payload: None,
        }
    }

    #[test]
    fn claims_go_by_priority_then_age() {
        let mut q = loaded(10);
        for (seq, prio) in [(1, 0), (2, 5), (3, 0), (4, 5)] {
            q.offer(task(seq, prio));
        }
        assert_eq!(seqs(&q.take(10)), [2, 4, 1, 3]);
    }

    #[test]
    fn a_candidate_is_never_handed_out_twice() {
        let mut q = loaded(10);
        q.offer(task(1, 0));
        let first = q.take(1);
        q.offer(task(1, 0)); // e.g. a reload that still sees it unclaimed
        assert!(q.take(1).is_empty());
        q.claim_failed(first);
        assert_eq!(seqs(&q.take(1)), [1]);
    }

    #[test]
    fn a_full_window_keeps_the_best_tasks_and_remembers_the_backlog() {
        let mut q = loaded(2);
        q.offer(task(1, 0));
        q.offer(task(2, 0));
        q.offer(task(3, 9));
        q.offer(task(4, 0));
        assert!(q.needs_page() || q.counts().ready == 2);
        assert_eq!(seqs(&q.take(10)), [3, 1]);
        assert!(q.needs_page());
    }

    #[test]
    fn with_a_backlog_a_later_task_waits_in_the_store_behind_older_ones() {
        let mut q = loaded(2);
        for seq in 1..=3 {
            q.offer(task(seq, 0)); // the third is turned away: backlog
        }
        q.offer(task(5, 9)); // a more urgent task is admitted at once, pushing out task 2
        assert_eq!(seqs(&q.take(2)), [5, 1]);
        q.offer(task(4, 0)); // ranks after tasks 2 and 3, which are only in the store
        assert_eq!(q.counts().ready, 0);
        assert!(
            q.needs_page(),
            "the window pages in tasks 2 and 3 before task 4"
        );
    }

    #[test]
    fn held_leases_expire_and_follow_their_session() {
        let mut q = loaded(10);
        let (a, b) = (SessionId::new(), SessionId::new());
        let now = Instant::now();
        q.hold(
            Uuid::from_u128(1),
            Held {
                deadline: now,
                ..held(a)
            },
        );
        q.hold(
            Uuid::from_u128(2),
            Held {
                deadline: now + Duration::from_secs(60),
                ..held(b)
            },
        );
        assert_eq!(q.expired(now).len(), 1);
        assert_eq!(q.held_by(b).len(), 1);
        assert!(q.unhold(&Uuid::from_u128(2)).is_some());
        assert_eq!(
            q.counts().held,
            1,
            "an expired lease stays held until its expiry commits"
        );
    }

    #[tokio::test]
    async fn waiters_line_up_and_closed_ones_are_skipped() {
        let mut q = loaded(10);
        let (gone, gone_rx) = oneshot::channel();
        drop(gone_rx);
        let (tx, _rx) = oneshot::channel();
        let lease = Lease::new("a".into(), Duration::from_secs(1));
        let waiter = |max, reply| Waiter {
            session: SessionId::new(),
            lease: lease.clone(),
            max,
            until: Some(Instant::now() + Duration::from_secs(1)),
            reply,
        };
        q.waiters.push_back(waiter(1, gone));
        q.waiters.push_back(waiter(2, tx));
        assert_eq!(q.next_waiter().map(|w| w.max), Some(2));
        assert_eq!(q.counts().waiting, 0);
    }

    #[tokio::test]
    async fn a_waiter_whose_wait_is_over_is_answered_with_nothing() {
        let mut q = loaded(10);
        let now = Instant::now();
        let lease = Lease::new("a".into(), Duration::from_secs(1));
        let mut park = |until| {
            let (reply, rx) = oneshot::channel();
            let session = SessionId::new();
            let lease = lease.clone();
            q.park(Waiter {
                session,
                lease,
                max: 1,
                until: Some(until),
                reply,
            });
            rx
        };
        let mut over = park(now);
        let mut waiting = park(now + Duration::from_secs(60));
        q.stop_waiting(now);
        assert!(matches!(over.try_recv(), Ok(Ok(tasks)) if tasks.is_empty()));
        assert!(waiting.try_recv().is_err(), "still waiting");
        assert_eq!(q.counts().waiting, 1);
    }

    #[tokio::test]
    async fn the_next_deadline_is_the_earliest_lease_end_or_end_of_a_wait() {
        let mut q = loaded(10);
        assert_eq!(q.next_deadline(), None, "nothing held, nobody waits");
        assert!(q.is_quiet());
        let now = Instant::now();
        let at = |s| now + Duration::from_secs(s);
        q.hold(
            Uuid::from_u128(1),
            Held {
                deadline: at(30),
                ..held(SessionId::new())
            },
        );
        q.hold(
            Uuid::from_u128(2),
            Held {
                deadline: at(20),
                ..held(SessionId::new())
            },
        );
        assert_eq!(q.next_deadline(), Some(at(20)));
        let (reply, _rx) = oneshot::channel();
        q.park(Waiter {
            session: SessionId::new(),
            lease: Lease::new("a".into(), Duration::from_secs(1)),
            max: 1,
            until: Some(at(10)),
            reply,
        });
        assert_eq!(q.next_deadline(), Some(at(10)), "a wait ends first");
        q.stop_waiting(at(10));
        q.extend(&Uuid::from_u128(2), at(40));
        assert_eq!(
            q.next_deadline(),
            Some(at(30)),
            "an extended lease is due later"
        );
        q.expired(at(40));
        assert_eq!(q.next_deadline(), None, "expiring leases are no longer due");
        assert!(!q.is_quiet(), "until their expiry commits");
    }
}
