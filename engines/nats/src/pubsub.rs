//! The `PubSub` transport on core NATS: a publication is a message on
//! `<prefix>.ps.<topic as tokens>` ([`crate::subject`]), received through subscriptions that
//! cover the patterns this daemon's subscribers use (the hub's `interest`/`disinterest`; the
//! hub matches exactly what arrives).
//!
//! A publication travels as JSON `{i: id, t: topic, m: message, at: published_at}` with the
//! publishing daemon in the header `Ikigai-From` (each daemon skips its own: the hub routes
//! those itself). One larger than the server's `max_payload` (1 MiB by default) travels as
//! consecutive parts of at most that size, each with `Ikigai-Part: <id> <i> <n>`, which the
//! receiver joins ([`parts`]). A batch is published on one connection in order and flushed, so
//! it reaches the other daemons in order. NATS is at most once: what is published while a
//! daemon's connection is down is lost to it, as on Postgres and Redis.

mod follow;
mod parts;

use super::{store_error, NatsEngine};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use follow::Follower;
use ikigai_actors::pubsub::{Deliver, PubSub, Publication};
use ikigai_actors::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

/// The header naming the publishing daemon.
const FROM: &str = "Ikigai-From";
/// The header of a part of a large publication: its id, the part's index and the count.
const PART: &str = "Ikigai-Part";
/// Room left in a message for its subject and headers.
const HEADROOM: usize = 4096;

/// What travels in a message (or in the parts of one, joined).
#[derive(Serialize, Deserialize)]
struct Envelope {
    i: Uuid,
    t: String,
    m: Arc<Value>,
    at: DateTime<Utc>,
}

/// The patterns wanted, each with how many subscriptions here use it.
type Patterns = BTreeMap<String, usize>;

pub struct NatsPubSub {
    client: Client,
    /// `<prefix>.ps`, the start of every subject.
    namespace: String,
    daemon: String,
    /// The largest payload of one message: the server's `max_payload` less [`HEADROOM`].
    part: usize,
    patterns: watch::Sender<Patterns>,
}

impl NatsPubSub {
    pub fn new(engine: &NatsEngine) -> NatsPubSub {
        let max_payload = engine.client.server_info().max_payload;
        NatsPubSub {
            client: engine.client.clone(),
            namespace: engine.namespace("ps"),
            daemon: Uuid::new_v4().to_string(),
            part: max_payload.saturating_sub(HEADROOM).max(HEADROOM),
            patterns: watch::Sender::new(Patterns::new()),
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(FROM, self.daemon.as_str());
        headers
    }

    /// Queues `p` on the connection: one message, or its parts in order.
    async fn send(&self, p: &Publication) -> Result<(), StoreError> {
        let envelope = Envelope {
            i: p.id,
            t: p.topic.clone(),
            m: p.message.clone(),
            at: p.published_at,
        };
        let body =
            serde_json::to_vec(&envelope).map_err(|e| StoreError::Rejected(e.to_string()))?;
        let subject = crate::subject::topic(&self.namespace, &p.topic);
        let chunks: Vec<&[u8]> = body.chunks(self.part).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut headers = self.headers();
            if chunks.len() > 1 {
                headers.insert(PART, format!("{} {i} {}", p.id, chunks.len()).as_str());
            }
            let payload = Bytes::copy_from_slice(chunk);
            self.client
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Adds `by` to the count of `pattern`; tells the follower when the set changed.
    fn count(&self, pattern: &str, by: isize) {
        self.patterns.send_if_modified(|patterns| {
            let count = patterns.entry(pattern.to_owned()).or_default();
            let was = *count;
            *count = count.saturating_add_signed(by);
            if *count == 0 {
                patterns.remove(pattern);
            }
            (was == 0) != (patterns.get(pattern).is_none())
        });
    }
}

#[async_trait::async_trait]
impl PubSub for NatsPubSub {
    async fn publish(&self, batch: &[Publication]) -> Result<(), StoreError> {
        for p in batch {
            self.send(p).await?;
        }
        self.client.flush().await.map_err(store_error)
    }

    /// Starts the follower (call it once): it runs until this transport is dropped.
    fn receive(&self, deliver: Deliver) {
        let follower = Follower::new(
            self.client.clone(),
            self.namespace.clone(),
            self.daemon.clone(),
            self.patterns.subscribe(),
            deliver,
        );
        tokio::spawn(follower.run());
    }

    fn interest(&self, pattern: &str) {
        self.count(pattern, 1);
    }

    fn disinterest(&self, pattern: &str) {
        self.count(pattern, -1);
    }
}
