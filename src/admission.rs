//! Who may hold a connection: a small pool for connections that have not said `hello` yet (full,
//! it closes its oldest to make room, so no one can keep a newcomer out by holding connections),
//! the `max_connections` slots that authenticated connections take at `hello`, and the
//! per-peer delay after failed `hello`s.

use crate::services::{Shutdown, ShutdownTrigger};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The first delay after a failed `hello`; each further failure doubles it, up to
/// [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(10);
/// The longest a peer's `hello` waits after its failures.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Who connected, as the kernel tells: the Unix user of the peer (`SO_PEERCRED`), if known.
/// Every connection whose user is unknown counts as one peer.
pub type Peer = Option<u32>;

/// The daemon's connections' admission state (one per daemon, on its thread).
pub struct Admission {
    max_pending: usize,
    /// Connections before `hello`, by admission order (oldest first), with what closes each.
    pending: RefCell<BTreeMap<u64, ShutdownTrigger>>,
    next: Cell<u64>,
    slots: Arc<Semaphore>,
    failures: RefCell<HashMap<Peer, Backoff>>,
}

/// The delay that a peer's next `hello` waits, after failures.
#[derive(Clone, Copy)]
struct Backoff {
    delay: Duration,
    until: Instant,
}

/// A connection's place in the pool before `hello`; dropping it leaves the pool.
pub struct Ticket {
    id: u64,
    admission: Rc<Admission>,
    /// Raised when the pool closes this connection to make room.
    pub evicted: Shutdown,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.pending.borrow_mut().remove(&self.id);
    }
}

impl Admission {
    pub fn new(max_pending: usize, max_connections: usize) -> Rc<Admission> {
        Rc::new(Admission {
            max_pending,
            pending: RefCell::default(),
            next: Cell::new(0),
            slots: Arc::new(Semaphore::new(max_connections)),
            failures: RefCell::default(),
        })
    }

    /// Admits a new connection to the pool before `hello`, closing the oldest one there if the
    /// pool is full.
    pub fn admit(self: &Rc<Self>) -> Ticket {
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= self.max_pending {
            if let Some((_, oldest)) = pending.pop_first() {
                oldest.trigger();
            }
        }
        let id = self.next.get();
        self.next.set(id + 1);
        let (trigger, evicted) = Shutdown::new();
        pending.insert(id, trigger);
        Ticket {
            id,
            admission: self.clone(),
            evicted,
        }
    }

    /// A slot for an authenticated connection, held while it lasts; `None` when all are taken.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Waits out the delay the peer's failed `hello`s earned (at once when there is none).
    pub async fn delay(&self, peer: Peer) {
        let until = self.failures.borrow().get(&peer).map(|b| b.until);
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    /// A `hello` of the peer failed: its next one waits, twice as long as after the last.
    pub fn failed(&self, peer: Peer) {
        let mut failures = self.failures.borrow_mut();
        let now = Instant::now();
        failures.retain(|_, b| b.until + MAX_DELAY > now);
        let delay = failures
            .get(&peer)
            .map_or(FIRST_DELAY, |b| (b.delay * 2).min(MAX_DELAY));
        let until = now + delay;
        failures.insert(peer, Backoff { delay, until });
    }

    /// A `hello` of the peer succeeded: its delay is gone.
    pub fn succeeded(&self, peer: Peer) {
        self.failures.borrow_mut().remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_closes_its_oldest_connection_for_a_new_one() {
        let admission = Admission::new(2, 1);
        let (first, second) = (admission.admit(), admission.admit());
        let third = admission.admit();
        assert!(first.evicted.is_raised());
        assert!(!second.evicted.is_raised() && !third.evicted.is_raised());
    }

    #[test]
    fn a_connection_that_leaves_the_pool_makes_room() {
        let admission = Admission::new(1, 1);
        let first = admission.admit();
        drop(admission.admit());
        assert!(first.evicted.is_raised());
        let (third, fourth) = (admission.admit(), admission.admit());
        assert!(third.evicted.is_raised() && !fourth.evicted.is_raised());
    }

    #[test]
    fn authenticated_slots_run_out() {
        let admission = Admission::new(1, 1);
        let held = admission.slot();
        assert!(held.is_some() && admission.slot().is_none());
        drop(held);
        assert!(admission.slot().is_some());
    }

    #[test]
    fn failures_double_the_delay_of_their_peer_only_until_a_success() {
        let admission = Admission::new(1, 1);
        let delay = |peer| admission.failures.borrow().get(&peer).map(|b| b.delay);
        assert_eq!(delay(Some(7)), None);
        for _ in 0..3 {
            admission.failed(Some(7));
        }
        assert_eq!(delay(Some(7)), Some(FIRST_DELAY * 4));
        assert_eq!(delay(Some(8)), None);
        for _ in 0..20 {
            admission.failed(Some(7));
        }
        assert_eq!(delay(Some(7)), Some(MAX_DELAY));
        admission.succeeded(Some(7));
        assert_eq!(delay(Some(7)), None);
    }

    #[tokio::test]
    async fn a_peer_without_failures_does_not_wait() {
        let admission = Admission::new(1, 1);
        admission.failed(Some(7));
        let start = Instant::now();
        admission.delay(Some(8)).await;
        assert!(start.elapsed() < FIRST_DELAY);
    }
}
