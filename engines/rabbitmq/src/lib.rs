//! The RabbitMQ engine: task queues kept in RabbitMQ (see `ARCHITECTURE.md`, `engines/rabbitmq`,
//! and `docs/protocol.md` for what it guarantees beside Postgres).
//!
//! One AMQP connection ([`link::Link`]) carries a publisher-confirm channel for every publish,
//! a channel for declarations and reads, and a channel per consumed queue. Every queue it
//! declares is named under one prefix (`<prefix>.q.<queue>` ...: [`topology`]), so that several
//! roots (or tests) share one RabbitMQ. RabbitMQ's errors become [`StoreError`]s in one place,
//! [`store_error`].

mod engine;
mod link;
mod queue;
mod record;
mod topology;

pub use queue::RabbitQueues;

use ikigai_actors::store::StoreError;
use link::Link;
use std::sync::Arc;
use thiserror::Error;

/// The prefix of every queue name when the configuration names none.
pub const DEFAULT_PREFIX: &str = "ikigai";

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("RabbitMQ at {addr}: {source}")]
    NoAnswer {
        addr: String,
        #[source]
        source: StoreError,
    },
}

/// A connected RabbitMQ: what the RabbitMQ queues are built from.
pub struct RabbitEngine {
    link: Arc<Link>,
    prefix: String,
    prefetch: u16,
}

impl RabbitEngine {
    /// Connects to `url` (`amqp://guest:guest@127.0.0.1:5672/%2f`). Queues go under `prefix`; a consumer holds at most `prefetch` deliveries.
    pub async fn connect(
        url: &str,
        prefix: &str,
        prefetch: u16,
    ) -> Result<RabbitEngine, ConnectError> {
        let link = Link::connect(url)
            .await
            .map_err(|source| ConnectError::NoAnswer {
                addr: link::redacted(url),
                source,
            })?;
        Ok(RabbitEngine {
            link: Arc::new(link),
            prefix: prefix.to_owned(),
            prefetch: prefetch.max(1),
        })
    }
}

/// A RabbitMQ failure, as actors see it: a closed connection or channel is passing
/// (`Unavailable`), anything else the server refused is `Rejected`.
pub(crate) fn store_error(e: lapin::Error) -> StoreError {
    use lapin::protocol::AMQPErrorKind;
    match &e {
        lapin::Error::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(_)) => {
            StoreError::Rejected(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}
