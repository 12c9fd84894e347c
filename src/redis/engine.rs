//! Redis as an engine of the storage seam: the stores of the services it serves.

use super::{RedisCache, RedisEngine, RedisMailboxes, RedisPubSub};
use crate::backends::{BackendError, Engine, MailboxStores, Needs};
use crate::config::Backend;
use ikigai_actors::cache::Cache;
use ikigai_actors::pubsub::PubSub;
use std::rc::Rc;
use std::sync::Arc;

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

    fn cache(&self, needs: &Needs) -> Result<Rc<dyn Cache>, BackendError> {
        Ok(Rc::new(RedisCache::new(self, needs.config.cache.max_bytes)))
    }

    fn pubsub(&self, _: &Needs) -> Result<Arc<dyn PubSub>, BackendError> {
        Ok(Arc::new(RedisPubSub::new(self)))
    }
}
