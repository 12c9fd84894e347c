//! What an engine is to the daemon: a connection made once at start-up, and a method per
//! service that builds that service's stores. Each engine is a crate (or, for Postgres, the
//! daemon's `src/postgres/`) implementing [`Engine`]; the daemon's factory (`src/backends.rs`)
//! connects the engines `[services]` names and asks each service's engine for its stores.

use super::{
    DocumentStore, Feed, MailboxChange, MailboxJournal, MailboxStore, Maintenance, PubSub,
    QueueChange, QueueJournal, QueueStore, TelemetrySink,
};
use crate::cache::{Cache, CacheConfig};
use crate::telemetry::Telemetry;
use std::rc::Rc;
use std::sync::Arc;
use thiserror::Error;

/// A service's storage engine, as `[services]` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Postgres,
    Redis,
    Nats,
    Rabbitmq,
    Timescaledb,
    Influxdb,
}

impl Backend {
    /// The backend `[services]` calls `s`.
    pub fn parse(s: &str) -> Option<Backend> {
        Some(match s {
            "postgres" => Backend::Postgres,
            "redis" => Backend::Redis,
            "nats" => Backend::Nats,
            "rabbitmq" => Backend::Rabbitmq,
            "timescaledb" => Backend::Timescaledb,
            "influxdb" => Backend::Influxdb,
            _ => return None,
        })
    }

    /// The name `[services]` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
            Backend::Nats => "nats",
            Backend::Rabbitmq => "rabbitmq",
            Backend::Timescaledb => "timescaledb",
            Backend::Influxdb => "influxdb",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the services' stores could not be built.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The engine named for `services` did not answer (the reason names its address).
    #[error("{services}: {backend}: {reason}")]
    Unreachable {
        services: String,
        backend: Backend,
        reason: String,
    },
    /// This build has no such engine (the configuration check lets no such name by).
    #[error("{services}: this build has no {backend} engine")]
    NotBuilt { services: String, backend: Backend },
    /// The engine cannot serve the service (the configuration check lets no such pair by).
    #[error("{service}: {backend} cannot serve it")]
    Unsupported {
        service: &'static str,
        backend: Backend,
    },
    #[error("{service} on {backend}: {reason}")]
    Failed {
        service: &'static str,
        backend: Backend,
        reason: String,
    },
}

/// The mailbox service's stores: its reads, its group commits, and the changes others make.
pub struct MailboxStores {
    pub store: Arc<dyn MailboxStore>,
    pub journal: Arc<dyn MailboxJournal>,
    pub feed: Feed<MailboxChange>,
}

/// The queue service's stores; a journal per lane (`crate::persist::Lanes`).
pub struct QueueStores {
    pub store: Arc<dyn QueueStore>,
    pub main: Arc<dyn QueueJournal>,
    pub pushes: Arc<dyn QueueJournal>,
    pub claims: Arc<dyn QueueJournal>,
    pub feed: Feed<QueueChange>,
}

/// What a service's stores are built with.
pub struct Needs<'a> {
    /// This daemon's id, which engines record with what it holds.
    pub origin: &'a str,
    /// The cache's settings (`[cache]`).
    pub cache: CacheConfig,
    /// Where the cache (and any service) reports events; built before the other stores.
    pub telemetry: &'a Telemetry,
}

/// One engine's stores, a method per service; a service the engine does not serve keeps the
/// default body, which refuses.
pub trait Engine {
    fn backend(&self) -> Backend;

    fn mailboxes(&self, _: &Needs) -> Result<MailboxStores, BackendError> {
        Err(self.unsupported("mailboxes"))
    }

    fn queues(&self, _: &Needs) -> Result<QueueStores, BackendError> {
        Err(self.unsupported("queues"))
    }

    fn cache(&self, _: &Needs) -> Result<Rc<dyn Cache>, BackendError> {
        Err(self.unsupported("cache"))
    }

    fn pubsub(&self, _: &Needs) -> Result<Arc<dyn PubSub>, BackendError> {
        Err(self.unsupported("pubsub"))
    }

    fn documents(&self) -> Result<Arc<dyn DocumentStore>, BackendError> {
        Err(self.unsupported("storage"))
    }

    fn telemetry(&self) -> Result<Arc<dyn TelemetrySink>, BackendError> {
        Err(self.unsupported("telemetry"))
    }

    /// Starts, on the current thread, the upkeep of what finished work leaves in the engine:
    /// dropping or archiving it once its retention has passed. An engine that deletes finished
    /// work as it finishes (an acked delivery) has nothing to keep up and keeps this default.
    fn maintain(&self, _: &Maintenance) {}

    fn unsupported(&self, service: &'static str) -> BackendError {
        BackendError::Unsupported {
            service,
            backend: self.backend(),
        }
    }
}
