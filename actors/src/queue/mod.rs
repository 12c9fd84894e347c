//! Task queues: priority, scheduling, atomic claims with leases, retries and dead letters.
//!
//! [`QueueState`] holds the rules, [`Queue`] is the supervised actor around it, and [`Queues`]
//! starts one actor per queue on first use and routes notifications to them.

mod actor;
mod registry;
mod state;

pub use actor::{
    Adopt, Claim, ExtendedElsewhere, Push, Queue, QueueConfig, Refresh, SessionClosed, SettleTask,
    SettledElsewhere, Stats,
};
pub use registry::Queues;
pub use state::{ClaimReply, Held, LiveCounts, QueueState, Waiter};

use crate::store::{Refusal, StoreError};
use thiserror::Error;
use uuid::Uuid;

/// Why a queue request failed.
#[derive(Debug, Clone, Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queue {0} is not loaded yet (storage unavailable); retry")]
    NotLoaded(String),
    #[error("queue {0} restarted while the request was in flight; retry")]
    Restarted(String),
    #[error("queue {queue} failed: {reason}")]
    Panicked { queue: String, reason: String },
    #[error("task {0} does not exist")]
    NotFound(Uuid),
    #[error("task {0} is not claimed by you")]
    NotClaimer(Uuid),
    #[error("the lease on task {0} ran out; it may have been claimed again")]
    LeaseLost(Uuid),
    #[error("task {0} is already completed or dead")]
    Finished(Uuid),
}

impl QueueError {
    pub fn refused(id: Uuid, refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound => QueueError::NotFound(id),
            Refusal::NotClaimer => QueueError::NotClaimer(id),
            Refusal::LeaseLost => QueueError::LeaseLost(id),
            Refusal::Finished => QueueError::Finished(id),
        }
    }
}
