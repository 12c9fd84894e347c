//! What every request can reach: the services' actors, identities, configuration, daemon status
//! and the shutdown signal. Lives on the actor thread; cloning is cheap.

use crate::agents::Agents;
use crate::config::Config;
use crate::identity::Identities;
use crate::llm::Llm;
use actix::Addr;
use ikigai_actors::cache::Cache;
use ikigai_actors::mailbox::Mailboxes;
use ikigai_actors::pubsub::Hub;
use ikigai_actors::queue::Queues;
use ikigai_actors::store::{DocumentStore, MailboxStore, TelemetrySink, Units};
use ikigai_actors::telemetry::Telemetry;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Services {
    pub config: Rc<Config>,
    /// Opens transactions (see `crate::tx`).
    pub units: Arc<dyn Units>,
    /// This daemon's identity, written with its transactions (see `Root::daemon_id`).
    pub origin: Rc<str>,
    pub mailboxes: Mailboxes,
    pub mailbox_store: Arc<dyn MailboxStore>,
    pub queues: Queues,
    pub identities: Identities,
    /// The agent registry and the supervisors of the agents' processes.
    pub agents: Agents,
    /// Where any service emits telemetry events (batched, never blocking).
    pub telemetry: Telemetry,
    pub telemetry_sink: Arc<dyn TelemetrySink>,
    pub documents: Arc<dyn DocumentStore>,
    pub cache: Rc<dyn Cache>,
    pub pubsub: Addr<Hub>,
    /// LLM access: providers, threads, the interaction log.
    pub llm: Rc<Llm>,
    pub status: Rc<Status>,
    pub shutdown: Shutdown,
}

/// Facts for `daemon.status`.
pub struct Status {
    pub started: Instant,
    pub root: String,
    pub database: String,
    pub connections: Cell<usize>,
}

/// The daemon-wide shutdown signal: once raised it stays raised.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Raises the shutdown signal.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Whether shutdown has begun.
    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|down| *down).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}
