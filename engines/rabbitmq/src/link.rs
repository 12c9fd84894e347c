//! The one AMQP connection of the engine, reopened when it closed: a publisher-confirm
//! channel every publish goes through, and a channel for declarations and reads. Every
//! reconnection is a new *generation*: deliveries of an older one are void (RabbitMQ requeued
//! them when their connection closed).

use crate::store_error;
use ikigai_actors::store::StoreError;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tracing::{info, warn};

/// How long a connection attempt may take before the operation waiting for it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the broker did with one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Confirmed: the broker has it (persistent messages of durable queues on disk).
    Stored,
    /// Refused (`basic.nack`): a queue bounded with `reject-publish` was full.
    Refused,
    /// No queue took it (`mandatory` and returned): the queue is gone.
    Unroutable,
}

/// The connection as it is now.
#[derive(Clone)]
pub struct Live {
    pub conn: Arc<Connection>,
    publish: Channel,
    reads: Channel,
    pub generation: u64,
}

impl Live {
    pub fn is_open(&self) -> bool {
        self.conn.status().connected()
    }
}

/// The engine's connection, and the queues declared on it (with when).
pub struct Link {
    url: String,
    live: Mutex<Option<Live>>,
    declared: std::sync::Mutex<HashMap<String, (u64, Instant)>>,
}

impl Link {
    /// Connects to `url`; fails when RabbitMQ does not answer within [`CONNECT_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Link, StoreError> {
        let link = Link {
            url: url.to_owned(),
            live: Mutex::new(None),
            declared: Default::default(),
        };
        link.live().await?;
        info!(addr = %redacted(url), "RabbitMQ connected");
        Ok(link)
    }

    /// The open connection, reopened (a new generation) when it closed.
    pub async fn live(&self) -> Result<Live, StoreError> {
        let mut current = self.live.lock().await;
        if let Some(live) = current.as_mut() {
            if live.is_open() {
                reopen_channels(live).await?;
                return Ok(live.clone());
            }
            warn!(addr = %redacted(&self.url), "RabbitMQ connection closed; reconnecting");
        }
        let generation = current.as_ref().map_or(1, |l| l.generation + 1);
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&self.url, generation));
        let live = opened
            .await
            .map_err(|_| StoreError::Unavailable("RabbitMQ did not answer in time".into()))??;
        *current = Some(live.clone());
        Ok(live)
    }

    /// Publishes `body` to queue `queue` (through the default exchange) and waits for the
    /// broker's confirm.
    pub async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<Published, StoreError> {
        let live = self.live().await?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = live
            .publish
            .basic_publish("", queue, options, body, props)
            .await
            .map_err(store_error)?;
        Ok(match confirm.await.map_err(store_error)? {
            Confirmation::Ack(None) => Published::Stored,
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Published::Unroutable,
            Confirmation::Nack(None) => Published::Refused,
            Confirmation::NotRequested => {
                return Err(StoreError::Unavailable("publish was not confirmed".into()))
            }
        })
    }

    /// Declares durable queue `name` with `args`, unless it was declared on this connection
    /// within `fresh` (`None`: always); returns its ready messages when it declared.
    pub async fn declare(
        &self,
        name: &str,
        args: FieldTable,
        fresh: Option<Duration>,
    ) -> Result<Option<u32>, StoreError> {
        let live = self.live().await?;
        let known = self.declared.lock().unwrap().get(name).copied();
        if let (Some((generation, at)), Some(fresh)) = (known, fresh) {
            if generation == live.generation && at.elapsed() < fresh {
                return Ok(None);
            }
        }
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let queue = live
            .reads
            .queue_declare(name, options, args)
            .await
            .map_err(store_error)?;
        let now = (live.generation, Instant::now());
        self.declared.lock().unwrap().insert(name.to_owned(), now);
        Ok(Some(queue.message_count()))
    }

    /// Forgets that `name` was declared (it was deleted).
    pub fn forget(&self, name: &str) {
        self.declared.lock().unwrap().remove(name);
    }

    /// The channel for declarations and one-off reads.
    pub async fn reads(&self) -> Result<Channel, StoreError> {
        Ok(self.live().await?.reads)
    }
}

async fn open(url: &str, generation: u64) -> Result<Live, StoreError> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(store_error)?;
    let (publish, reads) = (confirming(&conn).await?, plain(&conn).await?);
    Ok(Live {
        conn: Arc::new(conn),
        publish,
        reads,
        generation,
    })
}

/// Replaces a channel the server closed (a refused declaration closes its channel) on a
/// connection still open.
async fn reopen_channels(live: &mut Live) -> Result<(), StoreError> {
    if !live.publish.status().connected() {
        live.publish = confirming(&live.conn).await?;
    }
    if !live.reads.status().connected() {
        live.reads = plain(&live.conn).await?;
    }
    Ok(())
}

async fn plain(conn: &Connection) -> Result<Channel, StoreError> {
    conn.create_channel().await.map_err(store_error)
}

async fn confirming(conn: &Connection) -> Result<Channel, StoreError> {
    let channel = plain(conn).await?;
    let options = ConfirmSelectOptions::default();
    channel.confirm_select(options).await.map_err(store_error)?;
    Ok(channel)
}

/// `url` without its password, for logs and errors.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_end = url[scheme + 3..at].find(':').map(|i| scheme + 3 + i);
            match user_end {
                Some(colon) => format!("{}:***{}", &url[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
