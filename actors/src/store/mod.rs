//! The storage seam: per service, the traits its actors call. A service has its writes (a
//! journal that commits groups, for the services that group-commit), its reads, and its change
//! feed (how writes made elsewhere, by another daemon or plain SQL, reach this daemon). A
//! [`Unit`] is a transaction an agent holds open across services. An [`Engine`] builds the
//! stores of the services it serves; one implementation per engine (the daemon's
//! `src/postgres/`, the crate `engines/redis`); actors only ever see `Arc<dyn ...>`. What the
//! engines share beside the traits: the text form of change notifications ([`changes`]) and
//! the report of stored data that does not decode ([`undecodable`]).

pub mod changes;
mod engine;
mod mailbox;
mod maintenance;
mod queue;
pub mod undecodable;
mod unit;

pub use crate::cache::CacheStore;
pub use crate::pubsub::PubSub;
pub use crate::storage::DocumentStore;
pub use crate::telemetry::TelemetrySink;
pub use engine::*;
pub use mailbox::*;
pub use maintenance::*;
pub use queue::*;
pub use unit::*;

use thiserror::Error;

/// A storage failure, as actors see it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StoreError {
    /// The engine cannot be reached or refused for a passing reason; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The engine rejected the operation; retrying the same thing will fail again.
    #[error("storage error: {0}")]
    Rejected(String),
    /// A stored row cannot be decoded (plain SQL beside the daemon wrote it); retrying reads the
    /// same row.
    #[error("stored data cannot be decoded: {0}")]
    Undecodable(String),
}

impl StoreError {
    pub fn retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// How an engine hands this daemon the changes others made: a stream that lives as long as
/// the engine, whose sender reconnects (and reports [`missed`](MailboxChange::Missed) changes)
/// as it must.
pub type Feed<C> = tokio::sync::mpsc::UnboundedReceiver<C>;
