//! The directory of queue actors: one supervised actor per queue, started on first use.

use super::actor::{Adopt, ExtendedElsewhere, Queue, QueueConfig, Refresh, SettledElsewhere};
use super::state::Held;
use crate::directory::Directory;
use crate::message::SessionId;
use crate::persist::Lanes;
use crate::store::{Feed, QueueChange, QueueStore, StoreError};
use crate::task::{Lease, Task};
use actix::Addr;
use chrono::{DateTime, Utc};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Starts and finds queue actors. Lives on the daemon's actor thread (cheap to clone).
#[derive(Clone)]
pub struct Queues {
    inner: Rc<Inner>,
}

struct Inner {
    actors: Directory<Queue>,
    store: Arc<dyn QueueStore>,
}

impl Queues {
    pub fn new(store: Arc<dyn QueueStore>, lanes: Lanes, config: QueueConfig) -> Self {
        let make = {
            let store = store.clone();
            move |name, leave| Queue::new(name, store.clone(), lanes.clone(), config.clone(), leave)
        };
        Queues {
            inner: Rc::new(Inner {
                actors: Directory::new(make),
                store,
            }),
        }
    }

    /// The actor of `name`, started (and loading from storage) if it was not running.
    pub fn get(&self, name: &str) -> Addr<Queue> {
        self.inner.actors.get(name)
    }

    /// The actor of `name` if it is running.
    pub fn running(&self, name: &str) -> Option<Addr<Queue>> {
        self.inner.actors.running(name)
    }

    /// How many queue actors are running.
    pub fn count(&self) -> usize {
        self.inner.actors.count()
    }

    /// Every running queue actor.
    pub fn all(&self) -> Vec<Addr<Queue>> {
        self.inner
            .actors
            .all()
            .into_iter()
            .map(|(_, a)| a)
            .collect()
    }

    /// Wakes the queues that other writers (other daemons, plain SQL) made claimable, as the
    /// queue feed reports them, until the feed ends.
    pub async fn follow(self, mut feed: Feed<QueueChange>) {
        while let Some(change) = feed.recv().await {
            match change {
                QueueChange::Changed(queue) => self.changed(&queue),
                QueueChange::Missed => self.all().iter().for_each(|q| q.do_send(Refresh)),
            }
        }
    }

    /// Storage changed for `queue` behind our back: its actor (if running) reloads.
    pub fn changed(&self, queue: &str) {
        if let Some(addr) = self.running(queue) {
            addr.do_send(Refresh);
        }
    }

    /// A task of `queue` was settled inside a committed transaction.
    pub fn settled_elsewhere(&self, queue: &str, id: uuid::Uuid) {
        if let Some(addr) = self.running(queue) {
            addr.do_send(SettledElsewhere(id));
        }
    }

    /// A lease on a task of `queue` was extended inside a committed transaction.
    pub fn extended_elsewhere(&self, queue: &str, id: uuid::Uuid, until: DateTime<Utc>) {
        if let Some(addr) = self.running(queue) {
            addr.do_send(ExtendedElsewhere {
                id,
                deadline: Instant::now() + remaining(until),
            });
        }
    }

    /// Tasks of `queue` claimed inside a transaction that committed: the queue holds their
    /// lease from now on, as if claimed through it (expiry, release when `session` closes).
    pub fn adopt(&self, queue: &str, session: SessionId, lease: &Lease, tasks: &[Task]) {
        let Some(first) = tasks.first() else {
            return;
        };
        let held = Held {
            session,
            agent: lease.agent.clone(),
            lease_id: lease.lease_id,
            deadline: Instant::now() + remaining(first.lease_until.unwrap_or_else(Utc::now)),
            payload: None,
        };
        let ids = tasks.iter().map(|t| t.id).collect();
        self.get(queue).do_send(Adopt { ids, held });
    }

    /// Daemon start-up: releases the claims of this daemon's previous life (its sessions are
    /// gone), then starts an actor for every queue with open tasks.
    pub async fn replay(&self, origin: &str) -> Result<usize, StoreError> {
        self.inner.store.release_claims_of(origin).await?;
        let names = self.inner.store.queues_with_work().await?;
        names.iter().for_each(|n| drop(self.get(n)));
        Ok(names.len())
    }

    /// The safety sweep: releases leases that ran out long ago (their daemon died) and reloads
    /// the queues they belong to.
    pub async fn sweep(&self, grace: std::time::Duration) -> Result<(), StoreError> {
        for queue in self.inner.store.release_expired(grace).await? {
            self.changed(&queue);
        }
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn QueueStore> {
        &self.inner.store
    }
}

/// How long until `until`, from now (zero if it has passed).
fn remaining(until: DateTime<Utc>) -> std::time::Duration {
    (until - Utc::now()).to_std().unwrap_or_default()
}
