//! Mailboxes: named, durable, point-to-point message destinations with one consumer.
//!
//! [`MailboxState`] holds the rules, [`Mailbox`] is the supervised actor around it, and
//! [`Mailboxes`] starts one actor per mailbox on first use and routes sends through the
//! persistence actor.

mod actor;
mod registry;
mod state;

pub use actor::{
    Ack, ForeignSent, Forget, InjectPanic, Mailbox, MailboxConfig, Peek, Receive, Release,
    Released, SessionClosed, Stats, IDLE_RELEASE,
};
pub use registry::Mailboxes;
pub use state::{LiveCounts, MailboxState, ReceiveReply, Waiter};

use crate::store::StoreError;
use thiserror::Error;

/// Why a mailbox request failed.
#[derive(Debug, Clone, Error)]
pub enum MailboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mailbox could not load its messages yet; retry shortly.
    #[error("mailbox {0} is not loaded yet (storage unavailable); retry")]
    NotLoaded(String),
    /// The actor restarted while the request was in flight; retry.
    #[error("mailbox {0} restarted while the request was in flight; retry")]
    Restarted(String),
    /// The mailbox logic panicked; the actor is restarting with state rebuilt from storage.
    #[error("mailbox {mailbox} failed: {reason}")]
    Panicked { mailbox: String, reason: String },
}
