//! The factory of the storage seam: turns `[services]` into the running stores at start-up.
//!
//! Each engine is one [`Engine`] (`ikigai_actors::store`): a connection made once, and a method
//! per service it can serve that builds that service's stores. The factory
//! connects every engine `[services]` names, once, and asks each service's engine for its
//! stores. A named engine that does not answer fails the start, naming the services, the
//! engine and its address. Adding an engine is a crate implementing [`Engine`] (as
//! `engines/redis` does), its dependency in `Cargo.toml`, and one line in [`connect`].

use crate::config::{Backend, Config};
use crate::postgres::{Database, PgEngine};
use ikigai_actors::cache::{Cache, CacheConfig};
use ikigai_actors::pubsub::PubSub;
use ikigai_actors::storage::DocumentStore;
use ikigai_actors::store::{
    BackendError, Engine, MailboxStores, Maintenance, Needs, QueueStores, Retention, TelemetrySink,
    Units,
};
use ikigai_nats::NatsEngine;
use ikigai_rabbitmq::RabbitEngine;
use ikigai_redis::RedisEngine;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Connects the engine `backend` (other than Postgres, which is always open), for `services`.
async fn connect(
    backend: Backend,
    services: &str,
    config: &Config,
) -> Result<Box<dyn Engine>, BackendError> {
    let unreachable = |reason: String| BackendError::Unreachable {
        services: services.to_owned(),
        backend,
        reason,
    };
    match backend {
        Backend::Redis => {
            let redis = &config.redis;
            let engine = RedisEngine::connect(&redis.url, &redis.prefix).await;
            Ok(Box::new(engine.map_err(|e| unreachable(e.to_string()))?))
        }
        Backend::Rabbitmq => {
            let r = &config.rabbitmq;
            let engine = RabbitEngine::connect(&r.url, &r.prefix, r.prefetch).await;
            Ok(Box::new(engine.map_err(|e| unreachable(e.to_string()))?))
        }
        Backend::Nats => {
            let nats = &config.nats;
            let engine = NatsEngine::connect(&nats.url, &nats.prefix).await;
            Ok(Box::new(engine.map_err(|e| unreachable(e.to_string()))?))
        }
        _ => Err(BackendError::NotBuilt {
            services: services.to_owned(),
            backend,
        }),
    }
}

/// The engines `[services]` names, each connected once.
pub struct Backends {
    postgres: PgEngine,
    others: HashMap<Backend, Box<dyn Engine>>,
}

/// The stores of every service, as the daemon wires them into the actors.
pub struct Stores {
    pub mailboxes: MailboxStores,
    pub queues: QueueStores,
    pub cache: Rc<dyn Cache>,
    pub pubsub: Arc<dyn PubSub>,
    pub documents: Arc<dyn DocumentStore>,
    /// Transactions, which only Postgres holds (see `crate::tx`).
    pub units: Arc<dyn Units>,
}

impl Backends {
    /// Connects every engine `config`'s `[services]` names.
    pub async fn connect(
        config: &Config,
        db: &Database,
        origin: &str,
    ) -> Result<Backends, BackendError> {
        let mut others = HashMap::new();
        for (backend, services) in by_backend(config) {
            if backend != Backend::Postgres {
                others.insert(backend, connect(backend, &services, config).await?);
            }
        }
        Ok(Backends {
            postgres: PgEngine::new(db, origin),
            others,
        })
    }

    /// The telemetry sink, which the telemetry actor needs before any other store is built.
    pub fn telemetry(&self, config: &Config) -> Result<Arc<dyn TelemetrySink>, BackendError> {
        self.engine(config.services.telemetry).telemetry()
    }

    /// Every other service's stores, on the engines `config` chooses.
    pub fn stores(&self, config: &Config, needs: &Needs) -> Result<Stores, BackendError> {
        let chosen = &config.services;
        Ok(Stores {
            mailboxes: self.engine(chosen.mailboxes).mailboxes(needs)?,
            queues: self.engine(chosen.queues).queues(needs)?,
            cache: self.engine(chosen.cache).cache(needs)?,
            pubsub: self.engine(chosen.pubsub).pubsub(needs)?,
            documents: self.engine(chosen.storage).documents()?,
            units: self.postgres.units(),
        })
    }

    /// Starts every connected engine's upkeep of finished work (Postgres's always).
    pub fn maintain(&self, config: &Config) {
        let maintenance = Maintenance {
            every: config.postgres.maintenance,
            retention: Retention {
                completed: config.queues.retain_completed,
                dead: config.queues.retain_dead,
                read: config.mailboxes.retain_read,
                task_archive: config.queues.archive,
                message_archive: config.mailboxes.archive,
            },
            vacuum: config.postgres.vacuum,
        };
        self.postgres.maintain(&maintenance);
        for engine in self.others.values() {
            engine.maintain(&maintenance);
        }
    }

    fn engine(&self, backend: Backend) -> &dyn Engine {
        match self.others.get(&backend) {
            Some(engine) => engine.as_ref(),
            None => &self.postgres,
        }
    }
}

/// The backends named, each with the services (comma-separated) that use it.
fn by_backend(config: &Config) -> Vec<(Backend, String)> {
    let mut named: Vec<(Backend, String)> = Vec::new();
    for (service, backend) in config.services.named() {
        match named.iter_mut().find(|(b, _)| *b == backend) {
            Some((_, services)) => {
                services.push_str(", ");
                services.push_str(service);
            }
            None => named.push((backend, service.to_owned())),
        }
    }
    named
}

/// The cache's settings, whichever engine holds it.
pub fn cache_config(config: &Config) -> CacheConfig {
    CacheConfig {
        max_bytes: config.cache.max_bytes,
        sweep_interval: config.cache.sweep_interval,
    }
}
