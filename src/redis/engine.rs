//! Redis as an engine of the storage seam: the stores of the services it serves.

use super::{RedisCache, RedisEngine, RedisPubSub};
use crate::backends::BackendError;
use crate::backends::{Engine, Needs};
use crate::config::Backend;
use ikigai_actors::cache::Cache;
use ikigai_actors::pubsub::PubSub;
use std::rc::Rc;
use std::sync::Arc;

impl Engine for RedisEngine {
    fn backend(&self) -> Backend {
        Backend::Redis
    }

    fn cache(&self, needs: &Needs) -> Result<Rc<dyn Cache>, BackendError> {
        Ok(Rc::new(RedisCache::new(self, needs.config.cache.max_bytes)))
    }

    fn pubsub(&self, _: &Needs) -> Result<Arc<dyn PubSub>, BackendError> {
        Ok(Arc::new(RedisPubSub::new(self)))
    }
}
