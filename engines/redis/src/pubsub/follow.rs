//! The follower: the task that receives other daemons' publications on a Redis connection of
//! its own, pattern-subscribed to the globs the transport wants, delivering each publication
//! once, and connecting again with backoff whenever the connection ends.

use super::{Envelope, Globs};
use futures::StreamExt;
use ikigai_actors::pubsub::{Deliver, Publication};
use redis::aio::PubSubSink;
use redis::{Client, Msg, RedisError};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};
use uuid::Uuid;

/// How many publication ids the follower remembers to deliver each once.
const RECENT: usize = 1024;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long connecting the subscriber connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The last [`RECENT`] publication ids delivered.
#[derive(Default)]
struct Recent {
    order: VecDeque<Uuid>,
    seen: HashSet<Uuid>,
}

impl Recent {
    /// Whether `id` was not delivered yet; remembers it.
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }
}

/// The task that receives other daemons' publications.
pub(super) struct Follower {
    client: Client,
    me: Uuid,
    globs: watch::Receiver<Globs>,
    deliver: Deliver,
    recent: Recent,
}

impl Follower {
    /// Follows the globs `globs` wants, handing `deliver` what other daemons than `me` publish.
    pub(super) fn new(
        client: Client,
        me: Uuid,
        globs: watch::Receiver<Globs>,
        deliver: Deliver,
    ) -> Follower {
        Follower {
            client,
            me,
            globs,
            deliver,
            recent: Recent::default(),
        }
    }

    /// Follows until the transport is dropped, reconnecting with backoff after each failure.
    pub(super) async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let Err(e) = self.follow(&mut backoff).await else {
                return;
            };
            warn!(error = %e, retry_in = ?backoff, "Redis pub/sub connection lost; other daemons' publications are missed until it is back");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = dropped(&mut self.globs) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: subscribes to the globs wanted, then delivers and follows the changes
    /// of what is wanted. `Ok` once the transport is dropped.
    async fn follow(&mut self, backoff: &mut Duration) -> Result<(), RedisError> {
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub());
        let pubsub = connecting
            .await
            .map_err(|_| io_error(io::ErrorKind::TimedOut, "connecting timed out"))??;
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed = BTreeSet::new();
        self.subscribe(&mut sink, &mut subscribed).await?;
        *backoff = MIN_BACKOFF;
        debug!(globs = subscribed.len(), "following Redis pub/sub");
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.handle(&msg),
                    None => return Err(io_error(io::ErrorKind::UnexpectedEof, "connection closed")),
                },
                changed = self.globs.changed() => match changed {
                    Ok(()) => self.subscribe(&mut sink, &mut subscribed).await?,
                    Err(_) => return Ok(()),
                },
            }
        }
    }

    /// Subscribes to the globs wanted and not yet subscribed, unsubscribes from the others.
    async fn subscribe(
        &mut self,
        sink: &mut PubSubSink,
        subscribed: &mut BTreeSet<String>,
    ) -> Result<(), RedisError> {
        let wanted: BTreeSet<String> = self.globs.borrow_and_update().keys().cloned().collect();
        for glob in wanted.difference(subscribed) {
            sink.psubscribe(glob).await?;
        }
        for glob in subscribed.difference(&wanted) {
            sink.punsubscribe(glob).await?;
        }
        *subscribed = wanted;
        Ok(())
    }

    fn handle(&mut self, msg: &Msg) {
        match serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) {
            Ok(e) if e.d == self.me => {}
            Ok(e) if self.recent.first_time(e.i) => (self.deliver)(Publication {
                id: e.i,
                topic: e.t,
                message: e.m,
                published_at: e.at,
            }),
            Ok(_) => {}
            Err(e) => warn!(
                channel = msg.get_channel_name(),
                error = %e,
                "dropping an unreadable publication"
            ),
        }
    }
}

/// Resolves once the transport (the sender of the globs wanted) is dropped.
async fn dropped(globs: &mut watch::Receiver<Globs>) {
    while globs.changed().await.is_ok() {}
}

fn io_error(kind: io::ErrorKind, what: &str) -> RedisError {
    RedisError::from(io::Error::new(kind, format!("Redis pub/sub: {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_remembered_up_to_a_bound() {
        let mut recent = Recent::default();
        let first = Uuid::now_v7();
        assert!(recent.first_time(first));
        assert!(!recent.first_time(first));
        (0..RECENT).for_each(|_| assert!(recent.first_time(Uuid::now_v7())));
        assert_eq!(recent.seen.len(), RECENT);
        assert!(
            recent.first_time(first),
            "forgotten once {RECENT} came after it"
        );
    }
}
