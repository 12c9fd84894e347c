//! Postgres as an engine of the storage seam: the stores of every service, over the daemon's
//! pool, its journals' own connections and its one LISTEN connection.

use super::listen::Listener;
use super::maintenance;
use super::unit::PgUnits;
use super::{
    feed, Database, PgCacheStore, PgDocumentStore, PgJournal, PgMailboxStore, PgPubSub,
    PgQueueStore, PgTelemetrySink,
};
use deadpool_postgres::Pool;
use ikigai_actors::cache::{Cache, CacheHandle};
use ikigai_actors::pubsub::PubSub;
use ikigai_actors::storage::DocumentStore;
use ikigai_actors::store::{Backend, BackendError, Engine, MailboxStores, Needs, QueueStores};
use ikigai_actors::store::{Maintenance, TelemetrySink, Units};
use std::rc::Rc;
use std::sync::Arc;

pub struct PgEngine {
    pool: Pool,
    pg: tokio_postgres::Config,
    origin: String,
    listener: Listener,
}

impl PgEngine {
    pub fn new(db: &Database, origin: &str) -> Self {
        PgEngine {
            pool: db.pool.clone(),
            pg: db.config.clone(),
            origin: origin.to_owned(),
            listener: Listener::start(db.config.clone()),
        }
    }

    /// Transactions across the Postgres-backed services.
    pub fn units(&self) -> Arc<dyn Units> {
        Arc::new(PgUnits::new(self.pool.clone(), self.origin.clone()))
    }

    /// A group-commit journal on a thread and connection of its own.
    fn journal(&self, service: &'static str) -> Result<Arc<PgJournal>, BackendError> {
        let journal = PgJournal::start(&self.pg, self.origin.clone());
        let journal = journal.map_err(|e| BackendError::Failed {
            service,
            backend: Backend::Postgres,
            reason: e.to_string(),
        })?;
        Ok(Arc::new(journal))
    }
}

impl Engine for PgEngine {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    /// The maintenance of the hot tables (`super::maintenance`), whichever engines serve the
    /// services: the tables are there either way.
    fn maintain(&self, settings: &Maintenance) {
        tokio::task::spawn_local(maintenance::run(self.pool.clone(), settings.clone()));
    }

    fn mailboxes(&self, _: &Needs) -> Result<MailboxStores, BackendError> {
        Ok(MailboxStores {
            store: Arc::new(PgMailboxStore::new(self.pool.clone(), self.origin.clone())),
            journal: self.journal("mailboxes")?,
            feed: feed::mailboxes(&self.listener),
        })
    }

    fn queues(&self, _: &Needs) -> Result<QueueStores, BackendError> {
        Ok(QueueStores {
            store: Arc::new(PgQueueStore::new(self.pool.clone())),
            main: self.journal("queues")?,
            pushes: self.journal("queues")?,
            claims: self.journal("queues")?,
            feed: feed::queues(&self.listener, self.origin.clone()),
        })
    }

    fn cache(&self, needs: &Needs) -> Result<Rc<dyn Cache>, BackendError> {
        let store = Arc::new(PgCacheStore::new(self.pool.clone()));
        let config = needs.cache.clone();
        let handle = CacheHandle::start(store, config, needs.telemetry.clone());
        Ok(Rc::new(handle))
    }

    fn pubsub(&self, _: &Needs) -> Result<Arc<dyn PubSub>, BackendError> {
        let listener = self.listener.clone();
        Ok(Arc::new(PgPubSub::new(self.pool.clone(), listener)))
    }

    fn documents(&self) -> Result<Arc<dyn DocumentStore>, BackendError> {
        Ok(Arc::new(PgDocumentStore::new(self.pool.clone())))
    }

    fn telemetry(&self) -> Result<Arc<dyn TelemetrySink>, BackendError> {
        Ok(Arc::new(PgTelemetrySink::new(self.pool.clone())))
    }
}
