//! The rules of one mailbox, as a plain struct: FIFO delivery, visibility timeouts, redelivery,
//! acknowledgement bookkeeping and a bounded in-memory window over the stored messages.
//!
//! The state never touches storage. It keeps up to `capacity` ready messages in memory; when more
//! are committed than fit, it sets `backlog` and the actor pages them in from the store later
//! (every unread message with `seq > max_seq` is then in the store and not in memory).

use crate::message::{SessionId, StoredMessage};
use crate::store::{AckWrite, AttemptsWrite};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Where a waiting receiver's messages go; an error ends its wait.
pub type ReceiveReply = oneshot::Sender<Result<Vec<StoredMessage>, super::MailboxError>>;

/// A receiver parked until a message arrives (or it gives up and drops `reply`).
pub struct Waiter {
    pub session: SessionId,
    pub max: usize,
    pub visibility: Duration,
    pub reply: ReceiveReply,
}

struct Delivery {
    msg: StoredMessage,
    session: Option<SessionId>,
    deadline: Instant,
    acking: bool,
}

/// Live counters of one mailbox actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveCounts {
    pub ready: usize,
    pub in_flight: usize,
    pub waiting: usize,
    pub backlog: bool,
}

/// The in-memory state of one mailbox.
pub struct MailboxState {
    name: String,
    capacity: usize,
    ready: BTreeMap<i64, StoredMessage>,
    inflight: HashMap<Uuid, Delivery>,
    deadlines: BTreeSet<(Instant, Uuid)>,
    waiters: VecDeque<Waiter>,
    max_seq: i64,
    backlog: bool,
    loaded: bool,
}

