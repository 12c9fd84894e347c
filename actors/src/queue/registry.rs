//! The directory of queue actors: one supervised actor per queue, started on first use.

use super::actor::{Queue, QueueConfig, Refresh, SettledElsewhere};
use crate::persist::Persister;
use crate::store::{QueueStore, StoreError};
use actix::{Addr, Supervisor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Starts and finds queue actors. Lives on the daemon's actor thread (cheap to clone).
#[derive(Clone)]
pub struct Queues {
    inner: Rc<Inner>,
}

struct Inner {
    actors: RefCell<HashMap<String, Addr<Queue>>>,
    store: Arc<dyn QueueStore>,
    persister: Addr<Persister>,
    config: QueueConfig,
}

impl Queues {
    pub fn new(
        store: Arc<dyn QueueStore>,
        persister: Addr<Persister>,
        config: QueueConfig,
    ) -> Self {
        Queues {
            inner: Rc::new(Inner {
                actors: RefCell::new(HashMap::new()),
                store,
                persister,
                config,
            }),
        }
    }

    /// The actor of `name`, started (and loading from storage) if it was not running.
    pub fn get(&self, name: &str) -> Addr<Queue> {
        if let Some(addr) = self.inner.actors.borrow().get(name) {
            return addr.clone();
        }
        let inner = &self.inner;
        let (store, persister) = (inner.store.clone(), inner.persister.clone());
        let (owned, config) = (name.to_owned(), inner.config.clone());
        let addr = Supervisor::start(move |_| Queue::new(owned, store, persister, config));
        inner
            .actors
            .borrow_mut()
            .insert(name.to_owned(), addr.clone());
        addr
    }

    /// The actor of `name` if it is running.
    pub fn running(&self, name: &str) -> Option<Addr<Queue>> {
        self.inner.actors.borrow().get(name).cloned()
    }

    /// Every running queue actor.
    pub fn all(&self) -> Vec<Addr<Queue>> {
        self.inner.actors.borrow().values().cloned().collect()
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
