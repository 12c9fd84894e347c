//! Redis as an engine of the storage seam: the stores of the services it serves.

use super::queue::Kept;
use super::{RedisCache, RedisEngine, RedisMailboxes, RedisPubSub, RedisQueues};
use ikigai_actors::cache::Cache;
use ikigai_actors::pubsub::PubSub;
use ikigai_actors::store::{
    Backend, BackendError, Engine, MailboxStores, Maintenance, Needs, QueueStores,
};
use std::rc::Rc;
use std::sync::Arc;
use tracing::{info, warn};

impl Engine for RedisEngine {
    fn backend(&self) -> Backend {
        Backend::Redis
    }

    fn mailboxes(&self, needs: &Needs) -> Result<MailboxStores, BackendError> {
        let (conn, client) = (self.conn(), self.client().clone());
        let prefix = self.prefix().to_owned();
        let mailboxes = RedisMailboxes::new(conn, client, prefix, needs.origin.to_owned());
        let feed = mailboxes.feed();
        let mailboxes = Arc::new(mailboxes);
        Ok(MailboxStores {
            store: mailboxes.clone(),
            journal: mailboxes,
            feed,
        })
    }

    /// One store serves the three lanes: each group is one script, and Redis runs scripts one
    /// at a time, so lanes of their own would only queue there.
    fn queues(&self, needs: &Needs) -> Result<QueueStores, BackendError> {
        let (conn, client) = (self.conn(), self.client().clone());
        let prefix = self.prefix().to_owned();
        let queues = RedisQueues::new(conn, client, prefix, needs.origin.to_owned());
        let feed = queues.feed();
        let queues = Arc::new(queues);
        Ok(QueueStores {
            store: queues.clone(),
            main: queues.clone(),
            pushes: queues.clone(),
            claims: queues,
            feed,
        })
    }

    fn cache(&self, needs: &Needs) -> Result<Rc<dyn Cache>, BackendError> {
        Ok(Rc::new(RedisCache::new(self, needs.cache.max_bytes)))
    }

    fn pubsub(&self, _: &Needs) -> Result<Arc<dyn PubSub>, BackendError> {
        Ok(Arc::new(RedisPubSub::new(self)))
    }

    /// Deletes the finished tasks whose retention has passed, every `settings.every`. Read
    /// messages need nothing: an ack deletes the message's stream entry.
    fn maintain(&self, settings: &Maintenance) {
        let kept = Kept {
            completed: settings.retention.completed,
            dead: settings.retention.dead,
        };
        if kept.completed.is_none() && kept.dead.is_none() {
            return;
        }
        let (conn, client) = (self.conn(), self.client().clone());
        let queues = RedisQueues::new(conn, client, self.prefix().to_owned(), String::new());
        let every = settings.every;
        tokio::task::spawn_local(async move {
            loop {
                match queues.prune(&kept).await {
                    Ok(0) => {}
                    Ok(n) => info!(tasks = n, "maintenance: finished tasks deleted from Redis"),
                    Err(e) => warn!(error = %e, "maintenance of Redis failed; next pass retries"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
}