impl MailboxState {
    pub fn new(name: String, capacity: usize) -> Self {
        MailboxState {
            name,
            capacity: capacity.max(1),
            ready: BTreeMap::new(),
            inflight: HashMap::new(),
            deadlines: BTreeSet::new(),
            waiters: VecDeque::new(),
            max_seq: 0,
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

    /// Forgets everything; the next load rebuilds the state from the store.
    pub fn reset(&mut self) {
        *self = MailboxState::new(std::mem::take(&mut self.name), self.capacity);
    }

    /// Forgets the messages but keeps the parked receivers; the next load rebuilds the window.
    pub fn reload(&mut self) {
        let waiters = std::mem::take(&mut self.waiters);
        self.reset();
        self.waiters = waiters;
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The highest seq held in memory: the next page starts after it.
    pub fn max_seq(&self) -> i64 {
        self.max_seq
    }

    /// Takes a page read from the store; `more` says the page was full.
    pub fn loaded(&mut self, page: Vec<StoredMessage>, more: bool) {
        for msg in page {
            if msg.seq > self.max_seq && !self.inflight.contains_key(&msg.id) {
                self.max_seq = msg.seq;
                self.ready.insert(msg.seq, msg);
            }
        }
        self.backlog = more;
        self.loaded = true;
    }

    /// True when the window is running low and the store holds more.
    pub fn needs_page(&self) -> bool {
        self.loaded && self.backlog && self.ready.len() <= self.capacity / 2
    }

    /// Takes a freshly committed message. Returns false when it stays in the store only (or
    /// is known already). A message at or below `max_seq` was committed after later ones
    /// (inside a transaction): it joins the window whatever its size, since pages only read
    /// above `max_seq`.
    pub fn append(&mut self, msg: StoredMessage) -> bool {
        if !self.loaded {
            return false;
        }
        if msg.seq <= self.max_seq {
            let known = self.ready.contains_key(&msg.seq) || self.inflight.contains_key(&msg.id);
            if !known {
                self.ready.insert(msg.seq, msg);
            }
            return !known;
        }
        if self.backlog || self.ready.len() >= self.capacity {
            self.backlog = true;
            return false;
        }
        self.max_seq = msg.seq;
        self.ready.insert(msg.seq, msg);
        true
    }

    /// Delivers up to `max` ready messages, oldest first, hidden for `visibility`.
    pub fn take(
        &mut self,
        session: SessionId,
        max: usize,
        visibility: Duration,
        now: Instant,
    ) -> Vec<StoredMessage> {
        let mut out = Vec::with_capacity(max.min(self.ready.len()));
        while out.len() < max {
            let Some((_, mut msg)) = self.ready.pop_first() else {
                break;
            };
            msg.attempts += 1;
            let deadline = now + visibility;
            self.deadlines.insert((deadline, msg.id));
            out.push(msg.clone());
            let delivery = Delivery {
                msg,
                session: Some(session),
                deadline,
                acking: false,
            };
            self.inflight.insert(delivery.msg.id, delivery);
        }
        out
    }

    /// Parks a receiver until messages arrive.
    pub fn park(&mut self, waiter: Waiter) {
        self.waiters.retain(|w| !w.reply.is_closed());
        self.waiters.push_back(waiter);
    }

    /// Hands ready messages to parked receivers, in the order they arrived.
    pub fn serve_waiters(&mut self, now: Instant) {
        while !self.ready.is_empty() {
            let Some(w) = self.waiters.pop_front() else {
                return;
            };
            if w.reply.is_closed() {
                continue;
            }
            let msgs = self.take(w.session, w.max, w.visibility, now);
            if let Err(Ok(msgs)) = w.reply.send(Ok(msgs)) {
                self.give_back(msgs);
            }
        }
    }

    /// Drops receivers that gave up waiting.
    pub fn purge_waiters(&mut self) {
        self.waiters.retain(|w| !w.reply.is_closed());
    }

    /// Puts back messages whose delivery never reached the receiver.
    pub fn give_back(&mut self, msgs: Vec<StoredMessage>) {
        for msg in msgs {
            if let Some(mut d) = self.inflight.remove(&msg.id) {
                self.deadlines.remove(&(d.deadline, msg.id));
                d.msg.attempts -= 1;
                self.ready.insert(d.msg.seq, d.msg);
            }
        }
    }

    /// Makes deliveries whose visibility ran out deliverable again.
    pub fn expire(&mut self, now: Instant) -> Vec<AttemptsWrite> {
        let mut due = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            due.push(id);
        }
        due.into_iter().filter_map(|id| self.requeue(id)).collect()
    }

    /// The earliest visibility deadline of a delivery, when one is in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// Makes every delivery held by a closed session deliverable again.
    pub fn session_closed(&mut self, session: SessionId) -> Vec<AttemptsWrite> {
        let held: Vec<Uuid> = self
            .inflight
            .values()
            .filter(|d| d.session == Some(session) && !d.acking)
            .map(|d| d.msg.id)
            .collect();
        held.into_iter()
            .filter_map(|id| {
                let deadline = self.inflight.get(&id)?.deadline;
                self.deadlines.remove(&(deadline, id));
                self.requeue(id)
            })
            .collect()
    }

    fn requeue(&mut self, id: Uuid) -> Option<AttemptsWrite> {
        if self.inflight.get(&id)?.acking {
            return None;
        }
        let d = self.inflight.remove(&id)?;
        let write = AttemptsWrite {
            id,
            attempts: d.msg.attempts,
        };
        self.ready.insert(d.msg.seq, d.msg);
        Some(write)
    }

    /// Starts acknowledging `ids`: they will not be delivered again unless the ack fails.
    pub fn begin_ack(&mut self, ids: &[Uuid], reader: &str, now: Instant) -> Vec<AckWrite> {
        ids.iter()
            .map(|&id| {
                let attempts = self.hold_for_ack(id, now).unwrap_or(0);
                AckWrite {
                    id,
                    mailbox: self.name.clone(),
                    reader: reader.to_owned(),
                    attempts,
                }
            })
            .collect()
    }

    /// Marks `id` as being acknowledged; returns its attempts when it is in memory.
    fn hold_for_ack(&mut self, id: Uuid, now: Instant) -> Option<u32> {
        if let Some(d) = self.inflight.get_mut(&id) {
            d.acking = true;
            return Some(d.msg.attempts);
        }
        let seq = self.ready.values().find(|m| m.id == id)?.seq;
        let msg = self.ready.remove(&seq)?;
        let attempts = msg.attempts;
        self.inflight.insert(
            id,
            Delivery {
                msg,
                session: None,
                deadline: now,
                acking: true,
            },
        );
        Some(attempts)
    }

    /// The acknowledgement of `ids` is durable: forget them.
    pub fn ack_committed(&mut self, ids: &[Uuid]) {
        for id in ids {
            if let Some(d) = self.inflight.remove(id) {
                self.deadlines.remove(&(d.deadline, *id));
            }
        }
    }

    /// `ids` were acknowledged elsewhere (inside a transaction that committed): forget them,
    /// whether they are in flight or still waiting.
    pub fn forget(&mut self, ids: &[Uuid]) {
        self.ack_committed(ids);
        self.ready.retain(|_, m| !ids.contains(&m.id));
    }

    /// The acknowledgement of `ids` failed: they become deliverable again.
    pub fn ack_failed(&mut self, ids: &[Uuid]) {
        for id in ids {
            if let Some(d) = self.inflight.get_mut(id) {
                d.acking = false;
                let deadline = d.deadline;
                self.deadlines.remove(&(deadline, *id));
                self.requeue(*id);
            }
        }
    }

    /// The oldest `limit` ready messages, without delivering them.
    pub fn peek(&self, limit: usize) -> Vec<StoredMessage> {
        self.ready.values().take(limit).cloned().collect()
    }

    pub fn counts(&self) -> LiveCounts {
        LiveCounts {
            ready: self.ready.len(),
            in_flight: self.inflight.len(),
            waiting: self.waiters.iter().filter(|w| !w.reply.is_closed()).count(),
            backlog: self.backlog,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const VIS: Duration = Duration::from_secs(30);

    fn msg(seq: i64) -> StoredMessage {
        StoredMessage {
            id: Uuid::from_u128(seq as u128),
            seq,
            mailbox: "box".into(),
            sender: "s".into(),
            payload: Arc::new(serde_json::json!(seq)),
            created_at: chrono::Utc::now(),
            attempts: 0,
        }
    }

    fn loaded(capacity: usize, seqs: impl IntoIterator<Item = i64>) -> MailboxState {
        let mut s = MailboxState::new("box".into(), capacity);
        s.loaded(seqs.into_iter().map(msg).collect(), false);
        s
    }

    fn seqs(msgs: &[StoredMessage]) -> Vec<i64> {
        msgs.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn delivers_in_seq_order_whatever_the_arrival_order() {
        let mut s = loaded(10, []);
        for seq in [1, 2, 3] {
            assert!(s.append(msg(seq)));
        }
        let now = Instant::now();
        assert_eq!(seqs(&s.take(SessionId::new(), 2, VIS, now)), [1, 2]);
        assert_eq!(seqs(&s.take(SessionId::new(), 5, VIS, now)), [3]);
    }

    #[test]
    fn a_message_committed_late_takes_its_place_in_line() {
        let mut s = loaded(10, [1, 3]);
        assert!(s.append(msg(2)));
        assert_eq!(
            seqs(&s.take(SessionId::new(), 10, VIS, Instant::now())),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_duplicate_of_a_loaded_message_is_ignored() {
        let mut s = loaded(10, [1, 2]);
        assert!(!s.append(msg(2)));
        assert_eq!(s.counts().ready, 2);
    }

    #[test]
    fn expired_deliveries_come_back_first_with_attempts_counted() {
        let mut s = loaded(10, [1, 2]);
        let now = Instant::now();
        let first = s.take(SessionId::new(), 1, VIS, now);
        assert_eq!(first[0].attempts, 1);
        assert!(s.expire(now + VIS / 2).is_empty());
        let writes = s.expire(now + VIS);
        assert_eq!(
            writes,
            vec![AttemptsWrite {
                id: first[0].id,
                attempts: 1
            }]
        );
        let again = s.take(SessionId::new(), 10, VIS, now + VIS);
        assert_eq!(seqs(&again), [1, 2]);
        assert_eq!(again[0].attempts, 2);
    }

    #[test]
    fn the_next_deadline_is_the_earliest_visibility_deadline_in_flight() {
        let mut s = loaded(10, [1, 2, 3]);
        let now = Instant::now();
        assert_eq!(s.next_deadline(), None, "nothing in flight, nothing due");
        s.take(SessionId::new(), 1, VIS, now);
        let short = s.take(SessionId::new(), 1, VIS / 3, now);
        assert_eq!(s.next_deadline(), Some(now + VIS / 3));
        s.begin_ack(&[short[0].id], "box", now);
        s.ack_committed(&[short[0].id]);
        assert_eq!(
            s.next_deadline(),
            Some(now + VIS),
            "an acked delivery is not due"
        );
        s.expire(now + VIS);
        assert_eq!(
            s.next_deadline(),
            None,
            "an expired delivery is ready again"
        );
    }

    #[test]
    fn closing_a_session_releases_only_its_deliveries() {
        let mut s = loaded(10, [1, 2]);
        let (a, b) = (SessionId::new(), SessionId::new());
        let now = Instant::now();
        s.take(a, 1, VIS, now);
        s.take(b, 1, VIS, now);
        assert_eq!(s.session_closed(a).len(), 1);
        assert_eq!(seqs(&s.peek(10)), [1]);
        assert_eq!(s.counts().in_flight, 1);
    }

    #[test]
    fn a_message_being_acked_is_never_redelivered() {
        let mut s = loaded(10, [1]);
        let now = Instant::now();
        let got = s.take(SessionId::new(), 1, VIS, now);
        let writes = s.begin_ack(&[got[0].id], "box", now);
        assert_eq!(writes[0].attempts, 1);
        assert!(s.expire(now + VIS * 2).is_empty());
        s.ack_committed(&[got[0].id]);
        assert_eq!(s.counts(), LiveCounts::default());
    }

    #[test]
    fn messages_acknowledged_elsewhere_are_forgotten_wherever_they_are() {
        let mut s = loaded(10, [1, 2, 3]);
        let got = s.take(SessionId::new(), 1, VIS, Instant::now());
        s.forget(&[got[0].id, msg(3).id]);
        assert_eq!(seqs(&s.peek(10)), [2]);
        assert_eq!(s.counts().in_flight, 0);
    }

    #[test]
    fn a_failed_ack_makes_the_message_deliverable_again() {
        let mut s = loaded(10, [1]);
        let now = Instant::now();
        let got = s.take(SessionId::new(), 1, VIS, now);
        s.begin_ack(&[got[0].id], "box", now);
        s.ack_failed(&[got[0].id]);
        assert_eq!(seqs(&s.take(SessionId::new(), 1, VIS, now)), [1]);
    }

    #[test]
    fn acking_a_ready_message_takes_it_out_of_delivery() {
        let mut s = loaded(10, [1, 2]);
        let now = Instant::now();
        s.begin_ack(&[msg(1).id], "box", now);
        assert_eq!(seqs(&s.take(SessionId::new(), 10, VIS, now)), [2]);
    }

    #[test]
    fn over_capacity_messages_stay_in_the_store_until_paged_in() {
        let mut s = loaded(4, []);
        for seq in 1..=6 {
            s.append(msg(seq));
        }
        assert_eq!(s.counts().ready, 4);
        assert!(s.counts().backlog);
        assert_eq!(s.max_seq(), 4);
        s.take(SessionId::new(), 2, VIS, Instant::now());
        assert!(s.needs_page());
        s.loaded(vec![msg(5), msg(6)], false);
        assert_eq!(seqs(&s.peek(10)), [3, 4, 5, 6]);
        assert!(!s.counts().backlog);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_and_closed_ones_skipped() {
        let mut s = loaded(10, []);
        let (gone_tx, gone_rx) = oneshot::channel();
        drop(gone_rx);
        let (tx, rx) = oneshot::channel();
        for reply in [gone_tx, tx] {
            s.park(Waiter {
                session: SessionId::new(),
                max: 5,
                visibility: VIS,
                reply,
            });
        }
        s.append(msg(1));
        s.serve_waiters(Instant::now());
        assert_eq!(seqs(&rx.await.unwrap().unwrap()), [1]);
        assert_eq!(s.counts().in_flight, 1);
    }
}
