//! NATS as an engine of the storage seam: the stores of the services it serves.

use super::{NatsEngine, NatsMailboxes, NatsPubSub};
use ikigai_actors::pubsub::PubSub;
use ikigai_actors::store::{Backend, BackendError, Engine, MailboxStores, Needs};
use std::sync::Arc;

impl Engine for NatsEngine {
    fn backend(&self) -> Backend {
        Backend::Nats
    }

    fn mailboxes(&self, needs: &Needs) -> Result<MailboxStores, BackendError> {
        let mailboxes = NatsMailboxes::new(self, needs.origin);
        let feed = mailboxes.feed();
        let mailboxes = Arc::new(mailboxes);
        Ok(MailboxStores {
            store: mailboxes.clone(),
            journal: mailboxes,
            feed,
        })
    }

    fn pubsub(&self, _: &Needs) -> Result<Arc<dyn PubSub>, BackendError> {
        Ok(Arc::new(NatsPubSub::new(self)))
    }
}
