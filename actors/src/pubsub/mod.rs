//! Pub/sub: topics with NATS-style wildcards, at-most-once, ordered per publisher.
//!
//! [`Hub`] is the actor of one daemon: it publishes through a [`PubSub`] transport (which
//! carries publications to the other daemons on the same backend) and hands every publication,
//! local or remote, to the matching subscriptions' [`SubscriberQueue`]s. A queue is bounded: a
//! slow subscriber loses its oldest messages and is told how many, and nobody else waits.

mod hub;
mod queue;
mod topic;

pub use hub::{Hub, Publish, SessionClosed, Subscribe, Unsubscribe};
pub use queue::{Drained, SubscriberQueue};
pub use topic::{check_pattern, check_topic, Pattern};

use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;
use thiserror::Error;
use uuid::Uuid;

/// One published message.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// UUIDv7, chosen by the publishing daemon.
    pub id: Uuid,
    pub topic: String,
    pub message: Arc<Value>,
    pub published_at: DateTime<Utc>,
}

impl Publication {
    pub fn new(topic: String, message: Value) -> Self {
        Publication {
            id: Uuid::now_v7(),
            topic,
            message: Arc::new(message),
            published_at: Utc::now(),
        }
    }
}

/// Why a pub/sub request failed.
#[derive(Debug, Clone, Error)]
pub enum PubSubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub stopped before the publication was handed over (daemon stopping).
    #[error("pub/sub stopped before answering; the outcome is unknown")]
    Stopped,
}

/// Called with each publication that arrives from another daemon, in publisher order.
pub type Deliver = Box<dyn Fn(Publication) + Send + Sync>;

/// The transport between daemons sharing a backend.
#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    /// Sends a batch to the other daemons, in order; returns once it is out.
    async fn publish(&self, batch: &[Publication]) -> Result<(), StoreError>;

    /// Starts handing publications of other daemons to `deliver`.
    fn receive(&self, deliver: Deliver);

    /// The first subscription of this daemon to `pattern` (a checked pattern, as written)
    /// began: a transport that carries only what someone here listens to starts carrying the
    /// publications it matches. By default nothing: every publication is carried.
    fn interest(&self, _pattern: &str) {}

    /// The last subscription of this daemon to `pattern` ended.
    fn disinterest(&self, _pattern: &str) {}
}
