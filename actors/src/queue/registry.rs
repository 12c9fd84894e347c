//! The directory of queue actors: one supervised actor per queue, started on first use.

use super::actor::{Queue, QueueConfig, Refresh, SettledElsewhere};
use crate::directory::Directory;
use crate::persist::Persister;
use crate::store::{QueueStore, StoreError};
use actix::Addr;
use std::rc::Rc;
use std::sync::Arc;

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
    pub fn new(
        store: Arc<dyn QueueStore>,
        persister: Addr<Persister>,
        config: QueueConfig,
    ) -> Self {
        let make = {
            let store = store.clone();
            move |name| Queue::new(name, store.clone(), persister.clone(), config.clone())
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

    /// Every running queue actor.
    pub fn all(&self) -> Vec<Addr<Queue>> {
        self.inner
            .actors
            .all()
            .into_iter()
            .map(|(_, a)| a)
            .collect()
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
