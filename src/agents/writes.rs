//! One agent's registry writes, applied one at a time in the order they were made. (`ctx.wait`
//! cannot order them: actix runs the most recently added wait future first.)

use super::AgentError;
use futures::future::LocalBoxFuture;
use ikigai_actors::store::StoreError;
use std::future::Future;
use std::rc::Rc;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// The queue of one agent's registry writes. Cheap to clone.
#[derive(Clone)]
pub struct Writes {
    queue: mpsc::UnboundedSender<LocalBoxFuture<'static, ()>>,
    agent: Rc<str>,
}

impl Writes {
    /// Starts the task that applies `agent`'s writes (on the current thread).
    pub fn start(agent: &str) -> Writes {
        let (queue, mut writes) = mpsc::unbounded_channel::<LocalBoxFuture<'static, ()>>();
        tokio::task::spawn_local(async move {
            while let Some(write) = writes.recv().await {
                write.await;
            }
        });
        Writes {
            queue,
            agent: Rc::from(agent),
        }
    }

    /// Queues a write whose failure is only logged.
    pub fn save(&self, write: impl Future<Output = Result<(), StoreError>> + 'static) {
        let agent = self.agent.clone();
        let _ = self.queue.send(Box::pin(async move {
            if let Err(e) = write.await {
                warn!(agent = %agent, error = %e, "registry write failed");
            }
        }));
    }

    /// Queues a write and returns its outcome.
    pub fn queued<T: 'static>(
        &self,
        write: impl Future<Output = Result<T, StoreError>> + 'static,
    ) -> impl Future<Output = Result<T, AgentError>> {
        let (done, outcome) = oneshot::channel();
        let _ = self.queue.send(Box::pin(async move {
            let _ = done.send(write.await);
        }));
        async move {
            outcome
                .await
                .map_err(|_| AgentError::Gone)?
                .map_err(Into::into)
        }
    }

    /// Resolves once every write queued before the call is done.
    pub fn done(&self) -> impl Future<Output = ()> {
        let done = self.queued(async { Ok(()) });
        async move {
            let _ = done.await;
        }
    }
}
