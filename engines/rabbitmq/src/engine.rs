//! RabbitMQ as an engine of the storage seam: the stores of the one service it serves, queues.

use super::{RabbitEngine, RabbitQueues};
use ikigai_actors::store::{Backend, BackendError, Engine, Needs, QueueStores};
use std::sync::Arc;

impl Engine for RabbitEngine {
    fn backend(&self) -> Backend {
        Backend::Rabbitmq
    }

    /// One store serves the three lanes: publishes of every lane share the connection's
    /// confirm channel anyway, and claims never leave this daemon's memory.
    fn queues(&self, _: &Needs) -> Result<QueueStores, BackendError> {
        let queues = RabbitQueues::new(self.link.clone(), &self.prefix, self.prefetch);
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
}
