//! The `PubSub` transport on Postgres: `NOTIFY` on one channel, received through the daemon's
//! LISTEN hub ([`super::listen`]).
//!
//! A publication travels inline in the notification when it fits NOTIFY's 8000-byte payload
//! limit; a larger one is stored in the `pubsub_message` table in the same transaction and the
//! notification carries its id. A batch is one transaction, so it reaches the other daemons in
//! order; each daemon skips its own notifications (it routes its publications itself).

use super::listen::{Event, Listener};
use super::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::pubsub::{Deliver, PubSub, Publication};
use ikigai_actors::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use tracing::{debug, warn};
use uuid::Uuid;

const CHANNEL: &str = "ikigai_pubsub";
/// Largest notification payload sent inline (NOTIFY's limit is 8000 bytes).
const MAX_INLINE: usize = 7900;
const NOTIFY: &str = "SELECT pg_notify($1, $2)";
const STORE: &str = "\
    INSERT INTO pubsub_message (id, topic, message, published_at) VALUES ($1, $2, $3, $4)";
/// Stored bodies are read within moments; older ones are removed when large messages flow.
const EXPIRE: &str = "DELETE FROM pubsub_message WHERE published_at < now() - interval '5 minutes'";
const FETCH: &str = "SELECT topic, message, published_at FROM pubsub_message WHERE id = $1";

/// A notification's payload.
#[derive(Serialize, Deserialize)]
struct Note {
    /// The publishing daemon.
    d: Uuid,
    i: Uuid,
    /// Inline: topic, message and time; absent when the body is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<(String, Arc<Value>, DateTime<Utc>)>,
}

pub struct PgPubSub {
    pool: Pool,
    listener: Listener,
    daemon: Uuid,
}

impl PgPubSub {
    pub fn new(pool: Pool, listener: Listener) -> Self {
        PgPubSub {
            pool,
            listener,
            daemon: Uuid::new_v4(),
        }
    }
}

#[async_trait]
impl PubSub for PgPubSub {
    async fn publish(&self, batch: &[Publication]) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(store_error)?;
        let tx = client.transaction().await.map_err(store_error)?;
        let mut stored = false;
        for p in batch {
            let body = Some((p.topic.clone(), p.message.clone(), p.published_at));
            let mut note = serde_json::to_string(&Note {
                d: self.daemon,
                i: p.id,
                b: body,
            })
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
            if note.len() > MAX_INLINE {
                let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                    [&p.id, &p.topic, p.message.as_ref(), &p.published_at];
                tx.execute(STORE, &args).await.map_err(store_error)?;
                note = serde_json::to_string(&Note {
                    d: self.daemon,
                    i: p.id,
                    b: None,
                })
                .map_err(|e| StoreError::Rejected(e.to_string()))?;
                stored = true;
            }
            tx.execute(NOTIFY, &[&CHANNEL, &note])
                .await
                .map_err(store_error)?;
        }
        if stored {
            tx.execute(EXPIRE, &[]).await.map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    fn receive(&self, deliver: Deliver) {
        let mut events = self.listener.subscribe(CHANNEL);
        let (pool, me) = (self.pool.clone(), self.daemon);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let payload = match event {
                    Event::Notify(payload) => payload,
                    Event::Resync => {
                        warn!("pub/sub notifications may have been lost while reconnecting");
                        continue;
                    }
                };
                match decode(&pool, me, &payload).await {
                    Ok(Some(p)) => deliver(p),
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "dropping an unreadable publication"),
                }
            }
        });
    }
}

/// The publication a notification announces; `None` for this daemon's own or a vanished one.
async fn decode(pool: &Pool, me: Uuid, payload: &str) -> Result<Option<Publication>, StoreError> {
    let note: Note =
        serde_json::from_str(payload).map_err(|e| StoreError::Rejected(e.to_string()))?;
    if note.d == me {
        return Ok(None);
    }
    let (topic, message, published_at) = match note.b {
        Some(body) => body,
        None => {
            let client = pool.get().await.map_err(store_error)?;
            let Some(row) = client
                .query_opt(FETCH, &[&note.i])
                .await
                .map_err(store_error)?
            else {
                debug!(id = %note.i, "stored publication already removed");
                return Ok(None);
            };
            let undecodable = super::rows::undecodable;
            let message = Arc::new(row.try_get::<_, Value>(1).map_err(undecodable)?);
            (
                row.try_get(0).map_err(undecodable)?,
                message,
                row.try_get(2).map_err(undecodable)?,
            )
        }
    };
    Ok(Some(Publication {
        id: note.i,
        topic,
        message,
        published_at,
    }))
}
